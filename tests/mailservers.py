"""Real mail servers for tests, on 127.0.0.1: an SMTP server and a fake Microsoft/Google cloud.

- ``make_pki``: a test CA and a server certificate for ``localhost``/``127.0.0.1`` (cryptography).
- ``SmtpServer``: aiosmtpd in a thread, with STARTTLS or implicit TLS, AUTH PLAIN/LOGIN against
  a password and a custom XOAUTH2 mechanism against issued tokens. It records what it accepted
  (envelope, bytes, whether TLS was on, who logged in) and injects faults: a scripted reply to
  RCPT or DATA (421, 550), a connection dropped at RCPT, or after the data before the reply,
  or a 250 to the data that comes only after the client has given up ("late").
- ``FakeCloud``: one HTTPS server playing the Entra ID token endpoint (OpenID discovery and the
  client-credentials grant, as msal uses them), Google's token endpoint (checking the
  service account's RS256 JWT), and Graph ``sendMail`` with scripted replies (429 + Retry-After),
  or a message taken whose 202 is lost ("late": after the client has given up; "drop").

What the fakes assume of the real services (from the public documentation, not tried
against live Microsoft or Google): Graph answers 202 to ``sendMail`` with a base64 MIME body
sent as text/plain; Google's token endpoint takes a JWT-bearer assertion whose ``aud`` is the
token URL; XOAUTH2 is ``user=...^Aauth=Bearer ...^A^A``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.servers import free_port

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's deprecation chatter


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate (SAN localhost, 127.0.0.1) signed by it, as PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cme-batch test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return pki


@dataclass
class Received:
    """One message the SMTP server accepted (answered 250 to its data)."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: str | None


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.s = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address in self.s.reject_rcpt:
            return f"550 5.1.1 <{address}>: recipient address rejected"
        if self.s.rcpt_faults and self.s.rcpt_faults.pop(0) == "drop":  # before the data: nothing handed over
            server.transport.close()
            return "421 4.4.2 gone"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str | None:
        self.s.data_calls += 1
        fault = self.s.data_faults.pop(0) if self.s.data_faults else None
        if fault == "drop":  # the client has sent everything; it never hears whether we took it
            server.transport.close()
            return "421 4.4.2 gone"  # written to a closed connection: the client never sees it
        if fault and fault != "late":
            return fault
        while self.s.data_gate is not None and not self.s.data_gate.is_set():
            await asyncio.sleep(0.02)
        content = envelope.original_content or envelope.content
        tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.s.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(content), tls,
                                        session.auth_data))
        if fault == "late":  # queued, but the 250 waits until the client has timed out and hung up
            for _ in range(500):
                if server.transport is None or server.transport.is_closing():
                    break
                await asyncio.sleep(0.02)
        return "250 2.0.0 OK: queued"

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        blob = base64.b64decode(args[1]) if len(args) > 1 else await server.challenge_auth("")
        fields = dict(p.split("=", 1) for p in bytes(blob).decode().split("\x01") if "=" in p)
        user, bearer = fields.get("user"), fields.get("auth", "")
        if bearer.startswith("Bearer ") and self.s.token_check is not None and user and \
                self.s.token_check(user, bearer[7:]):
            return AuthResult(success=True, auth_data=user)
        await server.challenge_auth(json.dumps({"status": "401", "schemes": "bearer"}))
        return AuthResult(success=False, handled=False)


class SmtpServer:
    """aiosmtpd on 127.0.0.1 with a fixed port, so it can be stopped and started again."""

    def __init__(self, pki: Pki | None, *, tls: str = "starttls", users: dict[str, str] | None = None,
                 token_check: Callable[[str, str], bool] | None = None, port: int | None = None) -> None:
        self.pki, self.tls = pki, tls
        self.users = users or {}
        self.token_check = token_check  # (user, access token) -> is it good for that mailbox?
        self.port = port or free_port()
        self.received: list[Received] = []
        self.reject_rcpt: set[str] = set()
        self.data_faults: list[str] = []  # per DATA: a reply such as "421 ...", "drop" or "late"
        self.rcpt_faults: list[str] = []  # per RCPT: "drop" closes the connection (anything else: no fault)
        self.data_gate: threading.Event | None = None  # when set: hold every DATA reply until it is set
        self.data_calls = 0
        self._controller: Controller | None = None

    def _authenticator(self, server: Any, session: Any, envelope: Any, mechanism: str,
                       auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self.users.get(auth_data.login.decode()) == \
            auth_data.password.decode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

    def start(self) -> SmtpServer:
        kw: dict[str, Any] = {}
        if self.tls == "starttls":
            assert self.pki is not None
            kw.update(tls_context=self.pki.server_context(), require_starttls=True)
        elif self.tls == "implicit":
            assert self.pki is not None
            kw.update(ssl_context=self.pki.server_context())
        if self.users or self.token_check:
            kw.update(authenticator=self._authenticator, auth_required=True, auth_require_tls=self.tls == "starttls")
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kw)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def message_ids(self) -> list[str]:
        from email.parser import BytesHeaderParser

        return [str(BytesHeaderParser().parsebytes(r.content)["Message-ID"]) for r in self.received]


@dataclass
class CloudRequest:
    at: float
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeCloud:
    """Token endpoints and Graph ``sendMail`` over HTTPS on 127.0.0.1 (see the module doc)."""

    pki: Pki
    client_id: str = "app-client-id"
    client_secret: str = "app-client-secret"
    google_public_key: Any = None
    google_email: str = "sender@cme-test.iam.gserviceaccount.com"
    google_key_file: Path | None = None
    requests: list[CloudRequest] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)  # token -> scope (or the Google user)
    graph_script: list[tuple[int, dict[str, str], dict[str, Any]]] = field(default_factory=list)
    sent: list[tuple[str, bytes]] = field(default_factory=list)  # (mailbox, MIME) accepted by sendMail
    graph_lost: list[str] = field(default_factory=list)  # per accepted sendMail: "late" or "drop" its 202
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> FakeCloud:
        cloud = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                cloud._record(self, b"")
                parts = self.path.split("/")
                if self.path.endswith("/v2.0/.well-known/openid-configuration"):
                    t = f"{cloud.base}/{parts[1]}"
                    self._reply(200, {"token_endpoint": f"{t}/oauth2/v2.0/token", "issuer": f"{t}/v2.0",
                                      "authorization_endpoint": f"{t}/oauth2/v2.0/authorize"})
                else:
                    self._reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                cloud._record(self, body)
                status, headers, reply = cloud._route(self.path, dict(self.headers), body)
                lost = cloud.graph_lost.pop(0) if status == 202 and cloud.graph_lost else None
                if lost == "drop":  # Graph has the message; the connection goes before the answer
                    self.close_connection = True
                    return
                if lost == "late":  # the answer waits until the client has given up and hung up
                    select.select([self.connection], [], [], 10)
                try:
                    self._reply(status, reply, headers)
                except OSError:
                    self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self._server.socket = self.pki.server_context().wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _record(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        self.requests.append(CloudRequest(time.monotonic(), h.command, h.path, dict(h.headers), body))

    def _route(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
        if path.endswith("/oauth2/v2.0/token"):
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if form.get("grant_type") != "client_credentials" or form.get("client_id") != self.client_id or \
                    form.get("client_secret") != self.client_secret:
                return 401, {}, {"error": "invalid_client", "error_description": "AADSTS7000215: bad secret"}
            return 200, {}, {"token_type": "Bearer", "expires_in": 3599,
                             "access_token": self._issue(form.get("scope", ""))}
        if path == "/google/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            claims = self._verify_jwt(form.get("assertion", ""))
            if claims is None:
                return 400, {}, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            return 200, {}, {"token_type": "Bearer", "expires_in": 3599,
                             "access_token": self._issue(claims["sub"])}
        if path.startswith("/v1.0/users/") and path.endswith("/sendMail"):
            auth = headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or self.issued.get(auth[7:]) != "https://graph.microsoft.com/.default":
                return 401, {}, {"error": {"code": "InvalidAuthenticationToken", "message": "bad token"}}
            if self.graph_script:
                return self.graph_script.pop(0)
            self.sent.append((path.split("/")[3], base64.b64decode(body)))
            return 202, {"request-id": f"req-{len(self.sent)}"}, {}
        return 404, {}, {"error": "not_found"}

    def _issue(self, scope: str) -> str:
        token = f"tok-{len(self.issued) + 1}-{scope.rsplit('/', 1)[-1][:10]}"
        self.issued[token] = scope
        return token

    def _verify_jwt(self, jwt: str) -> dict[str, Any] | None:
        """The claims of a service-account assertion, if it is signed by the test key and well formed."""
        def unpad(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            head, body, sig = jwt.split(".")
            self.google_public_key.verify(unpad(sig), f"{head}.{body}".encode(), padding.PKCS1v15(),
                                          hashes.SHA256())
            claims: dict[str, Any] = json.loads(unpad(body))
        except (ValueError, InvalidSignature):
            return None
        ok = (claims.get("iss") == self.google_email and claims.get("aud") == f"{self.base}/google/token"
              and claims.get("scope") == "https://mail.google.com/" and claims.get("exp", 0) > time.time())
        return claims if ok else None


def google_service_account(directory: Path, email: str) -> tuple[Path, Any]:
    """A service account JSON key file (as Google issues them) and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = directory / "google-sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": email, "private_key": pem,
                                "token_uri": "https://oauth2.googleapis.com/token"}), encoding="utf-8")
    path.chmod(0o600)
    return path, key.public_key()


# --- helpers shared by the mail tests -------------------------------------------------------

SENDER = "cme-batch@school.example"
SMTP_USER, SMTP_PASSWORD = "cme-batch@school.example", "correct horse battery staple"
PASSWORD_ENV = "CME_TEST_SMTP_PASSWORD"


class Clock:
    """A clock the test moves by hand (the App takes any callable returning an aware datetime)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime.now(dt.UTC).replace(microsecond=0)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


def write_mail_config(tmp_path: Path, url: str, mail_toml: str) -> Path:
    """The suite's base configuration with its [mail] section replaced by ``mail_toml``."""
    import textwrap

    from tests.conftest import BASE_CONFIG

    path = tmp_path / "cme-batch.toml"
    base = BASE_CONFIG.format(url=url).split("[mail]")[0]
    path.write_text(base + textwrap.dedent(mail_toml), encoding="utf-8")
    return path


def mail_app(tmp_path: Path, url: str, engine: Any, mail_toml: str, clock: Clock | None = None) -> Any:
    from cme_batch.app import App

    a = App(str(write_mail_config(tmp_path, url, mail_toml)), clock=clock or Clock())
    a._engine = engine
    return a


def smtp_toml(port: int, pki: Pki | None, *, security: str = "starttls", auth: str = "password",
              extra: str = "", retry: str = "") -> str:
    """A [mail] section for the SMTP transport against a server on 127.0.0.1."""
    ca = f'ca_file = "{pki.ca_file}"\n' if pki else ""
    password = f'password = {{ env = "{PASSWORD_ENV}" }}\n' if auth == "password" else ""
    return (f'[mail]\ntransport = "smtp"\nfrom = "{SENDER}"\ntimeout_seconds = 5\n{ca}'
            f'[mail.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\nauth = "{auth}"\n'
            f'username = "{SMTP_USER}"\n{password}{extra}'
            f'[mail.retry]\nattempts_per_run = 3\nbackoff_seconds = 0.01\n{retry}')


def build_message(subject: str = "CME morning summary", to: str = "office@school.example",
                  body: str = "Two open cases.\n") -> Any:
    from email.message import EmailMessage

    m = EmailMessage()
    m["To"] = to
    m["Subject"] = subject
    m.set_content(body)
    return m


def queue(engine: Any, key: str, *, to: str = "office@school.example", purpose: str = "summary",
          message: Any = None, now: dt.datetime | None = None) -> int:
    """Enqueue one message in its own transaction; returns the outbox id."""
    from cme_batch.mail import outbox

    with engine.begin() as conn:
        return outbox.enqueue(conn, idempotency_key=key, purpose=purpose, recipients=[to],
                              subject=f"test {key}", message=message or build_message(to=to),
                              from_address=SENDER, now=now)


def row(engine: Any, outbox_id: int) -> Any:
    from cme_batch.mail import outbox

    with engine.connect() as conn:
        return outbox.get(conn, outbox_id)


# --- fixtures (import them into a test module to use them) ----------------------------------

import pytest


@pytest.fixture(scope="session")
def mail_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def smtp_servers(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A factory of SMTP servers (same arguments as ``SmtpServer``), all stopped after the test."""
    monkeypatch.setenv(PASSWORD_ENV, SMTP_PASSWORD)
    made: list[SmtpServer] = []

    def make(*args: Any, start: bool = True, **kw: Any) -> SmtpServer:
        s = SmtpServer(*args, **kw)
        made.append(s)
        return s.start() if start else s

    yield make
    for s in made:
        s.stop()


@pytest.fixture
def fake_cloud(mail_pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake Entra ID / Google / Graph server, with the app secret in CME_TEST_CLIENT_SECRET."""
    c = FakeCloud(mail_pki)
    key_file, c.google_public_key = google_service_account(tmp_path, c.google_email)
    c.google_key_file = key_file
    monkeypatch.setenv("CME_TEST_CLIENT_SECRET", c.client_secret)
    c.start()
    yield c
    c.stop()


def problems(engine: Any) -> list[Any]:
    """What the next summary would report about the outbox (``outbox.problems``)."""
    from cme_batch.mail import outbox

    with engine.connect() as conn:
        return outbox.problems(conn)
