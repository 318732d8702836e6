"""Inputs a real MIS can send that were dropped, misread or replaced without a word.

Each test is an input found to lose or change a mark, an admission, a leaving, a pupil's flag
or a session silently (no problem, no warning), in the SIMS reader or the Arbor adapter. Now
each one is read right, or refused naming the file (or Arbor entity), record and field, or
kept with a warning. No message may hold a pupil's name, UPN or date of birth.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.fake_server import FakeArbor
from adapters.arbor.source import ArborSource
from adapters.sims.fields import FieldMap
from adapters.sims.parser import read_file
from cme_batch.config import CodesConfig
from cme_batch.errors import ImportRejected
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, Record, SourceBatch, Warning_
from cme_batch.sources import SourceContext
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import ingest_once, source_config, stored_cursor
from tests.conftest import FIXED_NOW
from tests.helpers import snapshot

CODES = CodesConfig(local={}, subcodes={"I01": "I"})
Row = list[tuple[str, str]]
AGREED, STATUS, ADMITTED = "Agreed_x0020_Start_x0020_Date", "Application_x0020_Status", "Admission_x0020_Date"
LEAVING, REASON = "Leaving_x0020_Date", "Reason_x0020_for_x0020_Leaving"
CPP, IN_CARE = "Child_x0020_Protection_x0020_Plan", "In_x0020_Care"
#: Personal data in the rows below, which no message may hold.
SECRETS = ("A123456789012", "Example", "Zoe", "2018-05-01")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """What these tests store is the same on either backend: one is enough."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


# -- SIMS ------------------------------------------------------------------------------------------
def _export(folder: Path, name: str, rows: list[Row]) -> Path:
    body = "".join("<Record>" + "".join(f"<{k}>{v}</{k}>" for k, v in row) + "</Record>" for row in rows)
    path = folder / name
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><SuperStarReport>{body}</SuperStarReport>',
                    encoding="utf-8")
    return path


def _sims(folder: Path, name: str, rows: list[Row], **options: Any) -> tuple[list[Record], list[Warning_]]:
    batch = read_file(_export(folder, name, rows), {"codes": CODES, **options})
    return list(batch.records), batch.warnings


def _sims_refused(folder: Path, name: str, rows: list[Row], **options: Any) -> list[str]:
    with pytest.raises(ImportRejected) as info:
        _sims(folder, name, rows, **options)
    assert name in str(info.value)
    for secret in SECRETS:
        assert secret not in str(info.value)
    return info.value.problems


def _of(records: list[Record], cls: type[Any]) -> list[Any]:
    return [r for r in records if isinstance(r, cls)]


def _pupil(adno: str = "5") -> Row:
    return [("Adno", adno), ("UPN", "A123456789012"), ("Legal_x0020_Surname", "Example"),
            ("Legal_x0020_Forename", "Zoe"), ("Date_x0020_of_x0020_Birth", "2018-05-01")]


@pytest.mark.parametrize(("name", "row", "field"), [
    # the second day's mark was laid on the first day (the date read from the first 10 characters
    # of the two texts joined)
    ("marks-1.xml", [("Adno", "5"), ("Date", "2025-11-03"), ("Date", "2025-11-04"), ("Session", "AM"),
                     ("Mark", "N")], "Date"),
    # two admission numbers joined: '5' and '6' made pupil 56, a child who does not exist
    ("marks-1.xml", [("Adno", "5"), ("Adno", "6"), ("Date", "2025-11-03"), ("Session", "AM"), ("Mark", "N")],
     "Adno"),
    # an N joined with a / made 'N/', an unknown code counted as neutral: the absence lost
    ("marks-1.xml", [("Adno", "5"), ("Date", "2025-11-03"), ("Session", "AM"), ("Mark", "N"), ("Mark", "/")],
     "Mark"),
    # a field and its alias: the later one was kept, the other dropped
    ("leavers-1.xml", [*_pupil(), (LEAVING, "2025-11-14"), ("Date_x0020_of_x0020_Leaving", "2025-12-01")],
     "Leaving Date"),
    ("leavers-1.xml", [*_pupil(), (LEAVING, "2025-11-14"), ("Destination", "Unknown"),
                       ("Next_x0020_School", "St Peter's Primary")], "Destination"),
    ("pupils-1.xml", [*_pupil(), (CPP, "Yes"), (CPP, "No")], "Child Protection Plan"),
])
def test_a_sims_field_given_twice_with_different_values_is_refused(tmp_path: Path, name: str, row: Row,
                                                                  field: str) -> None:
    problems = _sims_refused(tmp_path, name, [row])
    assert problems == [f"record 1, field {field}: is given more than once, with different values: a record "
                        "gives each field once (check the report for a field added twice, or a field and its "
                        "alias)"]


def test_a_sims_field_given_twice_alike_or_once_empty_is_read_once(tmp_path: Path) -> None:
    records, warnings = _sims(tmp_path, "marks-1.xml", [
        [("Adno", "5"), ("Date", "2025-11-03"), ("Attendance_x0020_Date", "2025-11-03"), ("Session", "AM"),
         ("Mark", "N"), ("Mark", "N")],
        [("Adno", "5"), ("Date", "2025-11-03"), ("Session", "PM"), ("Mark", ""), ("Mark", "/")]])
    assert _of(records, MarksRecord) == [MarksRecord("5", date(2025, 11, 3), ("N", "/"))]
    assert not warnings


def test_two_sims_applications_for_one_first_day_keep_the_live_one(tmp_path: Path) -> None:
    """An applicant's withdrawn application and the accepted one, for the same agreed first day:
    the accepted one was dropped as 'already read' when the withdrawn one came first, so the
    place looked withdrawn and a place not taken up could never be found."""
    withdrawn = [("Person_x0020_ID", "77"), (AGREED, "2025-09-03"), (STATUS, "Withdrawn")]
    accepted = [("Person_x0020_ID", "77"), (AGREED, "2025-09-03"), (STATUS, "Accepted")]
    for rows in ([withdrawn, accepted], [accepted, withdrawn]):
        records, _ = _sims(tmp_path, "admissions-1.xml", rows)
        assert [(e.admission_date, e.withdrawn) for e in _of(records, EnrolmentRecord)][-1:] == [
            (date(2025, 9, 3), False)], rows


@pytest.mark.parametrize(("second", "field"), [
    ([(ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"), ("Destination", "Unknown")], "Destination"),
    ([(ADMITTED, "2022-09-05"), (LEAVING, "2025-10-01"), ("Destination", "St Peter's Primary")], "Leaving Date"),
    # the same agreed first day with another admission date: the store keeps one admission per
    # agreed first day, so the second replaced the first without a word
    ([(AGREED, "2022-09-05"), (ADMITTED, "2022-09-12"), (LEAVING, "2025-11-14"),
      ("Destination", "St Peter's Primary")], "Admission Date"),
])
def test_two_sims_rows_of_one_admission_that_disagree_are_refused(tmp_path: Path, second: Row, field: str) -> None:
    """Before, the second row was dropped (or replaced the first in the store) without a word:
    a leaving whose destination is unknown could be lost behind one that names a school."""
    first: Row = [*_pupil(), (AGREED, "2022-09-05"), (ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"),
                  ("Destination", "St Peter's Primary")]
    if second[0][0] != AGREED:
        second = [(AGREED, "2022-09-05"), *second]
    problems = _sims_refused(tmp_path, "leavers-1.xml", [first, [*_pupil(), *second]])
    assert len(problems) == 1 and problems[0].startswith(f"record 2, field {field}: contradicts record 1, an "
                                                         "earlier row for the same pupil and admission"), problems


def test_two_sims_rows_of_one_admission_alike_are_one_enrolment(tmp_path: Path) -> None:
    row: Row = [*_pupil(), (ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"), ("Destination", "Unknown")]
    records, warnings = _sims(tmp_path, "leavers-1.xml", [row, row])
    assert [e.leaving_date for e in _of(records, EnrolmentRecord)] == [date(2025, 11, 14)] and not warnings


@pytest.mark.parametrize(("name", "row"), [
    ("leavers-1.xml", [*_pupil(), (ADMITTED, "2022-09-05"), (LEAVING, " "), (REASON, "Moved away"),
                       ("Destination", "Unknown")]),
    ("leavers-1.xml", [*_pupil(), (ADMITTED, "2022-09-05"), (REASON, "Moved away")]),
    ("leavers-1.xml", [*_pupil(), (ADMITTED, "2022-09-05")]),  # a leaver without a Leaving Date
    ("admissions-1.xml", [*_pupil(), (ADMITTED, "2022-09-05"), ("Destination", "Unknown")]),
])
def test_a_sims_leaving_without_its_date_is_refused(tmp_path: Path, name: str, row: Row) -> None:
    """A leaver's row whose Leaving Date is empty (or left out) was read as a pupil still on
    roll: the leaving, and with it a destination unknown, was lost without a word."""
    problems = _sims_refused(tmp_path, name, [row])
    assert len(problems) == 1 and problems[0].startswith("record 1, field Leaving Date: is missing"), problems


def test_a_sims_flag_on_a_later_row_of_the_pupil_is_raised_and_checked(tmp_path: Path) -> None:
    """One row per pupil per contact: only the pupil's first row was read for flags, so a Yes
    on a later row was dropped, and a value that is no Yes/No there went unchecked."""
    rows = [[*_pupil(), ("Contact_x0020_ID", "1"), (CPP, "No")], [*_pupil(), ("Contact_x0020_ID", "2"), (CPP, "Yes")]]
    records, warnings = _sims(tmp_path, "pupils-1.xml", rows)
    assert [(f.pupil_key, f.kind) for f in _of(records, FlagRecord)] == [("5", "child_protection_plan")]
    assert [(w.code, w.where, w.pupil_key) for w in warnings] == [
        ("flag_rows_disagree", "pupils-1.xml record 2", "5")]
    assert "Child Protection Plan" in warnings[0].message and "record 1" in warnings[0].message
    rows[1][-1] = (IN_CARE, "Maybe")
    assert _sims_refused(tmp_path, "pupils-1.xml", rows) == [
        "record 2, field In Care: is not Yes/No (or True/False): 'Maybe'"]


@pytest.mark.parametrize(("status", "flag"), [
    ("SEN Support", "sen_support"), ("School Action", "sen_support"), ("School Action Plus", "sen_support"),
    ("K - SEN Support", "sen_support"), ("k", "sen_support"), ("Education, Health and Care Plan", "ehcp"),
    ("E", "ehcp"), ("Statement", "ehcp"), ("No Special Educational Need", None), ("Special needs", "warned"),
])
def test_a_sims_sen_status_written_as_its_description_is_read_as_that_status(tmp_path: Path, status: str,
                                                                             flag: str | None) -> None:
    """Only the first letter was read: 'SEN Support', 'School Action' or 'Special needs' read as
    S, a statement, and raised an EHCP flag without a word."""
    records, warnings = _sims(tmp_path, "pupils-1.xml", [[*_pupil(), ("Contact_x0020_ID", "1"),
                                                          ("SEN_x0020_Status", status)]])
    kinds = [f.kind for f in _of(records, FlagRecord)]
    if flag == "warned":
        assert kinds == [] and [w.code for w in warnings] == ["unknown_sen_status"]
        assert [w.dsl_only for w in warnings] == [True]  # (a vulnerability record: the DSL's digest alone)
    else:
        assert kinds == ([flag] if flag else []) and not warnings


def test_a_sims_marks_report_without_any_mark_field_is_refused(tmp_path: Path) -> None:
    """A marks report whose mark field has a name cme-batch does not know ('Code'): every row
    read as 'no mark', which replaced every stored mark. A field left empty is left out, so one
    row without a mark is no mark; a whole report without one is a field under another name."""
    rows = [[("Adno", "5"), ("Date", "2025-11-03"), ("Session", s), ("Code", "N")] for s in ("AM", "PM")]
    assert _sims_refused(tmp_path, "marks-1.xml", rows) == [
        "file, field Mark: not one record has a mark (a field named Mark, Attendance Mark or Session Mark), so "
        "every session would be stored as no mark, replacing the marks stored: if the report names its mark "
        "field otherwise, map it in the source's fields (mark = \"...\")"]
    records, _ = _sims(tmp_path, "marks-1.xml", rows, fields_map=FieldMap({"mark": "Code"}))
    assert _of(records, MarksRecord) == [MarksRecord("5", date(2025, 11, 3), ("N", "N"))]


def test_a_refused_sims_file_changes_nothing_in_the_store(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    now = FIXED_NOW
    ingest.apply_batch(engine, school, read_file(_export(tmp_path, "leavers-1.xml", [
        [*_pupil(), (ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"), ("Destination", "Unknown")]]), {}), now)
    before = snapshot(engine)
    path = _export(tmp_path, "leavers-2.xml", [
        [*_pupil(), (ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"), ("Destination", "Unknown")],
        [*_pupil(), (ADMITTED, "2022-09-05"), (LEAVING, "2025-11-14"), ("Destination", "St Peter's Primary")]])
    with pytest.raises(ImportRejected):
        ingest.apply_batch(engine, school, read_file(path, {}), now)
    assert snapshot(engine) == before


def _stored(engine: Engine, table: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(table)).mappings())


@pytest.mark.parametrize(("second", "kept", "code"), [
    # no contact field in any row (a report without them): the stored contacts were all removed
    ([*_pupil(), (CPP, "Yes")], "contacts", "no_contacts"),
    # the flag columns renamed ("CP Plan"): every stored flag, the child protection plan too, removed
    ([*_pupil(), ("Contact_x0020_ID", "77"), ("Contact_x0020_Surname", "Example"), ("CP_x0020_Plan", "Yes")],
     "flags", "no_flags"),
])
def test_a_sims_pupils_report_without_contact_or_flag_fields_keeps_what_is_stored(
        engine: Engine, tmp_path: Path, second: Row, kept: str, code: str) -> None:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    first = [*_pupil(), ("Contact_x0020_ID", "77"), ("Contact_x0020_Surname", "Example"), (CPP, "Yes")]
    ingest.apply_batch(engine, school, read_file(_export(tmp_path, "pupils-1.xml", [first]), {}), FIXED_NOW)
    assert len(_stored(engine, t.contacts)) == 1 and len(_stored(engine, t.flags)) == 1
    batch = read_file(_export(tmp_path, "pupils-2.xml", [second]), {})
    ingest.apply_batch(engine, school, batch, FIXED_NOW)
    assert len(_stored(engine, t.contacts if kept == "contacts" else t.flags)) == 1
    assert [w.code for w in batch.warnings] == [code]


def test_a_sims_pupils_report_whose_flags_all_say_no_removes_the_stored_flag(engine: Engine, tmp_path: Path) -> None:
    """The other side: a report that has the field and says No is heard (the plan has ended)."""
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    rows = [[*_pupil(), ("Contact_x0020_ID", "77"), ("Contact_x0020_Surname", "Example"), (CPP, "Yes")]]
    ingest.apply_batch(engine, school, read_file(_export(tmp_path, "pupils-1.xml", rows), {}), FIXED_NOW)
    rows[0][-1] = (CPP, "No")
    batch = read_file(_export(tmp_path, "pupils-2.xml", rows), {})
    ingest.apply_batch(engine, school, batch, FIXED_NOW)
    assert _stored(engine, t.flags) == [] and batch.warnings == []


# -- Arbor -----------------------------------------------------------------------------------------
Mangle = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


def _rows(entity: str, change: Callable[[dict[str, Any]], None], student: int | None = None) -> Mangle:
    """Change every row of ``entity`` (of one student, when given) in the answers."""
    def mangle(e: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if e != entity:
            return rows
        rows = copy.deepcopy(rows)
        for r in rows:
            if student is None or (r.get("student") or {}).get("id") == student:
                change(r)
        return rows
    return mangle


def _pull(arbor: FakeArbor, tmp_path: Path, mangle: Mangle | None = None) -> SourceBatch:
    """One full pull from the fake, without a store."""
    arbor.mangle = mangle
    source = ArborSource.from_config(source_config(arbor, tmp_path))
    (batch,) = source.batches(SourceContext(now=FIXED_NOW))
    return batch


def _flags(batch: SourceBatch, student: str) -> list[str]:
    return sorted(r.kind for r in batch.records if isinstance(r, FlagRecord) and r.pupil_key == student)


# the small school's pupils by Arbor id: p1 (child protection plan), p2 (looked after),
# p3 (SEN support, young carer; left), p4
P1, P2, P3, P4 = 1004, 1010, 1014, 1020


@pytest.mark.parametrize("code", ["cpp", " CPP", "CPP "])
def test_an_arbor_child_protection_code_in_another_case_or_with_spaces_raises_the_flag(
        arbor: FakeArbor, tmp_path: Path, code: str) -> None:
    """The code was looked up as sent: 'cpp' or 'CPP ' raised no flag and said nothing, so a child
    with a plan missing school would not have raised the alert to inform social care."""
    batch = _pull(arbor, tmp_path, _rows("ChildProtectionStatusAssignment",
                                         lambda r: r["childProtectionStatus"].update(code=code)))
    assert _flags(batch, str(P1)) == ["child_protection_plan"] and not batch.warnings


@pytest.mark.parametrize(("entity", "change", "student", "words"), [
    ("ChildProtectionStatusAssignment", lambda r: r["childProtectionStatus"].update(code="CP"), P1,
     "status code 'CP', which is not CPP or CIN"),
    ("ChildProtectionStatusAssignment", lambda r: r["childProtectionStatus"].update(code=None), P1,
     "no status code"),
    ("InCareStatusAssignment", lambda r: r["inCareStatus"].update(countsAsInCareStatus=None), P2,
     "does not say whether it counts as in care"),
    ("SenStatusAssignment", lambda r: r["senStatus"].update(code="X"), P3,
     "status code 'X', which is not K, E or N"),
])
def test_an_arbor_status_the_adapter_cannot_read_is_warned_about(
        arbor: FakeArbor, tmp_path: Path, entity: str, change: Callable[[dict[str, Any]], None], student: int,
        words: str) -> None:
    """Each was dropped without a word: no flag, no warning."""
    batch = _pull(arbor, tmp_path, _rows(entity, change))
    (warning,) = [w for w in batch.warnings if w.code == "arbor_unknown_status"]
    assert warning.dsl_only  # (a vulnerability record: the DSL's digest alone)
    assert warning.message.startswith(f"Arbor {entity} ") and words in warning.message, warning.message
    assert warning.pupil_key == str(student)
    for secret in ("Ashdown", "Cole", "A916299925001", "2018-03-04"):
        assert secret not in warning.message


def test_an_arbor_student_tag_in_another_case_or_spacing_raises_its_flag(arbor: FakeArbor, tmp_path: Path) -> None:
    """A school's tag 'Domestic Abuse' (the default names 'Domestic abuse') raised nothing."""
    batch = _pull(arbor, tmp_path, _rows("Student", lambda r: r.update(userTags=["Domestic  Abuse", "EAL"])))
    assert "domestic_abuse" in _flags(batch, str(P4))


@pytest.mark.parametrize("code", [None, "", " "])
def test_an_arbor_mark_type_without_a_code_refuses_the_pull(tmp_path: Path, store_url: str, engine: Engine,
                                                            arbor: FakeArbor, code: str | None) -> None:
    """A mark type with no code: its marks were stored as '-' (no mark), replacing the N marks
    stored, with no warning when Arbor's statistical flags said nothing."""
    assert ingest_once(tmp_path, store_url, engine, arbor).status == "ok"
    before, cursor = snapshot(engine), stored_cursor(engine)
    arbor.mangle = _rows("AttendanceMark", lambda r: r.update(code=code, isStatisticalUnauthorizedAbsent=None,
                                                             isStatisticalPossibleAttendance=None)
                         if r.get("code") == "N" else None)
    outcome = ingest_once(tmp_path, store_url, engine, arbor, incremental=False)
    assert outcome.status == "failed"
    assert "AttendanceMark " in outcome.detail and "field code is" in outcome.detail, outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) == cursor


def test_an_arbor_mark_code_with_spaces_around_it_is_read_as_the_code(arbor: FakeArbor, tmp_path: Path) -> None:
    """' N' was stored as an unknown code, counted as neutral: the child's absences did not count."""
    batch = _pull(arbor, tmp_path, _rows("AttendanceMark", lambda r: r.update(code=f" {r['code']} ")))
    (p1,) = [r for r in batch.records if isinstance(r, MarksRecord) and r.pupil_key == str(P1)]
    assert "N" in p1.codes and not any(c.strip() != c for c in p1.codes)
    assert not batch.warnings


def _with_second_enrolment(student: int, **changes: Any) -> Mangle:
    """Every enrolment of ``student`` followed by a copy (another id) with ``changes``."""
    def mangle(e: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if e != "EducationalInstitutionEnrolment":
            return rows
        out = []
        for r in copy.deepcopy(rows):
            out.append(r)
            if r["student"]["id"] == student:
                out.append({**copy.deepcopy(r), "id": r["id"] + 50000, **changes})
        return out
    return mangle


def test_an_arbor_withdrawn_admission_does_not_replace_a_live_one_of_the_same_day(
        arbor: FakeArbor, tmp_path: Path) -> None:
    """Two enrolments of one pupil with one entry date (one withdrawn): the store keeps one
    admission per first day, the later one, so the pupil could look withdrawn: never expected."""
    withdrawn = {"code": "ADMISSION_WITHDRAWN", "unenrolmentReason": "Admission withdrawn"}
    for reason in (withdrawn, None):
        batch = _pull(arbor, tmp_path, _with_second_enrolment(P4, unenrolmentReason=reason))
        mine = [e for e in batch.records if isinstance(e, EnrolmentRecord) and e.pupil_key == str(P4)]
        assert [(e.entry_date, e.withdrawn) for e in mine] == [(date(2025, 9, 8), False)]


def test_two_arbor_enrolments_of_one_first_day_that_disagree_refuse_the_pull(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """Both without an entry date, one of them left: one replaced the other in the store."""
    before = snapshot(engine)

    def no_entry(e: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = _with_second_enrolment(P4, leavingDate="2025-10-01")(e, rows)
        return [{**r, "entryDate": None} if e == "EducationalInstitutionEnrolment" and r["student"]["id"] == P4
                else r for r in rows]
    arbor.mangle = no_entry
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "failed"
    assert "EducationalInstitutionEnrolment " in outcome.detail and "leavingDate" in outcome.detail, outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) is None


def test_arbor_rows_of_a_student_arbor_did_not_list_are_warned_about(arbor: FakeArbor, tmp_path: Path) -> None:
    """A leaver's enrolment and flags whose Student row Arbor did not send were dropped unsaid."""
    def mangle(e: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if e == "Student":
            return [r for r in rows if r["id"] != P3]
        if e == "AttendanceRollCallRecord":
            return [r for r in rows if (r.get("student") or {}).get("id") != P3]
        return rows
    batch = _pull(arbor, tmp_path, mangle)
    (warning,) = [w for w in batch.warnings if w.code == "arbor_student_not_listed"]
    assert str(P3) in warning.message and "EducationalInstitutionEnrolment" in warning.message, warning.message



def test_a_sims_contact_on_several_rows_keeps_every_number(tmp_path: Path) -> None:
    """A report with a telephone sub-report gives a contact one row per number: only the first row
    was read, so the office had one of the mother's numbers. Every row's numbers are kept, empty
    fields are filled from later rows, and rows that disagree keep the first value, with a warning
    that names the field, never the value."""
    contact = [("Contact_x0020_ID", "77"), ("Contact_x0020_Surname", "Example"), ("Contact_x0020_Forename", "Amy")]
    rows = [[*_pupil(), *contact, ("Contact_x0020_Telephone", "01452 000001")],
            [*_pupil(), *contact, ("Contact_x0020_Telephone", "07700 900001"), ("Relationship", "Mother")],
            [*_pupil(), *contact, ("Contact_x0020_Telephone", "01452 000001"), ("Contact_x0020_Email", "a@example.org")]]
    rows = [[*row, (CPP, "No")] for row in rows]  # (a report with a flag field: no "no_flags" warning)
    records, warnings = _sims(tmp_path, "pupils-1.xml", rows)
    (c,) = _of(records, ContactRecord)
    assert c.phones == ("01452 000001", "07700 900001") and c.emails == ("a@example.org",)
    assert c.relationship == "Mother" and c.surname == "Example"
    assert warnings == []
    rows.append([*_pupil(), ("Contact_x0020_ID", "77"), ("Contact_x0020_Surname", "Other"),
                 ("Contact_x0020_Forename", "Amy"), (CPP, "No")])
    records, warnings = _sims(tmp_path, "pupils-1.xml", rows)
    assert [r.surname for r in _of(records, ContactRecord)] == ["Example"]
    assert [(w.code, w.where) for w in warnings] == [("contact_rows_disagree", "pupils-1.xml record 4")]
    assert "surname" in warnings[0].message and "Other" not in warnings[0].message


def test_a_sims_admission_without_any_date_is_warned_about(tmp_path: Path) -> None:
    """An offered place with neither an agreed start date nor an admission date can never be found
    "not taken up": before, nothing said so."""
    records, warnings = _sims(tmp_path, "admissions-1.xml", [[*_pupil(), (STATUS, "Accepted")]])
    assert _of(records, EnrolmentRecord) == [EnrolmentRecord("5")]
    assert [(w.code, w.pupil_key) for w in warnings] == [("no_admission_dates", "5")]
    assert "Zoe" not in warnings[0].message and "A123456789012" not in warnings[0].message
    _, dated = _sims(tmp_path, "admissions-1.xml", [[*_pupil(), (STATUS, "Accepted"), (AGREED, "2025-09-03")]])
    assert dated == []
