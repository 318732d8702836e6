"""HOLD stops a referral, confirmed or not, until a later CONFIRM; a HOLD too late to stop one says so.

Replies arrive in a real Maildir and are read by the replies stage; the referrals stage then
runs as the nightly runs it, encrypting with a passphrase so a referral can really be queued.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.dispatch import queue_confirmed_referrals
from cme_batch.replies import pending_review, process
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW
from tests.replies_support import (
    DEPUTY,
    DSL,
    case_row,
    deliver_and_run,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
)

REF = "CME-2025-0031"
AS_OF = date(2025, 11, 28)
LATER = FIXED_NOW + timedelta(hours=2)
HOLD = f"HOLD {REF} police are visiting the family today, do not send"


@pytest.fixture
def app(reply_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", "correct-horse-battery-staple-42")
    return reply_app(LATER, """
[referral]
passphrase = { env = "CME_TEST_LA_PASSPHRASE" }
""")


def referrals_queued(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(t.outbox.c.id).where(t.outbox.c.purpose == "referral")).all())


def test_a_hold_after_a_confirm_stops_the_referral_until_a_later_confirm(app: App, engine: Engine,
                                                                         maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    report = deliver_and_run(app, maildir,
                     dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DEPUTY, FIXED_NOW), REF, sender=DEPUTY),
                     dsl_reply(HOLD, issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert dict(report.accepted) == {"CONFIRM": 1, "HOLD": 1}

    held = queue_confirmed_referrals(app, AS_OF)
    assert held.referred == [] and referrals_queued(engine) == 0  # the DSL said do not send: nothing goes
    assert case_row(engine, case_id).referred_at is None

    # the DSL lifts the hold with a later CONFIRM: that confirmation is the one the referral carries
    report = deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert dict(report.accepted) == {"CONFIRM": 1}
    case = case_row(engine, case_id)
    assert (case.hold_reason, case.confirmed_by) == (None, DSL)
    sent = queue_confirmed_referrals(app, AS_OF)
    assert sent.referred == [REF] and referrals_queued(engine) == 1


def test_a_confirm_after_a_hold_lifts_it(app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    deliver_and_run(app, maildir, dsl_reply(HOLD, issue(engine, toks, case_id, DSL, FIXED_NOW), REF),
            dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DEPUTY, FIXED_NOW), REF, sender=DEPUTY))
    assert case_row(engine, case_id).hold_reason is None
    assert queue_confirmed_referrals(app, AS_OF).referred == [REF]
    with engine.connect() as conn:
        kinds = conn.execute(select(t.case_events.c.kind, t.case_events.c.detail).where(
            t.case_events.c.case_id == case_id).order_by(t.case_events.c.id)).all()
    assert [k for k, _ in kinds][:2] == ["hold", "confirmed"] and kinds[1].detail["hold_lifted"] is True


def test_a_hold_after_the_referral_was_queued_is_kept_for_review_not_recorded_as_held(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DEPUTY, FIXED_NOW), REF,
                                    sender=DEPUTY))
    assert queue_confirmed_referrals(app, AS_OF).referred == [REF]

    report = deliver_and_run(app, maildir, dsl_reply(HOLD, issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert not report.accepted and case_row(engine, case_id).hold_reason is None  # the digest must not say "on hold"
    assert dict(report.review) == {process.ALREADY_REFERRED: 1}
    with engine.connect() as conn:
        [shown] = pending_review(conn)  # the DSL is told, in the next digest, that it was too late
    assert (shown["case_ref"], shown["command"], shown["reason"]) == (REF, "HOLD", process.ALREADY_REFERRED)


def test_a_held_case_gets_a_fresh_request_so_the_dsl_can_lift_the_hold_by_reply(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """The HOLD used the DSL's token: the next morning's mail asks again, and the digest says why."""
    from cme_batch.morning.queue import queue_morning_mail

    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    deliver_and_run(app, maildir, dsl_reply(HOLD, issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    queue_morning_mail(app, AS_OF)
    with engine.connect() as conn:
        requests = conn.execute(select(t.outbox.c.recipients).where(
            t.outbox.c.purpose == "confirm_request", t.outbox.c.case_id == case_id)).scalars().all()
        mime = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "digest")).scalar_one()
    assert any(DSL in str(to) for to in requests), requests
    body = email.message_from_bytes(mime, policy=email.policy.default).get_body(("plain",))
    assert body is not None
    text = " ".join(str(body.get_content()).split())
    assert "on hold: police are visiting the family today, do not send; CONFIRM lifts it" in text
    assert referrals_queued(engine) == 0


@pytest.mark.parametrize("command", [HOLD, f"CLOSE {REF} mum rang: he is with his dad in Leeds, school place found"])
def test_a_hold_or_close_read_while_the_referrals_stage_runs_stops_the_referral(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir, monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    """`replies` run by hand while the night's referrals stage runs: the stage lists the confirmed
    cases, then queues each in a transaction of its own. A CLOSE the replies run accepted in
    between **did not stop the referral**: the closed case was queued for the LA as listed; a HOLD
    was refused by the bundle, but as a failure of the stage (exit 1, a failure notice). Each case
    is now checked again, and kept from changing, in the transaction that queues it: a case no
    longer confirmed, open and not on hold is left, and the stage succeeds."""
    from cme_batch import dispatch

    case_id = make_case(engine, REF, FIXED_NOW)
    toks = make_tokens()
    report = deliver_and_run(app, maildir, dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DSL, FIXED_NOW), REF))
    assert dict(report.accepted) == {"CONFIRM": 1}
    reply = dsl_reply(command, issue(engine, toks, case_id, DSL, FIXED_NOW), REF)
    listed = dispatch._updates_due

    def replied_meanwhile(conn: object) -> object:  # (called once the confirmed cases are listed)
        assert dict(deliver_and_run(app, maildir, reply).accepted) == {command.split()[0]: 1}
        return listed(conn)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch, "_updates_due", replied_meanwhile)
    stage = queue_confirmed_referrals(app, AS_OF)
    assert stage.referred == [] and referrals_queued(engine) == 0, "the DSL said do not send"
    assert case_row(engine, case_id).referred_at is None
