"""Reliability: the commands killed at random points, and import files generated or damaged at random.

Shared pieces: a small demo school written as real export files (``school_files``), a store
folder with its configuration (``make_store``), and the state of a store in a form two runs
can be compared in (``state``). See ``benchmarks/failures.md`` for every failure tried.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cme_batch.store import open_store
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import DATA_TABLES, snapshot

CLI = str(Path(sys.executable).with_name("cme-batch"))
SEED = 7
PUPILS = 80  # the smallest demo school with every story in it
AS_OF = "2025-12-19"  # the demo school's evaluation date: the last day of the autumn term
#: Outbox columns that say what was sent and why (the rest are times, attempts, run ids, the bytes with their Date).
OUTBOX_FACTS = ("idempotency_key", "message_id", "purpose", "case_id", "recipients", "subject", "status")


@dataclass(frozen=True)
class SchoolFiles:
    ctf: Path  # the whole school in one Common Transfer File
    sims: Path  # a folder holding the four SIMS CommandReporter exports


def school_files(folder: Path, seed: int = SEED, pupils: int = PUPILS) -> SchoolFiles:
    """The demo school written by the adapters' own writers, as an MIS would deliver it."""
    from adapters.ctf.writer import write_ctf
    from adapters.sims.writer import write_reports
    from cme_batch.demo.generator import generate
    from cme_batch.model import SchoolInfo

    school = generate(seed, pupils)
    folder.mkdir(parents=True, exist_ok=True)
    ctf = write_ctf(folder / "school-ctf.xml", school.records, SchoolInfo("916", "2999", "The John Moore Primary School"))
    write_reports(folder / "sims", school.records)
    return SchoolFiles(ctf, folder / "sims")


def make_store(folder: Path, sources: str = "") -> Path:
    """A configuration in ``folder`` for a SQLite store in the same folder; returns the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, f"sqlite:///{folder / 'store.sqlite'}", '\n[paths]\nstate_dir = "state"\n' + sources)


def sims_source(drop: Path) -> str:
    return f'\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "{drop}"\nmax_age_hours = 0\n'


def copy_store(src: Path, dst: Path) -> None:
    """Copy a SQLite store whose writers have all exited (its WAL folded in first)."""
    db = sqlite3.connect(src)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def state(url: str) -> dict[str, Any]:
    """Every data row (timestamps left out) and the facts of each outbox message."""
    engine = open_store(url, create=False)
    try:
        out: dict[str, Any] = snapshot(engine, tuple(n for n in DATA_TABLES if n != "outbox"))
        with engine.connect() as conn:
            out["outbox"] = [tuple(r) for r in conn.execute(
                select(*[t.outbox.c[c] for c in OUTBOX_FACTS]).order_by(t.outbox.c.id)).all()]
        return out
    finally:
        engine.dispose()


def integrity(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        db.close()
