"""One run at a time: a file lock beside a SQLite store, an advisory lock in PostgreSQL.

A run that cannot take the lock raises ``LockHeld`` at once (no waiting): the systemd timer
will start the next run tomorrow, and a person who runs a command by hand is told why
nothing happened.

The file lock is ``flock(2)`` on the lock file, as the ``filelock`` package takes it on Linux,
called directly: importing that package cost every run some 15 ms. The kernel releases the lock
when the process ends, however it ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from cme_batch.errors import LockHeld
from cme_batch.store import sqlite_path

#: The PostgreSQL advisory lock key: a stable number derived from the name, per database.
PG_LOCK_KEY = zlib.crc32(b"cme-batch run lock")


@contextmanager
def run_lock(engine: Engine, state_dir: Path, name: str = "run") -> Iterator[None]:
    """Hold the run lock for the body; raise LockHeld if another process has it."""
    if engine.dialect.name == "postgresql":
        key = PG_LOCK_KEY + zlib.crc32(name.encode()) % 1000
        conn = engine.connect()
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if not got:
                raise LockHeld(f"another cme-batch run holds the {name} lock (PostgreSQL advisory lock {key})")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        finally:
            conn.close()
        return
    db = sqlite_path(str(engine.url))
    lock_dir = db.parent if db is not None else state_dir
    lock_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock_file = lock_dir / f"cme-batch.{name}.lock"
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(f"another cme-batch run holds the {name} lock ({lock_file})") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
