"""The store: one database (a SQLite file by default, PostgreSQL by URL), migrated by Alembic.

``open_store(url)`` gives an ``Engine`` configured the way the rest of the code expects:
SQLite in WAL mode with foreign keys on, its file created with mode 0600 before anything
else can create it with a looser mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cme_batch.errors import BadInputError, FatalError

MIGRATIONS = Path(__file__).with_name("migrations")


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file (and its WAL side files later inherit the umask) with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    os.chmod(path, 0o600)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def open_store(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``. With ``create`` false a missing SQLite file is an error, not a new file."""
    try:
        path = sqlite_path(url)
    except Exception as exc:  # sqlalchemy's ArgumentError on a malformed URL
        raise BadInputError(f"database.url is not a valid database URL: {exc}") from exc
    if path is not None:
        if not path.exists() and not create:
            raise BadInputError(f"database file {path} does not exist: run 'cme-batch init' first")
        old = os.umask(0o077)
        try:
            _prepare_sqlite_file(path)
        finally:
            os.umask(old)
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError) as exc:
        raise BadInputError(f"cannot use database.url: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> list[str]:
    """Apply every pending migration; return the revisions applied (empty when up to date)."""
    cfg = _alembic_config()
    before = set(current_revisions(engine))
    old = os.umask(0o077)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")
    except SQLAlchemyError as exc:
        raise FatalError(f"database migration failed: {exc.__class__.__name__}: {exc}") from exc
    finally:
        os.umask(old)
    return sorted(set(current_revisions(engine)) - before)


def current_revisions(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def head_revisions() -> list[str]:
    return sorted(ScriptDirectory.from_config(_alembic_config()).get_heads())


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the code's head revisions."""
    have, want = current_revisions(engine), head_revisions()
    if have != want:
        if not have:
            raise BadInputError("the database is empty: run 'cme-batch init' first")
        raise BadInputError(
            f"the database schema is at {', '.join(have)} but this version needs {', '.join(want)}: "
            "run 'cme-batch init' to migrate"
        )
