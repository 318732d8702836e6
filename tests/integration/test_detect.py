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

# The summer term of 2025 and the spring and summer terms of 2026 too (Easter holidays 30 March -
# 10 April 2026, May Day on 4 May).
TERMS_2026 = """
[[calendar.terms]]
start = "2025-06-02"
end = "2025-07-18"

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


# -- opening, closing, reopening ---------------------------------------------------------------------
def test_an_explanation_closes_the_case_and_a_later_episode_opens_a_new_one(eapp: App) -> None:
    ingest(eapp, pupil("1"), *day_marks("1", {date(2025, 11, 4): "/\\", date(2025, 11, 5): "NN",
                                              date(2025, 11, 6): "NN"}))
    detect.run_detect(eapp, date(2025, 11, 6))
    ingest(eapp, *day_marks("1", {date(2025, 11, 7): "II"}))
    report = detect.run_detect(eapp, date(2025, 11, 7))
    assert [(c["action"], c["reason"]) for c in report.changes] == [("close", "explained")]
    ingest(eapp, *day_marks("1", {date(2025, 11, 10): "NN"}))
    detect.run_detect(eapp, date(2025, 11, 10))
    first, second = cases(eapp)
    assert (first["ref"], first["status"], first["closed_reason"]) == ("CME-2025-0001", "closed", "explained")
    assert (second["ref"], second["status"], second["episode_start"]) == ("CME-2025-0002", "open", date(2025, 11, 10))
    assert second["last_attended"] == date(2025, 11, 4)


def test_a_place_not_taken_up_is_the_one_case_and_the_streak_still_shows(eapp: App) -> None:
    first_day = date(2025, 11, 10)
    ingest(eapp, pupil("9"), EnrolmentRecord("9", admission_date=first_day),
           *day_marks("9", {first_day: "NN", date(2025, 11, 11): "NN", date(2025, 11, 12): "NN"}))
    detect.run_detect(eapp, date(2025, 11, 12))
    [case] = cases(eapp)
    assert (case["kind"], case["stage"], case["episode_start"], case["school_days"]) == (
        "place_not_taken_up", "referral_prepare", first_day, 3)
    assert case["referral_due"] == date(2025, 11, 12)
    streak = detect.evaluate(eapp, date(2025, 11, 12)).facts(case["pupil_id"]).streaks.unexplained
    assert (streak.days, streak.start) == (3, first_day)
    ingest(eapp, *day_marks("9", {date(2025, 11, 13): "/\\"}))
    detect.run_detect(eapp, date(2025, 11, 13))
    [case] = cases(eapp)
    assert (case["status"], case["closed_reason"]) == ("closed", "attended")


def test_a_leaver_to_an_unknown_destination_until_one_is_recorded(eapp: App) -> None:
    leaving = EnrolmentRecord("7", entry_date=date(2023, 9, 4), leaving_date=date(2025, 11, 7),
                              leaving_reason="Moved away, whereabouts unknown")
    ingest(eapp, pupil("7"), leaving, *day_marks("7", {date(2025, 11, 6): "/\\", date(2025, 11, 7): "NN"}))
    detect.run_detect(eapp, date(2025, 11, 7))  # the last day on roll: absent, and leaving
    detect.run_detect(eapp, date(2025, 11, 10))
    kinds = {c["kind"]: c for c in cases(eapp)}
    du = kinds["destination_unknown"]
    assert (du["stage"], du["episode_start"], du["status"]) == ("referral_prepare", date(2025, 11, 7), "open")
    # the absence on the last day opened a case; leaving the roll closed it
    assert (kinds["unexplained_absence"]["status"], kinds["unexplained_absence"]["closed_reason"]) == ("closed", "left")
    opened = events(eapp, du["id"])[0]
    assert opened["evidence"] == [] and opened["detail"]["leaving_reason"] == "Moved away, whereabouts unknown"
    ingest(eapp, pupil("7"), EnrolmentRecord("7", entry_date=date(2023, 9, 4), leaving_date=date(2025, 11, 7),
                                             leaving_reason="Moved away", destination="916/2001"))
    detect.run_detect(eapp, date(2025, 11, 11))
    du = cases(eapp, kind="destination_unknown")[0]
    assert (du["status"], du["closed_reason"]) == ("closed", "destination_known")


def test_a_place_never_taken_up_stays_open_however_long_ago_it_was(eapp: App) -> None:
    """The case ends when the child attends or the admission is withdrawn, never by growing old."""
    first_day = date(2025, 9, 3)
    ingest(eapp, pupil("9"), EnrolmentRecord("9", admission_date=first_day))
    detect.run_detect(eapp, first_day)
    late = date(2025, 12, 4)  # 60 school days and more after the agreed first day
    assert len(school_days(eapp, first_day, late)) > eapp.config.thresholds.repeat_window_days
    detect.run_detect(eapp, late)
    [case] = cases(eapp)
    assert (case["kind"], case["status"], case["episode_start"]) == ("place_not_taken_up", "open", first_day)
    ingest(eapp, *day_marks("9", {date(2025, 12, 5): "/\\"}))
    detect.run_detect(eapp, date(2025, 12, 5))
    [case] = cases(eapp)
    assert (case["status"], case["closed_reason"]) == ("closed", "attended")


def test_a_leaver_whose_destination_stays_unknown_is_not_closed_as_known(eapp: App) -> None:
    leaving = date(2025, 9, 10)
    left = EnrolmentRecord("7", entry_date=date(2023, 9, 4), leaving_date=leaving,
                           leaving_reason="Moved away, whereabouts unknown")
    ingest(eapp, pupil("7"), left)
    detect.run_detect(eapp, leaving)
    detect.run_detect(eapp, date(2025, 12, 11))  # long after: still nobody knows where the child is
    [du] = cases(eapp)
    assert (du["kind"], du["status"], du["closed_reason"]) == ("destination_unknown", "open", None)
    # the destination is found; the MIS's leaving reason is left as it was
    ingest(eapp, pupil("7"), EnrolmentRecord("7", entry_date=date(2023, 9, 4), leaving_date=leaving,
                                             leaving_reason="Moved away, whereabouts unknown",
                                             destination="St Mary's CE Primary, 916/3001"))
    detect.run_detect(eapp, date(2025, 12, 12))
    detect.run_detect(eapp, date(2025, 12, 15))  # and it stays closed
    [du] = cases(eapp)
    assert (du["status"], du["closed_reason"], du["closed_on"]) == ("closed", "destination_known", date(2025, 12, 12))


@pytest.mark.parametrize("code", ["-", "!"])
def test_a_first_day_that_becomes_a_missing_register_does_not_end_the_case(eapp: App, code: str) -> None:
    """No break, no end: the same case goes on, its referral no later, the gap shown on it."""
    monday = date(2025, 11, 10)
    ingest(eapp, pupil("1"), *day_marks("1", {date(2025, 11, 7): "/\\"}))
    for d in every_day(monday, date(2025, 11, 12)):
        ingest(eapp, *day_marks("1", {d: "NN"}))
        detect.run_detect(eapp, d)
    [before] = cases(eapp)
    ingest(eapp, *day_marks("1", {monday: code + code, date(2025, 11, 13): "NN"}))
    report = detect.run_detect(eapp, date(2025, 11, 13))
    assert [c["action"] for c in report.changes] == ["update"]
    [after] = cases(eapp)
    assert (after["ref"], after["status"]) == (before["ref"], "open")
    assert after["referral_due"] == before["referral_due"] == date(2025, 11, 21)
    assert after["register_gaps"] == ["2025-11-10"]


def test_vulnerable_children(eapp: App) -> None:
    ingest(eapp, pupil("1"), pupil("2"), pupil("3"),
           FlagRecord("1", "child_protection_plan", start=date(2025, 1, 6)),
           FlagRecord("2", "young_carer", start=date(2024, 9, 2)),
           FlagRecord("3", "looked_after", start=date(2020, 1, 1), end=date(2025, 3, 31)),  # no longer
           *(m for k in "123" for m in day_marks(k, {date(2025, 11, 4): "/\\", date(2025, 11, 5): "NN"})))
    detect.run_detect(eapp, date(2025, 11, 5))
    got = {c["pupil_id"]: c for c in cases(eapp)}
    cp, carer, former = (got[pid] for pid in sorted(got))
    assert cp["stage"] == "dsl_review" and [a["kind"] for a in cp["alerts"]] == ["immediate_social_care"]
    assert [e["kind"] for e in events(eapp, cp["id"])] == ["opened", "alert"]
    assert carer["stage"] == "dsl_review" and carer["alerts"] == []
    assert former["stage"] == "first_day_call" and former["alerts"] == []


def test_a_child_below_compulsory_school_age_still_has_a_case(eapp: App) -> None:
    ingest(eapp, pupil("4", dob=date(2021, 6, 1)), pupil("5", dob=date(2016, 6, 1)),
           *day_marks("4", {date(2025, 11, 5): "NN"}), *day_marks("5", {date(2025, 11, 5): "NN"}))
    detect.run_detect(eapp, date(2025, 11, 5))
    assert [c["compulsory_school_age"] for c in cases(eapp)] == [False, True]


def test_repeated_short_episodes_open_repeat_missing(eapp: App) -> None:
    marks = {}
    for start in (date(2025, 9, 15), date(2025, 10, 6), date(2025, 11, 10)):
        marks[start - timedelta(days=3)] = "/\\"  # the Friday before
        marks[start] = marks[start + timedelta(days=1)] = "NN"
        marks[start + timedelta(days=2)] = "/\\"
    ingest(eapp, pupil("6"), *day_marks("6", marks))
    detect.run_detect(eapp, date(2025, 11, 12))
    repeat = cases(eapp, kind="repeat_missing")
    assert len(repeat) == 1
    assert (repeat[0]["stage"], repeat[0]["episode_start"], repeat[0]["school_days"]) == (
        "dsl_review", date(2025, 11, 10), 6)
    assert [e["start"] for e in events(eapp, repeat[0]["id"])[0]["detail"]["episodes"]] == [
        "2025-09-15", "2025-10-06", "2025-11-10"]


def test_register_gaps_are_kept_on_the_case(eapp: App) -> None:
    ingest(eapp, pupil("1"), pupil("2"), *day_marks("1", {date(2025, 11, 4): "/\\", date(2025, 11, 5): "NN",
                                                          date(2025, 11, 7): "N-"}),
           *day_marks("2", {date(2025, 11, d): "/\\" for d in (4, 5, 6, 7)}))
    detect.run_detect(eapp, date(2025, 11, 7))
    [case] = cases(eapp)
    assert (case["school_days"], case["register_gaps"]) == (2, ["2025-11-06"])
    # the gap day counts towards the referral's tenth day (a missing register never delays it):
    # 5, 6 (gap) and 7 November are three days, so seven school days after Friday the 7th
    assert case["referral_due"] == date(2025, 11, 18)


# -- the LA 10-day return ----------------------------------------------------------------------------
def test_the_la_return_lists_an_unauthorised_episode_once(eapp: App) -> None:
    codes = ["GG", "NN", "UN", "GG", "OO", "NN", "GN", "NN", "UU", "GG", "NN"]
    days = school_days(eapp, date(2025, 11, 4), date(2025, 11, 18))
    ingest(eapp, pupil("8"), *day_marks("8", {date(2025, 10, 24): "/\\", **dict(zip(days, codes))}))
    assert detect.run_detect(eapp, date(2025, 11, 14)).la_returns == 0  # nine days
    report = detect.run_detect(eapp, date(2025, 11, 17))
    assert report.la_returns == 1
    with eapp.engine().begin() as conn:
        [row] = detect.list_returns(conn, eapp.school_id, date(2025, 11, 17))
    assert (row["unauthorised_start"], row["reached_on"], row["school_days"]) == ("2025-11-04", "2025-11-17", 10)
    assert detect.run_detect(eapp, date(2025, 11, 18)).la_returns == 0  # the same episode: not again
    assert cases(eapp, kind="unexplained_absence")  # N days in it are CME cases too


@pytest.mark.parametrize("correction", ["first day made a missing register", "the day before made unauthorised"])
def test_a_correction_that_moves_an_episodes_start_does_not_list_it_again(eapp: App, correction: str) -> None:
    """Once per episode: a listed episode whose start a correction moves is the same episode."""
    days = school_days(eapp, date(2025, 11, 4), date(2025, 11, 19))
    ingest(eapp, pupil("8"), *day_marks("8", {date(2025, 10, 24): "/\\", days[0]: "/\\",
                                              **{d: "GG" for d in days[1:11]}}))
    assert detect.run_detect(eapp, days[10]).la_returns == 1
    moved = {days[1]: "--"} if correction.startswith("first") else {days[0]: "GG"}
    ingest(eapp, *day_marks("8", {**moved, days[11]: "GG"}))
    assert detect.run_detect(eapp, days[11]).la_returns == 0
    with eapp.engine().connect() as conn:
        assert len(conn.execute(select(t.la_returns)).all()) == 1


def test_repeat_missing_closed_by_the_dsl_is_not_raised_again_by_a_correction(eapp: App) -> None:
    """A late explanation for the newest episode's first day is no new episode."""
    marks = {}
    for start in (date(2025, 9, 15), date(2025, 10, 6), date(2025, 11, 10)):
        marks[start - timedelta(days=3)] = "/\\"
        marks[start] = marks[start + timedelta(days=1)] = marks[start + timedelta(days=2)] = "NN"
        marks[start + timedelta(days=3)] = "/\\"
    ingest(eapp, pupil("6"), *day_marks("6", marks))
    detect.run_detect(eapp, date(2025, 11, 13))
    [repeat] = cases(eapp, kind="repeat_missing")
    with eapp.engine().begin() as conn:  # the DSL closes it (as a CLOSE reply does)
        conn.execute(t.cases.update().where(t.cases.c.id == repeat["id"]).values(
            status="closed", closed_reason="closed_by_dsl", closed_on=date(2025, 11, 14)))
    ingest(eapp, *day_marks("6", {date(2025, 11, 10): "II"}))  # the parent rang late about the Monday
    detect.run_detect(eapp, date(2025, 11, 17))
    assert [(c["status"], c["closed_reason"]) for c in cases(eapp, kind="repeat_missing")] == [
        ("closed", "closed_by_dsl")]


# -- across the summer, in bulk ---------------------------------------------------------------------
def test_a_streak_from_last_summer_is_read_from_last_years_strip(eapp: App) -> None:
    summer = school_days(eapp, date(2025, 7, 14), date(2025, 7, 18))
    autumn = school_days(eapp, date(2025, 9, 2), date(2025, 12, 19))
    ingest(eapp, pupil("1"), pupil("2"), *day_marks("1", {summer[0]: "/\\", **{d: "NN" for d in summer[1:] + autumn}}),
           *day_marks("2", {d: "/\\" for d in summer + autumn}))
    ev = detect.evaluate(eapp, date(2025, 12, 19))
    [pid] = [p for p in ev.on_roll if ev.facts(p).streaks.unexplained.days]
    s = ev.facts(pid).streaks
    assert (s.unexplained.start, s.unexplained.days, s.last_attended) == (date(2025, 7, 15), 4 + len(autumn),
                                                                           date(2025, 7, 14))
    assert sorted(ev.strips) == [2024, 2025]  # last year's strips were read for it


def test_evaluation_reads_the_store_in_bulk(eapp: App) -> None:
    statements: list[str] = []
    event.listen(eapp.engine(), "before_cursor_execute", lambda *a: statements.append(a[2]))

    def count(n: int) -> int:
        ingest(eapp, *(pupil(str(1000 + i)) for i in range(n)),
               *(m for i in range(n) for m in day_marks(str(1000 + i), {date(2025, 11, 5): "N/", date(2025, 11, 6): "NN"})))
        statements.clear()
        detect.evaluate(eapp, date(2025, 11, 6))
        return len(statements)

    assert count(3) == count(60) <= 8


def test_unknown_codes_are_warned_about_without_naming_the_pupil(eapp: App) -> None:
    ingest(eapp, pupil("1"), *day_marks("1", {date(2025, 11, 5): "l/", date(2025, 11, 6): "!!"}))
    ev = detect.evaluate(eapp, date(2025, 11, 6))
    text = " ".join(ev.warnings)
    assert "unknown attendance code 'l' in 1 session(s) of 1 pupil(s)" in text and "'!'" in text
    assert "T000000000001" not in text


# -- the demo school ----------------------------------------------------------------------------------
def test_detect_on_the_demo_school_opens_exactly_the_planted_cases(engine: Engine, store_url: str,
                                                                   tmp_path: Path) -> None:
    from cme_batch.demo.check import compare, stored_cases, stored_la_returns
    from cme_batch.demo.generator import generate

    school = generate(2025, 120)
    cfg = tmp_path / "demo.toml"
    cfg.write_text(school.config_toml("state", "mail") + f'\n[database]\nurl = "{store_url}"\n', encoding="utf-8")
    app = App(str(cfg), clock=lambda: FIXED_NOW)
    app._engine = engine
    apply_batch(engine, app.school_id, SourceBatch("demo", "first", records=school.records), app.now())
    for night in [d for d in school.school_days if d <= school.as_of]:  # every school night of the term
        if night == school.corrections_on:
            apply_batch(engine, app.school_id, SourceBatch("demo", "fix", records=school.corrections), app.now())
        detect.run_detect(app, night)
    stored = stored_cases(engine, school)
    result = compare(school, stored, la_returns=stored_la_returns(engine, school))
    assert result.ok, "\n".join(result.problems)
    assert len(stored) == len(school.planted) == result.found  # and nothing else, open or closed


# -- the calendar from the registers, thresholds from the configuration -----------------------------
def test_a_closure_prefilled_in_the_registers_moves_the_due_date(eapp: App) -> None:
    closed = date(2025, 11, 14)  # every pupil on roll has '#' both sessions: the school is closed
    ingest(eapp, pupil("1"), pupil("2"),
           *day_marks("1", {date(2025, 11, 4): "/\\\\", **{date(2025, 11, d): "NN" for d in (5, 6, 7, 10)},
                            closed: "##"}),
           *day_marks("2", {**{date(2025, 11, d): "/\\\\" for d in (4, 5, 6, 7, 10)}, closed: "##"}))
    ev = detect.evaluate(eapp, date(2025, 11, 10))
    assert not ev.calendar.is_school_day(closed)
    detect.run_detect(eapp, date(2025, 11, 10))
    [case] = cases(eapp)
    assert case["school_days"] == 4
    assert case["referral_due"] == date(2025, 11, 19)  # six school days on, over the closure


def test_without_term_dates_the_registers_decide_with_a_warning(engine: Engine, store_url: str,
                                                                tmp_path: Path) -> None:
    from tests.conftest import BASE_CONFIG

    no_terms = BASE_CONFIG.split("[[calendar.terms]]")[0] + BASE_CONFIG.split('end = "2025-12-19"')[1]
    cfg = tmp_path / "no-terms.toml"
    cfg.write_text(no_terms.format(url=store_url), encoding="utf-8")
    app = App(str(cfg), clock=lambda: FIXED_NOW)
    app._engine = engine
    week = [date(2025, 11, d) for d in (10, 11, 12, 13, 14)]
    ingest(app, pupil("1"), pupil("2"), pupil("3"),
           *day_marks("1", {d: "NN" for d in week}),
           *day_marks("2", {d: "/\\\\" for d in week[:3]}),  # the 13th and 14th: nobody but pupil 1 marked
           *day_marks("3", {d: "/\\\\" for d in week[:3]}))
    ev = detect.evaluate(app, date(2025, 11, 14))
    assert any("no term dates configured" in w for w in ev.warnings)
    assert ev.calendar.school_days(week[0], week[-1]) == week[:3]
    s = ev.facts(next(p for p in ev.on_roll if ev.facts(p).streaks.unexplained.days)).streaks.unexplained
    assert (s.start, s.days) == (week[0], 3)


def test_stage_days_come_from_the_configuration(engine: Engine, store_url: str, tmp_path: Path) -> None:
    quick = "[thresholds]\ncontact_all = 1\ndsl_review = 2\nhome_visit = 2\nreferral_prepare = 3\nreferral_due = 4\n"
    app = App(str(write_config(tmp_path, store_url, quick)), clock=lambda: FIXED_NOW)
    app._engine = engine
    ingest(app, pupil("1"), *day_marks("1", {date(2025, 11, 4): "/\\\\", date(2025, 11, 5): "NN",
                                             date(2025, 11, 6): "NN", date(2025, 11, 7): "NN"}))
    detect.run_detect(app, date(2025, 11, 7))
    [case] = cases(app)
    assert (case["stage"], case["referral_due"]) == ("referral_prepare", date(2025, 11, 10))


def test_the_newest_word_on_an_admission_wins_across_sources(eapp: App) -> None:
    ingest(eapp, pupil("7"), EnrolmentRecord("7", entry_date=date(2023, 9, 4)))  # an older export: still on roll
    apply_batch(eapp.engine(), eapp.school_id, SourceBatch("ctf", "ctf", records=[
        pupil("7"), EnrolmentRecord("7", entry_date=date(2023, 9, 4), leaving_date=date(2025, 11, 7))]), eapp.now())
    ev = detect.evaluate(eapp, date(2025, 11, 10))
    assert not ev.on_roll
    detect.run_detect(eapp, date(2025, 11, 10))
    assert [c["kind"] for c in cases(eapp)] == ["destination_unknown"]
