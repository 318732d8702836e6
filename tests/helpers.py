"""Small helpers shared by tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import Engine, select

from cme_batch.model import PupilRecord
from cme_batch.store import ingest, migrate, open_store
from cme_batch.store import tables as t

if TYPE_CHECKING:
    from cme_batch.app import App

#: Tables that hold pupil data and case state (not run bookkeeping).
DATA_TABLES = ("pupils", "pupil_keys", "enrolments", "contacts", "flags", "mark_strips", "mark_alphabet",
               "mark_changes", "cases", "case_events", "outbox", "referral_archive")


def snapshot(engine: Engine, tables: tuple[str, ...] = DATA_TABLES,
             ignore: tuple[str, ...] = ("updated_at", "created_at", "at")) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the data tables, in a stable order, without timestamps: for 'nothing changed' checks."""
    out = {}
    with engine.connect() as conn:
        for name in tables:
            table = t.metadata.tables[name]
            cols = [c for c in table.c if c.name not in ignore]
            rows = conn.execute(select(*cols).order_by(*table.primary_key.columns)).all()
            out[name] = [tuple(r) for r in rows]
    return out


@contextmanager
def migrated_template() -> Iterator[Path]:
    """A migrated, empty SQLite store to copy for each example of a property test (migrating one
    takes far longer than copying it)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "template.sqlite"
        engine = open_store(f"sqlite:///{path}")
        migrate(engine)
        engine.dispose()
        yield path


def general_loops_only(m: pytest.MonkeyPatch) -> None:
    """Turn the store's short ways for a day's register off (``_Writer._write_named`` and the inline
    laying of one-character runs): what they store is then compared with what the general loops store."""
    m.setattr(ingest._Writer, "_write_named", lambda self, records, first: False)
    m.setattr(ingest, "_plain", lambda known, codes: False)


def clocked_app(config: str | Path, engine: Engine, now: datetime) -> App:
    """An App over ``engine`` whose clock the test moves: ``app.clock_box["now"] = ...``."""
    from cme_batch.app import App

    clock = {"now": now}
    app = App(str(config), clock=lambda: clock["now"])
    app._engine = engine
    app.clock_box = clock  # type: ignore[attr-defined]
    return app


def weekdays(first: date, last: date) -> list[date]:
    """Every Monday to Friday from ``first`` to ``last``, both included."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)
            if (first + timedelta(days=i)).weekday() < 5]


def year4_pupil(key: str) -> PupilRecord:
    """A Year 4 pupil of class 4B under ``key``, with a made-up name and a date of birth."""
    return PupilRecord(key, legal_surname=f"Surname{key}", legal_forename=f"Forename{key}", dob=date(2017, 3, 1),
                       year_group="4", reg_group="4B")


#: The terms of 2025/26 after the base configuration's autumn 2025 (which ``tests.conftest`` gives:
#: 2 Sep - 24 Oct, 3 Nov - 19 Dec), with the February half term, and the first half of autumn 2026.
TERMS_2026 = """
[[calendar.terms]]
start = "2026-01-05"
end = "2026-02-13"

[[calendar.terms]]
start = "2026-02-23"
end = "2026-03-27"

[[calendar.terms]]
start = "2026-04-13"
end = "2026-07-17"

[[calendar.terms]]
start = "2026-09-03"
end = "2026-10-23"
"""
