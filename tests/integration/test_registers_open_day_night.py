"""The night after a day the registers show the school open though the configuration does not.

The configuration keeps Monday 3 November 2025 as an INSET day (``calendar.closures``); the INSET
day moved and the school was open, every register taken. ``detect`` counts such a day as a school
day (``schoolcal``: at least half the roll has a mark that says something); the nightly run's
default evaluation date (``App.default_as_of``) and its catch-up of missed nights
(``nightly.missed_school_days``) must count it too, or the next morning evaluates the last
configured school day instead.

The night runs as the timer starts it (05:30, Monday to Friday), on a real SQLite store: the
registers are either in the store already or read by the night's own ingest stage from the SIMS
drop folder. What is checked is what the office and the DSL see: the evaluation date the night
used, the first-day calls of the office summary, and the cases.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from adapters.sims.writer import write_enrolments, write_marks, write_pupils
from cme_batch.app import App
from cme_batch.model import MarksRecord, PupilRecord
from cme_batch.nightly import NightlyReport, run_nightly
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.integration.test_morning_steps import lay, mails, pupil, section

D = date.fromisoformat
INSET_MOVED = D("2025-11-03")  # a closure in the base configuration; the school was open
BEFORE = [D("2025-10-20") + timedelta(days=i) for i in range(5)]  # the week before half term
TUE, WED = D("2025-11-04"), D("2025-11-05")
CALLS = "First-day calls today"
NAMES = {"1": "Amy", "2": "Bob", "3": "Col", "4": "Dot", "5": "Eli"}


def _registers(days: dict[date, dict[str, str]]) -> list[MarksRecord]:
    """``{day: {pupil: "NN"}}``; every other pupil present that day."""
    return [MarksRecord(k, d, (absent.get(k, "/\\")[0], absent.get(k, "/\\")[1])) for d, absent in days.items()
            for k in NAMES]


def _week_and_the_moved_inset_day() -> dict[date, dict[str, str]]:
    """The week before half term, everyone present; on 3 November, Dot absent for the day, Eli absent."""
    return {**{d: {} for d in BEFORE}, INSET_MOVED: {"4": "NN", "5": "NN"}}


def _cases(engine: Engine) -> list[tuple[str, str, date, int, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.pupil_keys.c.pupil_key, t.cases.c.status, t.cases.c.episode_start,
                                   t.cases.c.school_days, t.cases.c.closed_reason).join(
            t.pupil_keys, t.pupil_keys.c.pupil_id == t.cases.c.pupil_id).where(
            t.cases.c.kind == "unexplained_absence").order_by(t.pupil_keys.c.pupil_key)).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def _summary(engine: Engine, as_of: date) -> str:
    found = [text for subject, text in mails(engine, "summary") if as_of.isoformat() in subject]
    assert found, f"no summary for {as_of}"
    return found[-1]


def _morning(app: App, day: date, stages: tuple[str, ...] = ("detect", "summary")) -> tuple[date, NightlyReport]:
    """The timer's run at 05:30 on ``day``: the CLI's default evaluation date, then the stages."""
    app.clock_box["now"] = datetime.combine(day, time(5, 30), UTC)  # type: ignore[attr-defined]
    taken = app.default_as_of()  # as ``cme-batch nightly`` takes it, before any stage runs
    report = run_nightly(app, taken, only=stages, defaulted=True)
    return taken, report


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def test_the_morning_after_a_day_the_registers_show_open_evaluates_it(tmp_path: Path, store_url: str,
                                                                      engine: Engine) -> None:
    """The registers of 3 November are in the store (imported on the evening of the 3rd).

    Before: Tuesday's morning evaluated Friday 24 October, the last configured school day: **Dot,
    absent that Monday and back on Tuesday, was never on a list of first-day calls**, and Eli's
    absence opened its case on Wednesday, a day late, at two school days (no first-day call either)."""
    app = clocked_app(write_config(tmp_path, store_url), engine, datetime(2025, 10, 24, 19, tzinfo=UTC))
    lay(app, *(pupil(k, n) for k, n in NAMES.items()), *_registers({d: {} for d in BEFORE}))
    as_of, _ = _morning(app, D("2025-10-27"))
    assert as_of == BEFORE[-1]
    app.clock_box["now"] = datetime(2025, 11, 3, 19, tzinfo=UTC)  # type: ignore[attr-defined]
    lay(app, *_registers({INSET_MOVED: {"4": "NN", "5": "NN"}}))

    as_of, report = _morning(app, TUE)
    assert (as_of, report.as_of) == (INSET_MOVED, INSET_MOVED)
    calls = section(_summary(engine, INSET_MOVED), CALLS)
    assert "Dot Pupil" in calls and "Eli Pupil" in calls
    assert _cases(engine) == [("4", "open", INSET_MOVED, 1, None), ("5", "open", INSET_MOVED, 1, None)]

    app.clock_box["now"] = datetime(2025, 11, 4, 19, tzinfo=UTC)  # type: ignore[attr-defined]
    lay(app, *_registers({TUE: {"5": "NN"}}))
    as_of, _ = _morning(app, WED)
    assert as_of == TUE
    assert _cases(engine) == [("4", "closed", INSET_MOVED, 1, "returned"), ("5", "open", INSET_MOVED, 2, None)]


def test_a_night_that_reads_that_day_s_registers_itself_evaluates_it(tmp_path: Path, store_url: str,
                                                                     engine: Engine) -> None:
    """SIMS drops its exports in the evening; the night's ingest stage reads them at 05:30, after
    ``cme-batch nightly`` has taken its default evaluation date. The night was off from half term
    on (so the catch-up of missed nights decides which days are evaluated as well).

    Before: the night evaluated Friday 24 October and caught up no day: **no first-day call for
    either child**, and the Monday's absences waited for Wednesday."""
    drop = tmp_path / "drop"
    drop.mkdir()
    cfg = write_config(tmp_path, store_url, """
[sources.sims]
adapter = "sims-xml"
drop_dir = "drop"
""")
    app = clocked_app(cfg, engine, datetime(2025, 10, 23, 19, tzinfo=UTC))
    pupils = [PupilRecord(k, legal_forename=n, legal_surname="Pupil", dob=date(2016, 5, 1), year_group="4",
                          reg_group="4C") for k, n in NAMES.items()]
    lay(app, *pupils, *_registers({d: {} for d in BEFORE[:-1]}))
    _morning(app, D("2025-10-24"))  # Thursday's registers; then the server is off until 4 November

    by_key = {p.pupil_key: p for p in pupils}
    write_pupils(drop / "pupils-20251103T1900.xml", pupils, {}, {})
    write_enrolments(drop / "admissions-20251103T1900.xml", by_key, [])
    write_enrolments(drop / "leavers-20251103T1900.xml", by_key, [])
    write_marks(drop / "marks-20251103T1900.xml", by_key, _registers(_week_and_the_moved_inset_day()))

    as_of, report = _morning(app, TUE, ("ingest", "detect", "summary"))
    assert as_of == BEFORE[-1]  # what the command line took, before the ingest read the registers
    assert report.as_of == INSET_MOVED, [(s.name, s.outcome, s.detail) for s in report.stages]
    detect_stage = next(s for s in report.stages if s.name == "detect")
    assert detect_stage.detail.startswith(f"as of {INSET_MOVED}")
    assert "1 missed school day(s) evaluated first (2025-10-24..2025-10-24)" in detect_stage.detail
    calls = section(_summary(engine, INSET_MOVED), CALLS)
    assert "Dot Pupil" in calls and "Eli Pupil" in calls
    assert _cases(engine) == [("4", "open", INSET_MOVED, 1, None), ("5", "open", INSET_MOVED, 1, None)]
    with engine.connect() as conn:
        evaluated = conn.execute(select(t.detect_runs.c.as_of).order_by(t.detect_runs.c.id)).scalars().all()
    assert evaluated == [D("2025-10-23"), D("2025-10-24"), INSET_MOVED]
