"""A case the DSL closed by reply, while the register goes on saying "unexplained".

The DSL answers the 8th day's confirmation request with ``CLOSE`` ("mum rang, he is ill"), but
nobody writes the reason into the register: the child's marks stay ``N``. Before, that episode was
never raised again, however long it went on: a child missing education, unwatched. Now the case
comes back on the LA's criterion day (the 10th school day), with the DSL asked afresh, and again
every 10 school days while the DSL keeps closing it and the register keeps saying unexplained.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.dispatch import DispatchReport
from cme_batch.replies.process import read_replies
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import DEPUTY, DSL, KEY, KEY_ENV, MAILDIR_REPLIES, night_of, reply

TERM = date(2026, 1, 5), date(2026, 3, 27)


@pytest.fixture
def school(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv(KEY_ENV, KEY)
    stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
    cfg = write_config(tmp_path, store_url, f"""
[[calendar.terms]]
start = "{TERM[0]}"
end = "{TERM[1]}"
{MAILDIR_REPLIES}""")
    app = clocked_app(cfg, engine, datetime(2026, 1, 5, 5, 0, tzinfo=UTC))
    return app


def _school_days(app: App, first: date, last: date) -> list[date]:
    return detect.evaluate(app, last).calendar.school_days(first, last)


def _mailbox(app: App) -> stdlib_mailbox.Maildir:
    return stdlib_mailbox.Maildir(str(Path(str(app.config_path)).parent / "replies"), create=False)


def _night(app: App, day: date, code: str | None) -> DispatchReport:
    """The night after ``day`` (``night_of``): ``code`` in that day's register, None if not taken."""
    return night_of(app, day, code)


def _case(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(t.cases).where(t.cases.c.kind == "unexplained_absence")).one()


def _requests(engine: Engine, case_id: int, to: str = DSL) -> list[EmailMessage]:
    """The confirmation requests about the case to one person, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients).where(t.outbox.c.case_id == case_id)
                            .order_by(t.outbox.c.id)).all()
    msgs = [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
            for r in rows if [a.lower() for a in r.recipients] == [to]]
    return [m for m in msgs if "[cme:" in str(m["Subject"])]


def _close_by_reply(app: App, engine: Engine, ref: str, case_id: int) -> None:
    ask = _requests(engine, case_id)[-1]
    _mailbox(app).add(reply(DSL, f"Re: {ask['Subject']}", f"CLOSE {ref} mum rang, he has chickenpox\n"))
    assert read_replies(app) is not None
    case = _case(engine)
    assert (case.status, case.closed_reason) == ("closed", "closed_by_dsl")


def _eight_days_absent(app: App) -> tuple[list[date], Any]:
    """Present on the term's first day, then N for 8 school days: the case at "referral prepared",
    its confirmation requests queued. Returns the term's school days and the case."""
    days = _school_days(app, TERM[0], TERM[1])
    _night(app, days[0], "/")
    for d in days[1:9]:
        _night(app, d, "N")
    return days, _case(app.engine())


def test_an_absence_the_dsl_closed_comes_back_on_the_criterion_day_and_every_ten_days_after(
        school: App, engine: Engine) -> None:
    days, case = _eight_days_absent(school)
    absent = days[1:]  # the streak's 1st school day is days[1]
    assert (case.status, case.stage, case.school_days) == ("open", "referral_prepare", 8)
    _close_by_reply(school, engine, case.ref, case.id)
    asked_before = len(_requests(engine, case.id))

    _night(school, absent[8], "N")  # the 9th day: still closed, nothing asked
    assert _case(engine).status == "closed"
    assert len(_requests(engine, case.id)) == asked_before

    _night(school, absent[9], "N")  # the 10th day: the LA's criterion is met whatever was said
    case = _case(engine)
    assert (case.status, case.closed_reason, case.stage, case.school_days) == ("open", None, "referral_due", 10)
    asks = _requests(engine, case.id)
    assert len(asks) == asked_before + 1, "the DSL was not asked again about the reopened case"
    text = " ".join(asks[-1].get_body(("plain",)).get_content().split())  # type: ignore[union-attr]
    assert f"CONFIRM {case.ref}" in text
    # the DSL is told why a case they closed is back, and what ends it
    assert "Raised again: this case was closed by reply on" in text and "mum rang, he has chickenpox" in text
    assert "record the reason in the MIS register" in text
    assert "please confirm the referral" in str(asks[-1]["Subject"])
    with engine.connect() as conn:
        reopened = conn.execute(select(t.case_events.c.detail).where(
            t.case_events.c.case_id == case.id, t.case_events.c.kind == "reopened")).scalar_one()
    assert reopened["previous_reason"] == "closed_by_dsl"
    assert (reopened["unexplained_days_at_close"], reopened["raised_again_at"]) == (8, 10)

    # the LA's form, if the DSL now confirms, says what the school was told when it closed the case
    from cme_batch.referral.bundle import build_bundle
    from cme_batch.referral.pdf import render_pdf
    from tests.referral_support import pdf_text

    with engine.connect() as conn:
        doc = build_bundle(conn, case.id, school.config, school.now()).document
    closes = [a for a in doc["actions"] if a["action"] == "closed_by_school"]
    assert [(a["outcome"], a["who"] != "") for a in closes] == [("mum rang, he has chickenpox", True)]
    form = " ".join(pdf_text(render_pdf(doc, school.now())).split())
    assert "Case closed by reply" in form and "mum rang, he has chickenpox" in form

    # closed again on the 10th day: raised again only after 10 more school days
    _close_by_reply(school, engine, case.ref, case.id)
    for d in absent[10:19]:
        _night(school, d, "N")
        assert _case(engine).status == "closed", d
    _night(school, absent[19], "N")
    case = _case(engine)
    assert (case.status, case.school_days) == ("open", 20)


def test_a_confirmation_the_deputy_overruled_does_not_send_the_reopened_referral(school: App, engine: Engine) -> None:
    """The DSL confirms, the deputy closes (each replies to their own request; the night reads both):
    the close is the later word, so the reopened case is asked about afresh and no referral goes to
    the LA on the old confirmation."""
    days, case = _eight_days_absent(school)
    to_dsl = _requests(engine, case.id)[-1]
    to_deputy = _requests(engine, case.id, DEPUTY)[-1]
    _mailbox(school).add(reply(DSL, f"Re: {to_dsl['Subject']}", f"CONFIRM {case.ref}\n"))
    _mailbox(school).add(reply(DEPUTY, f"Re: {to_deputy['Subject']}", f"CLOSE {case.ref} family on a visit abroad\n"))
    for d in days[9:11]:
        report = _night(school, d, "N")
        # held: the referral was built for the LA and only the missing certificate kept it back
        assert (report.referred, report.held, report.failed) == ([], [], []), d
    case = _case(engine)
    assert (case.status, case.stage) == ("open", "referral_due")
    assert (case.confirmed_at, case.confirmed_by, case.hold_reason, case.referred_at) == (None, None, None, None)
    assert "please confirm the referral" in str(_requests(engine, case.id)[-1]["Subject"])


def test_a_child_who_comes_back_after_the_close_raises_nothing(school: App, engine: Engine) -> None:
    days, case = _eight_days_absent(school)
    _close_by_reply(school, engine, case.ref, case.id)
    _night(school, days[9], "/")
    for d in days[10:13]:
        _night(school, d, "/")
    with engine.connect() as conn:
        rows = conn.execute(select(t.cases.c.status, t.cases.c.closed_reason)).all()
    assert [tuple(r) for r in rows] == [("closed", "closed_by_dsl")]


def test_days_with_no_register_count_towards_raising_it_again(school: App, engine: Engine) -> None:
    """The 9th and 10th days' registers were never taken: the child was still not seen, so the 10th
    day of absence raises the case again, as it brings the referral's due date."""
    days, case = _eight_days_absent(school)
    _close_by_reply(school, engine, case.ref, case.id)
    _night(school, days[9], None)
    assert _case(engine).status == "closed"
    _night(school, days[10], None)
    case = _case(engine)
    assert (case.status, case.school_days, len(case.register_gaps)) == ("open", 8, 2)
