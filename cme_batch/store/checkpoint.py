"""SQLite: the import's WAL written into the database file once, by a thread, instead of at each commit.

In WAL mode SQLite writes each transaction to the ``-wal`` file and copies the pages into the
database file at a *checkpoint*, which by default the committing connection runs whenever the
WAL holds more than 1,000 pages. A local authority's day is ten files of 10,000 pupils, each
stored in its own transaction of about 1,900 pages of strips: every commit ran a checkpoint
(about 0.015 s each, copying and syncing the pages), on the storing process, which sets the
import's pace.

During an import (``deferred``) the storing connection runs none; once the import is done,
``in_background`` copies the whole WAL into the file on a thread of its own, which runs while
``detect`` reads (a checkpoint waits for no reader: ``PASSIVE``), on the core the import's
reading process has left idle. Nothing about what is stored changes: a committed transaction
is in the WAL, safe and seen by every reader, whether or not it has been copied yet; a
checkpoint cut short (the process killed) is finished by the next one. A store on PostgreSQL
is left as it is.

The thread is waited for (``wait``) before the next import forks a reading process (a child
forked while another thread runs can inherit a lock held for ever) and when the store is closed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine

_running: list[threading.Thread] = []
_guard = threading.Lock()  # (imports may run in two threads of one process: tests do)


@contextmanager
def deferred(conn: Connection) -> Iterator[None]:
    """No checkpoint at the commits on this connection (SQLite) while the block runs."""
    raw = _sqlite(conn)
    if raw is None:
        yield
        return
    (pages,) = raw.execute("PRAGMA wal_autocheckpoint").fetchone()
    raw.execute("PRAGMA wal_autocheckpoint=0")
    try:
        yield
    finally:
        raw.execute(f"PRAGMA wal_autocheckpoint={int(pages)}")


def in_background(engine: Engine) -> None:
    """Copy the WAL into the database file on a thread (SQLite files only; one at a time)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    wait()
    thread = threading.Thread(target=_checkpoint, args=(database,), name="cme-batch checkpoint", daemon=True)
    thread.start()
    with _guard:
        _running.append(thread)


def wait() -> None:
    """Wait for the checkpoints started by ``in_background`` to end."""
    while True:
        with _guard:
            if not _running:
                return
            thread = _running.pop()
        thread.join()


def _checkpoint(database: str) -> None:
    try:
        con = sqlite3.connect(database, timeout=0)
        try:
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            con.close()
    except sqlite3.Error:
        pass  # left to the next commit's checkpoint, as without this thread


def _sqlite(conn: Connection) -> Any:
    if conn.dialect.name != "sqlite":
        return None
    return conn.connection.driver_connection
