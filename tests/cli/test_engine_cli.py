"""The engine's commands as a user runs them: streaks, detect, cases, case REF, returns.

JSON field names are the contract of DESIGN.md; the data goes in through ``apply_batch`` into a
real store (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from click.testing import CliRunner, Result

from cme_batch.app import App
from cme_batch.cli import cli
from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.store.ingest import apply_batch

STREAK_FIELDS = {"upn", "unexplained_days", "unexplained_start", "unauthorised_days", "unauthorised_start",
                 "last_attended", "register_gaps"}
CASE_FIELDS = {"ref", "kind", "status", "stage", "upn", "streak_start", "school_days", "last_attended",
               "referral_due", "closed_reason", "register_gaps"}


def run(app: App, *args: str) -> Result:
    assert app.config_path is not None
    return CliRunner().invoke(cli, ["--config", app.config_path, *args])


def load(app: App) -> None:
    """Three pupils in November 2025: one absent from the 5th (and a gap on the 7th), one present, one 'l'."""
    marks = {
        "A": {4: ("/", "\\"), 5: ("N", "N"), 6: ("N", "N"), 7: ("-", "-"), 10: ("N", "O")},
        "B": {d: ("/", "\\") for d in (4, 5, 6, 7, 10)},
        "C": {4: ("/", "\\"), 5: ("l", "/"), 6: ("G", "G"), 7: ("/", "\\"), 10: ("/", "\\")},
    }
    records: list[Any] = [PupilRecord(k, upn=f"{k}91629992{i:04d}", dob=date(2017, 3, 1)) for i, k in enumerate(marks)]
    records += [MarksRecord(k, date(2025, 11, d), pair) for k, days in marks.items() for d, pair in days.items()]
    records.append(FlagRecord("A", "looked_after", start=date(2024, 1, 1)))
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=records), app.now())


def test_streaks_json_gives_the_contract_fields_and_warns_on_stderr(app: App) -> None:
    load(app)
    result = run(app, "streaks", "--as-of", "2025-11-10", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["upn"] for r in rows] == ["A916299920000"]  # only pupils with a streak or a gap
    row = rows[0]
    assert STREAK_FIELDS <= set(row)
    assert (row["unexplained_days"], row["unexplained_start"], row["unauthorised_days"]) == (3, "2025-11-05", 3)
    assert (row["last_attended"], row["register_gaps"]) == ("2025-11-04", ["2025-11-07"])
    assert "unknown attendance code 'l'" in result.stderr
    every = json.loads(run(app, "streaks", "--as-of", "2025-11-10", "--format", "json", "--all").stdout)
    assert len(every) == 3
    c = next(r for r in every if r["upn"].startswith("C"))
    assert (c["unexplained_days"], c["unauthorised_days"], c["last_attended"]) == (0, 0, "2025-11-10")


def test_streaks_table(app: App) -> None:
    load(app)
    result = run(app, "streaks", "--as-of", "2025-11-10")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Streaks as of 2025-11-10 (school days): 1 pupil(s)"
    assert lines[1].split()[:3] == ["UPN", "id", "unexpl"]
    assert lines[2].split()[0] == "A916299920000" and "2025-11-05" in lines[2]


def test_detect_then_cases_and_one_case(app: App) -> None:
    load(app)
    first = run(app, "detect", "--as-of", "2025-11-10")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("detect as of 2025-11-10: 1 opened, 0 updated, 0 closed, 0 reopened")
    assert "CME-2025-0001  open" in first.stdout
    again = json.loads(run(app, "detect", "--as-of", "2025-11-10", "--format", "json").stdout)
    assert again["changes"] == [] and again["counts"]["events"] == 0

    [case] = json.loads(run(app, "cases", "--format", "json").stdout)
    assert CASE_FIELDS <= set(case)
    assert (case["ref"], case["kind"], case["status"], case["stage"], case["upn"]) == (
        "CME-2025-0001", "unexplained_absence", "open", "dsl_review", "A916299920000")
    assert (case["streak_start"], case["school_days"], case["last_attended"]) == ("2025-11-05", 3, "2025-11-04")
    # the gap on the 7th counts towards the tenth day: 5, 6, 7 and 10 November, then six more
    assert (case["referral_due"], case["closed_reason"], case["register_gaps"]) == ("2025-11-18", None, ["2025-11-07"])
    assert case["alerts"][0]["kind"] == "immediate_social_care"

    table = run(app, "cases")
    assert "CME-2025-0001" in table.stdout and "SOCIAL CARE" in table.stdout

    one = json.loads(run(app, "case", "cme-2025-0001", "--format", "json").stdout)
    assert [e["kind"] for e in one["events"]] == ["opened", "alert"]
    assert one["events"][0]["evidence"][:2] == [{"date": "2025-11-05", "session": "AM", "code": "N"},
                                                {"date": "2025-11-05", "session": "PM", "code": "N"}]
    text = run(app, "case", "CME-2025-0001").stdout
    assert "History" in text and "2025-11-07 AM -" in text and "ALERT immediate_social_care" in text


def test_closed_cases_show_with_all(app: App) -> None:
    load(app)
    run(app, "detect", "--as-of", "2025-11-10")
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "t2", records=[
        MarksRecord("A", date(2025, 11, 11), ("/", "\\"))]), app.now())
    out = run(app, "detect", "--as-of", "2025-11-11")
    assert "CME-2025-0001  close" in out.stdout and "(returned)" in out.stdout
    assert json.loads(run(app, "cases", "--format", "json").stdout) == []
    [closed] = json.loads(run(app, "cases", "--all", "--format", "json").stdout)
    assert (closed["status"], closed["closed_reason"]) == ("closed", "returned")


def test_going_back_in_time_and_an_unknown_case_exit_2(app: App) -> None:
    load(app)
    run(app, "detect", "--as-of", "2025-11-10")
    back = run(app, "detect", "--as-of", "2025-11-06")
    assert back.exit_code == 2 and "before the last detect run (2025-11-10)" in back.stderr
    missing = run(app, "case", "CME-2099-0042")
    assert missing.exit_code == 2 and "no case 'CME-2099-0042'" in missing.stderr


def test_returns_lists_an_episode_once(app: App) -> None:
    days = [date(2025, 11, d) for d in (4, 5, 6, 7, 10, 11, 12, 13, 14, 17, 18)]
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "t", records=[
        PupilRecord("R", upn="R916299920001", dob=date(2021, 9, 1)),
        *(MarksRecord("R", d, ("G", "N")) for d in days)]), app.now())
    assert json.loads(run(app, "returns", "--as-of", "2025-11-14", "--format", "json").stdout) == []
    [row] = json.loads(run(app, "returns", "--as-of", "2025-11-17", "--format", "json").stdout)
    assert (row["upn"], row["unauthorised_start"], row["reached_on"], row["school_days"]) == (
        "R916299920001", "2025-11-04", "2025-11-17", 10)
    assert row["compulsory_school_age"] is False
    assert len(json.loads(run(app, "returns", "--as-of", "2025-11-17", "--format", "json").stdout)) == 1
    assert json.loads(run(app, "returns", "--as-of", "2025-11-18", "--format", "json").stdout) == []
    table = run(app, "returns", "--as-of", "2025-11-17").stdout
    assert "LA 10-day return as of 2025-11-17: 1 pupil(s)" in table and "below compulsory age" in table


def test_an_unauthorised_streaks_missing_registers_are_shown(app: App) -> None:
    """G marks make no unexplained streak, so its gaps were the only ones shown: none."""
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "t", records=[
        PupilRecord("G", upn="G916299920002", dob=date(2017, 3, 1)),
        *(MarksRecord("G", date(2025, 11, d), pair) for d, pair in (
            (4, ("/", "\\")), (5, ("G", "G")), (6, ("-", "-")), (7, ("G", "G")), (10, ("G", "G"))))]), app.now())
    [row] = json.loads(run(app, "streaks", "--as-of", "2025-11-10", "--format", "json").stdout)
    assert (row["unexplained_days"], row["register_gaps"]) == (0, [])
    assert (row["unauthorised_days"], row["unauthorised_register_gaps"]) == (3, ["2025-11-06"])
    assert "G916299920002" in run(app, "streaks", "--as-of", "2025-11-10").stdout


def test_a_case_shows_a_corrected_mark_with_what_it_was(app: App) -> None:
    """The mark that explained an absence must be in the history, not only the N it replaced."""
    load(app)
    run(app, "detect", "--as-of", "2025-11-10")
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "t2", records=[
        MarksRecord("A", date(2025, 11, 10), ("I", "I")), MarksRecord("A", date(2025, 11, 11), ("I", "I"))]),
        app.now())
    run(app, "detect", "--as-of", "2025-11-11")
    text = run(app, "case", "CME-2025-0001").stdout
    assert "2025-11-10 AM I (was N)" in text and "2025-11-10 PM I (was O)" in text
