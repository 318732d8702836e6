"""The cases where a command used to say nothing, or too little, or touch what it only reads.

- another run holds a stage's lock: ``--format json`` still prints one JSON document on
  standard output (a script parsing it got an empty string), and the exit code stays 0;
- ``ingest`` with no configured source says so in one line, and where sources are configured;
- ``status`` on a database file that is empty or is not a database leaves the file as it was
  (its bytes and its mode) and says, in one line naming the file, what is wrong.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine

from cme_batch.cli import cli
from cme_batch.runlock import run_lock
from tests.conftest import write_config

EXE = Path(sys.executable).with_name("cme-batch")
SOURCE = '\n[sources.mis]\nadapter = "sims-xml"\ndrop_dir = "drop"\n'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    environ = {k: v for k, v in os.environ.items() if k != "CME_BATCH_CONFIG"}
    return subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=120, env=environ)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A configuration (with no source) and its database, made by ``init``."""
    db = tmp_path / "state" / "cme.sqlite"
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    assert run("--config", str(cfg), "init").returncode == 0
    yield cfg, db


# -- 1. a stage's lock held by another process ---------------------------------------------------

def test_send_json_while_another_send_holds_the_lock_prints_one_json_document(store: tuple[Path, Path]) -> None:
    cfg, db = store
    lock = db.parent / f"{db.stem}.send.lock"  # (named after the store)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        as_json = run("--config", str(cfg), "send", "--format", "json")
        as_text = run("--config", str(cfg), "send")
    finally:
        os.close(fd)
    note = f"another cme-batch run holds the send lock ({lock}); nothing done"
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"lock_held": True, "command": "send", "message": note}
    assert as_json.stderr.strip() == note  # a person reading the terminal is told too
    assert as_text.returncode == 0 and as_text.stdout == "" and as_text.stderr.strip() == note  # as before
    free = run("--config", str(cfg), "send", "--format", "json")
    assert free.returncode == 0 and "lock_held" not in json.loads(free.stdout)


@pytest.mark.parametrize("lock, args", [
    ("detect", ["detect", "--as-of", "2025-12-01"]),
    ("import", ["ingest"]),
])
def test_json_of_a_stage_whose_lock_another_process_holds_is_one_document(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lock: str, args: list[str]) -> None:
    """``detect`` and ``ingest`` say they are waiting for their lock, wait (15 minutes, made 0.2 s
    here), then say they gave up."""
    monkeypatch.setattr("cme_batch.runlock.STAGE_WAIT_SECONDS", 0.2)
    db = tmp_path / "state" / "cme.sqlite"
    cfg = write_config(tmp_path, f"sqlite:///{db}", SOURCE)
    (tmp_path / "drop").mkdir()
    assert CliRunner().invoke(cli, ["--config", str(cfg), "init"]).exit_code == 0
    engine = create_engine(f"sqlite:///{db}")
    with run_lock(engine, tmp_path / "state", lock):  # flock: a second open of the file is refused, as another process's
        result = CliRunner().invoke(cli, ["--config", str(cfg), *args, "--format", "json"])
    engine.dispose()
    note = f"another cme-batch run holds the {lock} lock ({db.parent / f'{db.stem}.{lock}.lock'}); nothing done"
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"lock_held": True, "command": args[0], "message": note}
    waiting, *_, last = result.stderr.strip().splitlines()
    # said at once, not after the wait: a person at the terminal knows why nothing happens yet
    assert "waiting for another cme-batch run to finish" in waiting and lock in waiting
    assert last == note


# -- 2. ingest with no source configured ---------------------------------------------------------

def test_ingest_with_no_source_configured_says_so_and_where_to_configure_one(store: tuple[Path, Path]) -> None:
    cfg, _ = store
    text = run("--config", str(cfg), "ingest")
    assert text.returncode == 0, text.stderr
    (line,) = text.stdout.splitlines()
    assert "no sources configured" in line and str(cfg) in line and "[sources.<name>]" in line
    assert "cme-batch import" in line  # the other way in, for a school that imports files by hand

    as_json = run("--config", str(cfg), "ingest", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {"sources": [], "message": line}


def test_ingest_json_lists_each_sources_outcome(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                       '\n[sources.mis]\nadapter = "no-such-adapter"\n')
    assert run("--config", str(cfg), "init").returncode == 0
    done = run("--config", str(cfg), "ingest", "--format", "json")
    assert done.returncode == 1
    (outcome,) = json.loads(done.stdout)["sources"]
    assert outcome["source"] == "mis" and outcome["status"] == "failed" and "no source adapter" in outcome["detail"]


# -- 3. status on a database file that is empty or is not a database -----------------------------

@pytest.mark.parametrize("content, says", [
    (b"", "is empty (0 bytes)"),
    (b"a note someone saved over the database\n", "is not a SQLite database"),
    (b"SQLite format 2\x00" + bytes(200), "is not a SQLite database"),
])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_status_leaves_a_database_file_that_is_empty_or_not_a_database_as_it_was(
        tmp_path: Path, content: bytes, says: str, fmt: str) -> None:
    db = tmp_path / "db.sqlite"
    db.write_bytes(content)
    os.chmod(db, 0o644)
    before = db.stat()
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    done = run("--config", str(cfg), "status", "--format", fmt)
    assert db.read_bytes() == content  # an empty file was grown to 4 KB
    assert stat.S_IMODE(db.stat().st_mode) == 0o644  # and made 0600
    assert db.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cme-batch.toml", "db.sqlite"]  # no -wal, -shm
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: the database file {db} {says}") and "Traceback" not in done.stderr


@pytest.mark.parametrize("tables, says", [
    (["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)", "INSERT INTO notes (text) VALUES ('x')"],
     "is a SQLite database but not a cme-batch one"),
    (["PRAGMA user_version = 1"], "holds no tables: run 'cme-batch init'"),
])
def test_status_leaves_another_programs_sqlite_file_as_it_was(tmp_path: Path, tables: list[str], says: str) -> None:
    """database.url pointing at another program's SQLite file: ``status`` switched it to WAL (its
    header changed, -wal and -shm files appeared) and made it 0600 before failing on a missing table."""
    import sqlite3

    db = tmp_path / "db.sqlite"
    con = sqlite3.connect(db)
    for sql in tables:
        con.execute(sql)
    con.commit()
    con.close()
    os.chmod(db, 0o644)
    content, before = db.read_bytes(), db.stat()
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    done = run("--config", str(cfg), "status")
    assert db.read_bytes() == content and db.stat().st_mtime_ns == before.st_mtime_ns
    assert stat.S_IMODE(db.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cme-batch.toml", "db.sqlite"]
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: the database file {db} {says}"), line
