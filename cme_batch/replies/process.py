"""The ``replies`` stage: read the reply mailbox, keep every reply, act only on authenticated ones.

For each waiting message, in one transaction: store it raw in ``replies`` under its mailbox id
(unique, so a second run never processes it again), decide whether it may be acted on, and if
so apply its command to the case with an audit event. Only then is the mailbox told the
message is done. A reply is accepted only when every check passes; the first check that fails
is the reason it is kept for review, and a reply kept for review changes no case.

Checks, in order: one From address, which is the DSL's or the deputy's (an office address may
only NOTE); not an automatic reply; a plain-text body without attachments whose first unquoted
line is a command, the only one in the reply's own text (a CLOSE not put as a condition); a
case with that reference in a state the command fits; where configured, DKIM or DMARC pass
from our own receiving server; and last, a valid, unexpired, unused token in the subject,
issued for this case to this sender, which is then used up.

HOLD stops the referral from being queued, whether or not the case is already confirmed; only a
later accepted CONFIRM (from the DSL or the deputy) lifts it, and that CONFIRM becomes the case's
confirmation. A HOLD that comes after the referral was queued for the LA cannot stop it: it is
kept for review, saying so, rather than recorded as if the referral were held.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from cme_batch import log
from cme_batch.app import App, in_school_time
from cme_batch.config import Config
from cme_batch.mail import outbox
from cme_batch.replies import authres, parse, tokens
from cme_batch.replies.mailbox import Mailbox, build_mailbox, store_uid
from cme_batch.store import tables as t

UNPARSEABLE = "message cannot be parsed"
NO_SENDER = "reply has no single From address"
UNKNOWN_SENDER = "sender is not the DSL, the deputy DSL or an office address"
OFFICE_NOT_NOTE = "an office address may only send NOTE"
NO_CASE = "no case has that reference"
CASE_CLOSED = "case is closed"
ALREADY_CONFIRMED = "case is already confirmed"
ALREADY_REFERRED = "referral was already queued for the LA: HOLD cannot stop it"
TOKEN_IN_BODY = "reply token is only in the body, not the subject"
NO_REFERRAL = "a repeated-missing case has no referral to confirm or hold: reply CLOSE or NOTE"


@dataclass(frozen=True)
class Policy:
    """Who may command what, and how much authentication a reply needs."""

    dsl: frozenset[str]  # the DSL and deputy DSL: every command
    office: frozenset[str]  # office staff: NOTE only
    trusted_authserv_ids: tuple[str, ...] = ()
    require_authentication_results: bool = False
    microsoft365_authentication_results: bool = False  # Microsoft 365 receives the mail: see authres

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        staff = config.staff
        dsl = {staff.dsl.email} | ({staff.deputy_dsl.email} if staff.deputy_dsl else set())
        return cls(frozenset(a.lower() for a in dsl if a), frozenset(p.email.lower() for p in staff.office),
                   config.replies.trusted_authserv_ids, config.replies.require_authentication_results,
                   config.replies.microsoft365_authentication_results)


@dataclass(frozen=True)
class Decision:
    outcome: str  # accepted, review
    reason: str | None = None
    command: parse.Command | None = None
    case_id: int | None = None
    sender: str | None = None
    message_id: str | None = None
    written_at: datetime | None = None  # the reply's Date (``parse.written_at``), for a NOTE's date


@dataclass
class RepliesReport:
    """What one run did, in counts and fixed phrases only: safe to print and log."""

    stored: int = 0
    seen_before: int = 0
    accepted: Counter[str] = field(default_factory=Counter)  # by command
    review: Counter[str] = field(default_factory=Counter)  # by reason

    def as_dict(self) -> dict[str, Any]:
        return {"stored": self.stored, "seen_before": self.seen_before,
                "accepted": sum(self.accepted.values()), "accepted_by_command": dict(self.accepted),
                "review": sum(self.review.values()), "review_by_reason": dict(self.review)}


def _review(reason: str, **kw: Any) -> Decision:
    return Decision("review", reason, **kw)


def decide(conn: Connection, raw: bytes, policy: Policy, toks: tokens.Tokens, now: datetime) -> Decision:
    """Accept or keep for review. On acceptance the reply's token has been used up in ``conn``."""
    large = len(raw) > parse.MAX_BYTES
    try:
        msg = parse.read_headers(raw) if large else parse.read_message(raw)
        message_id = _storable(str(msg.get("Message-ID", "") or "").strip() or None)
        sender = _storable(parse.sender_of(msg))
    except Exception:  # noqa: BLE001 - the email package copes with nearly anything; this is the rest
        return _review(UNPARSEABLE)
    if large:
        return _review(parse.TOO_LARGE, sender=sender, message_id=message_id[:300] if message_id else None)
    command, why = parse.command_of(msg)
    case = None if command is None else conn.execute(
        select(t.cases.c.id, t.cases.c.kind, t.cases.c.status, t.cases.c.confirmed_at, t.cases.c.hold_reason,
               t.cases.c.referred_at)
        .where(t.cases.c.ref == command.ref)).first()
    # what the reply is about is recorded even when it is kept for review: the reviewer needs it. With no
    # case named (no command read, or a mistyped reference), the case its subject's token was issued for
    # is shown, so the DSL can tell which referral still waits for her; it decides nothing.
    ids: dict[str, Any] = {"sender": sender, "message_id": message_id[:300] if message_id else None,
                           "command": command, "case_id": case.id if case else _token_case(conn, msg)}
    if sender is None:
        return _review(NO_SENDER, **ids)
    if sender not in policy.dsl and sender not in policy.office:
        return _review(UNKNOWN_SENDER, **ids)
    if parse.is_automatic(msg):
        return _review(parse.AUTOMATIC, **ids)  # an out-of-office answer or a mail rule is nobody's decision
    if command is None or why is not None:
        return _review(why or parse.NOT_COMMAND, **ids)  # a command read but not to act on: two, a conditional CLOSE
    if sender not in policy.dsl and command.verb != "NOTE":
        return _review(OFFICE_NOT_NOTE, **ids)
    if case is None:
        return _review(NO_CASE, **ids)
    if case.status != "open" and command.verb != "NOTE":
        return _review(CASE_CLOSED, **ids)
    if command.verb in ("CONFIRM", "HOLD") and case.kind == "repeat_missing":
        return _review(NO_REFERRAL, **ids)  # DOMAIN.md 5: the DSL reviews the pattern and closes the case
    if command.verb == "CONFIRM" and case.confirmed_at is not None and case.hold_reason is None:
        return _review(ALREADY_CONFIRMED, **ids)  # a CONFIRM on a held case lifts the HOLD
    if command.verb == "HOLD" and case.referred_at is not None:
        return _review(ALREADY_REFERRED, **ids)
    why = authres.check(msg, sender.rpartition("@")[2], policy.trusted_authserv_ids,
                        policy.require_authentication_results, policy.microsoft365_authentication_results)
    if why:
        return _review(why, **ids)
    token, why = tokens.find_in_subject(parse.subject_of(msg))
    if token is None:
        body, _ = parse.plain_text(msg)
        in_body = why == tokens.NO_TOKEN and body is not None and tokens.TAG_RE.search(body)
        return _review(TOKEN_IN_BODY if in_body else (why or tokens.NO_TOKEN), **ids)
    verdict = toks.verify(conn, token, case.id, sender, now, use=command.verb != "NOTE")  # a NOTE decides nothing
    if not verdict.ok:
        return _review(verdict.reason or tokens.MALFORMED, **ids)
    return Decision("accepted", **ids, written_at=parse.written_at(msg, now))


def _token_case(conn: Connection, msg: EmailMessage) -> int | None:
    token, _ = tokens.find_in_subject(parse.subject_of(msg))
    return tokens.case_of(conn, token) if token else None


def apply(conn: Connection, d: Decision, reply_id: int, now: datetime) -> None:
    """Carry out an accepted command on its case, with an audit event naming the reply."""
    c, case_id, by = d.command, d.case_id, d.sender or ""
    assert c is not None and case_id is not None
    base = {"reply_id": reply_id, "message_id": d.message_id}
    cases = t.cases.c
    if c.verb == "CONFIRM":
        held = conn.execute(select(cases.hold_reason).where(cases.id == case_id)).scalar() is not None
        conn.execute(update(t.cases).where(cases.id == case_id).values(
            confirmed_at=now, confirmed_by=by, confirmation_message_id=d.message_id, hold_reason=None,
            updated_at=now))
        kind, detail = "confirmed", {**base, "hold_lifted": True} if held else base
    elif c.verb == "HOLD":
        conn.execute(update(t.cases).where(cases.id == case_id).values(hold_reason=c.text, updated_at=now))
        kind, detail = "hold", {**base, "reason": c.text}
    elif c.verb == "CLOSE":
        conn.execute(update(t.cases).where(cases.id == case_id).values(
            status="closed", closed_on=in_school_time(now).date(), closed_reason="closed_by_dsl", updated_at=now))
        kind, detail = "closed", {**base, "reason": "closed_by_dsl", "text": c.text}
    else:
        kind, note = parse.note_detail(c.text or "", by)
        done_on = in_school_time(d.written_at or now).date()  # the day it was reported, not the morning read
        detail = {**base, **note, "date": done_on.isoformat()}
    conn.execute(insert(t.case_events).values(case_id=case_id, at=now, kind=kind, actor=by, detail=detail))


def run(engine: Engine, mailbox: Mailbox, policy: Policy, toks: tokens.Tokens, now: datetime) -> RepliesReport:
    """Process every waiting message once. Mailbox failures propagate; what was stored stays stored."""
    report = RepliesReport()
    logger = log.get("cme_batch.replies")
    for uid in mailbox.waiting():
        key = store_uid(mailbox, uid)
        with engine.connect() as conn:
            seen = conn.execute(select(t.replies.c.id).where(t.replies.c.mailbox_uid == key)).first() is not None
        if not seen:
            raw = mailbox.fetch(uid)
            try:
                with engine.begin() as conn:
                    d = decide(conn, raw, policy, toks, now)
                    reply_id = _store(conn, key, raw, d, now)
                    if d.outcome == "accepted":
                        apply(conn, d, reply_id, now)
            except IntegrityError:
                seen = True  # another run stored it first; its transaction decided, ours rolled back
            else:
                report.stored += 1
                verb = d.command.verb if d.command else None
                if d.outcome == "accepted":
                    report.accepted[verb or "?"] += 1
                else:
                    report.review[d.reason or "?"] += 1
                logger.info("reply stored", reply_id=reply_id, outcome=d.outcome, reason=d.reason, command=verb,
                            case_id=d.case_id)
        if seen:
            report.seen_before += 1
        mailbox.done(uid)
    return report


def read_replies(app: App) -> RepliesReport | None:
    """The stage as the CLI and the nightly run call it; None when no mailbox is configured."""
    cfg = app.config
    mailbox = build_mailbox(cfg.replies)
    if mailbox is None:
        return None
    try:
        return run(app.engine(), mailbox, Policy.from_config(cfg), tokens.Tokens.from_config(cfg.replies), app.now())
    finally:
        mailbox.close()


def _storable(value: str | None) -> str | None:
    """A header's text as the store can hold it: PostgreSQL text refuses NUL, which a broken or hostile
    message can carry (raw or in an encoded word), and one such message would stop every run before
    the replies after it. NUL becomes U+FFFD, as an undecodable byte does, so a sender never comes to
    match a staff address by losing a character."""
    return value.replace("\x00", "\ufffd") if value else value


def _store(conn: Connection, key: str, raw: bytes, d: Decision, now: datetime) -> int:
    """The raw reply and its outcome, for the audit trail; its id."""
    pk = conn.execute(insert(t.replies).values(
        mailbox_uid=key, message_id=d.message_id, sender=(d.sender or "")[:300] or None, received_at=now, raw=raw,
        outcome=d.outcome, reason=d.reason, command=d.command.verb if d.command else None, case_id=d.case_id,
    )).inserted_primary_key
    assert pk is not None
    return int(pk[0])


def subject_for(case_ref: str, token: str, what: str = "your reply is needed") -> str:
    """The subject of a message whose reply may act on a case: the case reference and the token, no names."""
    return f"{case_ref}: {what} {tokens.tag(token)}"


def pending_review(conn: Connection) -> list[dict[str, Any]]:
    """Replies kept for review and not yet shown in a digest, oldest first, for the DSL's digest.

    The digest writer calls ``mark_shown`` with their ids in the transaction that queues the digest;
    those of a digest that then failed to send are shown again (``outbox.told_in_failed_digest``).
    """
    r = t.replies.c
    rows = conn.execute(select(r.id, r.received_at, r.sender, r.message_id, r.reason, r.command, r.raw,
                               t.cases.c.ref).select_from(t.replies.outerjoin(t.cases, t.cases.c.id == r.case_id))
                        .where(r.outcome == "review", r.shown_at.is_(None) | outbox.told_in_failed_digest(r.shown_at))
                        .order_by(r.id)).all()
    out = []
    for row in rows:
        try:
            subject = parse.subject_of(parse.read_headers(row.raw))  # the body is not needed
        except Exception:  # noqa: BLE001 - kept for review because it is broken: shown without a subject
            subject = ""
        out.append({"id": row.id, "received_at": row.received_at, "sender": row.sender, "subject": subject,
                    "message_id": row.message_id, "reason": row.reason, "command": row.command,
                    "case_ref": row.ref})
    return out


def mark_shown(conn: Connection, reply_ids: list[int], now: datetime) -> None:
    """Record that these review items went out in a digest, so the next digest does not repeat them."""
    if reply_ids:
        conn.execute(update(t.replies).where(t.replies.c.id.in_(reply_ids)).values(shown_at=now.astimezone(UTC)))
