"""detect on a real store (SQLite and PostgreSQL): cases open, walk their stages, close, never double.

Pupils and marks are written the way adapters write them, through ``apply_batch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.errors import BadInputError
from cme_batch.model import EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record, SourceBatch
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import FIXED_NOW, write_config
from tests.helpers import snapshot

# The spring and summer terms of 2026 too: Easter holidays 30 March - 10 April, May Day on 4 May.
TERMS_2026 = """
[[calendar.terms]]
start = "2026-01-05"
end = "2026-03-27"

[[calendar.terms]]
start = "2026-04-13"
end = "2026-05-22"
"""


@pytest.fixture
def eapp(engine: Engine, store_url: str, tmp_path: Path) -> App:
    a = App(str(write_config(tmp_path, store_url, TERMS_2026)), clock=lambda: FIXED_NOW)
    a._engine = engine
    return a


def ingest(app: App, *records: Record) -> None:
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)), app.now())


def pupil(key: str, dob: date = date(2016, 5, 1), **kw: Any) -> PupilRecord:
    return PupilRecord(key, upn=f"T{key:0>12}", dob=dob, **kw)


def day_marks(key: str, marks: Mapping[date, str]) -> list[MarksRecord]:
    """``{day: "NN"}``: AM and PM codes of one character each (or ``"C1/C1"`` for longer codes)."""
    out = []
    for day, pair in marks.items():
        am, pm = pair.split("/") if len(pair) > 2 else (pair[0], pair[1])
        out.append(MarksRecord(key, day, (am, pm)))
    return out


def school_days(app: App, start: date, end: date) -> list[date]:
    return detect.evaluate(app, end).calendar.school_days(start, end)


def every_day(start: date, end: date) -> Iterator[date]:
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)


def cases(app: App, **where: Any) -> list[dict[str, Any]]:
    with app.engine().connect() as conn:
        q = select(t.cases).order_by(t.cases.c.id)
        for k, v in where.items():
            q = q.where(t.cases.c[k] == v)
        return [dict(r) for r in conn.execute(q).mappings()]


def events(app: App, case_id: int) -> list[dict[str, Any]]:
    with app.engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(t.case_events).where(
            t.case_events.c.case_id == case_id).order_by(t.case_events.c.id)).mappings()]


# -- the scenario of the issue ---------------------------------------------------------------------
EXPECTED = {  # day: (school days of the streak, stage)
    date(2026, 4, 22): (1, "first_day_call"), date(2026, 4, 23): (2, "contact_all"),
    date(2026, 4, 24): (3, "dsl_review"), date(2026, 4, 25): (3, "dsl_review"), date(2026, 4, 26): (3, "dsl_review"),
    date(2026, 4, 27): (4, "dsl_review"), date(2026, 4, 28): (5, "home_visit"), date(2026, 4, 29): (6, "home_visit"),
    date(2026, 4, 30): (7, "home_visit"), date(2026, 5, 1): (8, "referral_prepare"),
    date(2026, 5, 2): (8, "referral_prepare"), date(2026, 5, 3): (8, "referral_prepare"),
    date(2026, 5, 4): (8, "referral_prepare"),  # May Day: not a school day
    date(2026, 5, 5): (9, "referral_prepare"), date(2026, 5, 6): (10, "referral_due"),
    date(2026, 5, 7): (11, "referral_due"),
}


def test_one_pupil_walks_through_all_six_stages_then_returns(eapp: App) -> None:
    ingest(eapp, pupil("1001"), pupil("1002"), *day_marks("1001", {date(2026, 4, 21): "/\\"}))
    for day in every_day(date(2026, 4, 22), date(2026, 5, 8)):
        if day.weekday() < 5 and day != date(2026, 5, 4):
            ingest(eapp, *day_marks("1001", {day: "/\\" if day == date(2026, 5, 8) else "NN"}),
                   *day_marks("1002", {day: "/\\"}))
        report = detect.run_detect(eapp, day)
        [case] = cases(eapp)
        if day in EXPECTED:
            days, stage = EXPECTED[day]
            assert (case["status"], case["school_days"], case["stage"]) == ("open", days, stage), day
            assert case["referral_due"] == date(2026, 5, 6), day  # the 10th school day, past the holiday
            assert case["episode_start"] == date(2026, 4, 22)
            assert case["last_attended"] == date(2026, 4, 21)
    assert report.changes == [{"ref": case["ref"], "action": "close", "kind": "unexplained_absence",
                               "stage": None, "reason": "returned"}]
    assert (case["status"], case["closed_reason"], case["closed_on"]) == ("closed", "returned", date(2026, 5, 8))
    assert case["last_attended"] == date(2026, 5, 8)
    assert case["ref"] == "CME-2026-0001"
    history = events(eapp, case["id"])
    assert [(e["kind"], e["stage"]) for e in history if e["kind"] in ("opened", "stage", "closed")] == [
        ("opened", "first_day_call"), ("stage", "contact_all"), ("stage", "dsl_review"), ("stage", "home_visit"),
        ("stage", "referral_prepare"), ("stage", "referral_due"), ("closed", "referral_due")]
    assert all(e["actor"] == "system" for e in history)
    closed = history[-1]
    assert closed["detail"]["reason"] == "returned"
    assert closed["evidence"][0] == {"date": "2026-04-22", "session": "AM", "code": "N"}
    assert closed["evidence"][-2:] == [{"date": "2026-05-08", "session": "AM", "code": "/"},
                                       {"date": "2026-05-08", "session": "PM", "code": "\\"}]
    assert "2026-05-04" not in {m["date"] for m in closed["evidence"]}


def test_a_second_run_for_the_same_date_changes_nothing(eapp: App) -> None:
    ingest(eapp, pupil("1"), pupil("2"), *day_marks("1", {date(2025, 11, d): "NN" for d in (4, 5, 6)}),
           *day_marks("2", {date(2025, 11, 4): "/\\"}))
    first = detect.run_detect(eapp, date(2025, 11, 6))
    assert [c["action"] for c in first.changes] == ["open"]
    before = snapshot(eapp.engine())
    again = detect.run_detect(eapp, date(2025, 11, 6))
    assert again.changes == [] and again.events == 0
    assert snapshot(eapp.engine()) == before


def test_an_earlier_date_than_the_last_run_is_refused_and_changes_nothing(eapp: App) -> None:
    ingest(eapp, pupil("1"), *day_marks("1", {date(2025, 11, d): "NN" for d in (4, 5, 6)}))
    detect.run_detect(eapp, date(2025, 11, 6))
    before = snapshot(eapp.engine())
    with pytest.raises(BadInputError, match="before the last detect run"):
        detect.run_detect(eapp, date(2025, 11, 5))
    assert snapshot(eapp.engine()) == before
