"""The [replies] section: a working setup loads; every mistake is reported with its key path."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cme_batch.replies_settings import RepliesConfig, parse_replies
from cme_batch.settings import Problems, Table

BASE = Path("/etc/cme-batch")

GOOD = """
mailbox = "imap"
token_keys = [{ id = "k2", secret = { env = "KEY2" } }, { id = "k1", secret = { file = "keys/k1" } }]
token_lifetime_days = 7
trusted_authserv_ids = ["MX.School.Example"]
require_authentication_results = true

[imap]
host = "outlook.office365.com"
username = "cme-bot@school.example"
auth = "xoauth2-microsoft"
processed_folder = "CME/processed"

[microsoft]
tenant_id = "t"
client_id = "c"
client_secret = { credential = "m365" }
"""


def parse(text: str) -> tuple[RepliesConfig, list[str]]:
    problems = Problems()
    data: dict[str, Any] = tomllib.loads(text)
    cfg = parse_replies(Table(data, "replies", problems), BASE)
    return cfg, problems.items


def test_a_microsoft_365_imap_setup_loads() -> None:
    cfg, problems = parse(GOOD)
    assert problems == []
    assert cfg.imap is not None and (cfg.imap.port, cfg.imap.security, cfg.imap.folder) == (993, "tls", "INBOX")
    assert [k.id for k in cfg.token_keys] == ["k2", "k1"]
    assert cfg.token_keys[1].secret.ref == "keys/k1"
    assert cfg.trusted_authserv_ids == ("mx.school.example",)
    assert cfg.microsoft is not None and cfg.microsoft.authority_url == "https://login.microsoftonline.com"


def test_nothing_is_needed_when_replies_are_not_read() -> None:
    cfg, problems = parse("")
    assert problems == [] and cfg.mailbox == "none"


def test_every_problem_is_reported_with_its_key() -> None:
    _, problems = parse("""
mailbox = "imap"
token_keys = [{ id = "k.1", secret = "literal-secret" }, { id = "k2", secret = { env = "A" } },
              { id = "k2", secret = { env = "B" } }]
require_authentication_results = true
token_lifetime_days = 365
colour = "blue"

[imap]
host = "mail.school.example"
security = "plain"
auth = "password"
""")
    text = "\n".join(problems)
    for key in ("replies.token_keys[0].id", "replies.token_keys[0].secret", "replies.token_keys[2].id",
                "replies.trusted_authserv_ids", "replies.token_lifetime_days", "replies.colour",
                "replies.imap.username", "replies.imap.password", "replies.imap.security"):
        assert key + ":" in text, key
    assert "literal-secret" not in text


def test_plaintext_imap_only_to_loopback_and_only_when_allowed() -> None:
    base = 'mailbox = "imap"\ntoken_keys = [{ id = "k1", secret = { env = "K" } }]\n[imap]\nusername = "u"\n' \
           'password = { env = "P" }\nsecurity = "plain"\n'
    assert parse(base + 'host = "127.0.0.1"\nallow_plaintext = true\n')[1] == []
    assert parse(base + 'host = "127.0.0.1"\n')[1]
    assert parse(base + 'host = "mail.school.example"\nallow_plaintext = true\n')[1]


def test_a_mailbox_needs_its_table_keys_and_the_microsoft_app() -> None:
    _, problems = parse('mailbox = "graph"\n')
    text = "\n".join(problems)
    assert "replies.graph:" in text and "replies.microsoft.client_secret:" in text and "replies.token_keys:" in text
    _, problems = parse('mailbox = "maildir"\ntoken_keys = [{ id = "k1", secret = { env = "K" } }]\n')
    assert any(p.startswith("replies.maildir.path:") for p in problems)
    cfg, problems = parse('mailbox = "maildir"\ntoken_keys = [{ id = "k1", secret = { env = "K" } }]\n'
                          '[maildir]\npath = "replies"\n')
    assert problems == [] and cfg.maildir == BASE / "replies"


def test_microsoft_365s_authentication_results_are_trusted_only_by_the_setting() -> None:
    base = 'require_authentication_results = true\n'
    cfg, problems = parse(base + "microsoft365_authentication_results = true\n")
    assert problems == [] and cfg.microsoft365_authentication_results and cfg.trusted_authserv_ids == ()
    assert not parse("")[0].microsoft365_authentication_results
    _, problems = parse(base)
    assert any(p.startswith("replies.trusted_authserv_ids:") and "microsoft365_authentication_results" in p
               for p in problems)
    # names Microsoft never writes as an authserv-id: only a header someone else wrote could carry them
    _, problems = parse(base + 'trusted_authserv_ids = ["outlook.office365.com", "mx.microsoft.com", '
                               '"mx.school.example"]\n')
    assert [p.split(":")[0] for p in problems] == ["replies.trusted_authserv_ids[0]", "replies.trusted_authserv_ids[1]"]
