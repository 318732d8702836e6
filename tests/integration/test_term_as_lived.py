"""The term as the DSL lives it: what the emails ask, and whether a reply to them can do it.

The demo school is loaded into a real store, ``detect`` and the summary stage run as the night
does, and the DSL answers the emails the way a person would: by replying to the one that asks,
through the Maildir the replies stage reads.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
from datetime import UTC, date, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.demo.generator import generate
from cme_batch.model import SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies.process import read_replies
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import DSL, KEY, KEY_ENV, MAILDIR_REPLIES, reply

AS_OF = date(2025, 12, 19)
NOW = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)


@pytest.fixture
def term_app(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """The demo school (80 pupils) in a store whose replies come from the Maildir ``tmp_path/replies``."""
    monkeypatch.setenv(KEY_ENV, KEY)
    stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
    cfg = write_config(tmp_path, store_url, f"""{MAILDIR_REPLIES}""")
    app = clocked_app(cfg, engine, NOW)
    school = generate(2025, 80)
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=school.records), NOW)
    return app


def _mail_to(engine: Engine, case_id: int, recipient: str) -> list[EmailMessage]:
    """Every message queued about one case to one person, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients).where(t.outbox.c.case_id == case_id)
                            .order_by(t.outbox.c.id)).all()
    return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)  # type: ignore[misc]
            for r in rows if [a.lower() for a in r.recipients] == [recipient]]


def _deliver(app: App, raw: bytes) -> None:
    stdlib_mailbox.Maildir(str(Path(app.config_path).parent / "replies"), create=False).add(raw)
    report = read_replies(app)
    assert report is not None


def _case(engine: Engine, kind: str) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(select(t.cases.c.id, t.cases.c.ref).where(t.cases.c.kind == kind,
                                                                      t.cases.c.status == "open")).one()
    return int(row.id), str(row.ref)


def test_the_dsl_closes_a_repeat_missing_case_by_replying_to_the_email_that_asks(term_app: App, engine: Engine) -> None:
    """The digest tells the DSL to close a repeat-missing case by reply; some email must carry its code."""
    detect.run_detect(term_app, AS_OF)
    queue_morning_mail(term_app, AS_OF)
    case_id, ref = _case(engine, "repeat_missing")
    asks = _mail_to(engine, case_id, DSL)
    assert len(asks) == 1, "the DSL has no email about the repeat-missing case to reply to"
    ask = asks[0]
    text = ask.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"CLOSE {ref}" in text and "[cme:" in str(ask["Subject"])
    assert "CONFIRM" not in text  # there is no referral to confirm

    _deliver(term_app, reply(DSL, f"Re: {ask['Subject']}", f"CLOSE {ref} attendance panel met the family\n"))
    with engine.connect() as conn:
        case = conn.execute(select(t.cases.c.status, t.cases.c.closed_reason).where(t.cases.c.id == case_id)).one()
    assert (case.status, case.closed_reason) == ("closed", "closed_by_dsl")

    term_app.clock_box["now"] = NOW.replace(hour=6)  # type: ignore[attr-defined]
    queue_morning_mail(term_app, AS_OF)  # run again: a closed case is not asked about again
    assert len(_mail_to(engine, case_id, DSL)) == 1

    # 'case REF' dates the DSL's close on the day it was acted on (a reply has no evaluation date)
    from click.testing import CliRunner

    from cme_batch.cli import cli

    shown = CliRunner().invoke(cli, ["--config", str(term_app.config_path), "case", ref])
    assert shown.exit_code == 0, shown.output
    closed = [line for line in shown.output.splitlines() if " closed " in line and DSL in line]
    assert len(closed) == 1 and closed[0].split()[0] == "2025-12-20", shown.output


def test_after_a_hold_the_next_request_says_the_referral_is_on_hold(term_app: App, engine: Engine) -> None:
    """The HOLD uses the request's code, so a fresh request follows the next morning: it must not read
    as if the HOLD had been ignored."""
    detect.run_detect(term_app, AS_OF)
    queue_morning_mail(term_app, AS_OF)
    with engine.connect() as conn:
        case_id, ref = conn.execute(select(t.cases.c.id, t.cases.c.ref).where(
            t.cases.c.kind == "unexplained_absence", t.cases.c.stage == "referral_due").order_by(t.cases.c.ref)).first()
    first = _mail_to(engine, case_id, DSL)[-1]
    assert "please confirm the referral" in str(first["Subject"])
    _deliver(term_app, reply(DSL, f"Re: {first['Subject']}", f"HOLD {ref} social worker visiting on Monday\n"))

    term_app.clock_box["now"] = NOW.replace(hour=7)  # type: ignore[attr-defined]
    queue_morning_mail(term_app, AS_OF)
    again = _mail_to(engine, case_id, DSL)
    assert len(again) == 2
    subject, text = str(again[-1]["Subject"]), again[-1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "on hold" in subject and "please confirm" not in subject
    assert "social worker visiting on Monday" in text and f"replies CONFIRM {ref}" in text


def test_an_action_noted_by_reply_is_dated_the_day_it_was_reported(term_app: App, engine: Engine) -> None:
    """The office replies NOTE on the afternoon of the call; the night's run reads it the next morning.
    The LA's form must date the call on the day it was made, not on the morning the reply was read."""
    from cme_batch.referral.bundle import build_bundle

    detect.run_detect(term_app, AS_OF)
    queue_morning_mail(term_app, AS_OF)
    with engine.connect() as conn:
        case_id, ref = conn.execute(select(t.cases.c.id, t.cases.c.ref).where(
            t.cases.c.kind == "unexplained_absence", t.cases.c.stage == "referral_due").order_by(t.cases.c.ref)).first()
    ask = _mail_to(engine, case_id, DSL)[-1]
    written = datetime(2025, 12, 19, 15, 40, tzinfo=UTC)  # Friday afternoon; read Saturday 05:30
    _deliver(term_app, reply(DSL, f"Re: {ask['Subject']}", f"NOTE {ref} home-visit: nobody in, card left\n",
                             when=written))
    with engine.connect() as conn:
        doc = build_bundle(conn, case_id, term_app.config, NOW).document
    visits = [a for a in doc["actions"] if a["action"] == "home_visit"]
    assert [a["date"] for a in visits] == ["2025-12-19"]
    assert next(c for c in doc["checklist"] if c["action"] == "home_visit")["dates"] == ["2025-12-19"]


def test_a_reply_dated_in_the_future_or_not_at_all_is_dated_when_read() -> None:
    from cme_batch.replies.parse import read_message, written_at

    read = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)
    assert written_at(read_message(reply(DSL, "Re: x", "NOTE x\n", when=datetime(2026, 1, 5, tzinfo=UTC))), read) == read
    assert written_at(read_message(reply(DSL, "Re: x", "NOTE x\n")), read) == read
    broken = reply(DSL, "Re: x", "NOTE x\n").replace(b"Subject:", b"Date: not a date\r\nSubject:", 1)
    assert written_at(read_message(broken), read) == read


def test_confirm_to_a_repeat_missing_review_request_sends_no_referral(term_app: App, engine: Engine) -> None:
    """A repeat-missing case is not one of the criteria a referral states; a CONFIRM to its review
    request is kept for review instead of sending the LA a referral under a criterion it does not meet."""
    from cme_batch.dispatch import queue_confirmed_referrals
    from cme_batch.replies.process import NO_REFERRAL

    detect.run_detect(term_app, AS_OF)
    queue_morning_mail(term_app, AS_OF)
    case_id, ref = _case(engine, "repeat_missing")
    ask = _mail_to(engine, case_id, DSL)[-1]
    _deliver(term_app, reply(DSL, f"Re: {ask['Subject']}", f"CONFIRM {ref}\n"))
    assert str(queue_confirmed_referrals(term_app, AS_OF)) == "0 referral(s) queued, 0 update(s) queued"
    with engine.connect() as conn:
        case = conn.execute(select(t.cases.c.confirmed_at, t.cases.c.status).where(t.cases.c.id == case_id)).one()
        kept = conn.execute(select(t.replies.c.outcome, t.replies.c.reason)).all()
    assert case.confirmed_at is None and case.status == "open"
    assert [(k.outcome, k.reason) for k in kept] == [("review", NO_REFERRAL)]
