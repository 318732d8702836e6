"""One protocol for every way mail leaves: ``MailTransport``, and what its failures mean.

A transport takes one ``Outgoing`` message (the exact bytes from the outbox plus the SMTP
envelope) and either returns a ``Delivery`` (the server has accepted it) or raises one of:

- ``TemporarySendError`` (a ``RetriableError``): connection refused, timeout, SMTP 4xx, HTTP 429
  or 5xx. The sender backs off and tries again, in this run or a later one. ``retry_after`` carries
  a server's Retry-After in seconds.
- ``MessageRejected``: this message will never be accepted (SMTP 5xx, recipient unknown, HTTP
  400). It is marked failed, kept, and reported.
- ``FatalError``: nothing will go until a person fixes something (bad credentials, a certificate
  that does not verify, a server refusing TLS). The run stops; the message stays queued.
- ``OutcomeUnknown``: the whole message was handed to the server, but its answer never came (a
  timeout or a lost connection after the end of SMTP DATA, or after the Graph request body).
  The server may have accepted it. It is not retried: it is held and reported (see the sender).

Only a failure before the message was handed over may be a ``TemporarySendError``: retrying
it cannot deliver a second copy.

The classification helpers below are shared by the SMTP and Graph transports so one status
code means the same thing whichever way the mail goes. ``MemoryTransport`` is the in-memory
transport for tests of code that only needs "a message was handed over".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from cme_batch.errors import CmeError, FatalError, RetriableError
from cme_batch.mail.settings import MailConfig


class TemporarySendError(RetriableError):
    """The server or network failed for now; the same message may be accepted later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MessageRejected(CmeError):
    """The server refused this message for good: retrying the same bytes will not help."""


class OutcomeUnknown(CmeError):
    """The server was given the whole message but did not say whether it took it.

    Not a ``RetriableError``: a resend could deliver it twice, and a server too slow to answer
    once is likely to be slow again, so each automatic retry could add another copy.
    """


@dataclass(frozen=True)
class Outgoing:
    """One message as it goes to a transport: the outbox bytes, unchanged, and the envelope."""

    outbox_id: int
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    raw: bytes


@dataclass(frozen=True)
class Delivery:
    """What the server said when it accepted a message; ``refused`` lists recipients it would not take."""

    detail: str
    refused: tuple[str, ...] = ()


class MailTransport(Protocol):
    """Hands one message to a mail system. Must translate every failure into the errors above."""

    name: str

    def send(self, message: Outgoing) -> Delivery:
        ...


def classify_smtp(code: int, text: str, what: str) -> CmeError:
    """An SMTP reply code turned into what the sender must do. ``what`` says which step failed."""
    reply = f"{code} {text}".strip()
    if 400 <= code < 500:
        return TemporarySendError(f"{what}: the server said '{reply}' (temporary)")
    return MessageRejected(f"{what}: the server said '{reply}'")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_http(status: int, reason: str, retry_after: str | None, what: str) -> CmeError:
    """An HTTP error status from a mail API turned into what the sender must do."""
    said = f"HTTP {status}{': ' + reason if reason else ''}"
    if status in (408, 429) or status >= 500:
        return TemporarySendError(f"{what}: {said} (temporary)", retry_after=parse_retry_after(retry_after))
    if status in (401, 403):
        return FatalError(f"{what}: {said}; check the app's permission to send as this mailbox")
    if status == 404:
        return FatalError(f"{what}: {said}; check the sending mailbox name")
    return MessageRejected(f"{what}: {said}")


@dataclass
class MemoryTransport:
    """Keeps what it is given. ``failures`` are raised, one per call, before anything is kept."""

    name: str = "memory"
    sent: list[Outgoing] = field(default_factory=list)
    failures: list[CmeError] = field(default_factory=list)
    on_send: Callable[[Outgoing], None] | None = None

    def send(self, message: Outgoing) -> Delivery:
        if self.failures:
            raise self.failures.pop(0)
        if self.on_send:
            self.on_send(message)
        self.sent.append(message)
        return Delivery(f"kept in memory ({len(self.sent)})")


def build_transport(cfg: MailConfig) -> MailTransport:
    """The transport the configuration names, ready to send (credentials are read on first use)."""
    if cfg.transport == "smtp":
        from cme_batch.mail.smtp import SmtpTransport

        return SmtpTransport(cfg)
    if cfg.transport == "graph":
        from cme_batch.mail.graph import GraphTransport

        return GraphTransport(cfg)
    from cme_batch.mail.maildrop import MaildropTransport

    return MaildropTransport(cfg)
