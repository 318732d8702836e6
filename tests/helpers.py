"""Small helpers shared by tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from cme_batch.store import tables as t

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
