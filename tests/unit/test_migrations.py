"""Migrations: from an empty database to the head on SQLite and PostgreSQL, matching the tables in code."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from cme_batch import store
from cme_batch.errors import BadInputError
from cme_batch.store import current_revisions, head_revisions, migrate, open_store, require_current
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


def test_a_new_store_has_large_pages_and_an_older_store_keeps_its_own(tmp_path: Path) -> None:
    import sqlite3

    engine = open_store(f"sqlite:///{tmp_path / 'new.sqlite'}")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_size").scalar() == store.PAGE_SIZE == 16384
    engine.dispose()
    older = tmp_path / "older.sqlite"  # a store made with SQLite's default pages, as before
    raw = sqlite3.connect(older)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.close()
    engine = open_store(f"sqlite:///{older}")
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA page_size").scalar() == 4096
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert current_revisions(engine) == head_revisions()
    engine.dispose()


def test_heads_and_current_revisions_read_without_alembic_agree_with_alembic(store_url: str) -> None:
    """``require_current`` reads the scripts and the version table itself (start-up time): as Alembic would."""
    assert head_revisions() == store._alembic_heads()
    engine = open_store(store_url)
    migrate(engine)
    with engine.connect() as conn:
        assert current_revisions(engine) == sorted(MigrationContext.configure(conn).get_current_heads())
    require_current(engine)
    engine.dispose()


def test_a_store_behind_the_code_must_be_migrated(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'cme.sqlite'}")
    with pytest.raises(BadInputError, match="database is empty"):
        require_current(engine)
    cfg = store._alembic_config()
    with engine.begin() as conn:  # a store made by an older version: only the first migration
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with pytest.raises(BadInputError, match="schema is at 0001 but this version needs "
                                            "0002_engine, 0002_mail, 0003_reply_token_purpose: run 'cme-batch init' to migrate"):
        require_current(engine)
    assert migrate(engine) == ["0002_engine", "0002_mail", "0003_reply_token_purpose"]
    require_current(engine)
    engine.dispose()


def test_script_revisions_left_to_alembic_when_not_plain(tmp_path: Path) -> None:
    script = tmp_path / "0003_x.py"
    script.write_text('"""x"""\nrevision: str = "0003"\ndown_revision = ("0002_a", "0002_b")\n\n\ndef upgrade() -> None:\n'
                      '    pass\n')
    assert store._script_revisions(script) == ("0003", ("0002_a", "0002_b"))
    script.write_text('revision = "0003"\ndown_revision = "0002"\ndepends_on = "0001"\n')
    assert store._script_revisions(script) is None
    script.write_text('revision = make_id()\ndown_revision = None\n')
    assert store._script_revisions(script) is None

