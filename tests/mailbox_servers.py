"""A real IMAP server for tests: Dovecot from the Debian package, with a private configuration.

One Dovecot per test session listens on 127.0.0.1 (implicit TLS and STARTTLS, with a CA and a
server certificate the fixture makes with ``cryptography``). Each test gets its own mailbox
user, so each starts with an empty INBOX. ``deliver`` puts a message into a folder over IMAP
APPEND, the way a delivery agent would leave it for the job to read. The user's password is
also accepted as an XOAUTH2 bearer token (Dovecot checks the token like a password against its
passwd-file), which lets the OAuth path be exercised against the same server.

Use it with ``from tests.mailbox_servers import dovecot, dovecot_server  # noqa: F401`` (or list
this module in ``pytest_plugins``).
"""

from __future__ import annotations

import imaplib
import itertools
import os
import re
import secrets
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.servers import free_port, unavailable, wait_for_port

MAIL_USER = "nobody"  # the unprivileged system user Dovecot reads and writes the mail as
MAIL_GROUP = "nogroup"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2
auth_failure_delay = 0
log_path = {root}/dovecot.log
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {tls_port}
  }}
}}
"""


def write_test_pki(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 and localhost; returns the CA file clients trust."""
    now = datetime.now(UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             ca: bool) -> x509.Certificate:
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
             # the key identifiers: Python 3.13's strict certificate checks refuse a chain without them
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = f"cme-batch test CA {secrets.token_hex(4)}"  # unique: several test CAs may share one bundle
    ca = cert(ca_name, ca_key, ca_name, ca_key, True)
    srv = cert("127.0.0.1", srv_key, ca_name, ca_key, False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(srv_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(folder / "server.key", 0o600)
    return folder / "ca.pem"


@dataclass
class DovecotServer:
    """A running Dovecot: where it listens and how to add users to it."""

    host: str
    port: int  # STARTTLS
    tls_port: int  # implicit TLS
    ca_file: Path
    root: Path
    _users: itertools.count  # type: ignore[type-arg]

    def add_user(self) -> DovecotMailbox:
        user = f"cme-bot{next(self._users)}@school.example"
        password = secrets.token_urlsafe(16)
        # one passwd-file per user: Dovecot re-reads a changed file only when its mtime moves on,
        # which a second user added within the same second would not do
        (self.root / "users" / user).write_text(f"{user}:{{PLAIN}}{password}\n", encoding="utf-8")
        return DovecotMailbox(self, user, password)


@dataclass
class DovecotMailbox:
    """One user's mailbox on the test Dovecot."""

    server: DovecotServer
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.tls_port

    @property
    def ca_file(self) -> Path:
        return self.server.ca_file

    @property
    def mail_dir(self) -> Path:
        """The user's Maildir (it exists once the user has logged in or been delivered to)."""
        return self.server.root / "mail" / self.user / "Maildir"

    @contextmanager
    def connect(self) -> Iterator[imaplib.IMAP4_SSL]:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=ctx, timeout=10)
        try:
            conn.login(self.user, self.password)
            yield conn
        finally:
            conn.logout()

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into ``folder`` (created if missing), unread, as a delivery agent would."""
        with self.connect() as conn:
            if folder != "INBOX":
                conn.create(f'"{folder}"')
            typ, data = conn.append(f'"{folder}"', None, None, raw)
            assert typ == "OK", data

    def messages(self, folder: str = "INBOX") -> list[tuple[set[str], bytes]]:
        """The flags and raw bytes of every message in ``folder`` (empty if it does not exist)."""
        with self.connect() as conn:
            typ, _ = conn.select(f'"{folder}"', readonly=True)
            if typ != "OK":
                return []
            _, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
            out = []
            for item in data:
                if isinstance(item, tuple):
                    flags = re.search(rb"FLAGS \(([^)]*)\)", item[0])
                    out.append((set((flags.group(1) if flags else b"").decode().split()), bytes(item[1])))
            return out


@contextmanager
def dovecot_process() -> Iterator[DovecotServer]:
    """Start a private Dovecot in a temporary directory; stop it (by its own PID) on exit."""
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)
    if binary is None:
        unavailable("Dovecot is not installed (Debian package dovecot-imapd)")
        raise AssertionError  # unreachable
    version = subprocess.run([binary, "--version"], check=False, capture_output=True, text=True).stdout.strip()
    if not version.startswith("2.3."):
        unavailable(f"the test Dovecot configuration is written for Dovecot 2.3, found {version or 'unknown'}")
    if os.geteuid() != 0:
        unavailable("Dovecot must be started as root (it drops privileges to the mail user)")
    root = Path(tempfile.mkdtemp(prefix="cme-dovecot-"))
    os.chmod(root, 0o755)  # the mail user must reach its home below this directory
    (root / "mail").mkdir()
    shutil.chown(root / "mail", MAIL_USER, MAIL_GROUP)
    (root / "users").mkdir()
    ca_file = write_test_pki(root)
    port, tls_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(CONFIG.format(root=root, uid=MAIL_USER, gid=MAIL_GROUP, port=port, tls_port=tls_port),
                    encoding="utf-8")
    proc = subprocess.Popen([binary, "-c", str(conf), "-F"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        try:
            wait_for_port(tls_port)
            wait_for_port(port)
        except TimeoutError:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
            log = (root / "dovecot.log").read_text(errors="replace") if (root / "dovecot.log").exists() else ""
            raise RuntimeError(f"Dovecot did not start: {err.decode(errors='replace')}\n{log}") from None
        yield DovecotServer("127.0.0.1", port, tls_port, ca_file, root, itertools.count(1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    with dovecot_process() as server:
        yield server


@pytest.fixture
def dovecot(dovecot_server: DovecotServer) -> DovecotMailbox:
    """A fresh, empty mailbox on the session's Dovecot: host, port (TLS), user, password, ca_file,
    mail_dir, ``deliver(raw, folder)`` and ``messages(folder)``."""
    return dovecot_server.add_user()
