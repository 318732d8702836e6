"""The ``[sources.arbor]`` table as a school's technician writes it, checked by ``check-config``:
each mistake is named by its key before the first night, and no password is ever echoed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cme_batch.cli import cli
from tests.conftest import write_config

GOOD = {"base_url": '"https://myschool.uk.arbor.sc"', "username": '"cme-app"',
        "password": '{ env = "CME_TEST_ARBOR_PASSWORD" }'}
PASSWORD = "arbor-app-password-123"


def check(tmp_path: Path, **changes: str | None) -> tuple[int, str]:
    """``check-config`` on a configuration whose Arbor table is GOOD with these keys changed (None: left out)."""
    table = {**GOOD, **changes}
    body = "\n".join(f"{k} = {v}" for k, v in table.items() if v is not None)
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                          f'\n[sources.arbor]\nadapter = "arbor"\n{body}\n')
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    env["CME_TEST_ARBOR_PASSWORD"] = PASSWORD
    result = CliRunner().invoke(cli, ["--config", str(config), "check-config"], env=env)
    assert PASSWORD not in result.output
    return result.exit_code, result.output


def test_a_good_table_is_valid(tmp_path: Path) -> None:
    code, out = check(tmp_path)
    assert code == 0 and "sources: arbor (arbor)" in out, out


@pytest.mark.parametrize(("changes", "words"), [
    ({"base_url": '"http://myschool.uk.arbor.sc"'}, ("sources.arbor.base_url", "an https:// address")),
    ({"base_url": '"https://myschool.uk.arbor.sc/rest-v2"'}, ("sources.arbor.base_url", "no path")),
    ({"base_url": '"myschool.uk.arbor.sc"'}, ("sources.arbor.base_url",)),
    ({"base_url": '"https://myschool.uk.arbor.sc:99999"'}, ("sources.arbor.base_url",)),
    ({"base_url": '"https://myschool.uk.arbor.sc/#login"'}, ("sources.arbor.base_url",)),
    ({"base_url": None}, ("sources.arbor.base_url: is missing",)),
    ({"username": None}, ("sources.arbor.username: is missing",)),
    ({"username": '""'}, ("sources.arbor.username: is empty",)),
    ({"username": '"  "'}, ("sources.arbor.username: is empty",)),
    ({"password": None}, ("sources.arbor.password: is missing",)),
    ({"password": f'"{PASSWORD}"'}, ("sources.arbor.password: holds a literal value",)),
    ({"page_size": "0"}, ("sources.arbor.page_size", "from 1 to 5000")),
    ({"page_size": "6000"}, ("sources.arbor.page_size",)),
    ({"page_size": '"500"'}, ("sources.arbor.page_size",)),
])
def test_each_mistake_is_named_by_its_key(tmp_path: Path, changes: dict[str, str | None],
                                          words: tuple[str, ...]) -> None:
    code, out = check(tmp_path, **changes)
    assert code == 2, out
    for w in words:
        assert w in out, out


def test_credentials_written_into_the_address_are_refused_and_not_echoed(tmp_path: Path) -> None:
    """``https://user:password@host`` would put the password in the file, in ``repr`` and in errors."""
    code, out = check(tmp_path, base_url=f'"https://cme-app:{PASSWORD}@myschool.uk.arbor.sc"')
    assert code == 2
    assert "sources.arbor.base_url: holds a user name or password before the host" in out, out


def test_the_password_secret_is_read_as_the_night_would(tmp_path: Path) -> None:
    """check-config read every secret but the Arbor password: an unset variable or a missing file
    was found only by the first night's ingest (401 or 'not set')."""
    code, out = check(tmp_path, password='{ env = "CME_TEST_ARBOR_UNSET" }')
    assert code == 2 and "sources.arbor.password: environment variable CME_TEST_ARBOR_UNSET is not set" in out, out
    secret = tmp_path / "arbor-password"
    code, out = check(tmp_path, password=f'{{ file = "{secret}" }}')
    assert code == 2 and "sources.arbor.password: cannot read secret file" in out, out
    secret.write_text("\n")
    code, out = check(tmp_path, password=f'{{ file = "{secret}" }}')
    assert code == 2 and "sources.arbor.password: the secret is empty" in out, out
    secret.write_text(PASSWORD + "\n")
    code, out = check(tmp_path, password=f'{{ file = "{secret}" }}')
    assert code == 0, out
    code, out = check(tmp_path, password='{ credential = "cme-batch_arbor-password" }')
    assert code == 0 and "not checked: sources.arbor.password: systemd credential" in out, out
