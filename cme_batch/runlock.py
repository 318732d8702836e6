"""One run at a time: a file lock beside a SQLite store, an advisory lock in PostgreSQL.

A run that cannot take the lock raises ``LockHeld`` at once (no waiting): the systemd timer
will start the next run tomorrow, and a person who runs a command by hand is told why
nothing happened. A caller that must not give up (the night's own ``send`` stage, which would
otherwise leave the night's summary unsent until the next night because a person's ``send``
ran; a ``summary`` stage, whose second copy must see what the first queued) passes ``wait``:
the lock is tried again every ``POLL_SECONDS`` until it is free or ``wait`` seconds have gone.

Locks by name: ``run`` (any ``nightly``), ``pass`` (a daytime pass, ``nightly --only ...``, holds it
with ``run``: a whole night that finds ``run`` taken waits only for a pass, since refused it would
leave that morning without its summary), ``import`` (storing what sources give), ``detect``
(bringing the cases in line), ``summary`` (queueing the morning emails), ``send`` (draining the
outbox). Each name is its own lock.

The file lock is ``flock(2)`` on the lock file, as the ``filelock`` package takes it on Linux,
called directly: importing that package cost every run some 15 ms. The kernel releases the lock
when the process ends, however it ends, so a killed run never leaves a stale lock behind; the
PostgreSQL server releases an advisory lock when the session holding it ends, which a killed
process's closed connection does.
"""

from __future__ import annotations

import fcntl
import os
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from cme_batch.errors import LockHeld
from cme_batch.store import sqlite_path

#: The PostgreSQL advisory lock key: a stable number derived from the name, per database.
PG_LOCK_KEY = zlib.crc32(b"cme-batch run lock")
#: How often a waiting caller tries the lock again.
POLL_SECONDS = 0.05
#: How long a stage that must not give up waits for another process's copy of it (a person's
#: ``send`` retrying a slow server, a ``summary`` by hand) before it fails as held.
STAGE_WAIT_SECONDS = 900.0


def _retrying(take: Callable[[], bool], wait: float, name: str) -> bool:
    """Call ``take`` until it returns True or ``wait`` seconds have passed; its last answer.

    A caller that is going to wait says so once, on standard error (a log line): a person who
    runs ``detect`` by hand while the night's detect runs would otherwise see nothing for up to
    a quarter of an hour.
    """
    deadline = time.monotonic() + wait
    told = False
    while not take():
        if time.monotonic() >= deadline:
            return False
        if not told:
            told = True
            structlog.get_logger().info("waiting for another cme-batch run to finish", lock=name,
                                        up_to_seconds=round(deadline - time.monotonic()))
        time.sleep(POLL_SECONDS)
    return True


def _pg_unlock(conn: Connection, key: int, name: str) -> None:
    """Release an advisory lock; if its session has already ended, the lock ended with it.

    The connection holding the lock sits idle for the whole run, and the server or a firewall may
    end it (``idle_session_timeout``, an idle-connection cut, ``pg_terminate_backend``). The run's
    work, done on other connections, is committed: failing the run here would report a night
    that did everything as a database failure. It is logged, as a second run could have started
    once the lock was gone.
    """
    try:
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        conn.commit()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        structlog.get_logger().warning(
            "the database connection holding the lock was ended before the run finished; the lock "
            "ended with it", lock=name, error=str(exc.orig).splitlines()[0] if exc.orig else "")


@contextmanager
def run_lock(engine: Engine, state_dir: Path, name: str = "run", *, wait: float = 0.0) -> Iterator[None]:
    """Hold the lock ``name`` for the body; raise LockHeld if another process has it (after ``wait`` s)."""
    if engine.dialect.name == "postgresql":
        key = PG_LOCK_KEY + zlib.crc32(name.encode()) % 1000
        conn = engine.connect()
        try:
            def take() -> bool:
                got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
                conn.commit()
                return bool(got)

            if not _retrying(take, wait, name):
                raise LockHeld(f"another cme-batch run holds the {name} lock (PostgreSQL advisory lock {key})")
            try:
                yield
            finally:
                _pg_unlock(conn, key, name)
        finally:
            conn.close()
        return
    db = sqlite_path(str(engine.url))
    lock_dir = db.parent if db is not None else state_dir
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # named after the store's own file (cme-batch.sqlite: cme-batch.run.lock), so that two schools'
    # stores in one folder are not each other's lock: one school's night said "nothing done" while
    # the other's ran, and its office and DSL had no morning email
    lock_file = lock_dir / f"{db.stem if db is not None else 'cme-batch'}.{name}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)

    def take_file() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    if not _retrying(take_file, wait, name):
        os.close(fd)
        raise LockHeld(f"another cme-batch run holds the {name} lock ({lock_file})")
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_held(engine: Engine, state_dir: Path, name: str) -> bool:
    """Whether another process holds the lock ``name`` now (taken and let go at once if free)."""
    try:
        with run_lock(engine, state_dir, name):
            return False
    except LockHeld:
        return True
