"""What the technician sees when something around the command is wrong: the configuration file,
the database, a date, a folder, a lock. One line naming the file and what to do, the exit code of
the contract (2: fix it; 1: try again later; 0: another run is doing it), never a traceback."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cme_batch.cli import cli
from tests.conftest import write_config

EXE = Path(sys.executable).with_name("cme-batch")


def run(*args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ("CME_BATCH_CONFIG",)
        ) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=120,
                          env={**environ, **(env or {})})


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A configuration and its database, made by ``init``."""
    db = tmp_path / "state" / "cme.sqlite"
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    assert run("--config", str(cfg), "init").returncode == 0
    yield cfg, db


def test_a_configuration_file_that_cannot_be_had_is_one_line_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    line = one_error_line(done := run("--config", str(missing), "status"))
    assert done.returncode == 2 and str(missing) in line and "No such file" in line and "--config" in line

    folder = tmp_path / "etc"
    folder.mkdir()
    for result in (run("--config", str(folder), "status"), run("status", env={"CME_BATCH_CONFIG": str(folder)})):
        line = one_error_line(result)
        assert result.returncode == 2 and str(folder) in line and "Is a directory" in line
    assert "(from CME_BATCH_CONFIG)" in line  # the file came from the variable: say so

    broken = tmp_path / "broken.toml"
    broken.write_text("[school\nname = 1\n")
    line = one_error_line(done := run("--config", str(broken), "check-config"))
    assert done.returncode == 2 and str(broken) in line and "not valid TOML" in line and "line 1" in line

    latin = tmp_path / "latin.toml"
    latin.write_bytes('[school]\nname = "Caf\xe9"\n'.encode("latin-1"))
    line = one_error_line(done := run("--config", str(latin), "check-config"))
    assert done.returncode == 2 and str(latin) in line and "UTF-8" in line

    line = one_error_line(done := run("status"))
    assert done.returncode == 2 and line == "error: no configuration given: use --config FILE or set CME_BATCH_CONFIG"


def test_a_file_the_configuration_names_that_cannot_be_looked_at_is_bad_input_not_a_bug(tmp_path: Path) -> None:
    """The system refuses to look at a path the file names (here a name too long for the file
    system; as often, a folder the user running the command may not enter)."""
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                       f'\n[referral]\nmethod = "smime"\nla_certificate = "{tmp_path / ("x" * 300)}"\n')
    line = one_error_line(done := run("--config", str(cfg), "status"))
    assert done.returncode == 2 and str(cfg) in line and "File name too long" in line


def test_a_database_that_is_a_folder_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    folder = tmp_path / "db.sqlite"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    cfg = write_config(tmp_path, f"sqlite:///{folder}")
    for command in ("status", "init", "cases"):
        line = one_error_line(done := run("--config", str(cfg), command))
        assert done.returncode == 2 and f"{folder} is a folder" in line and "database.url" in line
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # was made 0600, unusable by anyone else


def test_a_file_that_is_not_a_database_says_so(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    db.write_text("a note someone saved over the database\n")
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    for command in ("status", "init"):
        line = one_error_line(done := run("--config", str(cfg), command))
        assert done.returncode == 2 and str(db) in line and "not a SQLite database" in line and "backup" in line
    assert db.read_text() == "a note someone saved over the database\n"


def test_an_unreachable_database_server_exits_1_without_its_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    cfg = write_config(tmp_path, "postgresql+psycopg://cme:s3cret-pw@127.0.0.1:1/cme")
    line = one_error_line(done := run("--config", str(cfg), "status"))
    assert done.returncode == 1 and "cannot use the database" in line and "127.0.0.1" in line
    assert "s3cret-pw" not in done.stderr


def test_a_database_locked_by_another_process_exits_1_saying_to_try_again(
        store: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from cme_batch import store as store_mod

    pragmas = store_mod._sqlite_pragmas

    def wait_briefly(dbapi_conn: Any, record: Any) -> None:  # the 30 s a command waits, made 0.2 s
        pragmas(dbapi_conn, record)
        dbapi_conn.execute("PRAGMA busy_timeout=200")

    monkeypatch.setattr(store_mod, "_sqlite_pragmas", wait_briefly)
    cfg, db = store
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = CliRunner().invoke(cli, ["--config", str(cfg), "detect", "--as-of", "2025-12-01"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1, result.output
    assert "stayed locked by another process" in result.output and "run it again" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


@pytest.mark.parametrize("value, says", [("9999-12-31", "outside the dates"), ("0001-01-01", "outside the dates"),
                                         ("2025-13-01", "YYYY-MM-DD"), ("19/12/2025", "YYYY-MM-DD")])
def test_a_bad_as_of_date_exits_2_naming_the_option(store: tuple[Path, Path], value: str, says: str) -> None:
    cfg, _ = store
    done = run("--config", str(cfg), "streaks", "--as-of", value, "--format", "json")
    assert done.returncode == 2 and "--as-of" in done.stderr and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_as_of_yesterday_is_the_default_said_aloud(store: tuple[Path, Path]) -> None:
    """DESIGN.md's night runs ``nightly --as-of yesterday``."""
    cfg, _ = store
    said = run("--config", str(cfg), "streaks", "--as-of", "yesterday")
    default = run("--config", str(cfg), "streaks")
    assert said.returncode == 0, said.stderr
    assert said.stdout == default.stdout and said.stdout.startswith("Streaks as of ")


def test_a_preview_folder_that_exists_is_refused_and_left_alone(store: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = store
    existing = tmp_path / "keep"
    existing.mkdir()
    (existing / "mine.txt").write_text("x")
    line = one_error_line(done := run("--config", str(cfg), "summary", "--as-of", "2025-12-01",
                                      "--preview", str(existing)))
    assert done.returncode == 2 and f"--preview {existing} already exists" in line
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]


def test_a_send_while_another_holds_the_lock_is_not_an_error(store: tuple[Path, Path]) -> None:
    import fcntl

    cfg, db = store
    lock = db.parent / f"{db.stem}.send.lock"  # (named after the store)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        done = run("--config", str(cfg), "send")
    finally:
        os.close(fd)
    assert done.returncode == 0
    assert done.stderr.strip() == f"another cme-batch run holds the send lock ({lock}); nothing done"


def test_the_outbox_table_keeps_its_columns_aligned(store: tuple[Path, Path]) -> None:
    from datetime import UTC, datetime

    from cme_batch.mail import outbox
    from cme_batch.store import open_store

    cfg, db = store
    engine = open_store(f"sqlite:///{db}", create=False)
    with engine.begin() as conn:
        for key, purpose in (("a", "summary"), ("b", "office_action"), ("c", "referral")):
            outbox.enqueue(conn, idempotency_key=key, purpose=purpose, recipients=["office@school.example"],
                           subject="s", message=b"Subject: s\r\n\r\nbody\r\n", from_address="cme@school.example",
                           now=datetime(2025, 12, 1, 6, 0, tzinfo=UTC))
    engine.dispose()
    done = run("--config", str(cfg), "outbox")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()[1:]
    assert len(rows) == 3
    for heading in ("tries", "queued", "sent / next try"):
        start = header.index(heading)
        end = start + len(heading)
        for row in rows:  # every row's cell sits under its heading
            assert row[start - 1] == " " and (heading == "tries" or row[start] != " "), (heading, header, row)
            assert heading != "tries" or (row[end - 1] == "0" and row[end] == " "), (header, row)


def test_the_list_of_commands_gives_each_ones_first_sentence_whole() -> None:
    import re

    from cme_batch.cli import first_sentence

    listing = " ".join(CliRunner().invoke(cli, ["--help"]).output.split())
    for name, command in cli.all_commands.items():  # type: ignore[attr-defined]
        sentence = first_sentence(command.help or "")
        assert sentence.endswith(".") and not sentence.endswith("e.g."), (name, sentence)
        assert re.search(re.escape(f"{name} {sentence}"), listing), (name, sentence)


def test_help_shows_the_date_format_not_a_strftime_pattern() -> None:
    out = CliRunner().invoke(cli, ["streaks", "--help"]).output
    assert "--as-of YYYY-MM-DD" in out and "%Y" not in out
