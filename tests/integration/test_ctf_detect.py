"""End to end: a CTF imported through ``import_file``, then ``detect`` opens the expected case.

The fixture's first pupil attended Thursday 6 and Friday 7 November 2025 (PM ``I``), then has
``N``/``O`` marks from Monday 10 to Friday 14 November: five school days of unexplained absence.
The second pupil (looked after) attended every day.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from sqlalchemy import select

from cme_batch.app import App
from cme_batch.detect import run_detect
from cme_batch.importer import import_file
from cme_batch.store import tables as t

FIX = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"


def test_ctf_import_then_detect(app: App) -> None:
    result = import_file(app, FIX / "ctf-25.xml", None)
    assert result.status == "ok" and result.counts["pupils_added"] == 2
    run_detect(app, date(2025, 11, 14))
    with app.engine().connect() as conn:
        cases = conn.execute(select(t.cases.c.kind, t.cases.c.status, t.cases.c.stage, t.cases.c.episode_start,
                                    t.cases.c.school_days, t.cases.c.last_attended, t.pupils.c.upn)
                             .join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id)).all()
    assert [tuple(c) for c in cases] == [
        ("unexplained_absence", "open", "home_visit", date(2025, 11, 10), 5, date(2025, 11, 7), "A123456789012")]
