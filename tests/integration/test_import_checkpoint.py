"""After an import, a SQLite store's write-ahead log is copied into the database file at once.

The import's commits run no checkpoint (``cme_batch/store/checkpoint.py``: for a local
authority's day that saved the storing process a checkpoint at each of its ten commits); the
whole log is copied once the import is done, on a thread. Without that thread, a small import
(under SQLite's 1,000 pages) stayed in the ``-wal`` file until some later commit or the last
connection's close: a copy of the database file alone, taken by a backup that leaves the
``-wal`` file out, missed the night's import.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from cme_batch.app import App
from cme_batch.importer import import_files
from cme_batch.store import checkpoint
from tests.cli.test_import_cli import FIX


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """The write-ahead log is SQLite's: PostgreSQL has nothing to show."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def file_alone(tmp_path: Path) -> sqlite3.Connection:
    """The database file copied without its ``-wal`` file, as a backup of the file alone would be."""
    shutil.copy(tmp_path / "store.sqlite", tmp_path / "copy.sqlite")
    return sqlite3.connect(tmp_path / "copy.sqlite")


def test_the_imports_log_is_in_the_database_file_once_the_import_is_done(app: App, tmp_path: Path) -> None:
    results = list(import_files(app, [FIX / "ctf-25.xml", FIX / "ctf-leaver.xml"], "ctf"))
    assert [r.status for r in results] == ["ok", "ok"]
    checkpoint.wait()
    with file_alone(tmp_path) as con:
        assert con.execute("SELECT origin, status FROM ingest_runs ORDER BY id").fetchall() == [
            ("ctf-25.xml", "ok"), ("ctf-leaver.xml", "ok")]
        assert con.execute("SELECT count(*) FROM pupils").fetchone()[0] > 0
    # the store's own connections checkpoint as before once the import is done
    with app.engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000


def test_a_refused_import_changes_nothing_and_still_leaves_the_log_copied(app: App, tmp_path: Path) -> None:
    from cme_batch.errors import BadInputError

    with pytest.raises(BadInputError):
        list(import_files(app, [FIX / "ctf-25.xml", FIX / "ctf-bad-records.xml"], "ctf"))
    checkpoint.wait()
    with file_alone(tmp_path) as con:
        assert con.execute("SELECT origin, status FROM ingest_runs ORDER BY id").fetchall() == [
            ("ctf-25.xml", "ok"), ("ctf-bad-records.xml", "rejected")]


def test_imports_in_threads_of_one_process_start_and_wait_for_checkpoints_safely(tmp_path: Path) -> None:
    """Two imports at once in one process (a test does it; so could an embedding program): the
    list of running checkpoints was shared unguarded, and one thread joined another's thread
    before it had started ("cannot join thread before it is started"), failing its import."""
    import threading

    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'threads.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    errors: list[BaseException] = []

    def imports() -> None:
        try:
            for _ in range(50):
                checkpoint.in_background(engine)
                checkpoint.wait()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=imports) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    engine.dispose()
    assert errors == []
