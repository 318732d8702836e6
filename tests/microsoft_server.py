"""A stand-in for Microsoft's sign-in and Graph mail endpoints, served over HTTPS on 127.0.0.1.

No emulator of Entra ID or Graph exists, so this serves the few requests cme-batch makes, in
the shapes Microsoft documents: OpenID discovery and the client-credentials token endpoint
(enough for msal), and one mailbox's folders and messages (list, ``$value``, mark read, move,
find or create a folder), and ``sendMail`` in MIME form. It checks the client secret and the
bearer token like the real ones, so a wrong secret or a missing token fails the way it would in
production.

``sendMail`` follows Microsoft's page (https://learn.microsoft.com/en-us/graph/api/user-sendmail):
the body is the MIME message base64-encoded, sent as ``Content-Type: text/plain``; malformed
base64 is ``400`` "Invalid base64 string for MIME content."; success is ``202 Accepted`` with an
empty body. A payload over 4 MB is ``413`` (https://learn.microsoft.com/en-us/graph/api/user-post-messages).
``send_script`` scripts other answers (429/503 with Retry-After, or 504 after the message was taken:
https://learn.microsoft.com/en-us/graph/errors). ``token_script`` scripts the token endpoint's
answers, such as the ``429`` with ``Retry-After: 60`` Entra ID gives a client-credentials caller it
throttles (https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling)
or a 5xx.
"""

from __future__ import annotations

import base64
import itertools
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.mailbox_servers import write_test_pki


@dataclass
class Message:
    raw: bytes
    folder: str = "inbox"
    is_read: bool = False


@dataclass
class FakeMicrosoft:
    """State of the fake tenant: one app registration and one mailbox."""

    tenant: str = "tenant-1"
    client_id: str = "app-1"
    client_secret: str = "app-secret"
    access_token: str = "graph-token"  # what the token endpoint hands out
    graph_accepts: str | None = None  # the token Graph accepts, when not the one handed out
    mailbox: str = "cme-bot@school.example"
    base: str = ""  # https://127.0.0.1:PORT, set when served
    ca_file: Path | None = None
    messages: dict[str, Message] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=lambda: {"inbox": "Inbox"})  # id -> display name
    scopes: list[str] = field(default_factory=list)  # every scope a token was asked for
    # scripted token endpoint answers, used before the normal one: (status, headers, body bytes)
    token_script: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    token_requests: int = 0
    sent: list[bytes] = field(default_factory=list)  # MIME messages sendMail took
    # scripted sendMail answers: (status, headers, JSON body, whether Graph took the message first)
    send_script: list[tuple[int, dict[str, str], Any, bool]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def deliver(self, raw: bytes) -> str:
        mid = f"AAMkAD-immutable-{next(self._ids)}="
        self.messages[mid] = Message(raw)
        return mid

    def in_folder(self, name: str) -> list[Message]:
        ids = {fid for fid, n in self.folders.items() if n == name or fid == name}
        return [m for m in self.messages.values() if m.folder in ids]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: Any = None, raw: bytes | None = None,
              headers: dict[str, str] | None = None) -> None:
        data = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data and "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "message/rfc822" if raw is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def _route(self, method: str) -> None:
        ms = self.server.state
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts[:1] == [ms.tenant]:
            return self._sign_in(method, parts[1:])
        if self.headers.get("Authorization") != f"Bearer {ms.graph_accepts or ms.access_token}":
            return self._send(401, {"error": {"code": "InvalidAuthenticationToken"}})
        if parts[:3] != ["v1.0", "users", ms.mailbox]:
            return self._send(404, {"error": {"code": "ErrorInvalidUser"}})
        self._mail(method, parts[3:], parse_qs(url.query))

    def _sign_in(self, method: str, rest: list[str]) -> None:
        ms = self.server.state
        if method == "GET" and rest == ["v2.0", ".well-known", "openid-configuration"]:
            return self._send(200, {"issuer": f"{ms.base}/{ms.tenant}/v2.0",
                                    "authorization_endpoint": f"{ms.base}/{ms.tenant}/oauth2/v2.0/authorize",
                                    "token_endpoint": f"{ms.base}/{ms.tenant}/oauth2/v2.0/token"})
        if method == "POST" and rest == ["oauth2", "v2.0", "token"]:
            form = {k: v[0] for k, v in parse_qs(self._body().decode()).items()}
            ms.token_requests += 1
            if ms.token_script:
                status, headers, raw = ms.token_script.pop(0)
                return self._send(status, raw=raw, headers=headers)
            if form.get("client_id") != ms.client_id or form.get("client_secret") != ms.client_secret:
                return self._send(401, {"error": "invalid_client", "error_description": "AADSTS7000215"})
            ms.scopes.append(form.get("scope", ""))
            return self._send(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ms.access_token})
        self._send(404)

    def _mail(self, method: str, rest: list[str], query: dict[str, list[str]]) -> None:
        ms = self.server.state
        if method == "POST" and rest == ["sendMail"]:
            return self._send_mail()
        if method == "GET" and len(rest) == 3 and rest[0] == "mailFolders" and rest[2] == "messages":
            folder = next((fid for fid, n in ms.folders.items() if rest[1] in (fid, n.lower())), None)
            ids = [mid for mid, m in ms.messages.items() if m.folder == folder]
            return self._send(200, {"value": [{"id": i} for i in ids]})
        if method == "GET" and rest == ["mailFolders"]:
            flt = query.get("$filter", [""])[0]
            name = flt.partition("eq '")[2].rstrip("'").replace("''", "'")
            return self._send(200, {"value": [{"id": f, "displayName": n} for f, n in ms.folders.items()
                                              if n == name]})
        if method == "POST" and rest == ["mailFolders"]:
            fid = f"folder-{len(ms.folders)}"
            ms.folders[fid] = json.loads(self._body())["displayName"]
            return self._send(201, {"id": fid})
        msg = ms.messages.get(rest[1]) if len(rest) >= 2 and rest[0] == "messages" else None
        if msg is None:
            return self._send(404, {"error": {"code": "ErrorItemNotFound"}})
        if method == "GET" and rest[2:] == ["$value"]:
            return self._send(200, raw=msg.raw)
        if method == "PATCH" and len(rest) == 2:
            msg.is_read = bool(json.loads(self._body()).get("isRead"))
            return self._send(200, {"id": rest[1]})
        if method == "POST" and rest[2:] == ["move"]:
            dest = json.loads(self._body())["destinationId"]
            if dest not in ms.folders:
                return self._send(400, {"error": {"code": "ErrorInvalidIdMalformed"}})
            msg.folder = dest
            return self._send(201, {"id": rest[1]})
        self._send(404)


    def _send_mail(self) -> None:
        """``sendMail`` with a MIME body, answered as Microsoft documents it."""
        ms = self.server.state
        body = self._body()
        if self.headers.get("Content-Type", "").split(";")[0].strip().lower() != "text/plain":
            return self._send(400, {"error": {"code": "RequestBodyRead", "message": "Cannot read the request body."}})
        if len(body) > MAX_SEND_BYTES:
            return self._send(413, {"error": {"code": "RequestEntityTooLarge",
                                              "message": "The request size exceeds the maximum limit."}})
        try:
            mime = base64.b64decode(body, validate=True)
        except ValueError:
            mime = b""
        if not mime:
            return self._send(400, {"error": {"code": "ErrorMimeContentInvalidBase64String",
                                              "message": "Invalid base64 string for MIME content."}})
        if ms.send_script:
            status, headers, reply, taken = ms.send_script.pop(0)
            if taken:
                ms.sent.append(mime)
            return self._send(status, reply, headers=headers)
        ms.sent.append(mime)
        self._send(202, raw=b"", headers={"request-id": f"req-{len(ms.sent)}"})


MAX_SEND_BYTES = 4 * 1024 * 1024  # "S/MIME message payloads are currently limited to 4 MB"


class _Server(ThreadingHTTPServer):
    state: FakeMicrosoft


@contextmanager
def fake_microsoft(folder: Path, state: FakeMicrosoft | None = None) -> Iterator[FakeMicrosoft]:
    """Serve ``state`` over HTTPS on a free loopback port until the block ends."""
    ms = state or FakeMicrosoft()
    folder.mkdir(parents=True, exist_ok=True)
    ms.ca_file = write_test_pki(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "server.pem", folder / "server.key")
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.state = ms
    ms.base = f"https://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield ms
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
