"""What each accepted command does to its case, read from a real Maildir into a real store.

Also: a reply is never processed twice, even when the run dies between storing it and telling
the mailbox; replies kept for review reach the digest once.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch.app import App, in_school_time
from cme_batch.errors import RetriableError
from cme_batch.replies import mark_shown, pending_review, process
from cme_batch.replies.mailbox import MemoryMailbox
from cme_batch.replies.process import Policy
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW
from tests.helpers import snapshot
from tests.replies_support import (
    DEPUTY,
    DSL,
    OFFICE,
    case_row,
    deliver_and_run,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
)

REF = "CME-2025-0011"
LATER = FIXED_NOW + timedelta(hours=2)


@pytest.fixture
def app(reply_app: Callable[..., App]) -> App:
    return reply_app(LATER)


def events(engine: Engine, case_id: int) -> list[tuple[str, str, dict[str, object]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.case_events).where(t.case_events.c.case_id == case_id)
                            .order_by(t.case_events.c.id)).all()
    return [(r.kind, r.actor, {k: v for k, v in r.detail.items() if k not in ("reply_id", "message_id")})
            for r in rows]


def test_hold_note_and_close_act_on_the_case(app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    report = deliver_and_run(
        app, maildir,
        dsl_reply(f"HOLD {REF} social worker visiting tomorrow", issue(engine, toks, case_id, DSL, FIXED_NOW), REF),
        dsl_reply(f"NOTE {REF} home-visit: nobody in, card left", issue(engine, toks, case_id, OFFICE, FIXED_NOW),
                  REF, sender=OFFICE),
        dsl_reply(f"NOTE {REF} spoke to the childminder", issue(engine, toks, case_id, DEPUTY, FIXED_NOW), REF,
                  sender=DEPUTY))
    assert dict(report.accepted) == {"HOLD": 1, "NOTE": 2} and not report.review
    assert case_row(engine, case_id).hold_reason == "social worker visiting tomorrow"
    assert events(engine, case_id) == [
        ("hold", DSL, {"reason": "social worker visiting tomorrow"}),
        ("action", OFFICE, {"action": "home_visit", "outcome": "nobody in, card left", "by": OFFICE,
                            "date": "2025-12-01"}),
        ("note", DEPUTY, {"action": "note", "text": "spoke to the childminder", "by": DEPUTY,
                          "date": "2025-12-01"}),
    ]
    # read, and moved from new/ to cur/ with the Seen flag
    assert not list((Path(maildir._path) / "new").iterdir())
    assert sorted(p.name.endswith(":2,S") for p in (Path(maildir._path) / "cur").iterdir()) == [True] * 3

    report = deliver_and_run(app, maildir, dsl_reply(
        f"CLOSE {REF} family emigrated, LA informed", issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert dict(report.accepted) == {"CLOSE": 1}
    case = case_row(engine, case_id)
    assert (case.status, case.closed_reason, case.closed_on) == ("closed", "closed_by_dsl", in_school_time(LATER).date())
    assert events(engine, case_id)[-1] == ("closed", DSL, {"reason": "closed_by_dsl",
                                                           "text": "family emigrated, LA informed"})


def test_commands_that_do_not_fit_the_case_are_kept_for_review(app: App, engine: Engine,
                                                               maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    closed_id = make_case(engine, "CME-2025-0012", FIXED_NOW, status="closed")
    toks = make_tokens()
    first = deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DSL, FIXED_NOW),
                                                    REF))
    assert dict(first.accepted) == {"CONFIRM": 1}
    before = snapshot(engine, ("cases", "case_events"))
    report = deliver_and_run(
        app, maildir,
        dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DEPUTY, FIXED_NOW), REF, sender=DEPUTY),
        dsl_reply("CONFIRM CME-2025-0012", issue(engine, toks, closed_id, DSL, FIXED_NOW), "CME-2025-0012"),
        dsl_reply("CONFIRM CME-2099-0001", issue(engine, toks, case_id, DSL, FIXED_NOW), REF),
        dsl_reply(f"APPROVE {REF}", issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert dict(report.review) == {process.ALREADY_CONFIRMED: 1, process.CASE_CLOSED: 1, process.NO_CASE: 1,
                                   "first unquoted line is not a command": 1}
    assert snapshot(engine, ("cases", "case_events")) == before


def test_a_command_in_an_attached_email_is_not_obeyed(app: App, engine: Engine,
                                                     maildir: stdlib_mailbox.Maildir) -> None:
    """The DSL's own words (HTML only) say HOLD; the e-mail she attached says CONFIRM: nothing is confirmed."""
    case_id = make_case(engine, REF, FIXED_NOW)
    raw = dsl_reply(f"HOLD {REF} not yet, see the note attached", issue(engine, make_tokens(), case_id, DSL,
                                                                        FIXED_NOW), REF)
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(msg, EmailMessage)
    msg.set_content(f"<p>HOLD {REF} not yet, see the note attached</p>", subtype="html")
    attached = EmailMessage()
    attached["From"] = "teacher@school.example"
    attached.set_content(f"CONFIRM {REF}\n\n(what I think we should do)\n")
    msg.add_attachment(attached)
    report = deliver_and_run(app, maildir, msg.as_bytes())
    assert dict(report.review) == {"reply has attachments": 1} and not report.accepted
    case = case_row(engine, case_id)
    assert (case.confirmed_at, case.hold_reason) == (None, None) and events(engine, case_id) == []


def test_review_items_reach_the_digest_once(app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, FIXED_NOW),
                                            REF, sender="stranger@else.example"))
    with engine.begin() as conn:
        [item] = pending_review(conn)
        assert item["case_ref"] == REF and item["reason"] == process.UNKNOWN_SENDER
        assert item["subject"].startswith(f"Re: {REF}: ") and item["sender"] == "stranger@else.example"
        mark_shown(conn, [item["id"]], LATER)
    with engine.begin() as conn:
        assert pending_review(conn) == []


class DiesBeforeDone(MemoryMailbox):
    """A mailbox whose connection drops after the message was stored, before it is marked done."""

    def done(self, uid: str) -> None:
        raise RetriableError("connection lost")


def test_a_reply_is_never_processed_twice(engine: Engine) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    raw = dsl_reply(f"NOTE {REF} first-day-call: no answer", issue(engine, toks, case_id, OFFICE, FIXED_NOW), REF,
                    sender=OFFICE)
    policy = Policy(frozenset({DSL, DEPUTY}), frozenset({OFFICE}))
    flaky = DiesBeforeDone([raw])
    with pytest.raises(RetriableError):
        process.run(engine, flaky, policy, toks, LATER)
    assert len(events(engine, case_id)) == 1
    again = MemoryMailbox([raw])  # same name, same id: the same message found again
    report = process.run(engine, again, policy, toks, LATER)
    assert (report.stored, report.seen_before) == (0, 1) and again.processed == ["1"]
    assert len(events(engine, case_id)) == 1


def test_a_note_does_not_use_up_the_request_it_answers(app: App, engine: Engine,
                                                       maildir: stdlib_mailbox.Maildir) -> None:
    """A NOTE records what was done and decides nothing, but it used up its email's reply code:
    **the DSL's CONFIRM sent later to the same confirmation request was kept for review** ("reply
    token was already used"), the referral waiting for the next morning's request; and an office
    action email took one NOTE, a second call that morning kept for review. A NOTE now leaves the
    code as it was, and may be sent on a code a decision used; a CONFIRM, HOLD or CLOSE still uses
    it up, and a second decision on it is still refused."""
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    request = issue(engine, toks, case_id, DSL, FIXED_NOW)
    office = issue(engine, toks, case_id, OFFICE, FIXED_NOW)
    report = deliver_and_run(
        app, maildir,
        dsl_reply(f"NOTE {REF} home-visit: nobody in, neighbour says they moved", request, REF),
        dsl_reply(f"NOTE {REF} first-day-call: no answer", office, REF, sender=OFFICE),
        dsl_reply(f"NOTE {REF} contacts-tried: grandmother has not seen them", office, REF, sender=OFFICE))
    assert dict(report.accepted) == {"NOTE": 3} and not report.review
    report = deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", request, REF))
    assert dict(report.accepted) == {"CONFIRM": 1} and not report.review
    assert case_row(engine, case_id).confirmed_by == DSL
    report = deliver_and_run(app, maildir, dsl_reply(f"CLOSE {REF} mum rang, all well", request, REF),
                             dsl_reply(f"NOTE {REF} social-media: no posts since the 3rd", request, REF))
    assert dict(report.accepted) == {"NOTE": 1} and dict(report.review) == {"reply token was already used": 1}
    assert case_row(engine, case_id).status == "open"
