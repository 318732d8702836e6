"""The [replies] section: where the DSL's replies arrive and how they are authenticated.

A reply is acted on only when it carries a signed token we issued (keys named here, the
first one signing, all of them verifying, so a key can be rotated without stranding the
tokens already sent) and, where configured, a DKIM or DMARC pass recorded by our own
receiving server: one whose authserv-id is listed, or, with microsoft365_authentication_results,
Microsoft 365, which writes none. The mailbox is read over IMAP, from a Maildir, or through
Microsoft Graph.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cme_batch.mail.settings import GRAPH_BASE_URL, MicrosoftApp, _https, _microsoft, is_local_host
from cme_batch.settings import SecretRef, Table

MAILBOXES = ("none", "imap", "maildir", "graph")
KEY_ID = r"[A-Za-z0-9]{1,16}"
# Names Microsoft uses elsewhere (ARC-Authentication-Results, its IMAP host) but never as the
# authserv-id of its Authentication-Results header, which has none: trusting one of them would
# let only a header someone else wrote count.
MICROSOFT_IDS = ("mx.microsoft.com", "office365.com", "protection.outlook.com")  # and names ending in them


@dataclass(frozen=True)
class TokenKey:
    """One HMAC key for reply tokens; its id travels in every token it signs."""

    id: str
    secret: SecretRef


@dataclass(frozen=True)
class ImapSettings:
    host: str
    port: int
    security: str  # tls, starttls, or plain (loopback only, with allow_plaintext)
    username: str
    auth: str  # password, xoauth2-microsoft
    password: SecretRef | None = None
    folder: str = "INBOX"
    processed_folder: str | None = None


@dataclass(frozen=True)
class GraphSettings:
    mailbox: str  # the user principal name or id of the mailbox read
    folder: str = "inbox"
    processed_folder: str | None = None
    base_url: str = GRAPH_BASE_URL


@dataclass(frozen=True)
class RepliesConfig:
    mailbox: str = "none"
    imap: ImapSettings | None = None
    maildir: Path | None = None
    graph: GraphSettings | None = None
    microsoft: MicrosoftApp | None = None
    token_keys: tuple[TokenKey, ...] = ()
    token_lifetime_days: int = 14
    trusted_authserv_ids: tuple[str, ...] = ()
    require_authentication_results: bool = False
    microsoft365_authentication_results: bool = False  # believe the topmost header without an authserv-id
    ca_file: Path | None = None  # a private CA for the IMAP server, the sign-in server and Graph
    timeout_seconds: float = 30.0  # of each network call


def _imap(t: Table) -> ImapSettings | None:
    host = t.str("host", required=True, right="the IMAP server's host name, e.g. \"outlook.office365.com\"")
    security = t.str("security", "tls", choices=("tls", "starttls", "plain")) or "tls"
    port = t.int("port", 993 if security == "tls" else 143, min=1, max=65535)
    allow_plain = t.bool("allow_plaintext", False)
    username = t.str("username", required=True, right="the mailbox login, e.g. \"cme-bot@school.example\"")
    auth = t.str("auth", "password", choices=("password", "xoauth2-microsoft")) or "password"
    password = t.secret("password", required=auth == "password")
    if security == "plain" and not (allow_plain and host and is_local_host(host)):
        t.problems.add(t.key("security"), "is \"plain\" (passwords and replies would cross the network unencrypted)",
                       "\"tls\" or \"starttls\"; \"plain\" only for a server on 127.0.0.1 with allow_plaintext = true")
    s = ImapSettings(
        host=host or "", port=port or 993, security=security, username=username or "", auth=auth,
        password=password,
        folder=t.str("folder", "INBOX") or "INBOX",
        processed_folder=t.str("processed_folder"),
    )
    t.unknown_keys()
    return s if host and username else None


def _graph(t: Table) -> GraphSettings | None:
    mailbox = t.str("mailbox", required=True, right="the mailbox's address, e.g. \"cme-bot@school.example\"")
    base_url = _https(t, "base_url", GRAPH_BASE_URL)
    s = GraphSettings(
        mailbox=mailbox or "",
        folder=t.str("folder", "inbox") or "inbox",
        processed_folder=t.str("processed_folder"),
        base_url=base_url,
    )
    t.unknown_keys()
    return s if mailbox else None


def _token_keys(t: Table) -> tuple[TokenKey, ...]:
    keys: list[TokenKey] = []
    for kt in t.list_of_tables("token_keys"):
        kid = kt.str("id", required=True, pattern=KEY_ID, right="a key id of 1 to 16 letters or digits, e.g. \"k1\"")
        secret = kt.secret("secret", required=True)
        kt.unknown_keys()
        if kid and secret:
            if any(k.id == kid for k in keys):
                kt.problems.add(kt.key("id"), f"{kid!r} is used twice", "a different id for each key")
            else:
                keys.append(TokenKey(kid, secret))
    return tuple(keys)


def parse_replies(t: Table, base: Path) -> RepliesConfig:
    """Validate [replies]; every problem is reported with its key path."""
    mailbox = t.str("mailbox", "none", choices=MAILBOXES) or "none"
    imap = _imap(t.sub("imap")) if t.has("imap") else None
    graph = _graph(t.sub("graph")) if t.has("graph") else None
    needs_ms = mailbox == "graph" or (mailbox == "imap" and imap is not None and imap.auth == "xoauth2-microsoft")
    microsoft = _microsoft(t.sub("microsoft"), needs_ms) if t.has("microsoft") or needs_ms else None
    mdt = t.sub("maildir")
    maildir = mdt.path("path", base, required=mailbox == "maildir")
    mdt.unknown_keys()
    ca_file = t.path("ca_file", base)
    if ca_file is not None and not ca_file.is_file():
        t.problems.add(t.key("ca_file"), f"{ca_file} is not a readable file", "a PEM file of CA certificates")
        ca_file = None
    cfg = RepliesConfig(
        mailbox=mailbox, imap=imap, maildir=maildir, graph=graph, microsoft=microsoft, token_keys=_token_keys(t),
        token_lifetime_days=t.int("token_lifetime_days", 14, min=1, max=90) or 14,
        trusted_authserv_ids=tuple(str(x).lower() for x in t.str_list("trusted_authserv_ids")),
        require_authentication_results=t.bool("require_authentication_results", False),
        microsoft365_authentication_results=t.bool("microsoft365_authentication_results", False),
        ca_file=ca_file,
        timeout_seconds=t.float("timeout_seconds", 30.0, min=1.0) or 30.0,
    )
    _cross_checks(t, cfg)
    t.unknown_keys()
    return cfg


def _cross_checks(t: Table, cfg: RepliesConfig) -> None:
    """Problems that involve more than one key: a mailbox with no settings, no keys to verify with."""
    if cfg.mailbox == "imap" and not t.has("imap"):
        t.problems.add(t.key("imap"), "is missing", "an [replies.imap] table with host and username")
    if cfg.mailbox == "graph" and not t.has("graph"):
        t.problems.add(t.key("graph"), "is missing", "a [replies.graph] table with mailbox")
    if cfg.mailbox != "none" and not t.has("token_keys"):
        t.problems.add(t.key("token_keys"), "is missing",
                       'at least one key: token_keys = [{ id = "k1", secret = { env = "CME_REPLY_KEY_K1" } }]')
    if cfg.require_authentication_results and not (cfg.trusted_authserv_ids or cfg.microsoft365_authentication_results):
        t.problems.add(t.key("trusted_authserv_ids"), "is empty while require_authentication_results is true",
                       "the authserv-id your own receiving mail server writes, e.g. [\"mx.school.example\"], "
                       "or microsoft365_authentication_results = true when Microsoft 365 receives the mail")
    for i, a in enumerate(cfg.trusted_authserv_ids):
        if not re.fullmatch(r"[a-z0-9.-]+", a):
            t.problems.add(f"{t.key('trusted_authserv_ids')}[{i}]", f"is {a!r}", "a host name such as mx.school.example")
        elif any(a == m or a.endswith("." + m) for m in MICROSOFT_IDS):
            t.problems.add(f"{t.key('trusted_authserv_ids')}[{i}]",
                           f"is {a!r}, which Microsoft 365 never writes in Authentication-Results (it writes no id)",
                           "microsoft365_authentication_results = true instead")
