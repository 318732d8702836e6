"""A fake Arbor server: real HTTPS on 127.0.0.1, serving a FakeSchool, with failures on demand.

Used by the tests and by ``cme-batch demo --source arbor``. It checks HTTP Basic credentials,
answers GraphQL at ``/graphql/query``, the REST changelogs at ``/rest-v2/{resource}/changelog``
and the head revision, and can be told to fail in each way the adapter must survive:
a status (with Retry-After), an HTML maintenance page served as 200, a slow answer, a dropped
connection, a redirect to another host, a refused field, paging that is ignored, and a
maximum page size of its own (fewer rows a page than asked).
The certificate comes from a throwaway CA made with ``cryptography``; its PEM is the
``ca_bundle`` the client must be given (TLS verification stays on, as in production).
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from adapters.arbor.fake_graphql import Executor, QueryError, parse
from adapters.arbor.fake_school import FakeSchool, rest_resource

MAINTENANCE_PAGE = b"<!DOCTYPE html><html><body><h1>Arbor is down for maintenance</h1></body></html>"


@dataclass
class Fault:
    """One injected failure. ``match`` is a substring of ``"METHOD path Entity"``; it fires on the
    matching requests after the first ``after`` of them, ``times`` times (None: for ever)."""

    kind: str  # status, html, slow, drop, redirect
    match: str = ""
    times: int | None = 1
    after: int = 0
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0.0
    location: str = ""
    seen: int = 0
    fired: int = 0


@dataclass
class Seen:
    """One request as the server saw it (what a test inspects)."""

    method: str
    path: str
    query: dict[str, list[str]]
    entity: str | None
    args: dict[str, Any]
    authorised: bool
    at: float


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cme-batch fake Arbor test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
          .not_valid_after(now + timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # the key identifiers: Python 3.13's strict certificate checks refuse a chain without them
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(leaf.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class FakeArbor(ThreadingHTTPServer):
    """The server. Knobs are plain attributes a test sets while it runs."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, school: FakeSchool | None = None, *, tls: bool = True, username: str = "cme-app",
                 password: str = "s3cret-test-password", date_format: str = "plain") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.school = school or FakeSchool()
        self.graphql = Executor(self.school, date_format)
        self.username, self.password = username, password
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.denied_fields: set[str] = set()  # "Student.dateOfBirth": refused, as a missing permission
        self.paging = "honour"  # or "ignore_size" (every row at once), "ignore_number" (always the first page)
        # the server's own maximum rows a page (Arbor's is UNCONFIRMED); a page then starts at its
        # number times this size ("capped") or times the size asked ("asked", skipping the rows between)
        self.max_page_size: int | None = None
        self.cap_offsets = "capped"
        self.head_revision_supported = True
        # rewrites the rows of an answer before they are sent, for answers not in the shape the
        # adapter expects (a field missing, a null, a wrong type): ``mangle(entity, rows)`` for a
        # GraphQL page, ``mangle("changelog " + resource, changes)`` for a changelog page
        self.mangle: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None
        self.lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-arbor-")
        self.ca_bundle: Path | None = None
        self._ctx: ssl.SSLContext | None = None
        if tls:
            self.ca_bundle, cert, key = make_tls(Path(self._tmp.name))
            self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._ctx.load_cert_chain(cert, key)
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    @property
    def date_format(self) -> str:
        return self.graphql.date_format

    @date_format.setter
    def date_format(self, value: str) -> None:
        self.graphql.date_format = value

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self._ctx is not None:
            sock = self._ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that gave up (timeout, refused certificate) is part of the tests."""

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-arbor", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- knobs ------------------------------------------------------------------------------------
    def fail(self, kind: str, match: str = "", **kw: Any) -> Fault:
        """Inject a failure (see ``Fault``); returns it so a test can read how often it fired."""
        f = Fault(kind, match, **kw)
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def pick_fault(self, what: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.match in what and (f.times is None or f.fired < f.times):
                    f.seen += 1
                    if f.seen > f.after:
                        f.fired += 1
                        return f
        return None

    def requests_for(self, entity: str) -> list[Seen]:
        return [s for s in self.seen if s.entity == entity]


class _Handler(BaseHTTPRequestHandler):
    server: FakeArbor
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- plumbing ------------------------------------------------------------------------------------
    def _send(self, status: int, body: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, reason: str, message: str = "", headers: dict[str, str] | None = None) -> None:
        errors = [{"exception": "FakeArborException", "message": message}] if message else []
        self._send(status, {"response": {"code": status, "reason": reason, "errors": errors}}, headers=headers)

    def _authorised(self) -> bool:
        want = base64.b64encode(f"{self.server.username}:{self.server.password}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {want}"

    def _handle(self, method: str) -> None:
        srv = self.server
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entity: str | None = None
        args: dict[str, Any] = {}
        query_error: str | None = None
        if url.path == "/graphql/query":
            try:
                entity, args, sel = parse(str(json.loads(raw or b"{}").get("query", "")))
            except (QueryError, ValueError) as exc:
                query_error, sel = str(exc), {}
        seen = Seen(method, url.path, parse_qs(url.query), entity, args, self._authorised(), time.monotonic())
        with srv.lock:
            srv.seen.append(seen)
        fault = srv.pick_fault(f"{method} {url.path} {entity or ''}")
        if fault is not None and self._inject(fault):
            return
        if not seen.authorised:
            self._error(401, "Unauthorized", "Invalid credentials", {"WWW-Authenticate": 'Basic realm="Arbor"'})
        elif url.path == "/graphql/query" and method == "POST":
            self._graphql(entity or "", args, sel, query_error)
        elif url.path == "/rest-v2/revisions/latest" and srv.head_revision_supported:
            self._send(200, {"revision": {"entityType": "Revision", "revisionId": srv.school.revision}})
        elif url.path.startswith("/rest-v2/") and url.path.endswith("/changelog"):
            self._changelog(url.path.split("/")[2], parse_qs(url.query))
        else:
            self._error(404, "Not Found", f"No route for {url.path}")

    def _inject(self, f: Fault) -> bool:
        """Carry out a fault; False when the request should then be answered normally (slow)."""
        if f.kind == "slow":
            time.sleep(f.seconds)
            return False
        if f.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if f.kind == "html":
            self._send(200, MAINTENANCE_PAGE, "text/html; charset=utf-8")
        elif f.kind == "redirect":
            self._send(302, b"", "text/plain", {"Location": f.location})
        else:
            self._error(f.status, "Injected failure", "", {"Retry-After": f.retry_after} if f.retry_after else None)
        return True

    # -- the API ----------------------------------------------------------------------------------------
    def _page(self, rows: list[Any], size: int, number: int) -> list[Any]:
        srv = self.server
        if srv.paging == "ignore_size":
            return rows
        if srv.paging == "ignore_number":
            number = 0
        cap = srv.max_page_size
        if cap is not None and size > cap:
            start = number * (cap if srv.cap_offsets == "capped" else size)
            return rows[start:start + cap]
        return rows[number * size:(number + 1) * size]

    def _graphql(self, entity: str, args: dict[str, Any], sel: Any, query_error: str | None) -> None:
        srv = self.server
        if query_error:
            self._send(200, {"data": None, "errors": [{"message": query_error}]})
            return
        denied = sorted(f"{entity}.{name}" for name in sel if f"{entity}.{name}" in srv.denied_fields)
        if denied:
            self._send(200, {"data": None, "errors": [
                {"message": f"You do not have access to `{d}`."} for d in denied]})
            return
        try:
            with srv.school.lock:
                rows = srv.graphql.rows(entity, args)
                page = self._page(rows, int(args.get("page_size", 3000)), int(args.get("page_num", 0)))
                out = [srv.graphql.render(entity, r, sel) for r in page]
            if srv.mangle is not None:
                out = srv.mangle(entity, out)
        except QueryError as exc:
            self._send(200, {"data": None, "errors": [{"message": str(exc)}]})
            return
        self._send(200, {"data": {entity: out}})

    def _changelog(self, resource: str, query: dict[str, list[str]]) -> None:
        school = self.server.school
        entity = next((e for e in list(school.objects) if rest_resource(e) == resource), None)
        if entity is None:
            self._send(200, {"changes": []})
            return
        start = int(query.get("from-revision", ["0"])[0])
        size, number = int(query.get("page-size", ["100"])[0]), int(query.get("page-number", ["1"])[0])
        changes = self._page(school.changelog(entity, start), size, number - 1)
        out: list[dict[str, Any]] = [
            {"changeType": kind, "fromRevision": rev - 1, "toRevision": rev,
             "changedObject": {"entityType": entity, "href": f"/rest-v2/{resource}/{oid}"}}
            for rev, _e, oid, kind in changes]
        if self.server.mangle is not None:
            out = self.server.mangle(f"changelog {resource}", out)
        self._send(200, {"changes": out})


def serve_records(records: Iterable[Any], *, date_format: str = "plain", username: str = "cme-app",
                  password: str = "s3cret-test-password") -> tuple[FakeArbor, str, Path]:
    """Start a fake Arbor serving these core records: (server, base_url, ca_bundle path).

    The caller sets ``base_url`` and ``ca_bundle`` in the source's config, passes the password
    through a secret reference, and calls ``server.close()`` when done.
    """
    school = FakeSchool()
    school.load(records)
    server = FakeArbor(school, date_format=date_format, username=username, password=password).start()
    assert server.ca_bundle is not None
    return server, server.base_url, server.ca_bundle


def serve_demo(records: Iterable[Any], directory: Path, name: str = "arbor") -> tuple[FakeArbor, str]:
    """For ``cme-batch demo --source arbor``: serve the records, and give the ``[sources.NAME]`` TOML.

    The password goes into ``directory/arbor-password`` (read through ``{ file = ... }``, as a
    school would use a systemd credential) and the CA bundle into ``directory/arbor-ca.pem``.
    The caller appends the TOML to the demo configuration and closes the server at the end.
    """
    server, base_url, ca = serve_records(records)
    directory.mkdir(parents=True, exist_ok=True)
    secret, bundle = directory / "arbor-password", directory / "arbor-ca.pem"
    secret.write_text(server.password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    bundle.write_bytes(ca.read_bytes())
    table = (f'\n[sources.{name}]\nadapter = "arbor"\nbase_url = "{base_url}"\nusername = "{server.username}"\n'
             f'password = {{ file = {json.dumps(str(secret))} }}\nca_bundle = {json.dumps(str(bundle))}\n'
             "page_size = 1000\n")
    return server, table
