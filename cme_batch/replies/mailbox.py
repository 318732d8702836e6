"""Where replies are read from: the ``Mailbox`` protocol and its simple implementations.

A mailbox lists the messages waiting in it, hands over one message's raw bytes, and is told
when a message has been stored (``done``) so it can mark it read or move it away. Storing
comes first and ``done`` second: if ``done`` never happens, the next run finds the message
again, sees its id already in the store, and only repeats ``done``. So every id a mailbox
gives must stay the same for the same message across runs.

IMAP and Microsoft Graph live in ``imap.py`` and ``graph.py``; ``build_mailbox`` picks one
from the configuration, and only then imports it and the OAuth client (``requests`` and
``cryptography``): every nightly run imports this module, most read no mailbox at all.
"""

from __future__ import annotations

import hashlib
import mailbox as stdlib_mailbox
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cme_batch.errors import BadInputError, RetriableError
from cme_batch.replies_settings import RepliesConfig

MAX_UID = 200  # the width of replies.mailbox_uid


class Mailbox(Protocol):
    """A folder of replies. ``name`` distinguishes mailboxes so their message ids never collide."""

    name: str

    def waiting(self) -> list[str]:
        """Ids of the messages now in the folder, oldest first."""
        ...

    def fetch(self, uid: str) -> bytes:
        """The whole message, exactly as received (RFC 5322 bytes)."""
        ...

    def done(self, uid: str) -> None:
        """The message is safely stored: mark it read, or move it to the processed folder."""
        ...

    def close(self) -> None:
        ...


def store_uid(mailbox: Mailbox, uid: str) -> str:
    """The key a message is stored under: mailbox name and id, hashed only if too long for the column."""
    key = f"{mailbox.name}:{uid}"
    if len(key) <= MAX_UID:
        return key
    return f"{mailbox.name[:100]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class MemoryMailbox:
    """An in-memory mailbox for tests: messages in, and a record of which were marked done."""

    def __init__(self, messages: Iterable[bytes] = (), name: str = "memory") -> None:
        self.name = name
        self.messages: dict[str, bytes] = {}
        self.processed: list[str] = []
        for raw in messages:
            self.add(raw)

    def add(self, raw: bytes) -> str:
        uid = str(len(self.messages) + 1)
        self.messages[uid] = raw
        return uid

    def waiting(self) -> list[str]:
        return [u for u in self.messages if u not in self.processed]

    def fetch(self, uid: str) -> bytes:
        return self.messages[uid]

    def done(self, uid: str) -> None:
        if uid not in self.processed:
            self.processed.append(uid)

    def close(self) -> None:
        pass


def _flags(name: str) -> str:
    """The flags of a Maildir file name (``uid:2,FS``), empty when it has none."""
    return name.split(":2,", 1)[1] if ":2," in name else ""


class MaildirMailbox:
    """A Maildir the mail server delivers into (Postfix, Dovecot LDA, fetchmail...).

    Waiting messages are those in ``new/``, and those in ``cur/`` without the Seen flag: a mail
    client, or an IMAP server serving the same Maildir, moves what it has shown from ``new/`` to
    ``cur/`` unread, and a reply it moved must still be read. ``done`` gives a message the Seen
    flag (moving it from ``new/`` to ``cur/``), as a mail client would, so the Maildir stays
    readable by people too; a reply a person marks as read before the night runs is not seen
    (README: use IMAP when people read the mailbox too).
    """

    def __init__(self, path: Path) -> None:
        if not (path / "new").is_dir() or not (path / "cur").is_dir():
            raise BadInputError(f"replies.maildir.path: {path} is not a Maildir (it needs new/ and cur/)")
        self.path = path
        self.name = f"maildir:{path.name}"
        self._md = stdlib_mailbox.Maildir(str(path), factory=None, create=False)

    def waiting(self) -> list[str]:
        entries: dict[str, float] = {}
        try:
            for sub in ("cur", "new"):
                for p in (self.path / sub).iterdir():
                    if p.name.startswith(".") or (sub == "cur" and "S" in _flags(p.name)):
                        continue
                    try:
                        entries[p.name.split(":", 1)[0]] = p.stat().st_mtime
                    except FileNotFoundError:
                        continue  # moved since it was listed (a client, or another replies run, read it)
        except OSError as exc:
            raise RetriableError(f"cannot read Maildir {self.path}: {exc.strerror}") from exc
        return [uid for uid, _ in sorted(entries.items(), key=lambda e: (e[1], e[0]))]

    def fetch(self, uid: str) -> bytes:
        for _ in range(3):
            try:
                return self._md.get_bytes(uid)
            except FileNotFoundError:
                continue  # renamed between finding and opening it (another replies run flagged it): again
            except (KeyError, OSError) as exc:
                raise RetriableError(f"cannot read message {uid} from Maildir {self.path}") from exc
        raise RetriableError(f"cannot read message {uid} from Maildir {self.path}: it keeps moving")

    def done(self, uid: str) -> None:
        """Flag a message Seen. Another replies run (the hourly one beside the night's) may have
        flagged it a moment before: a message already gone from where it was looked for is done."""
        try:
            (self.path / "new" / uid).rename(self.path / "cur" / f"{uid}:2,S")
            return
        except FileNotFoundError:
            pass  # not in new/: a client moved it to cur/ unread, or another run flagged it meanwhile
        for p in (self.path / "cur").glob(f"{uid}:2,*"):
            if "S" not in _flags(p.name):
                try:
                    p.rename(p.with_name(f"{uid}:2,{''.join(sorted(_flags(p.name) + 'S'))}"))
                except FileNotFoundError:
                    pass  # flagged by another run meanwhile

    def close(self) -> None:
        pass


def build_mailbox(cfg: RepliesConfig) -> Mailbox | None:
    """The configured mailbox, ready to read; None when replies are not read by this installation."""
    if cfg.mailbox == "maildir" and cfg.maildir is not None:
        return MaildirMailbox(cfg.maildir)
    if cfg.mailbox == "imap" and cfg.imap is not None:
        from cme_batch.replies.imap import ImapMailbox

        s = cfg.imap
        if s.auth == "xoauth2-microsoft":
            from cme_batch.mail.oauth import OUTLOOK_SCOPE, MicrosoftToken

            assert cfg.microsoft is not None, "checked when the configuration was loaded"
            token = MicrosoftToken(cfg.microsoft, OUTLOOK_SCOPE, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
            return ImapMailbox(s, oauth_token=token.token, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
        assert s.password is not None, "checked when the configuration was loaded"
        return ImapMailbox(s, password=s.password.reveal, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
    if cfg.mailbox == "graph" and cfg.graph is not None:
        from cme_batch.mail.oauth import GRAPH_SCOPE, MicrosoftToken, http_session
        from cme_batch.replies.graph import GraphMailbox

        assert cfg.microsoft is not None, "checked when the configuration was loaded"
        token = MicrosoftToken(cfg.microsoft, GRAPH_SCOPE, ca_file=cfg.ca_file, timeout=cfg.timeout_seconds)
        return GraphMailbox(cfg.graph, token.token, http_session(cfg.ca_file, cfg.timeout_seconds))
    return None
