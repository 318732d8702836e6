"""``database.password``: PostgreSQL's password as a secret reference, never in the URL or the file.

The service's sandbox has no home directory (no ``~/.pgpass``), and the configuration file holds
no secrets: the password comes from a systemd credential (or a file, or a variable) and goes to
the server without ever being part of the URL text that is printed or logged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cme_batch.cli import cli
from cme_batch.store import open_store
from tests.conftest import BASE_CONFIG

ROLE, PASSWORD = "cme_pw", "a-long-database-password-42"


@pytest.fixture
def password_role(_postgres: str) -> Iterator[str]:
    """A role of the test server that must give its password (scram-sha-256); the URL for it."""
    admin = open_store(_postgres)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        hba = Path(conn.execute(text("SHOW hba_file")).scalar_one())
        conn.execute(text(f"DROP DATABASE IF EXISTS {ROLE}"))
        conn.execute(text(f"DROP ROLE IF EXISTS {ROLE}"))
        conn.execute(text(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'"))
        conn.execute(text(f"CREATE DATABASE {ROLE} OWNER {ROLE}"))
        original = hba.read_text()
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + original)
        conn.execute(text("SELECT pg_reload_conf()"))
    url = _postgres.replace("//cme@", f"//{ROLE}@").rsplit("/", 1)[0] + f"/{ROLE}"
    _until_a_password_is_asked(url)  # the server reloads its rules a moment after being told to
    try:
        yield url
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            hba.write_text(original)
            conn.execute(text("SELECT pg_reload_conf()"))
        admin.dispose()


def _until_a_password_is_asked(url: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        probe = open_store(url)
        try:
            with probe.connect():
                pass
        except OperationalError as exc:
            if "password" in str(exc).lower():
                return
            raise
        finally:
            probe.dispose()
        assert time.monotonic() < deadline, "the server did not start asking for the password"
        time.sleep(0.05)


def _config(tmp_path: Path, url: str, password: str | None) -> Path:
    text_ = BASE_CONFIG.format(url=url)
    if password is not None:
        text_ = text_.replace("[database]\n", f'[database]\npassword = {{ file = "{tmp_path / "db-password"}" }}\n')
        (tmp_path / "db-password").write_text(password + "\n")
    path = tmp_path / "cme-batch.toml"
    path.write_text(text_)
    return path


@pytest.mark.server
def test_the_password_from_a_secret_opens_the_database_and_is_never_printed(
        password_role: str, tmp_path: Path) -> None:
    refused = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, password_role, None)), "init"])
    assert refused.exit_code != 0 and "password" in refused.output.lower()  # the server asks for one
    wrong = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, password_role, "not-the-password")), "init"])
    assert wrong.exit_code != 0 and "not-the-password" not in wrong.output
    config = _config(tmp_path, password_role, PASSWORD)
    done = CliRunner().invoke(cli, ["--config", str(config), "init"])
    assert done.exit_code == 0, done.output
    checked = CliRunner().invoke(cli, ["--config", str(config), "check-config"])
    assert checked.exit_code == 0 and PASSWORD not in checked.output, checked.output
    assert PASSWORD not in done.output


@pytest.mark.parametrize("url, says", [
    ("sqlite:///{tmp}/s.sqlite", "is set for a SQLite database"),
    ("postgresql+psycopg://cme:inline@127.0.0.1:5432/cme", "is set, and database.url holds a password too"),
])
def test_a_password_where_it_cannot_be_used_is_a_configuration_problem(tmp_path: Path, url: str, says: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(_config(tmp_path, url.format(tmp=tmp_path), PASSWORD)),
                                      "check-config"])
    assert result.exit_code == 2 and f"database.password: {says}" in result.output, result.output
    assert PASSWORD not in result.output and "inline" not in result.output
