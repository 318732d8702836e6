"""The ``send`` stage: drain the outbox through the configured transport, never twice, never lost.

One ``send`` run at a time per store (the ``send`` run lock: a file lock beside a SQLite store,
an advisory lock in PostgreSQL); a second ``send`` command finds the lock taken and does nothing,
while the nightly's ``send`` stage waits for it (``send_stage``). Under the
lock, a run:

1. queues again, flagged ``maybe_duplicate``, any row a dead run left in ``sending``;
2. for each queued message whose wait is over: claims it (``queued`` -> ``sending``, a
   conditional UPDATE, committed), counts the attempt (committed), hands the exact bytes to the
   transport, and records ``sent`` (committed). A crash between the hand-over and that last
   commit leaves the row ``sending``, which step 1 of the next run resends with the same
   Message-ID and reports as possibly delivered twice: delivery is at least once, and a
   duplicate is recognisable;
3. retries temporary failures within the run with exponential backoff (tenacity; a server's
   Retry-After is honoured), then leaves the message queued with ``next_attempt_at`` (the wait
   doubles with each failed run), and fails it once it has been queued ``give_up_hours``;
4. marks a permanently refused message ``failed`` (kept, reported, requeue-able) and goes on;
5. holds a message whose outcome is unknown (the server was given all of it, then its answer
   was lost to a timeout or a dropped connection): it is not retried, since the server may
   already have it, but marked ``failed`` with ``maybe_duplicate`` and reported for a person
   to check whether it arrived (``outbox.mark_outcome_unknown``), and the run goes on;
6. stops at a fatal error (credentials, certificate): the message is put back untouched.
7. leaves queued an update to the LA whose case's referral (or earlier update) is not yet sent,
   saying so on the row (``outbox.waiting_for``): the LA never reads an update before the referral.

Test-only hook: with the environment variable ``CME_TEST_CRASH_AFTER_SEND=1`` the process
exits abruptly right after the transport accepted a message and before it is recorded, to
show the crash rule above working. Never set it in production.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import parseaddr
from typing import Any

from sqlalchemy import Engine
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from cme_batch.errors import CmeError, FatalError
from cme_batch.mail import outbox
from cme_batch.mail.settings import MailConfig, RetryConfig
from cme_batch.mail.transport import (
    Delivery,
    MailTransport,
    MessageRejected,
    OutcomeUnknown,
    Outgoing,
    TemporarySendError,
    build_transport,
)

CRASH_ENV = "CME_TEST_CRASH_AFTER_SEND"


class SendIncomplete(CmeError):
    """The run finished, but some messages were deferred or failed (they are kept and reported)."""


@dataclass(frozen=True)
class Outcome:
    """What happened to one message in this run: sent, deferred, failed or stopped."""

    id: int
    purpose: str
    result: str
    detail: str
    attempts: int
    maybe_duplicate: bool = False


@dataclass
class SendReport:
    transport: str
    recovered: list[int] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    fatal: CmeError | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def of(self, result: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == result]

    def summary(self) -> str:
        done = ", ".join(f"{r} {len(self.of(r))}" for r in ("sent", "deferred", "failed"))
        left = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        return f"{self.transport}: {done}; outbox now {left}" + (f"; stopped: {self.fatal}" if self.fatal else "")


def _in_run_wait(policy: RetryConfig) -> Callable[[RetryCallState], float]:
    """Exponential backoff between tries, but never shorter than the server's Retry-After."""
    def wait(state: RetryCallState) -> float:
        backoff = min(policy.backoff_seconds * 2.0 ** (state.attempt_number - 1), policy.backoff_max_seconds)
        exc = state.outcome.exception() if state.outcome else None
        asked = float(getattr(exc, "retry_after", None) or 0.0)
        return max(backoff, asked)
    return wait


def _in_run_stop(policy: RetryConfig) -> Callable[[RetryCallState], bool]:
    """Stop after ``attempts_per_run`` tries, or when the server asks for a longer wait than we allow."""
    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        asked = float(getattr(exc, "retry_after", None) or 0.0)
        return state.attempt_number >= policy.attempts_per_run or asked > policy.backoff_max_seconds
    return stop


def envelope_sender(cfg: MailConfig, raw: bytes) -> str:
    """MAIL FROM: the configured sender, else the message's own From address."""
    if cfg.from_address:
        return cfg.from_address
    return parseaddr(str(BytesHeaderParser(policy=default_policy).parsebytes(raw).get("From", "")))[1]


class Drainer:
    """One pass over the outbox. Build it with the store, the transport and a clock."""

    def __init__(self, engine: Engine, cfg: MailConfig, transport: MailTransport, *,
                 clock: Callable[[], datetime], run_id: str, sleep: Callable[[float], None] = time.sleep,
                 log: Any = None) -> None:
        self.engine, self.cfg, self.transport = engine, cfg, transport
        self.clock, self.run_id, self.sleep = clock, run_id, sleep
        self.log = log

    def run(self, *, ignore_backoff: bool = False) -> SendReport:
        report = SendReport(self.transport.name)
        with self.engine.begin() as conn:
            report.recovered = outbox.recover_interrupted(conn, self.clock())
            ids = outbox.due(conn, self.clock(), ignore_backoff=ignore_backoff)
        for rid in report.recovered:
            self._log("warning", "message left in 'sending' by a stopped run: will resend", outbox_id=rid)
        for outbox_id in ids:
            try:
                outcome = self._one(outbox_id)
            except CmeError as exc:  # fatal: stop here, the rest stay queued
                report.fatal = exc
                break
            if outcome is not None:
                report.outcomes.append(outcome)
        with self.engine.connect() as conn:
            report.counts = outbox.counts(conn)
        return report

    def _log(self, level: str, event: str, **kw: Any) -> None:
        if self.log is not None:
            getattr(self.log, level)(event, transport=self.transport.name, **kw)

    def _one(self, outbox_id: int) -> Outcome | None:
        with self.engine.begin() as conn:
            earlier = outbox.waiting_for(conn, outbox_id)
            if earlier is not None:  # an update never overtakes the referral it updates
                outbox.note_waiting(conn, outbox_id, earlier)
                self._log("warning", "message waits for an earlier one of its case", outbox_id=outbox_id,
                          waiting_for=earlier)
                return None
            if not outbox.claim(conn, outbox_id, run_id=self.run_id, now=self.clock()):
                return None  # another run took it: not ours to send
            entry = outbox.get(conn, outbox_id)
            raw = outbox.raw_message(conn, outbox_id)
        assert entry is not None
        msg = Outgoing(outbox_id, entry.message_id, envelope_sender(self.cfg, raw), entry.recipients, raw)
        try:
            delivery = self._hand_over(msg)
        except TemporarySendError as exc:
            return self._defer(entry, exc)
        except MessageRejected as exc:
            return self._finish_failed(entry, str(exc))
        except OutcomeUnknown as exc:
            return self._hold(entry, exc)
        except CmeError as exc:
            with self.engine.begin() as conn:
                outbox.release(conn, outbox_id, str(exc))
            self._log("error", "send stopped", outbox_id=outbox_id, error=str(exc))
            raise
        if os.environ.get(CRASH_ENV) == "1":  # test-only: die between the hand-over and the bookkeeping
            os._exit(70)
        note = ("refused: " + "; ".join(delivery.refused)) if delivery.refused else None
        with self.engine.begin() as conn:
            outbox.mark_sent(conn, outbox_id, self.clock(), note)
            attempts = (outbox.get(conn, outbox_id) or entry).attempts
        self._log("info", "message sent", outbox_id=outbox_id, purpose=entry.purpose, message_id=entry.message_id,
                  attempts=attempts, maybe_duplicate=entry.maybe_duplicate, refused=len(delivery.refused))
        return Outcome(outbox_id, entry.purpose, "sent", delivery.detail + (f"; {note}" if note else ""), attempts,
                       entry.maybe_duplicate)

    def _hand_over(self, msg: Outgoing) -> Delivery:
        policy = self.cfg.retry
        retrying = Retrying(stop=_in_run_stop(policy), wait=_in_run_wait(policy), sleep=self.sleep,
                            retry=retry_if_exception_type(TemporarySendError), reraise=True)
        for attempt in retrying:
            with attempt:
                with self.engine.begin() as conn:
                    outbox.note_attempt(conn, msg.outbox_id, self.clock())
                try:
                    return self.transport.send(msg)
                except TemporarySendError as exc:
                    self._log("warning", "temporary send failure", outbox_id=msg.outbox_id,
                              attempt=attempt.retry_state.attempt_number, error=str(exc))
                    raise
        raise FatalError("unreachable: tenacity neither returned nor raised")  # pragma: no cover

    def _attempts(self, outbox_id: int) -> int:
        with self.engine.connect() as conn:
            e = outbox.get(conn, outbox_id)
        return e.attempts if e else 0

    def _defer(self, entry: outbox.Entry, exc: TemporarySendError) -> Outcome:
        now, policy = self.clock(), self.cfg.retry
        attempts = self._attempts(entry.id)
        if now - entry.queued_at >= timedelta(hours=policy.give_up_hours):
            return self._finish_failed(entry, f"gave up after {policy.give_up_hours:g} hours of temporary "
                                              f"failures; the last: {exc}")
        failed_runs = max(1, math.ceil(attempts / policy.attempts_per_run))
        minutes = min(policy.next_run_minutes * 2.0 ** (failed_runs - 1), policy.next_run_max_minutes)
        wait = max(timedelta(minutes=minutes), timedelta(seconds=exc.retry_after or 0))
        with self.engine.begin() as conn:
            outbox.mark_deferred(conn, entry.id, str(exc), now + wait)
        self._log("warning", "message deferred", outbox_id=entry.id, purpose=entry.purpose, attempts=attempts,
                  retry_at=(now + wait).isoformat(), error=str(exc))
        return Outcome(entry.id, entry.purpose, "deferred", f"{exc}; next try after {(now + wait).isoformat()}",
                       attempts, entry.maybe_duplicate)

    def _hold(self, entry: outbox.Entry, exc: OutcomeUnknown) -> Outcome:
        """Keep a message the server may already have out of every later run, and have it reported.

        Sending it again could deliver it twice, silently; holding it costs a person one check.
        """
        with self.engine.begin() as conn:
            outbox.mark_outcome_unknown(conn, entry.id, str(exc))
        self._log("error", "message outcome unknown: held, not sent again", outbox_id=entry.id,
                  purpose=entry.purpose, message_id=entry.message_id, error=str(exc))
        return Outcome(entry.id, entry.purpose, "failed",
                       f"{exc}; held, not sent again: check whether it arrived, and if it did not run "
                       f"'cme-batch outbox --requeue {entry.id}'", self._attempts(entry.id), entry.maybe_duplicate)

    def _finish_failed(self, entry: outbox.Entry, error: str) -> Outcome:
        with self.engine.begin() as conn:
            outbox.mark_failed(conn, entry.id, error)
        self._log("error", "message failed", outbox_id=entry.id, purpose=entry.purpose, error=error)
        return Outcome(entry.id, entry.purpose, "failed", error, self._attempts(entry.id), entry.maybe_duplicate)


def send_run(app: Any, *, ignore_backoff: bool = False, transport: MailTransport | None = None,
             sleep: Callable[[float], None] = time.sleep, lock_wait: float = 0.0) -> SendReport:
    """Drain the outbox of ``app``'s store under the send lock.

    ``LockHeld`` if another run has it still after ``lock_wait`` seconds.
    """
    from cme_batch.runlock import run_lock

    engine = app.engine()
    with run_lock(engine, app.state_dir, "send", wait=lock_wait):
        chosen = transport or build_transport(app.config.mail)
        drainer = Drainer(engine, app.config.mail, chosen, clock=app.now, run_id=app.run_id, sleep=sleep,
                          log=app.log(stage="send"))
        return drainer.run(ignore_backoff=ignore_backoff)


def send_stage(app: Any, as_of: date) -> str:
    """The nightly's ``send`` stage: a one-line result, or an error when anything was left unsent.

    A ``send`` a person started holds the send lock: the stage waits for it to end, then sends what
    that run did not (the night's summary and digest were queued after it had listed the outbox).
    Giving up at once would leave them queued until the next night, and fail the night.
    """
    from cme_batch.runlock import STAGE_WAIT_SECONDS

    report = send_run(app, lock_wait=STAGE_WAIT_SECONDS)
    if report.fatal is not None:
        raise report.fatal
    if report.of("deferred") or report.of("failed"):
        raise SendIncomplete(report.summary())
    return report.summary()
