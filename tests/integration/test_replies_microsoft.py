"""Microsoft 365 paths: IMAP with XOAUTH2 (token from msal) against Dovecot, and Microsoft Graph.

The sign-in and Graph endpoints are a local HTTPS stand-in (``tests/microsoft_server.py``);
msal, requests, imaplib and Dovecot are real. For IMAP the stand-in hands out the Dovecot
user's password as the access token, which Dovecot checks as XOAUTH2's bearer token.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from cme_batch.cli import cli
from cme_batch.mail.oauth import GRAPH_SCOPE, OUTLOOK_SCOPE
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.mailbox_servers import DovecotMailbox, dovecot, dovecot_server  # noqa: F401
from tests.microsoft_server import FakeMicrosoft, fake_microsoft
from tests.replies_support import DSL, KEY, KEY_ENV, dsl_reply, issue, make_case, make_tokens

REF = "CME-2025-0021"

COMMON = """
[replies]
mailbox = "{mailbox}"
token_keys = [{{ id = "k1", secret = {{ env = "{key_env}" }} }}]
ca_file = "{ca_file}"

[replies.microsoft]
tenant_id = "{ms.tenant}"
client_id = "{ms.client_id}"
client_secret = {{ env = "CME_TEST_MS_SECRET" }}
authority_url = "{ms.base}"
"""


@pytest.fixture
def microsoft(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMicrosoft]:
    monkeypatch.setenv(KEY_ENV, KEY)
    with fake_microsoft(tmp_path / "ms-pki") as ms:
        monkeypatch.setenv("CME_TEST_MS_SECRET", ms.client_secret)
        yield ms


def confirmed_by(engine: Engine, case_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(t.cases.c.confirmed_by).where(t.cases.c.id == case_id)).scalar_one()


def test_imap_with_xoauth2_over_starttls(engine: Engine, store_url: str, tmp_path: Path,
                                         dovecot: DovecotMailbox, microsoft: FakeMicrosoft,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    microsoft.access_token = dovecot.password
    both = tmp_path / "cas.pem"  # one bundle trusting the test Dovecot and the sign-in stand-in
    both.write_bytes(dovecot.ca_file.read_bytes() + microsoft.ca_file.read_bytes())  # type: ignore[union-attr]
    config = write_config(tmp_path, store_url, COMMON.format(mailbox="imap", key_env=KEY_ENV, ms=microsoft,
                                                             ca_file=both) + f"""
[replies.imap]
host = "{dovecot.host}"
port = {dovecot.server.port}
security = "starttls"
username = "{dovecot.user}"
auth = "xoauth2-microsoft"
""")
    now = datetime.now(UTC)
    case_id = make_case(engine, REF, now)
    dovecot.deliver(dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, now), REF))

    result = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert result.exit_code == 0, result.output
    assert "1 accepted" in result.output and confirmed_by(engine, case_id) == DSL
    assert microsoft.scopes == [OUTLOOK_SCOPE]
    [(flags, _)] = dovecot.messages("INBOX")  # no processed folder configured: left in place, read
    assert "\\Seen" in flags

    monkeypatch.setenv("CME_TEST_MS_SECRET", "an-old-secret")
    refused = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert refused.exit_code == 1 and "invalid_client" in refused.output
    assert "an-old-secret" not in refused.output


def test_graph_mailbox(engine: Engine, store_url: str, tmp_path: Path, microsoft: FakeMicrosoft) -> None:
    config = write_config(tmp_path, store_url, COMMON.format(mailbox="graph", key_env=KEY_ENV, ms=microsoft,
                                                             ca_file=microsoft.ca_file) + f"""
[replies.graph]
mailbox = "{microsoft.mailbox}"
processed_folder = "CME processed"
base_url = "{microsoft.base}/v1.0"
""")
    now = datetime.now(UTC)
    case_id = make_case(engine, REF, now)
    toks = make_tokens()
    microsoft.deliver(dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DSL, now), REF))
    microsoft.deliver(dsl_reply(f"CLOSE {REF} moved", issue(engine, toks, case_id, DSL, now), REF,
                                sender="someone@else.example"))

    result = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert result.exit_code == 0, result.output
    assert "2 new, 0 seen before; 1 accepted, 1 kept for review" in result.output
    assert confirmed_by(engine, case_id) == DSL
    assert microsoft.scopes == [GRAPH_SCOPE]
    assert microsoft.in_folder("Inbox") == []
    moved = microsoft.in_folder("CME processed")
    assert len(moved) == 2 and all(m.is_read for m in moved)
    with engine.connect() as conn:
        raws = conn.execute(select(t.replies.c.raw).order_by(t.replies.c.id)).scalars().all()
    assert raws == [m.raw for m in microsoft.messages.values()]

    again = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert again.exit_code == 0 and "0 new, 0 seen before" in again.output

    microsoft.graph_accepts = "a-token-for-another-app"  # e.g. the app lost its Mail.ReadWrite consent
    microsoft.deliver(dsl_reply(f"CONFIRM {REF}", issue(engine, toks, case_id, DSL, now), REF))
    refused = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert refused.exit_code == 1 and "Graph refused access" in refused.output
    assert len(microsoft.in_folder("Inbox")) == 1


# What Exchange Online adds on delivery: no authserv-id (see cme_batch.replies.authres).
M365_PASS = ("spf=pass (sender IP is 203.0.113.9) smtp.mailfrom=school.example; dkim=pass (signature was verified) "
             "header.d=school.example;dmarc=pass action=none header.from=school.example;compauth=pass reason=100")
M365_FAIL = ("spf=fail (sender IP is 198.51.100.7) smtp.mailfrom=school.example; dkim=none (message not signed) "
             "header.d=none;dmarc=fail action=none header.from=school.example;compauth=fail reason=000")


def test_microsoft_365s_verdict_accepts_the_genuine_reply_and_holds_back_the_spoof(
        engine: Engine, store_url: str, tmp_path: Path, microsoft: FakeMicrosoft) -> None:
    replies = COMMON.format(mailbox="graph", key_env=KEY_ENV, ms=microsoft, ca_file=microsoft.ca_file).replace(
        "[replies.microsoft]", "require_authentication_results = true\nmicrosoft365_authentication_results = true\n"
                               "\n[replies.microsoft]")
    config = write_config(tmp_path, store_url, replies + f"""
[replies.graph]
mailbox = "{microsoft.mailbox}"
base_url = "{microsoft.base}/v1.0"
""")
    now = datetime.now(UTC)
    genuine_id, spoofed_id = make_case(engine, REF, now), make_case(engine, "CME-2025-0022", now)
    toks = make_tokens()
    microsoft.deliver(dsl_reply(f"CONFIRM {REF}", issue(engine, toks, genuine_id, DSL, now), REF,
                                auth_results=[M365_PASS]))
    # a forged From: Exchange Online saw DMARC fail; the header the sender wrote below it says pass
    microsoft.deliver(dsl_reply("CONFIRM CME-2025-0022", issue(engine, toks, spoofed_id, DSL, now), "CME-2025-0022",
                                auth_results=[M365_FAIL, "dkim=pass header.d=school.example; dmarc=pass "
                                                         "header.from=school.example"]))

    result = CliRunner().invoke(cli, ["--config", str(config), "replies"])
    assert result.exit_code == 0, result.output
    assert "1 accepted, 1 kept for review" in result.output and "DMARC fail" in result.output
    assert confirmed_by(engine, genuine_id) == DSL and confirmed_by(engine, spoofed_id) is None
