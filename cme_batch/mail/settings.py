"""The ``[mail]`` section: how mail leaves the school, validated once into frozen objects.

Three transports share one outbox: ``maildrop`` (``.eml`` files in a folder), ``smtp`` and
``graph`` (Microsoft Graph ``sendMail``). Credentials are ``SecretRef``s, read only when a
connection is made. Rules checked here so a bad file fails at ``check-config``, not at 6am:
plaintext SMTP to another host needs ``allow_plaintext``, every HTTPS endpoint must be ``https``,
and each authentication method must have the keys it needs. Every key is documented in
``config/cme-batch.example.toml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cme_batch.settings import SecretRef, Table

TRANSPORTS = ("maildrop", "smtp", "graph")
SECURITY = ("starttls", "tls", "none")
AUTH = ("none", "password", "xoauth2-microsoft", "xoauth2-google")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"


@dataclass(frozen=True)
class MicrosoftApp:
    """An Entra ID app registration used with the client-credentials grant (SMTP XOAUTH2 or Graph)."""

    tenant_id: str = ""
    client_id: str = ""
    client_secret: SecretRef | None = None
    authority_url: str = MICROSOFT_AUTHORITY


@dataclass(frozen=True)
class GoogleAccount:
    """A Google Workspace service account with domain-wide delegation (scope https://mail.google.com/)."""

    key: SecretRef | None = None  # the service account's JSON key
    token_url: str = GOOGLE_TOKEN_URL


@dataclass(frozen=True)
class SmtpConfig:
    host: str = ""
    port: int = 587
    security: str = "starttls"  # starttls, tls (implicit, port 465) or none
    allow_plaintext: bool = False
    auth: str = "none"
    username: str | None = None  # default: mail.from
    password: SecretRef | None = None


@dataclass(frozen=True)
class GraphConfig:
    sender: str | None = None  # the mailbox that sends; default: mail.from
    base_url: str = GRAPH_BASE_URL


@dataclass(frozen=True)
class RetryConfig:
    attempts_per_run: int = 3  # tries of one message within one run
    backoff_seconds: float = 2.0  # first wait between tries within a run; doubles each time
    backoff_max_seconds: float = 60.0  # a longer wait (or Retry-After) is left to a later run
    next_run_minutes: float = 10.0  # earliest retry by a later run after a failed run; doubles
    next_run_max_minutes: float = 360.0
    give_up_hours: float = 72.0  # a message still failing this long after it was queued is failed


@dataclass(frozen=True)
class MailConfig:
    transport: str = "maildrop"
    from_address: str | None = None
    maildrop_dir: Path | None = None
    maildrop_envelope: bool = False  # write X-Sender/X-Receiver lines for a pickup directory
    ca_file: Path | None = None  # extra CA bundle for SMTP TLS and the HTTPS endpoints
    timeout_seconds: float = 30.0
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)
    microsoft: MicrosoftApp = field(default_factory=MicrosoftApp)
    google: GoogleAccount = field(default_factory=GoogleAccount)
    retry: RetryConfig = field(default_factory=RetryConfig)


def is_local_host(host: str) -> bool:
    """True for the loopback names, where a plaintext connection never leaves the machine."""
    return host.lower().strip("[]") in LOCAL_HOSTS


def https_url(t: Table, name: str, default: str) -> str:
    url = t.str(name, default) or default
    if not url.startswith("https://"):
        t.problems.add(t.key(name), f"is {url!r}", "an https:// URL (tokens and mail never travel in clear)")
        return default
    return url.rstrip("/")


def _smtp(t: Table, transport: str) -> SmtpConfig:
    security = t.str("security", "starttls", choices=SECURITY) or "starttls"
    cfg = SmtpConfig(
        host=t.str("host", "", required=transport == "smtp", right="the mail server's host name") or "",
        port=t.int("port", DEFAULT_PORTS[security], min=1, max=65535) or DEFAULT_PORTS[security],
        security=security,
        allow_plaintext=t.bool("allow_plaintext", False),
        auth=t.str("auth", "none", choices=AUTH) or "none",
        username=t.str("username"),
        password=t.secret("password"),
    )
    if transport == "smtp":
        if security == "none" and cfg.host and not is_local_host(cfg.host) and not cfg.allow_plaintext:
            t.problems.add(t.key("security"), f"is 'none' for {cfg.host!r} (mail would cross the network "
                           "unencrypted)", "'starttls' or 'tls', or allow_plaintext = true to accept the risk")
        if cfg.auth == "password" and cfg.password is None:
            t.problems.add(t.key("password"), "is missing (auth = 'password')",
                           'a secret reference such as { env = "CME_SMTP_PASSWORD" }')
    t.unknown_keys()
    return cfg


def parse_microsoft(t: Table, needed: bool) -> MicrosoftApp:
    app = MicrosoftApp(
        tenant_id=t.str("tenant_id", "", required=needed, right="the Entra ID tenant id or domain") or "",
        client_id=t.str("client_id", "", required=needed, right="the app registration's client id") or "",
        client_secret=t.secret("client_secret", required=needed),
        authority_url=https_url(t, "authority_url", MICROSOFT_AUTHORITY),
    )
    t.unknown_keys()
    return app


def _google(t: Table, needed: bool) -> GoogleAccount:
    acct = GoogleAccount(key=t.secret("key", required=needed), token_url=https_url(t, "token_url", GOOGLE_TOKEN_URL))
    t.unknown_keys()
    return acct


def _retry(t: Table) -> RetryConfig:
    d = RetryConfig()
    r = RetryConfig(
        attempts_per_run=t.int("attempts_per_run", d.attempts_per_run, min=1, max=20) or d.attempts_per_run,
        backoff_seconds=t.float("backoff_seconds", d.backoff_seconds, min=0.0) or 0.0,
        backoff_max_seconds=t.float("backoff_max_seconds", d.backoff_max_seconds, min=0.0) or 0.0,
        next_run_minutes=t.float("next_run_minutes", d.next_run_minutes, min=0.0) or 0.0,
        next_run_max_minutes=t.float("next_run_max_minutes", d.next_run_max_minutes, min=0.0) or 0.0,
        give_up_hours=t.float("give_up_hours", d.give_up_hours, min=1.0) or d.give_up_hours,
    )
    t.unknown_keys()
    return r


# the names other sections imported before these became public
_https, _microsoft = https_url, parse_microsoft


def parse_mail(t: Table, base: Path) -> MailConfig:
    """Validate ``[mail]`` and its sub-tables; every problem goes into the shared list."""
    transport = t.str("transport", "maildrop", choices=TRANSPORTS) or "maildrop"
    from_address = t.email("from", required=transport != "maildrop")
    maildrop_dir = t.path("maildrop_dir", base, required=transport == "maildrop")
    ca_file = t.path("ca_file", base)
    if ca_file is not None and not ca_file.is_file():
        t.problems.add(t.key("ca_file"), f"{ca_file} is not a readable file", "a PEM file of CA certificates")
        ca_file = None
    smtp = _smtp(t.sub("smtp"), transport)
    ms_needed = transport == "graph" or (transport == "smtp" and smtp.auth == "xoauth2-microsoft")
    google_needed = transport == "smtp" and smtp.auth == "xoauth2-google"
    graph_t = t.sub("graph")
    graph = GraphConfig(sender=graph_t.email("sender"), base_url=https_url(graph_t, "base_url", GRAPH_BASE_URL))
    graph_t.unknown_keys()
    cfg = MailConfig(
        transport=transport,
        from_address=from_address,
        maildrop_dir=maildrop_dir,
        maildrop_envelope=t.bool("maildrop_envelope", False),
        ca_file=ca_file,
        timeout_seconds=t.float("timeout_seconds", 30.0, min=1.0) or 30.0,
        smtp=smtp,
        graph=graph,
        microsoft=parse_microsoft(t.sub("microsoft"), ms_needed),
        google=_google(t.sub("google"), google_needed),
        retry=_retry(t.sub("retry")),
    )
    t.unknown_keys()
    return cfg
