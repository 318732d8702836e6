"""Whose attendance and school history a CTF lays on our pupil: this school's, never the previous
school's, and a file from another school removes none of our records.

An incoming pupil's CTF comes from their previous school (``SourceSchool`` another school,
``DestSchool`` us). Its ``YearData`` and ``SchoolHistory`` entries that do not name a school are
the sender's: laid as ours they would put the old school's absences (a false case) or its last
day (a false "last attended", or a leaving date that hides a real case) on our register.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from adapters.ctf import CtfSource
from cme_batch.store import ingest
from cme_batch.store import tables as t

FIX = Path(__file__).with_name("fixtures")
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
OURS = '<LEA>916</LEA><Estab>2999</Estab><SchoolName>A School</SchoolName>'
OUR_HISTORY = ('<School><LEA>916</LEA><Estab>2999</Estab><SchoolName>Example Primary School</SchoolName>'
               '<EntryDate>2022-09-05</EntryDate></School>')
MARKS = "/\\/I####NNONNNNNNN"


class _School:
    la_number, establishment_number = "916", "2999"


def apply(engine: Engine, path: Path) -> ingest.IngestResult:
    """As ``cme-batch import`` does: the configured school is always given to the reader."""
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    return ingest.apply_batch(engine, school, CtfSource.parse_file(path, {"school": _School()}), NOW)


def incoming(tmp_path: Path, text: str | None = None) -> Path:
    """The fixture as sent by the previous school 916/2001 to us: YearData naming no school, and
    a history entry at the old school (LEA only) with its leaving date."""
    text = (text or (FIX / "ctf-25.xml").read_text()).replace(
        "<SourceSchool><LEA>916</LEA><Estab>2999</Estab>", "<SourceSchool><LEA>916</LEA><Estab>2001</Estab>")
    text = text.replace(OURS, "<SchoolName>Previous Infants</SchoolName>").replace(
        OUR_HISTORY, "<School><LEA>916</LEA><SchoolName>Previous Infants</SchoolName><EntryDate>2022-09-05"
                     "</EntryDate><LeavingDate>2025-11-14</LeavingDate></School>")
    path = tmp_path / "9162001_CTF_9162999_001.xml"
    path.write_text(text)
    return path


def strips(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.mark_strips.c.marks)).scalars())


def enrolments(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.pupils.c.upn, t.enrolments.c.entry_date, t.enrolments.c.leaving_date)
                            .join(t.pupils, t.pupils.c.id == t.enrolments.c.pupil_id)
                            .order_by(t.pupils.c.upn)).all()
    return [tuple(r) for r in rows]


def test_an_incoming_pupils_previous_school_attendance_and_leaving_are_not_laid_as_ours(
        engine: Engine, tmp_path: Path) -> None:
    result = apply(engine, incoming(tmp_path))
    assert result.status == "ok" and result.counts["pupils_added"] == 2
    assert strips(engine) == [], "the previous school's N/O marks are not our register (a false case)"
    assert enrolments(engine) == [], "the previous school's leaving date is not a leaving from our school"


def test_an_incoming_file_removes_none_of_our_enrolments(engine: Engine, tmp_path: Path) -> None:
    apply(engine, FIX / "ctf-25.xml")  # the school's own full export: our enrolments
    ours = enrolments(engine)
    assert ours == [("A123456789012", date(2022, 9, 5), None), ("P234567890123", date(2022, 9, 5), None)]
    apply(engine, incoming(tmp_path))  # a full CTF from the previous school of the same pupils
    assert enrolments(engine) == ours, "a file from another school cannot say we hold no enrolment"


def test_our_own_export_with_yeardata_naming_no_school_is_still_ours(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "own.xml"
    path.write_text((FIX / "ctf-25.xml").read_text().replace(OURS, "<SchoolName>A School</SchoolName>"))
    apply(engine, path)
    assert len(strips(engine)) == 2
    assert len(enrolments(engine)) == 2


def test_every_attend_sessions_run_of_a_year_is_laid(engine: Engine, tmp_path: Path) -> None:
    """A YearData with two runs (say autumn to half term, then after it): the second run's N
    marks are on the register too, not silently dropped."""
    second = "<AttendSessions><AttendanceStartDate>2025-11-24</AttendanceStartDate>" \
             "<AttendanceMarks>NNNN</AttendanceMarks></AttendSessions>"
    text = (FIX / "ctf-25.xml").read_text()
    first = f"<AttendanceMarks>{MARKS}</AttendanceMarks></AttendSessions>"
    path = tmp_path / "runs.xml"
    path.write_text(text.replace(first, first + second, 1))
    assert apply(engine, path).status == "ok"
    with engine.connect() as conn:
        strip = conn.execute(select(t.mark_strips.c.marks).join(t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id)
                             .where(t.pupils.c.upn == "A123456789012")).scalar_one()
    at = 2 * (date(2025, 11, 6) - date(2025, 8, 1)).days
    assert strip[at:at + len(MARKS)] == MARKS
    at = 2 * (date(2025, 11, 24) - date(2025, 8, 1)).days
    assert strip[at:at + 4] == "NNNN", "Monday and Tuesday 24-25 November from the second run"
