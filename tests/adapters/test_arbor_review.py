"""An adversarial review of the Arbor adapter: realistic Arbor data through the real pull, import
and ``detect`` into a real SQLite store, looking for a child missed or a record filed wrongly."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from adapters.arbor.fake_server import FakeArbor
from cme_batch.detect import run_detect
from cme_batch.importer import ingest_sources
from cme_batch.model import EnrolmentRecord, PupilRecord
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import arbor_app, ingest_ok, stored_cursor
from tests.helpers import snapshot

P4_UPN = "D916299925004"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"




def du_cases(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(t.pupils.c.upn, t.cases.c.status).join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id)
            .where(t.cases.c.kind == "destination_unknown"))]


# -- the cursor when Arbor has no head revision endpoint (UNCONFIRMED: it may well not) --------------
def test_a_leaving_entered_while_the_changelogs_are_read_is_not_skipped_by_the_cursor(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """Without a head revision the cursor of a changes-only night came from the newest change read.
    The changelogs are read one resource after another: a leaving entered just after the
    enrolments' changelog was read, then a mark entered before the marks' changelog was read,
    moved the cursor past the leaving, which no later night read: the child stayed on roll, with
    no "destination unknown" case, until some deletion forced a full pull."""
    arbor.head_revision_supported = False
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)  # full

    fired: list[str] = []

    def meanwhile(what: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if what == "changelog educational-institution-enrolments" and not fired:
            fired.append(what)  # the office records the leaving, then a teacher a late mark
            arbor.school.load([EnrolmentRecord("p4", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8),
                                               leaving_date=date(2025, 11, 20), leaving_reason="Moved away")])
            arbor.school.set_mark("p1", date(2025, 11, 27), "PM", "/")
        return rows

    arbor.mangle = meanwhile
    ingest_ok(app)  # changes only, while Arbor changes
    assert fired
    arbor.mangle = None
    ingest_ok(app)  # the next night
    ingest_ok(app)  # and the one after
    run_detect(app, date(2025, 11, 28))
    assert du_cases(engine) == [(P4_UPN, "open")]


# -- two Arbor students with one UPN -------------------------------------------------------------------
def test_two_students_with_one_upn_are_refused_naming_the_arbor_students(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """The store refuses a batch giving two pupils one UPN, but named the culprit "pupil 5 of the
    file": an Arbor pull has no file, so the school could not find which of its students to
    correct, and every night's pull was refused until it did."""
    arbor.school.load([PupilRecord("p9", upn="A916299925001", legal_surname="Zephyr", legal_forename="Zoe",
                                   dob=date(2018, 1, 1)),
                       EnrolmentRecord("p9", admission_date=date(2025, 9, 2), entry_date=date(2025, 9, 2))])
    before = snapshot(engine)
    (outcome,) = ingest_sources(arbor_app(tmp_path, store_url, engine, arbor))
    assert outcome.status == "failed"
    first, second = arbor.school.student("p1"), arbor.school.student("p9")
    assert f"Student {first} and {second}" in outcome.detail, outcome.detail
    assert "one UPN" in outcome.detail
    for private in ("A916299925001", "Ashdown", "Zephyr", "Amelia", "Zoe", "2018"):
        assert private not in outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar_one() == 0


def test_a_second_roll_call_of_a_session_left_unmarked_does_not_hide_the_first_ones_mark() -> None:
    """A school with two roll calls for the morning (registration, then a second register): the
    newer record won even with no mark, so the child's N became a session with no mark, which no
    absence streak counts: **a day of unexplained absence lost from the count** towards the 10th
    day. A mark now wins over a roll call left unmarked; of two marks, the newer still wins."""
    from adapters.arbor import attendance

    roll_calls = [{"id": 1, "attendanceRegisterType": {"isMorning": True}},
                  {"id": 2, "attendanceRegisterType": {"isMorning": True}},
                  {"id": 3, "attendanceRegisterType": {"isAfternoon": True}}]
    marks = [{"id": 7, "code": "N"}, {"id": 8, "code": "/"}]

    def record(roll_call: int, revision: int, mark: int | None, day: str = "2025-09-22") -> dict[str, Any]:
        r: dict[str, Any] = {"student": {"id": 5}, "recordDate": day, "attendanceRollCall": {"id": roll_call},
                             "revisionId": revision}
        return r if mark is None else {**r, "attendanceMark": {"id": mark}}

    [got] = attendance.marks_records([record(1, 3, 7), record(2, 5, None), record(3, 4, None),
                                      record(2, 6, None, "2025-09-23"), record(1, 2, 7, "2025-09-23")],
                                     roll_calls, marks, [])
    assert got.codes == ("N", "-", "N", "")
    [newer] = attendance.marks_records([record(1, 3, 7), record(2, 5, 8)], roll_calls, marks, [])
    assert newer.codes == ("/", "")
    [alone] = attendance.marks_records([record(3, 4, None)], roll_calls, marks, [])
    assert alone.codes == ("", "-"), "a roll call with no mark and no other is still a register gap"
    [removed] = attendance.marks_records([record(1, 3, 7), record(1, 6, None), record(2, 5, None)],
                                         roll_calls, marks, [])
    assert removed.codes == ("-", ""), "a mark removed from its roll call (a newer revision of it) is gone"
