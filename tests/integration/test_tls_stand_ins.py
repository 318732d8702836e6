"""The test servers' certificates pass the strict checks Python 3.13 makes by default.

From Python 3.13, ``ssl.create_default_context`` sets ``VERIFY_X509_STRICT``: a certificate
chain without key identifiers is refused ("Missing Authority Key Identifier"). The stand-ins
for Arbor (also used by ``cme-batch demo --source arbor``), Microsoft 365 and the IMAP server make
their own certificates; these tests ask for the strict checks on whatever Python runs them,
so a stand-in that would fail on 3.13 fails here too.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from pathlib import Path

from adapters.arbor.fake_server import FakeArbor
from tests.mailservers import make_pki
from tests.microsoft_server import fake_microsoft


def strict_handshake(base_url: str, ca_file: Path) -> str:
    """Connect to an ``https://127.0.0.1:PORT`` server trusting only ``ca_file``, checks strict; the TLS version."""
    port = int(base_url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


def test_the_arbor_stand_in_passes_strict_checks() -> None:
    with FakeArbor() as server:
        assert server.ca_bundle is not None
        assert strict_handshake(server.base_url, server.ca_bundle).startswith("TLS")


def test_the_microsoft_and_imap_stand_ins_pass_strict_checks(tmp_path: Path) -> None:
    with fake_microsoft(tmp_path / "ms") as ms:  # its certificates are the Dovecot server's kind
        assert strict_handshake(ms.base, ms.ca_file).startswith("TLS")


def test_the_smtp_stand_in_passes_strict_checks(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    ctx = pki.server_context()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def serve() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(ssl.SSLError, OSError), ctx.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            assert strict_handshake(f"https://127.0.0.1:{listener.getsockname()[1]}", pki.ca_file).startswith("TLS")
        finally:
            thread.join(timeout=10)
