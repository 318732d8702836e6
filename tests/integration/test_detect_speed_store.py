"""The bulk reads of detect on a real store (SQLite and PostgreSQL), on the paths a small school rarely takes.

A store holding one school skips the join on ``pupils``: a second school in the store must not
change what the first one's evaluation sees. A pupil with several admission rows goes the slow
way through the enrolments; everyone else's single row is used as read. Pupils' UPN and date
of birth are read only when asked for.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record, SourceBatch
from cme_batch.store import ingest as store_ingest
from tests.conftest import FIXED_NOW, write_config

AS_OF = date(2025, 11, 14)
WEEK = [date(2025, 11, d) for d in (10, 11, 12, 13, 14)]


@pytest.fixture
def dapp(engine: Engine, store_url: str, tmp_path: Path) -> App:
    a = App(str(write_config(tmp_path, store_url)), clock=lambda: FIXED_NOW)
    a._engine = engine
    return a


def ingest(app: App, school_id: int, *records: Record) -> None:
    store_ingest.apply_batch(app.engine(), school_id, SourceBatch("test", "test", records=list(records)), app.now())


def pupil(key: str, dob: date | None = date(2016, 5, 1)) -> PupilRecord:
    return PupilRecord(key, upn=f"T{key:0>12}", dob=dob)


def marks(key: str, pairs: dict[date, str]) -> list[MarksRecord]:
    return [MarksRecord(key, day, (pair[0], pair[1])) for day, pair in pairs.items()]


def absent_this_week(key: str) -> list[MarksRecord]:
    return marks(key, {date(2025, 11, 7): "/\\", **{d: "NN" for d in WEEK}})


def summary(ev: detect.Evaluation) -> dict[str, Any]:
    streaks = {pid: (s.unexplained.days, s.unexplained.start) for pid, s in ev.results.streaks.items()}
    return {"on_roll": dict(ev.on_roll), "streaks": streaks, "warnings": ev.warnings,
            "flags": ev.flags, "strips": {y: dict(s) for y, s in ev.strips.items()}}


def test_a_second_school_in_the_store_changes_nothing_for_the_first(dapp: App) -> None:
    ingest(dapp, dapp.school_id, pupil("1"), pupil("2"), *absent_this_week("1"),
           *marks("2", {d: "/\\" for d in WEEK}), FlagRecord("1", "young_carer", start=date(2025, 1, 6)),
           EnrolmentRecord("2", entry_date=date(2025, 9, 2)))
    alone = summary(detect.evaluate(dapp, AS_OF))
    with dapp.engine().begin() as conn:
        other = store_ingest.ensure_school(conn, "916", "3001", "Another School")
    ingest(dapp, other, pupil("b1"), pupil("b2"), *absent_this_week("b1"), *marks("b2", {d: "l/" for d in WEEK}),
           FlagRecord("b1", "looked_after", start=date(2025, 1, 6)),
           EnrolmentRecord("b2", entry_date=date(2025, 9, 2), leaving_date=date(2025, 11, 12)))
    assert summary(detect.evaluate(dapp, AS_OF)) == alone
    with dapp.engine().connect() as conn:
        theirs = detect.evaluate_conn(conn, dapp.config, other, AS_OF)
        [b1] = theirs.results.streaks
        assert theirs.results.streaks[b1].unexplained.days == 5 and theirs.flags == {b1: frozenset({"looked_after"})}
        assert set(theirs.on_roll) == {b1} and "unknown attendance code 'l'" in " ".join(theirs.warnings)
        assert theirs.facts(b1).upn == "T0000000000b1"
    report = detect.run_detect(dapp, AS_OF)
    assert [c["kind"] for c in report.changes] == ["unexplained_absence"]


def test_admissions_one_row_or_several(dapp: App) -> None:
    ingest(dapp, dapp.school_id,
           *(pupil(k) for k in "123456"),
           EnrolmentRecord("1", entry_date=date(2023, 9, 4), leaving_date=date(2025, 7, 18)),  # left, came back
           EnrolmentRecord("1", entry_date=date(2025, 11, 10)),
           EnrolmentRecord("2", entry_date=date(2023, 9, 4), leaving_date=date(2025, 11, 12),  # left this week
                           leaving_reason="Moved away, whereabouts unknown"),
           EnrolmentRecord("3", admission_date=date(2025, 11, 17)),  # starts next week
           EnrolmentRecord("4", admission_date=date(2025, 11, 10), withdrawn=True),
           # "5": no admission recorded at all
           EnrolmentRecord("6", admission_date=date(2025, 11, 10)),  # an agreed first day, never seen since
           *(m for k in "12345" for m in absent_this_week(k)), *marks("6", {d: "NN" for d in WEEK}))
    ev = detect.evaluate(dapp, AS_OF)
    ids = {ev.facts(pid).upn: pid for pid in ev.enrolments} | {ev.facts(pid).upn: pid for pid in ev.on_roll}
    pid = {k: ids[f"T{k:0>12}"] for k in "12456"}
    assert ev.on_roll == {pid["1"]: date(2025, 11, 10), pid["5"]: None, pid["6"]: date(2025, 11, 10)}
    assert ev.facts(pid["1"]).streaks.unexplained.start == date(2025, 11, 10)  # not before the readmission
    assert ev.facts(pid["2"]).leaving_date == date(2025, 11, 12) and not ev.facts(pid["2"]).on_roll
    assert ev.facts(pid["4"]).admission_withdrawn
    assert ev.facts(pid["5"]).streaks.unexplained.days == 5
    assert ev.with_news() >= {pid["1"], pid["2"], pid["5"], pid["6"]}
    report = detect.run_detect(dapp, AS_OF)
    # "1", readmitted on 10 November and not seen since, is a place not taken up (its first day on
    # roll is the readmission's: the fifteenth session), as "6" is; "5" an unexplained absence
    assert sorted((c["kind"], c["action"]) for c in report.changes) == [
        ("destination_unknown", "open"), ("place_not_taken_up", "open"), ("place_not_taken_up", "open"),
        ("unexplained_absence", "open")]


def test_upn_and_date_of_birth_are_read_when_asked_for(dapp: App) -> None:
    ingest(dapp, dapp.school_id, pupil("1"), pupil("2", dob=None), *absent_this_week("1"),
           *marks("2", {d: "/\\" for d in WEEK}))
    with dapp.engine().connect() as conn:
        ev = detect.evaluate_conn(conn, dapp.config, dapp.school_id, AS_OF)
        assert ev.people == {}
        [one] = ev.results.streaks
        ev.load_people([one])
        assert ev.people == {one: ("T000000000001", date(2016, 5, 1))}
        [two] = set(ev.on_roll) - {one}
        assert (ev.facts(two).upn, ev.facts(two).dob) == ("T000000000002", None)  # everyone read now
        assert set(ev.people) == {one, two}
    ev = detect.evaluate(dapp, AS_OF)  # its connection is closed: facts reads through a new one
    assert ev.facts(one).upn == "T000000000001"
