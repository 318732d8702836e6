"""Review 16 of the Arbor adapter's nightly pulls: can a change in Arbor be lost, misplaced or
misread so that a child goes unnoticed? Each test runs the real pull against the fake Arbor on
127.0.0.1 into a real SQLite store and looks at what a user would see there."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.fake_school import FakeSchool, ref
from adapters.arbor.fake_server import FakeArbor
from cme_batch.detect import run_detect
from cme_batch.marks import academic_year_of, year_start
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import PASSWORD, arbor_app, ingest_ok, stored_cursor
from tests.adapters.test_arbor_review import du_cases

P1_UPN = "A916299925001"
RECORD = "AttendanceRollCallRecord"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def stored_mark(engine: Engine, upn: str, day: date, session: str) -> str:
    """The code the store holds for one session of one pupil (``-``: no mark)."""
    yr = academic_year_of(day)
    with engine.connect() as conn:
        strip = conn.execute(
            select(t.mark_strips.c.marks).join(t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id)
            .where(t.pupils.c.upn == upn, t.mark_strips.c.academic_year == yr)).scalar()
    if strip is None:
        return "-"
    return str(strip[2 * (day - year_start(yr)).days + (0 if session == "AM" else 1)])


def fresh_store(tmp_path: Path, name: str) -> tuple[Path, str, Engine]:
    work = tmp_path / name
    work.mkdir()
    url = f"sqlite:///{work / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    return work, url, engine


# -- a second register of one session, changed on its own ------------------------------------------
def second_morning_register(school: FakeSchool) -> int:
    """A second roll call for the morning (a school taking registration, then a later register)."""
    return school._upsert("AttendanceRollCall", "AM2", {
        "name": "Morning (second register)", "attendanceRegisterType": {"isMorning": True, "isAfternoon": False}})


def unmarked_record(school: FakeSchool, pupil_key: str, day: date, roll_call: int, **extra: Any) -> None:
    school._upsert(RECORD, (pupil_key, day, "AM2"), {
        "student": ref("Student", school.student(pupil_key)), "recordDate": day,
        "attendanceRollCall": ref("AttendanceRollCall", roll_call), "attendanceMark": None, "minutesLate": None,
        **extra})


def test_a_second_register_left_unmarked_changed_on_its_own_does_not_wipe_the_first_registers_n(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """Amelia (p1) is N in the morning registration of Thu 4 Sep. The school has a second morning
    register; her record in it is unmarked. A full pull keeps the N (a roll call with a mark wins
    over one left unmarked: the fix of ``test_arbor_review.py``). But when only the unmarked record
    changes (a teacher opens that register again the next day, a late-minutes field is touched),
    the changes-only night fetches that record alone and lays its "no mark" over the N: the day
    no longer counts in her unexplained streak (DOMAIN 4: a no-mark day is skipped), so the count
    towards the 10th-day referral loses a day, and a one-day absence loses its first-day call."""
    day = date(2025, 9, 4)
    am2 = second_morning_register(arbor.school)
    unmarked_record(arbor.school, "p1", day, am2)
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)  # full
    assert stored_mark(engine, P1_UPN, day, "AM") == "N"  # the full pull got it right

    unmarked_record(arbor.school, "p1", day, am2, minutesLate=0)  # the second register's record touched
    arbor.seen.clear()
    ingest_ok(app)  # changes only
    # a changes-only night: the changed record by id, then the pupil's other records of that day
    assert all("id_in" in s.args or "student__id_in" in s.args for s in arbor.requests_for(RECORD))

    work, url, fresh = fresh_store(tmp_path, "fresh")
    ingest_ok(arbor_app(work, url, fresh, arbor))
    assert stored_mark(fresh, P1_UPN, day, "AM") == "N"  # what a full pull of Arbor as it is now gives
    assert stored_mark(engine, P1_UPN, day, "AM") == "N"  # the nightly store: "-" now


# -- a correction of last year's register when a deletion forces a full pull ---------------------
def _school_in_july() -> FakeSchool:
    school = FakeSchool()
    school.load([
        PupilRecord("p1", upn=P1_UPN, legal_surname="Ashdown", legal_forename="Amelia", dob=date(2018, 3, 4)),
        PupilRecord("p4", upn="D916299925004", legal_surname="Dunn", legal_forename="Dev", dob=date(2019, 1, 2)),
        EnrolmentRecord("p1", admission_date=date(2022, 9, 5), entry_date=date(2022, 9, 5)),
        EnrolmentRecord("p4", admission_date=date(2024, 9, 4), entry_date=date(2024, 9, 4)),
        # the last week of the summer term, Mon 14 to Fri 18 July 2025
        MarksRecord("p1", date(2025, 7, 14), tuple("//" * 5)),
        MarksRecord("p4", date(2025, 7, 14), tuple("//" * 5)),
    ])
    return school


def _clock(holder: list[datetime]) -> Any:
    return lambda: holder[0]


def test_a_july_mark_corrected_in_september_is_stored_when_a_deletion_forces_a_full_pull(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """Amelia (p1) was marked present on Fri 18 July by mistake; on 2 September, chasing the
    summer's absences, the office corrects it to N (she has not been seen since 17 July). That
    same day a wrong September record of another child is deleted in Arbor. The deletion makes
    the night's pull full, and a full pull reads roll-call records from 1 August only (the
    default ``academic_year_start``), dropping the changed ids the changelog gave: the July
    correction is never stored, and the cursor moves past it, so no later night brings it. Her
    unexplained streak, which should run across the summer holiday (DOMAIN 4: holidays neither
    break nor extend a streak), starts in September instead: a later first-day call, a later
    10th-day referral."""
    now = [datetime(2025, 7, 21, 5, 0, tzinfo=UTC)]
    school = _school_in_july()
    with FakeArbor(school, password=PASSWORD) as server:
        app = arbor_app(tmp_path, store_url, engine, server, academic_year_start=None)
        app.clock = _clock(now)
        ingest_ok(app)  # the July night: a full pull of 2024-25
        assert stored_mark(engine, P1_UPN, date(2025, 7, 18), "AM") == "/"

        school.set_mark("p4", date(2025, 9, 1), "AM", "/")
        now[0] = datetime(2025, 9, 1, 23, 0, tzinfo=UTC)
        ingest_ok(app)  # the first night of term: changes only
        school.set_mark("p1", date(2025, 7, 18), "AM", "N")  # the correction
        school.set_mark("p1", date(2025, 7, 18), "PM", "N")
        school.delete(RECORD, ("p4", date(2025, 9, 1), "AM"))  # a record made in error, removed
        now[0] = datetime(2025, 9, 2, 23, 0, tzinfo=UTC)
        ingest_ok(app)  # the deletion forces a full pull
        now[0] = datetime(2025, 9, 3, 23, 0, tzinfo=UTC)
        ingest_ok(app)  # and the next night follows the changelog again
        assert stored_cursor(engine) == str(school.revision)
        assert [stored_mark(engine, P1_UPN, date(2025, 7, 18), s) for s in ("AM", "PM")] == ["N", "N"]


# -- the cursor of a full pull when Arbor gives no head revision ---------------------------------------
def test_a_leaving_entered_during_a_full_pull_without_head_revision_is_read_the_next_night(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """Arbor gives no head revision (the endpoint is UNCONFIRMED). While a full pull runs (the
    first night, or any night a deletion forces one), the office records Dev's (p4) leaving with
    no destination just after the enrolments were read, and a teacher a mark before the marks are
    read. The cursor is the newest revision the pull read (the mark's), past the leaving: the
    changes-only nights after it start beyond the leaving and never read it. Dev stays on roll and
    no "destination unknown" case opens (DOMAIN 5). The same race on a changes-only night was
    fixed (``test_arbor_review.py``); a full pull still has it (adapters/arbor/README.md says so
    under "Unconfirmed shapes")."""
    arbor.head_revision_supported = False
    fired: list[str] = []

    def meanwhile(entity: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if entity == "SenStatusAssignment" and not fired:  # the enrolments have been read by now
            fired.append(entity)
            arbor.school.load([EnrolmentRecord("p4", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8),
                                               leaving_date=date(2025, 11, 20), leaving_reason="Moved away")])
            arbor.school.set_mark("p1", date(2025, 11, 27), "PM", "/")
        return rows

    arbor.mangle = meanwhile
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)  # full, while Arbor changes
    assert fired
    arbor.mangle = None
    ingest_ok(app)  # the next night: changes only
    ingest_ok(app)  # and the one after
    run_detect(app, date(2025, 11, 28))
    assert du_cases(engine) == [("D916299925004", "open")]
