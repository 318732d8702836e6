"""Review (sixteenth session): what the office and the DSL read each morning, and the DSL's reply."""

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
from cme_batch.model import PupilRecord
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.referral_support import make_pki, smime_config
from tests.replies_support import (
    DEPUTY,
    DSL,
    KEY,
    KEY_ENV,
    MAILDIR_REPLIES,
    deliver_and_run,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
    night_of,
    reply,
)

TERM = date(2026, 1, 5), date(2026, 3, 27)

DEPUTY_IN_OFFICE = f"""
[[staff.office]]
name = "School Business Manager"
email = "{DEPUTY}"
"""


def _school(tmp_path: Path, store_url: str, engine: Engine, extra: str = "") -> App:
    stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
    cfg = write_config(tmp_path, store_url, f"""
[[calendar.terms]]
start = "{TERM[0]}"
end = "{TERM[1]}"
{MAILDIR_REPLIES}{extra}""")
    return clocked_app(cfg, engine, datetime(2026, 1, 5, 5, 0, tzinfo=UTC))


def _mailbox(app: App) -> stdlib_mailbox.Maildir:
    return stdlib_mailbox.Maildir(str(Path(str(app.config_path)).parent / "replies"), create=False)


def _night(app: App, day: date, code: str | None, flags: tuple[Any, ...] = ()) -> DispatchReport:
    """The night after ``day`` as ``nightly`` runs its stages (sending aside)."""
    return night_of(app, day, code, PupilRecord("p1", upn="A123456789012", dob=date(2017, 3, 1), legal_forename="Alex",
                                                legal_surname="Testchild", year_group="4", reg_group="4B"), flags)


def _case(engine: Engine, kind: str = "unexplained_absence") -> Any:
    with engine.connect() as conn:
        return conn.execute(select(t.cases).where(t.cases.c.kind == kind)).one()


def _mails(engine: Engine, to: str, purpose: str | None = None) -> list[EmailMessage]:
    with engine.connect() as conn:
        q = select(t.outbox.c.mime, t.outbox.c.recipients, t.outbox.c.purpose).order_by(t.outbox.c.id)
        rows = conn.execute(q).all()
    return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default) for r in rows
            if to in [a.lower() for a in r.recipients] and (purpose is None or r.purpose == purpose)]


def _text(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return " ".join(body.get_content().split())


def _school_days(app: App, first: date, last: date) -> list[date]:
    return detect.evaluate(app, last).calendar.school_days(first, last)


def test_a_confirm_to_an_office_action_email_is_not_a_referral_confirmation(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small school: the deputy DSL is also the school business manager on the office list, so she gets
    the office's action emails. On the 1st day of absence she replies to the "first-day call needed"
    email with "Confirm <ref>" (meaning: done), read the next night. No confirmation request was ever sent (the referral is
    drafted on day 8): the reply must not count as the DSL's confirmation of a referral."""
    monkeypatch.setenv(KEY_ENV, KEY)
    school = _school(tmp_path, store_url, engine, DEPUTY_IN_OFFICE + smime_config(make_pki(tmp_path)))
    days = _school_days(school, TERM[0], TERM[1])
    _night(school, days[0], "/")
    _night(school, days[1], "N")
    case = _case(engine)
    assert case.stage == "first_day_call"
    action = _mails(engine, DEPUTY, "office_action")[-1]
    assert "first-day call" in str(action["Subject"])
    _mailbox(school).add(reply(DEPUTY, f"Re: {action['Subject']}", f"Confirm {case.ref}\n"))
    report = _night(school, days[2], "N")
    case = _case(engine)
    assert report.referred == [], "a referral went to the LA on the 2nd day, on a reply to a first-day-call email"
    assert case.confirmed_at is None
    with engine.connect() as conn:  # kept for the DSL to see, saying why
        kept = conn.execute(select(t.replies.c.outcome, t.replies.c.reason)).one()
    assert kept.outcome == "review" and "office action email" in (kept.reason or "")


def test_the_deputy_is_asked_afresh_when_a_case_the_dsl_closed_is_raised_again(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DSL closes the 8th day's request by reply; the register goes on saying N; on the 10th day the
    case is raised again. README: "the DSL and deputy are asked afresh, the request and the digest saying
    when and why it was closed". The deputy's only request is still the day-8 one, which says nothing of
    the close, and with which she can still CONFIRM."""
    monkeypatch.setenv(KEY_ENV, KEY)
    school = _school(tmp_path, store_url, engine)
    days = _school_days(school, TERM[0], TERM[1])
    _night(school, days[0], "/")
    for d in days[1:9]:
        _night(school, d, "N")
    case = _case(engine)
    assert case.stage == "referral_prepare"
    to_dsl = _mails(engine, DSL, "confirm_request")[-1]
    _mailbox(school).add(reply(DSL, f"Re: {to_dsl['Subject']}", f"CLOSE {case.ref} mum rang, he has chickenpox\n"))
    _night(school, days[9], "N")
    assert _case(engine).status == "closed"
    deputy_before = len(_mails(engine, DEPUTY, "confirm_request"))
    _night(school, days[10], "N")  # the 10th school day: raised again
    case = _case(engine)
    assert (case.status, case.stage) == ("open", "referral_due")
    dsl_asks = _mails(engine, DSL, "confirm_request")
    assert "Raised again" in _text(dsl_asks[-1])
    deputy_asks = _mails(engine, DEPUTY, "confirm_request")
    assert len(deputy_asks) == deputy_before + 1, "the deputy was not asked afresh"
    assert "Raised again" in _text(deputy_asks[-1])
    # her CONFIRM to the request of before the close decides nothing; to the one sent since, it does
    _mailbox(school).add(reply(DEPUTY, f"Re: {deputy_asks[-2]['Subject']}", f"CONFIRM {case.ref}\n"))
    _night(school, days[11], "N")
    assert _case(engine).confirmed_at is None
    with engine.connect() as conn:
        kept = conn.execute(select(t.replies.c.reason).where(t.replies.c.sender == DEPUTY)).scalars().all()
    assert any("raised again" in (r or "") for r in kept)
    _mailbox(school).add(reply(DEPUTY, f"Re: {deputy_asks[-1]['Subject']}", f"CONFIRM {case.ref}\n"))
    _night(school, days[12], "N")
    assert _case(engine).confirmed_at is not None


def test_a_reply_kept_for_review_shows_when_it_came_by_england_s_clock(
        reply_app: Any, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """A reply read by the daytime pass at 08:05 BST (07:05 UTC) in June, kept for review."""
    now = datetime(2026, 6, 10, 7, 5, tzinfo=UTC)
    app = reply_app(now)
    case_id = make_case(engine, "CME-2026-0042", now)
    token = issue(engine, make_tokens(), case_id, DSL, now)
    deliver_and_run(app, maildir, dsl_reply("Yes please send it", token, "CME-2026-0042"))
    queue_morning_mail(app, date(2026, 6, 10))
    digest = _text(_mails(engine, DSL, "digest")[-1])
    assert "CME-2026-0042" in digest and "first unquoted line is not a command" in digest
    assert "Wed 10 Jun 2026 08:05 BST" in digest, "the time the reply came is shown in UTC, an hour behind the school's clocks"
