"""Reading replies over IMAP (imaplib), always encrypted: implicit TLS or STARTTLS.

Login is by password or by SASL XOAUTH2 with a token from Microsoft Entra ID (through msal),
which Exchange Online requires now that basic authentication is being switched off. Message
ids are ``<UIDVALIDITY>.<UID>``: stable for as long as the server keeps the folder's
UIDVALIDITY. Messages are fetched with ``BODY.PEEK[]`` so fetching alone marks nothing read;
``done`` sets ``\\Seen`` and, when a processed folder is configured, moves the message there.
Server and network failures become ``RetriableError``; a refused login or an untrusted
certificate becomes ``FatalError`` (retrying will not fix either).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cme_batch.errors import FatalError, RetriableError
from cme_batch.mail.oauth import xoauth2
from cme_batch.replies_settings import ImapSettings

UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
DELIMITER_RE = re.compile(rb'\) "(.)" ')


def _quote(folder: str) -> str:
    """An IMAP quoted string (imaplib sends arguments as given)."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImapMailbox:
    """One IMAP folder, connected on first use and logged out by ``close``."""

    def __init__(self, settings: ImapSettings, *, password: Callable[[], str] | None = None,
                 oauth_token: Callable[[], str] | None = None, ca_file: Path | None = None,
                 timeout: float = 30.0) -> None:
        if (password is None) == (oauth_token is None):
            raise ValueError("give exactly one of password and oauth_token")
        self.s = settings
        self.ca_file = ca_file
        self.timeout = timeout
        self._password = password
        self._oauth_token = oauth_token
        self.name = f"imap:{settings.username}@{settings.host}/{settings.folder}"
        self._conn: imaplib.IMAP4 | None = None
        self._uidvalidity = ""
        self._processed_ready = False
        self._delimiter: str | None = None

    # -- connection -------------------------------------------------------------------------

    def _where(self) -> str:
        return f"IMAP {self.s.host}:{self.s.port}"

    def _connect(self) -> imaplib.IMAP4:
        s = self.s
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        try:
            if s.security == "tls":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ctx, timeout=self.timeout)
            else:
                conn = imaplib.IMAP4(s.host, s.port, timeout=self.timeout)
                if s.security == "starttls":
                    conn.starttls(ssl_context=ctx)
        except ssl.SSLCertVerificationError as exc:
            raise FatalError(f"{self._where()}: the server's certificate is not trusted ({exc.verify_message}); "
                             "set replies.ca_file for a private CA") from exc
        except (OSError, imaplib.IMAP4.error) as exc:
            raise RetriableError(f"{self._where()}: cannot connect: {exc}") from exc
        try:
            if self._oauth_token is not None:
                blob = xoauth2(s.username, self._oauth_token()).encode()
                conn.authenticate("XOAUTH2", lambda _challenge: blob)
            else:
                assert self._password is not None
                conn.login(s.username, self._password())
        except imaplib.IMAP4.abort as exc:
            raise RetriableError(f"{self._where()}: connection lost during login") from exc
        except imaplib.IMAP4.error as exc:
            _shutdown(conn)
            raise FatalError(f"{self._where()}: login refused for {s.username} (check the password or the app's "
                             "IMAP permission)") from exc
        typ, data = self._call(conn.select, _quote(self._server_path(conn, s.folder)))
        if typ != "OK":
            _shutdown(conn)
            raise FatalError(f"{self._where()}: cannot open folder {s.folder!r}: {_text(data)}")
        _, values = conn.response("UIDVALIDITY")
        latest = values[-1] if values else None
        self._uidvalidity = latest.decode() if isinstance(latest, bytes) else _uidvalidity_of(conn, s.folder)
        return conn

    def _imap(self) -> imaplib.IMAP4:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _call(self, fn: Callable[..., tuple[str, list[Any]]], *args: Any) -> tuple[str, list[Any]]:
        try:
            return fn(*args)
        except (TimeoutError, imaplib.IMAP4.abort, OSError) as exc:
            self._conn = None
            raise RetriableError(f"{self._where()}: connection lost: {exc}") from exc
        except imaplib.IMAP4.error as exc:
            raise RetriableError(f"{self._where()}: server refused a command: {exc}") from exc

    # -- the Mailbox protocol -----------------------------------------------------------------

    def waiting(self) -> list[str]:
        conn = self._imap()
        typ, data = self._call(conn.uid, "SEARCH", "UNDELETED")
        if typ != "OK":
            raise RetriableError(f"{self._where()}: search failed: {_text(data)}")
        uids = sorted(int(x) for x in (data[0] or b"").split())
        return [f"{self._uidvalidity}.{u}" for u in uids]

    def _uid(self, uid: str) -> str:
        validity, _, num = uid.partition(".")
        if validity != self._uidvalidity:
            raise RetriableError(f"{self._where()}: folder was reset (UIDVALIDITY changed); run again")
        return num

    def fetch(self, uid: str) -> bytes:
        conn = self._imap()
        typ, data = self._call(conn.uid, "FETCH", self._uid(uid), "(BODY.PEEK[])")
        for item in data if typ == "OK" else []:
            if isinstance(item, tuple) and len(item) == 2:
                return bytes(item[1])
        raise RetriableError(f"{self._where()}: message {uid} could not be fetched")

    def done(self, uid: str) -> None:
        conn = self._imap()
        num = self._uid(uid)
        self._call(conn.uid, "STORE", num, "+FLAGS.SILENT", r"(\Seen)")
        target = self.s.processed_folder
        if not target:
            return
        target = self._server_path(conn, target)
        if not self._processed_ready:
            self._call(conn.create, _quote(target))  # "already exists" is fine
            self._processed_ready = True
        if b"MOVE" in _capabilities(conn):
            typ, data = self._call(conn.uid, "MOVE", num, _quote(target))
        else:
            typ, data = self._call(conn.uid, "COPY", num, _quote(target))
            if typ == "OK":
                self._call(conn.uid, "STORE", num, "+FLAGS.SILENT", r"(\Deleted)")
                self._call(conn.expunge)
        if typ != "OK":
            raise RetriableError(f"{self._where()}: cannot move message to {target!r}: {_text(data)}")

    def _server_path(self, conn: imaplib.IMAP4, folder: str) -> str:
        """A folder path written with '/' between levels, in the server's own hierarchy delimiter."""
        if self._delimiter is None:
            typ, data = self._call(conn.list, '""', '""')
            m = DELIMITER_RE.search(data[0]) if typ == "OK" and data and isinstance(data[0], bytes) else None
            self._delimiter = m.group(1).decode() if m else "/"
        return folder.replace("/", self._delimiter) if self._delimiter else folder

    def close(self) -> None:
        if self._conn is not None:
            _shutdown(self._conn)
            self._conn = None


def _capabilities(conn: imaplib.IMAP4) -> set[bytes]:
    typ, data = conn.capability()
    return set((data[0] or b"").upper().split()) if typ == "OK" and data else set()


def _uidvalidity_of(conn: imaplib.IMAP4, folder: str) -> str:
    typ, data = conn.status(_quote(folder), "(UIDVALIDITY)")
    m = UIDVALIDITY_RE.search(data[0] or b"") if typ == "OK" and data else None
    if not m:
        raise RetriableError(f"IMAP server did not report UIDVALIDITY for {folder!r}")
    return m.group(1).decode()


def _text(data: list[Any]) -> str:
    return " ".join(x.decode(errors="replace") if isinstance(x, bytes) else str(x) for x in data or [])[:200]


def _shutdown(conn: imaplib.IMAP4) -> None:
    with contextlib.suppress(imaplib.IMAP4.error, OSError):  # closing a broken connection: nothing to report
        conn.logout()
