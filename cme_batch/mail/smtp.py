"""The ``smtp`` transport: STARTTLS or implicit TLS with a verified certificate, then AUTH.

Encryption is required by default: with ``security = "starttls"`` a server that does not offer
STARTTLS is refused rather than spoken to in clear, and the certificate must verify (system
CAs, or ``mail.ca_file``) for the configured host name. Plain SMTP (``security = "none"``) is
allowed to localhost, and to another host only with ``allow_plaintext = true``.

Authentication: none (a relay that trusts our address), a password (AUTH PLAIN/LOGIN, chosen
by smtplib), or SASL XOAUTH2 with a token from Microsoft 365 or Google (``oauth``).

One connection per message keeps the failure of one message from touching the next. The
message bytes go out exactly as stored. Once the server has answered 250 to the data, the
message counts as accepted even if saying goodbye fails. Once the end of the data has been
written, a reply that never comes (timeout, connection lost) is ``OutcomeUnknown``, not a
temporary failure: an MTA may queue the message before its 250 is lost.
"""

from __future__ import annotations

import smtplib
import ssl
from typing import TYPE_CHECKING

from cme_batch.errors import CmeError, FatalError
from cme_batch.mail.oauth import OUTLOOK_SCOPE, GoogleToken, MicrosoftToken, TokenSource, xoauth2
from cme_batch.mail.settings import MailConfig, is_local_host
from cme_batch.mail.transport import (
    Delivery,
    MessageRejected,
    OutcomeUnknown,
    Outgoing,
    TemporarySendError,
    classify_smtp,
)

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_BASIC_AUTH_OFF = ("5.7.30", "5.7.139", "basic authentication")
_END_OF_DATA = b"\r\n.\r\n"


class _Smtp(smtplib.SMTP):
    """``smtplib.SMTP`` that notes when the end of the message data has been written.

    ``sendmail`` hides whether a lost reply was the one to DATA (nothing handed over) or the one
    after the data (the server may have queued it); only the second must not be retried.
    ``data()`` is the only caller that writes bytes, ending with CRLF.CRLF; commands are str.
    """

    data_written = False

    def send(self, s: ReadableBuffer | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(_END_OF_DATA):
            self.data_written = True


class _SmtpSsl(_Smtp, smtplib.SMTP_SSL):
    """Implicit TLS, with the same note as ``_Smtp``."""


def tls_context(cfg: MailConfig) -> ssl.SSLContext:
    """Certificate and host name verified; TLS 1.2 at least; extra CAs from ``mail.ca_file``."""
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def token_source_for(cfg: MailConfig) -> TokenSource | None:
    """The OAuth token source the SMTP ``auth`` setting needs, if any."""
    user = cfg.smtp.username or cfg.from_address or ""
    if cfg.smtp.auth == "xoauth2-microsoft":
        return MicrosoftToken(cfg.microsoft, OUTLOOK_SCOPE, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
    if cfg.smtp.auth == "xoauth2-google":
        return GoogleToken(cfg.google, user, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
    return None


class SmtpTransport:
    name = "smtp"

    def __init__(self, cfg: MailConfig, tokens: TokenSource | None = None) -> None:
        s = cfg.smtp
        if s.security == "none" and not is_local_host(s.host) and not s.allow_plaintext:
            raise FatalError(f"refusing plain SMTP to {s.host}: mail would cross the network unencrypted "
                             "(use security = 'starttls' or 'tls', or set allow_plaintext = true)")
        self.cfg = cfg
        self.where = f"SMTP {s.host}:{s.port}"
        self.context = tls_context(cfg)
        self.tokens = tokens or token_source_for(cfg)

    def _connect(self) -> _Smtp:
        s, timeout = self.cfg.smtp, self.cfg.timeout_seconds
        if s.security == "tls":
            return _SmtpSsl(s.host, s.port, timeout=timeout, context=self.context)
        conn = _Smtp(s.host, s.port, timeout=timeout)
        if s.security == "starttls":
            conn.ehlo()
            if not conn.has_extn("starttls"):
                conn.close()
                raise FatalError(f"{self.where} does not offer STARTTLS: refusing to send in clear")
            conn.starttls(context=self.context)
            conn.ehlo()
        return conn

    def _login(self, conn: smtplib.SMTP) -> None:
        s = self.cfg.smtp
        user = s.username or self.cfg.from_address or ""
        try:
            if s.auth == "password":
                assert s.password is not None, "checked when the configuration was loaded"
                conn.login(user, s.password.reveal())
            elif self.tokens is not None:
                sasl = xoauth2(user, self.tokens.token())
                # on failure the server sends a 334 challenge with details; an empty answer ends the exchange
                conn.auth("XOAUTH2", lambda challenge=None: "" if challenge else sasl)
        except smtplib.SMTPAuthenticationError as exc:
            said = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(
                exc.smtp_error)
            hint = ""
            if any(m in said.lower() for m in _BASIC_AUTH_OFF):
                hint = "; the tenant has switched password SMTP off: use auth = 'xoauth2-microsoft'"
            raise FatalError(f"{self.where} refused the login for {user} ({exc.smtp_code} "
                             f"{said.splitlines()[0][:200] if said else ''}){hint}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise FatalError(f"{self.where} does not offer AUTH on this connection") from exc

    def send(self, message: Outgoing) -> Delivery:
        conn: _Smtp | None = None
        try:
            conn = self._connect()
            self._login(conn)
            options = ["BODY=8BITMIME"] if conn.has_extn("8bitmime") and any(
                b > 127 for b in message.raw) else []
            refused = conn.sendmail(message.sender, list(message.recipients), message.raw, mail_options=options)
        except CmeError:
            raise
        except Exception as exc:
            if conn is not None and conn.data_written and not isinstance(exc, smtplib.SMTPResponseException):
                raise OutcomeUnknown(f"{self.where} was sent the whole message but gave no answer "
                                     f"({exc.__class__.__name__}: {_text(exc)}); it may have accepted it") from exc
            raise self._translate(exc) from exc
        finally:
            if conn is not None:
                _close_quietly(conn)
        detail = f"accepted by {self.where}"
        return Delivery(detail, tuple(f"{r}: {c} {m.decode(errors='replace') if isinstance(m, bytes) else m}"
                                      for r, (c, m) in sorted(refused.items())))

    def _translate(self, exc: Exception) -> CmeError:
        w = self.where
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [c for c, _ in exc.recipients.values()]
            said = "; ".join(f"{r}: {c} {_text(m)}" for r, (c, m) in sorted(exc.recipients.items()))
            if any(400 <= c < 500 for c in codes):
                return TemporarySendError(f"{w} refused the recipients for now ({said})")
            return MessageRejected(f"{w} refused every recipient ({said})")
        if isinstance(exc, smtplib.SMTPSenderRefused):
            if 400 <= exc.smtp_code < 500 or exc.smtp_code == 552:
                return classify_smtp(exc.smtp_code, _text(exc.smtp_error), f"{w} refused the sender")
            return FatalError(f"{w} refused the sender {exc.sender} ({exc.smtp_code} {_text(exc.smtp_error)})")
        if isinstance(exc, smtplib.SMTPDataError):
            return classify_smtp(exc.smtp_code, _text(exc.smtp_error), f"{w} refused the message")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TemporarySendError(f"{w}: the connection ended before the message was sent ({_text(exc)})")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return FatalError(f"{w}: {exc}")
        if isinstance(exc, smtplib.SMTPResponseException):  # greeting, HELO, STARTTLS replies
            if 400 <= exc.smtp_code < 500:
                return TemporarySendError(f"{w} is not accepting mail now ({exc.smtp_code} "
                                          f"{_text(exc.smtp_error)})")
            return FatalError(f"{w} refused the session ({exc.smtp_code} {_text(exc.smtp_error)})")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return FatalError(f"{w}: the server's certificate could not be verified ({exc.verify_message}); "
                              "set mail.ca_file if it uses a private CA")
        if isinstance(exc, (OSError, smtplib.SMTPException)):  # refused, reset, timeout, TLS failure
            return TemporarySendError(f"{w}: {exc.__class__.__name__}: {exc} (temporary)")
        return FatalError(f"{w}: unexpected {exc.__class__.__name__}")


def _text(value: object) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:300]


def _close_quietly(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        try:
            conn.close()
        except OSError:
            pass
