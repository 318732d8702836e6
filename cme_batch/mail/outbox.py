"""The outbox: every email cme-batch sends, written in the same transaction as its cause.

A stage that decides to send mail (a case reaching a stage, a referral confirmed, the morning
summary) calls ``enqueue`` on the connection of its own transaction: if that transaction rolls
back, no message exists; if it commits, the message will be sent by ``cme-batch send`` however
often that stage or ``send`` is run. Nothing is sent from anywhere else.

API for other stages::

    enqueue(conn, *, idempotency_key, purpose, recipients, subject, message, case_id=None,
            from_address) -> outbox id
        ``idempotency_key``: one message per cause, e.g. "referral:<case ref>"; when the key
        exists, the existing id is returned and nothing changes. ``message``: an
        ``email.message.EmailMessage`` (or its bytes), stored exactly and sent unchanged; only
        Message-ID, Date and From are added when missing. An already encrypted S/MIME message
        (body application/pkcs7-mime) goes out byte for byte. The Message-ID is derived from
        the key and the sender's domain, so it is stable across retries. ``subject`` is for
        display (``outbox``, ``status``): like the message's Subject, never a pupil's name.
        ``recipients`` are the SMTP envelope; Graph delivers to the To/Cc/Bcc headers instead,
        so name every recipient in To or Cc (a Bcc header would travel as it is: do not set one).
    problems(conn) -> list[Problem]   failed, outcome unknown, partly refused and maybe-duplicate
    mark_reported(conn, ids, now)     called by the summary that reported them
    counts(conn) -> dict[status, n]   queued, sending, sent, failed

Statuses: ``queued`` -> ``sending`` (claimed by one ``send`` run, committed before the
transport is called) -> ``sent``; a temporary failure puts it back to ``queued`` with
``next_attempt_at``; a permanent one makes it ``failed`` (kept, reported, ``requeue``-able).
A row found ``sending`` when a ``send`` run starts (under the send lock) belongs to a run that
died between the hand-over and the bookkeeping: it is queued again with ``maybe_duplicate``
set, resent with the same Message-ID, and reported as possibly delivered twice.
A message whose server got all of it but never answered (``mark_outcome_unknown``) is held as
``failed`` with ``maybe_duplicate`` set: not resent by any run, reported for a person to check
whether it arrived, and ``requeue``-able; if requeued, it is sent still flagged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import format_datetime, parseaddr
from typing import Any

from sqlalchemy import ColumnElement, Connection, exists, func, insert, or_, select, update

from cme_batch.errors import BadInputError
from cme_batch.mail import STATUSES
from cme_batch.settings import EMAIL_RE
from cme_batch.store import tables as t

_OB = t.outbox


def utc(dt: datetime | None) -> datetime | None:
    """A stored moment as an aware UTC datetime (SQLite hands back naive UTC)."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def message_id_for(idempotency_key: str, from_address: str, school: str = "") -> str:
    """A Message-ID that depends only on the key, the school and the sender's domain: the same on
    every retry. ``school`` (its LA and establishment numbers) keeps two schools' messages apart:
    their keys repeat (``summary:<date>``, ``confirm:CME-2025-0001...``), and a trust's schools may
    send from one domain, through one pickup folder (which names each file by its Message-ID: one
    school's summary replaced the other's) or to one trust-wide officer."""
    domain = from_address.rsplit("@", 1)[-1].strip().strip(">").lower() or "localhost"
    digest = hashlib.sha256(f"{school}:{idempotency_key}".encode() if school else
                            idempotency_key.encode("utf-8")).hexdigest()[:32]
    return f"<cme.{digest}@{domain}>"


def _school_of(conn: Connection) -> str:
    """The store's school as ``LA/establishment`` ("" for a store with none yet, or several), read
    once per database connection (a morning queues a message per case and person)."""
    known = conn.info.get("cme_school")
    if known:
        return str(known)
    rows = conn.execute(select(t.schools.c.la_number, t.schools.c.establishment_number).limit(2)).all()
    school = f"{rows[0][0]}/{rows[0][1]}" if len(rows) == 1 else ""
    if school:
        conn.info["cme_school"] = school  # (a store's school never changes its numbers: one store, one school)
    return school


def _serialise(message: Message | bytes) -> bytes:
    """The message's bytes with CRLF line ends, as SMTP carries them; the body is not re-encoded."""
    if isinstance(message, (bytes, bytearray)):
        return re.sub(rb"\r?\n", b"\r\n", bytes(message))
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def prepare(message: Message | bytes, *, idempotency_key: str, from_address: str,
            now: datetime, school: str = "") -> tuple[bytes, str]:
    """The bytes to store and the Message-ID, adding Message-ID, Date and From only when missing."""
    raw = _serialise(message)
    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    added: list[str] = []
    message_id = (headers.get("Message-ID") or "").strip()
    if not message_id:
        message_id = message_id_for(idempotency_key, from_address, school)
        added.append(f"Message-ID: {message_id}")
    if headers.get("Date") is None:
        added.append(f"Date: {format_datetime(now.astimezone(UTC))}")
    if headers.get("From") is None:
        added.append(f"From: {from_address}")
    prefix = "".join(f"{line}\r\n" for line in added).encode("ascii")
    return prefix + raw, message_id


def _insert_once(conn: Connection, values: dict[str, Any]) -> None:
    """Insert unless a row with the same key (or Message-ID) exists, without aborting the transaction."""
    # Each dialect's module is imported only by a store that uses it (PostgreSQL's costs a SQLite
    # run some 40 ms of start-up).
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        conn.execute(postgresql.insert(_OB).values(**values).on_conflict_do_nothing())
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        conn.execute(sqlite.insert(_OB).values(**values).on_conflict_do_nothing())
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported stores
        conn.execute(insert(_OB).values(**values))


def enqueue(conn: Connection, *, idempotency_key: str, purpose: str, recipients: Sequence[str], subject: str,
            message: Message | bytes, case_id: int | None = None, from_address: str,
            now: datetime | None = None) -> int:
    """Queue one message inside the caller's transaction; return its outbox id (see the module doc)."""
    if not idempotency_key or len(idempotency_key) > 200:
        raise BadInputError("outbox: the idempotency key must be 1 to 200 characters")
    existing = conn.execute(select(_OB.c.id).where(_OB.c.idempotency_key == idempotency_key)).scalar()
    if existing is not None:
        return int(existing)
    rcpts = [r.strip() for r in recipients]
    if not rcpts or not all(EMAIL_RE.match(r) for r in rcpts):
        raise BadInputError(f"outbox: a {purpose} message needs recipients that are email addresses")
    if not EMAIL_RE.match(parseaddr(from_address)[1] or ""):
        raise BadInputError(f"outbox: the sender {from_address!r} is not an email address")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    raw, message_id = prepare(message, idempotency_key=idempotency_key, from_address=from_address, now=moment,
                              school=_school_of(conn))
    _insert_once(conn, {
        "idempotency_key": idempotency_key, "message_id": message_id, "purpose": purpose, "case_id": case_id,
        "recipients": rcpts, "subject": subject[:300], "mime": raw, "status": "queued", "attempts": 0,
        "maybe_duplicate": False, "created_at": moment, "queued_at": moment})
    got = conn.execute(select(_OB.c.id).where(_OB.c.idempotency_key == idempotency_key)).scalar()
    if got is None:
        raise BadInputError(f"outbox: Message-ID {message_id} is already used by another message")
    return int(got)


@dataclass(frozen=True)
class Entry:
    """One outbox row as status, ``outbox`` and the sender see it (without the message bytes)."""

    id: int
    status: str
    purpose: str
    case_id: int | None
    subject: str
    recipients: tuple[str, ...]
    message_id: str
    attempts: int
    maybe_duplicate: bool
    last_error: str | None
    created_at: datetime
    queued_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    sent_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["recipients"] = list(self.recipients)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return d


_ENTRY_COLS = [_OB.c[n] for n in Entry.__dataclass_fields__]


def _entry(row: Any) -> Entry:
    m = row._mapping
    created = utc(m["created_at"])
    assert created is not None
    return Entry(
        id=m["id"], status=m["status"], purpose=m["purpose"], case_id=m["case_id"], subject=m["subject"],
        recipients=tuple(m["recipients"] or ()), message_id=m["message_id"], attempts=m["attempts"] or 0,
        maybe_duplicate=bool(m["maybe_duplicate"]), last_error=m["last_error"], created_at=created,
        queued_at=utc(m["queued_at"]) or created, next_attempt_at=utc(m["next_attempt_at"]),
        last_attempt_at=utc(m["last_attempt_at"]), sent_at=utc(m["sent_at"]))


def get(conn: Connection, outbox_id: int) -> Entry | None:
    row = conn.execute(select(*_ENTRY_COLS).where(_OB.c.id == outbox_id)).first()
    return _entry(row) if row else None


def raw_message(conn: Connection, outbox_id: int) -> bytes:
    """The stored bytes, exactly as they will be (or were) handed to the transport."""
    return bytes(conn.execute(select(_OB.c.mime).where(_OB.c.id == outbox_id)).scalar_one())


def listing(conn: Connection, statuses: Iterable[str] = (), limit: int = 500) -> list[Entry]:
    """Messages, newest first, optionally only those in the given statuses."""
    q = select(*_ENTRY_COLS).order_by(_OB.c.id.desc()).limit(limit)
    wanted = list(statuses)
    if wanted:
        q = q.where(_OB.c.status.in_(wanted))
    return [_entry(r) for r in conn.execute(q)]


def counts(conn: Connection) -> dict[str, int]:
    """How many messages are in each status (every status present, zero included)."""
    out = {s: 0 for s in STATUSES}
    for status, n in conn.execute(select(_OB.c.status, func.count()).group_by(_OB.c.status)):
        out[status] = int(n)
    return out


def due(conn: Connection, now: datetime, *, ignore_backoff: bool = False) -> list[int]:
    """Ids of queued messages whose wait (if any) is over, oldest first."""
    q = select(_OB.c.id).where(_OB.c.status == "queued").order_by(_OB.c.id)
    if not ignore_backoff:
        q = q.where(or_(_OB.c.next_attempt_at.is_(None), _OB.c.next_attempt_at <= now))
    return [int(i) for i in conn.execute(q).scalars()]


#: Messages to the LA about one case (``dispatch``): each is read against the ones before it.
CASE_SEQUENCE = ("referral", "update")


def waiting_for(conn: Connection, outbox_id: int) -> int | None:
    """The earlier message of the same case's referral sequence that must reach the LA first, if any.

    An update says "this is an update to our referral ..., sent on ...": handed over while that
    referral is still queued, or was refused and kept for a person to requeue, it reaches the LA
    before (or without) the referral it updates. It waits, queued, until the earlier message is
    sent. A message held with an unknown outcome (``maybe_duplicate``) may already be with the LA
    and does not hold the next one back, nor does one ``purge`` has removed.
    """
    row = conn.execute(select(_OB.c.purpose, _OB.c.case_id).where(_OB.c.id == outbox_id)).first()
    if row is None or row.case_id is None or row.purpose not in CASE_SEQUENCE:
        return None
    blocking = or_(_OB.c.status.in_(("queued", "sending")),
                   (_OB.c.status == "failed") & _OB.c.maybe_duplicate.is_not(True))
    return conn.execute(select(func.min(_OB.c.id)).where(
        _OB.c.case_id == row.case_id, _OB.c.purpose.in_(CASE_SEQUENCE), _OB.c.id < outbox_id, blocking)).scalar()


def note_waiting(conn: Connection, outbox_id: int, earlier: int) -> None:
    """Say on a queued message why it was not sent (``cme-batch outbox`` shows it); it stays queued."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id, _OB.c.status == "queued").values(
        last_error=f"waiting for message #{earlier} of the same case to be sent first: an update must not "
                   "reach the LA before the referral it updates (requeue that message once its cause is fixed)"))


def recover_interrupted(conn: Connection, now: datetime) -> list[int]:
    """Queue again, flagged as possible duplicates, the rows a dead run left in ``sending``.

    Only call this while holding the send lock: then no live run can own a ``sending`` row.
    """
    ids = [int(i) for i in conn.execute(select(_OB.c.id).where(_OB.c.status == "sending")).scalars()]
    if ids:
        conn.execute(update(_OB).where(_OB.c.id.in_(ids), _OB.c.status == "sending").values(
            status="queued", maybe_duplicate=True, claimed_by=None, next_attempt_at=None, reported_at=None,
            last_error=f"a send run stopped at {now.isoformat(timespec='seconds')} before recording the "
                       "outcome: sent again with the same Message-ID, so it may arrive twice"))
    return ids


def claim(conn: Connection, outbox_id: int, *, run_id: str, now: datetime) -> bool:
    """Take a queued row for this run; False when another run took it first or it is not queued."""
    res = conn.execute(update(_OB).where(_OB.c.id == outbox_id, _OB.c.status == "queued").values(
        status="sending", claimed_by=run_id, claimed_at=now))
    return res.rowcount == 1


def note_attempt(conn: Connection, outbox_id: int, now: datetime) -> None:
    """Count one hand-over to the transport (recorded before the transport is called)."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        attempts=_OB.c.attempts + 1, last_attempt_at=now))


def mark_sent(conn: Connection, outbox_id: int, now: datetime, note: str | None = None) -> None:
    """The server accepted it. ``note`` records recipients it refused (reported as a problem)."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        status="sent", sent_at=now, claimed_by=None, next_attempt_at=None, last_error=note,
        reported_at=None))


def mark_deferred(conn: Connection, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
    """A temporary failure: back in the queue, not to be tried again before ``next_attempt_at``."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        status="queued", claimed_by=None, last_error=error, next_attempt_at=next_attempt_at))


def release(conn: Connection, outbox_id: int, error: str) -> None:
    """Nothing was handed over (the run stopped on a fault of ours): queued again, no wait."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        status="queued", claimed_by=None, last_error=error))


def mark_failed(conn: Connection, outbox_id: int, error: str) -> None:
    """A permanent failure: kept, not retried, reported until a person requeues it."""
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        status="failed", claimed_by=None, last_error=error, next_attempt_at=None, reported_at=None))


def mark_outcome_unknown(conn: Connection, outbox_id: int, error: str) -> None:
    """The server had the whole message but never answered: held, not retried, reported.

    ``failed`` keeps every run from sending it again (it may already have arrived);
    ``maybe_duplicate`` records that a copy may be with the recipient, so the next summary asks a
    person to check, and a requeued send is reported as possibly delivered twice.
    """
    conn.execute(update(_OB).where(_OB.c.id == outbox_id).values(
        status="failed", maybe_duplicate=True, claimed_by=None, last_error=error, next_attempt_at=None,
        reported_at=None))


def requeue(conn: Connection, outbox_id: int, now: datetime) -> bool:
    """Put a failed message back in the queue (after the cause was fixed). False if it was not failed."""
    res = conn.execute(update(_OB).where(_OB.c.id == outbox_id, _OB.c.status == "failed").values(
        status="queued", queued_at=now, next_attempt_at=None, reported_at=None))
    return res.rowcount == 1


@dataclass(frozen=True)
class Problem:
    """A message the next summary must mention: ``kind`` is failed, unknown, partial or maybe_duplicate.

    ``unknown``: not sent now, but an earlier hand-over may have delivered it (see the module doc).
    """

    id: int
    kind: str
    purpose: str
    case_id: int | None
    message_id: str
    error: str | None

    @property
    def text(self) -> str:
        what = f"Message {self.id} ({self.purpose})"
        if self.kind == "failed":
            return (f"{what} could not be sent: {self.error}. It is kept; after fixing the cause run "
                    f"'cme-batch outbox --requeue {self.id}'.")
        if self.kind == "unknown":
            return (f"{what} may or may not have arrived: {self.error}. It was not sent again, so that it "
                    f"cannot arrive twice. Ask the recipient whether Message-ID {self.message_id} arrived; "
                    f"if it did not, run 'cme-batch outbox --requeue {self.id}'.")
        if self.kind == "partial":
            return f"{what} was sent, but some recipients were refused: {self.error}."
        return (f"{what} may have arrived twice: an earlier attempt's outcome is unknown (a send run stopped, "
                f"or the server did not answer), so it was sent again with the same Message-ID "
                f"{self.message_id}.")


def problems(conn: Connection, *, include_reported: bool = True) -> list[Problem]:
    """Failed, held with an unknown outcome, partly refused and possibly duplicated messages, oldest first.

    With ``include_reported=False`` only those not yet passed to ``mark_reported``, or passed to it by a
    digest that then failed (the digest queued in the same moment, ``created_at`` = ``reported_at``):
    the DSL never read it, so the next digest shows them again. A referral the LA refused, told only
    in a digest the DSL's mailbox refused, was otherwise never told at all.
    """
    cond = or_(_OB.c.status == "failed",
               (_OB.c.status == "sent") & (_OB.c.maybe_duplicate.is_(True) | _OB.c.last_error.is_not(None)))
    q = select(_OB.c.id, _OB.c.status, _OB.c.purpose, _OB.c.case_id, _OB.c.message_id, _OB.c.last_error,
               _OB.c.maybe_duplicate).where(cond).order_by(_OB.c.id)
    if not include_reported:
        q = q.where(or_(_OB.c.reported_at.is_(None), told_in_failed_digest(_OB.c.reported_at)))
    out = []
    for r in conn.execute(q):
        if r.status == "failed":
            kind = "unknown" if r.maybe_duplicate else "failed"
        else:
            kind = "partial" if r.last_error and not r.maybe_duplicate else "maybe_duplicate"
        out.append(Problem(r.id, kind, r.purpose, r.case_id, r.message_id, r.last_error))
    return out


def told_in_failed_digest(told_at: ColumnElement[Any]) -> ColumnElement[bool]:
    """Whether the digest queued at ``told_at`` (the moment something was marked as told in it:
    ``mark_reported``, ``replies.mark_shown``) failed to send: the DSL never read it."""
    digest = _OB.alias("told_in")
    return exists().where(digest.c.purpose == "digest", digest.c.status == "failed", digest.c.created_at == told_at)


def mark_reported(conn: Connection, ids: Iterable[int], now: datetime) -> None:
    """Record that a summary has told people about these problems."""
    wanted = list(ids)
    if wanted:
        # the moment the digest that reports them is queued with (``enqueue``'s ``created_at``): see ``problems``
        conn.execute(update(_OB).where(_OB.c.id.in_(wanted)).values(reported_at=now.astimezone(UTC)))
