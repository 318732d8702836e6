"""The calendar at its edges, on a real store: the summer holiday and the 1 August change of
academic year, a year whose term dates are not configured yet, bank holidays, closures recorded
late, and the attendance codes of both national sets in one streak.

Every test runs ``detect`` night by night, as the timer does, and looks at what a user sees:
the case's stage, school days and referral due date, and the LA return.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, Record, SourceBatch
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import FIXED_NOW, write_config

# The spring and summer terms of 2025/26; nothing yet for 2026/27.
TERMS_TO_JULY_2026 = """
[[calendar.terms]]
start = "2026-01-05"
end = "2026-03-27"

[[calendar.terms]]
start = "2026-04-13"
end = "2026-07-17"
"""


def make_app(engine: Engine, store_url: str, tmp_path: Path, extra: str) -> App:
    a = App(str(write_config(tmp_path, store_url, extra)), clock=lambda: FIXED_NOW)
    a._engine = engine
    return a


def ingest(app: App, *records: Record) -> None:
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)), app.now())


def pupil(key: str) -> PupilRecord:
    return PupilRecord(key, upn=f"T{key:0>12}", dob=date(2016, 5, 1))


def day_marks(key: str, marks: Mapping[date, str]) -> list[MarksRecord]:
    """``{day: "NN"}`` (one character a session) or ``{day: "C1/N"}`` (codes split by '/')."""
    out = []
    for day, pair in marks.items():
        am, pm = pair.split("/") if len(pair) > 2 else (pair[0], pair[1])
        out.append(MarksRecord(key, day, (am, pm)))
    return out


def days(start: date, end: date) -> Iterator[date]:
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)


def weekdays(start: date, end: date) -> list[date]:
    return [d for d in days(start, end) if d.weekday() < 5]


def cases(app: App) -> list[dict[str, Any]]:
    with app.engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(t.cases).order_by(t.cases.c.id)).mappings()]


def the_case(app: App) -> dict[str, Any]:
    [case] = cases(app)
    return case


# -- a new academic year before its term dates are configured ------------------------------------------
def test_the_summer_of_a_year_without_term_dates_is_not_school_days(engine: Engine, store_url: str,
                                                                    tmp_path: Path) -> None:
    app = make_app(engine, store_url, tmp_path, TERMS_TO_JULY_2026)
    july = weekdays(date(2026, 7, 6), date(2026, 7, 17))
    september = weekdays(date(2026, 9, 2), date(2026, 9, 9))
    ingest(app, pupil("1"), pupil("2"), pupil("3"),
           *day_marks("1", {d: "/\\" if d < date(2026, 7, 13) else "NN" for d in july}),
           *(m for k in "23" for m in day_marks(k, {d: "/\\" for d in july})))
    for night in days(date(2026, 7, 13), date(2026, 9, 9)):
        if night in september:
            ingest(app, *day_marks("1", {night: "NN"}), *(m for k in "23" for m in day_marks(k, {night: "/\\"})))
        report = detect.run_detect(app, night)
        case = the_case(app)
        if date(2026, 8, 1) <= night <= date(2026, 9, 1):
            # the holiday: no register is missing, the child is not absent, no step falls due
            assert (case["stage"], case["school_days"], case["register_gaps"]) == ("home_visit", 5, []), night
            assert case["referral_due"] > night, night
            assert not [w for w in report.warnings if "no register mark" in w], night
            assert any("2026/27 has no term dates configured" in w for w in report.warnings), night
    # 13-17 July and 2-8 September: the tenth school day of absence is 8 September
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("referral_due", 11, date(2026, 9, 8))
    with app.engine().connect() as conn:
        listed = conn.execute(select(t.la_returns.c.episode_start, t.la_returns.c.reached_on)).all()
    assert listed == [(date(2026, 7, 13), date(2026, 9, 8))]


# -- an agreed first day that is not a school day ------------------------------------------------------
def test_a_place_is_not_taken_up_only_once_a_school_day_has_come(engine: Engine, store_url: str,
                                                                 tmp_path: Path) -> None:
    """A reception intake admitted on 1 September, the school opening on the 3rd, term dates not
    yet configured (the nightly evaluates every weekday): no case before the first school day; on
    it, the child who came has none and the child who did not has one."""
    app = make_app(engine, store_url, tmp_path, TERMS_TO_JULY_2026)
    july = weekdays(date(2026, 7, 6), date(2026, 7, 17))
    ingest(app, pupil("1"), pupil("2"), pupil("3"), pupil("4"),
           EnrolmentRecord("3", date(2026, 9, 1)), EnrolmentRecord("4", date(2026, 9, 1)),
           *(m for k in "12" for m in day_marks(k, {d: "/\\" for d in july})))
    for night in days(date(2026, 8, 28), date(2026, 9, 3)):
        if night == date(2026, 9, 3):
            ingest(app, *(m for k in "123" for m in day_marks(k, {night: "/\\"})), *day_marks("4", {night: "NN"}))
        detect.run_detect(app, night)
        opened = cases(app)
        if night < date(2026, 9, 3):
            assert opened == [], night  # no school day yet: nobody can have missed one
    assert [(c["kind"], c["episode_start"], c["school_days"]) for c in opened] == [
        ("place_not_taken_up", date(2026, 9, 1), 1)]


def test_a_first_day_on_a_closure_day_opens_no_case_that_day(engine: Engine, store_url: str,
                                                            tmp_path: Path) -> None:
    # 1 September 2025 is a closure day, the term starts on the 2nd; last summer's registers are stored
    app = make_app(engine, store_url, tmp_path, '[[calendar.terms]]\nstart = "2025-06-02"\nend = "2025-07-18"\n')
    ingest(app, pupil("1"), pupil("2"), EnrolmentRecord("2", date(2025, 9, 1)),
           *day_marks("1", {d: "/\\" for d in weekdays(date(2025, 6, 2), date(2025, 7, 18))}),
           *day_marks("1", {date(2025, 9, 2): "/\\"}), *day_marks("2", {date(2025, 9, 2): "NN"}))
    detect.run_detect(app, date(2025, 9, 1))
    assert cases(app) == []
    detect.run_detect(app, date(2025, 9, 2))
    assert [(c["kind"], c["school_days"]) for c in cases(app)] == [("place_not_taken_up", 1)]


# -- codes of both national sets in one streak ------------------------------------------------------------
def test_a_streak_across_the_2024_code_change_and_an_unknown_code(engine: Engine, store_url: str,
                                                                  tmp_path: Path) -> None:
    """July 2024 in the old codes, September 2024 in the new: neutral codes skip, an unexplained
    half day counts, ``Q`` breaks; a code of no class is a register gap, warned about as an unknown
    code, not as a register that was not taken."""
    terms = ('[[calendar.terms]]\nstart = "2024-06-03"\nend = "2024-07-19"\n\n'
             '[[calendar.terms]]\nstart = "2024-09-03"\nend = "2024-10-25"\n')
    app = make_app(engine, store_url, tmp_path, terms)
    child = {date(2024, 7, 15): "/\\", date(2024, 7, 16): "NN", date(2024, 7, 17): "Y/N", date(2024, 7, 18): "YY",
             date(2024, 7, 19): "OO", date(2024, 9, 3): "Y1/N", date(2024, 9, 4): "XX", date(2024, 9, 5): "N/Y4",
             date(2024, 9, 6): "#/N", date(2024, 9, 9): "JJ", date(2024, 9, 10): "C1/N", date(2024, 9, 11): "Q/N"}
    ingest(app, pupil("1"), pupil("2"), *day_marks("1", child), *day_marks("2", {d: "/\\" for d in child}))
    ev = detect.evaluate(app, date(2024, 9, 9))
    s = ev.facts(next(p for p in ev.on_roll if ev.facts(p).streaks.unexplained.days)).streaks.unexplained
    assert s.counted == (date(2024, 7, 16), date(2024, 7, 17), date(2024, 7, 19), date(2024, 9, 3),
                         date(2024, 9, 5), date(2024, 9, 6))
    assert s.register_gaps == (date(2024, 9, 9),)  # 'J' is no code after 19 August 2024
    assert any("unknown attendance code 'J'" in w for w in ev.warnings)
    assert not [w for w in ev.warnings if "no register mark" in w]
    assert detect.evaluate(app, date(2024, 9, 10)).results.streaks == {}  # C1 (authorised) breaks it
