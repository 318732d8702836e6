"""``check-config`` reads every secret the configuration names, so a missing one is found at
set-up, not by the first night that needs it (a referral held, a reply never read)."""

from __future__ import annotations

import os
from pathlib import Path

from click.testing import CliRunner

from cme_batch.cli import cli
from tests.conftest import write_config

REPLIES = """
[replies]
mailbox = "imap"
token_keys = [{{ id = "k1", secret = {key} }}]

[replies.imap]
host = "127.0.0.1"
username = "dsl-replies"
password = {password}
"""


def check(config: Path, **env: str) -> tuple[int, str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY", "CME_TEST_IMAP")}
    result = CliRunner().invoke(cli, ["--config", str(config), "check-config"], env={**environ, **env})
    return result.exit_code, result.output


def test_an_unset_variable_a_missing_file_and_an_empty_secret_are_each_named(tmp_path: Path) -> None:
    key = tmp_path / "reply-key"
    key.write_text("")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}", REPLIES.format(
        key=f'{{ file = "{key}" }}', password='{ env = "CME_TEST_IMAP" }'))
    code, out = check(config)
    assert code == 2
    assert "replies.imap.password: environment variable CME_TEST_IMAP is not set" in out
    assert "the secret is empty" in out
    key.write_text("a-long-random-reply-token-key\n")
    code, out = check(config, CME_TEST_IMAP="imap-password-of-the-mailbox")
    assert code == 0 and "configuration valid" in out, out
    assert "imap-password-of-the-mailbox" not in out and "a-long-random" not in out
    key.unlink()
    code, out = check(config, CME_TEST_IMAP="imap-password-of-the-mailbox")
    assert code == 2 and "cannot read secret file" in out


def test_a_systemd_credential_is_read_under_the_service_and_named_as_unchecked_outside_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}", REPLIES.format(
        key='{ credential = "cme-batch_reply-key-k1" }', password='{ credential = "cme-batch_imap-password" }'))
    code, out = check(config)
    assert code == 0 and "not checked: replies.imap.password: systemd credential" in out, out
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "cme-batch_reply-key-k1").write_text("a-long-random-reply-token-key\n")
    code, out = check(config, CREDENTIALS_DIRECTORY=str(creds))
    assert code == 2 and "replies.imap.password" in out and "not checked" not in out, out
    (creds / "cme-batch_imap-password").write_text("imap-password-of-the-mailbox\n")
    code, out = check(config, CREDENTIALS_DIRECTORY=str(creds))
    assert code == 0, out


def test_a_reply_token_key_too_short_to_sign_with_is_a_problem(tmp_path: Path) -> None:
    """The summary stage refuses a key of under 16 bytes; check-config said "configuration valid"."""
    key = tmp_path / "reply-key"
    key.write_text("tiny-k3y\n")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                          f'[replies]\ntoken_keys = [{{ id = "k1", secret = {{ file = "{key}" }} }}]\n')
    code, out = check(config)
    assert code == 2 and "replies.token_keys: key 'k1' is shorter than 16 bytes" in out, out
    assert "tiny-k3y" not in out
    key.write_text("a-long-random-reply-token-key\n")
    code, out = check(config)
    assert code == 0 and "configuration valid" in out, out


def test_a_secret_of_a_section_not_in_use_is_named_not_required(tmp_path: Path) -> None:
    """[mail.microsoft] kept for later under transport = "maildrop": the night never reads its secret."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}", """
[mail.microsoft]
tenant_id = "school.example"
client_id = "00000000-0000-0000-0000-000000000000"
client_secret = { env = "CME_TEST_UNUSED_SECRET" }
""")
    code, out = check(config)
    assert code == 0, out
    assert "not checked: mail.microsoft.client_secret: not used by this configuration" in out
