"""Migrations: from an empty database to the head on SQLite and PostgreSQL, matching the tables in code."""

from __future__ import annotations

import stat
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cme_batch.store import current_revisions, head_revisions, migrate, open_store
from cme_batch.store.tables import metadata


def test_migrations_from_empty_match_the_code(store_url: str) -> None:
    engine = open_store(store_url)
    assert current_revisions(engine) == []
    applied = migrate(engine)
    assert applied == head_revisions()
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], f"tables.py and the migrations disagree: {diff}"
    assert migrate(engine) == []  # a second run is harmless
    engine.dispose()


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "state" / "cme.sqlite"
    engine = open_store(f"sqlite:///{db}")
    migrate(engine)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    for side in db.parent.glob("cme.sqlite-*"):
        assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side
    engine.dispose()
