"""The ctf adapter: any CTF version, namespaces, the marks string, all-or-nothing imports.

Fixtures (tests/adapters/fixtures/ctf-*.xml) are constructed from the element names in
formats.md 1.2-1.4. They assume the unconfirmed marks encoding of 1.4 (two characters per
calendar day, '#' for no session) and show both AttendanceStartDate and AttendStartDate.
"""

from __future__ import annotations

import shutil
import tempfile
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from adapters.ctf import CtfSource
from adapters.ctf.marks import decode_marks, encode_marks
from adapters.ctf.writer import NS_2010, write_ctf
from cme_batch import upn
from cme_batch.config import SourceConfig
from cme_batch.errors import ImportRejected
from cme_batch.model import (
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    SchoolInfo,
)
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.adapters.contract import AdapterContract
from tests.helpers import snapshot

FIX = Path(__file__).with_name("fixtures")
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
SCHOOL = SchoolInfo("916", "2999", "Example Primary School")


def parse(path: Path, **options: object) -> list[object]:
    return list(CtfSource.parse_file(path, dict(options)).records)


def apply(engine: Engine, path: Path) -> ingest.IngestResult:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    return ingest.apply_batch(engine, school, CtfSource.parse_file(path, {}), NOW)


class TestCtfContract(AdapterContract):
    adapter = "ctf"
    bad_settings: ClassVar[list[dict[str, Any]]] = [{"drop_dir": 5}, {"max_age_hours": "26"}, {"school": "Gloucester"}, {"archive": "x"}]

    def make_config(self, tmp_path: Path) -> SourceConfig:
        drop = tmp_path / "ctf-in"
        drop.mkdir(exist_ok=True)
        shutil.copy(FIX / "ctf-25.xml", drop / "school-20251201.xml")
        shutil.copy(FIX / "ctf-leaver.xml", drop / "leaver-20251114.xml")
        return SourceConfig("ctf", "ctf", {"drop_dir": "ctf-in", "max_age_hours": 0}, tmp_path)


def test_marks_string_two_characters_per_calendar_day() -> None:
    start, codes = decode_marks(date(2025, 11, 6), "/\\/I####NNON")
    assert start == date(2025, 11, 6)
    assert tuple(codes) == ("/", "\\", "/", "I", "#", "#", "#", "#", "N", "N", "O", "N")
    assert tuple(decode_marks(date(2025, 11, 6), " /- ")[1]) == ("-", "/", "-", "-"), "a blank at an end is a session"
    with pytest.raises(ValueError, match="even number"):
        decode_marks(date(2025, 11, 6), "/\\/")
    assert encode_marks(["/", "C1", "", "N"]) == "/C-N"


def stored_marks(engine: Engine, upn_: str, start: date, sessions: int) -> str:
    """The store's marks of one pupil from the AM of ``start``, one character per session."""
    with engine.connect() as conn:
        strip = conn.execute(select(t.mark_strips.c.marks).join(t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id)
                             .where(t.pupils.c.upn == upn_, t.mark_strips.c.academic_year == 2025)).scalar_one()
    at = 2 * (start - date(2025, 8, 1)).days
    return str(strip[at:at + sessions])


@pytest.mark.parametrize(("marks", "stored"), [
    ("  /I####NNONNNNNNN", "--/I####NNONNNNNNN"),  # no register on Thursday: Friday's marks stay on Friday
    (" \\/I####NNONNNNNN ", "-\\/I####NNONNNNNN-"),  # a blank at each end: PM marks stay PM
])
def test_blanks_at_either_end_of_the_marks_string_are_sessions_without_a_mark(
        engine: Engine, tmp_path: Path, marks: str, stored: str) -> None:
    path = tmp_path / "ctf-blanks.xml"
    path.write_text((FIX / "ctf-25.xml").read_text().replace("/\\/I####NNONNNNNNN", marks))
    result = apply(engine, path)
    assert result.status == "ok" and [w.code for w in result.warnings] == [], "no marks moved onto the weekend"
    got = stored_marks(engine, "A123456789012", date(2025, 11, 6), len(marks))
    assert got == stored
    assert got[2:4] == "/I" and got[8:10] == "NN", "Friday 7 and Monday 10 November keep their own marks"


@pytest.mark.parametrize("order", ["\u00b2", "99999999999999999999", "10000", "-1", "1.5", "\u0663"])
def test_a_contact_order_that_is_no_small_whole_number_is_refused_naming_the_field(
        engine: Engine, tmp_path: Path, order: str) -> None:
    apply(engine, FIX / "ctf-25.xml")
    before = snapshot(engine)
    path = tmp_path / "ctf-order.xml"
    path.write_text((FIX / "ctf-25.xml").read_text().replace("<Order>2</Order>", f"<Order>{order}</Order>", 1),
                    encoding="utf-8")
    with pytest.raises(ImportRejected) as info:
        apply(engine, path)
    assert "record 1, field Contact 2 Order: is not a whole number from 0 to 9999" in str(info.value)
    assert snapshot(engine) == before


def test_full_pupil() -> None:
    records = parse(FIX / "ctf-25.xml")
    assert records[0] == SCHOOL
    p = next(r for r in records if isinstance(r, PupilRecord))
    assert (p.pupil_key, p.upn, p.dob, p.sex, p.year_group) == (
        "A123456789012", "A123456789012", date(2018, 5, 1), "M", "2")
    assert p.address is not None and p.address.postcode == "GL1 1AA"
    contacts = [r for r in records if isinstance(r, ContactRecord) and r.pupil_key == p.pupil_key]
    assert [(c.contact_key, c.parental_responsibility) for c in contacts] == [("order:1", True), ("order:2", False)]
    assert contacts[0].address == p.address, "AddressAsPupil"
    assert contacts[1].address is not None and contacts[1].address.lines[0] == "7 Other Road"
    flags = {(r.pupil_key[:1], r.kind) for r in records if isinstance(r, FlagRecord)}
    assert flags == {("A", "ehcp"), ("P", "looked_after")}
    enrol = [r for r in records if isinstance(r, EnrolmentRecord)]
    assert [e.entry_date for e in enrol] == [date(2022, 9, 5)] * 2, "the previous school's entry is history"
    marks = next(r for r in records if isinstance(r, MarksRecord))
    assert marks.start == date(2025, 11, 6) and "".join(marks.codes) == "/\\/I####NNONNNNNNN"


@pytest.mark.parametrize("name", ["ctf-namespace.xml", "ctf-prefixed.xml"])
def test_namespace_or_none_read_the_same(name: str) -> None:
    plain = parse(FIX / "ctf-namespace.xml")
    other = parse(FIX / name)
    assert other == plain
    p = next(r for r in other if isinstance(r, PupilRecord))
    assert p.sex == "F", "Gender read where Sex is absent"
    marks = next(r for r in other if isinstance(r, MarksRecord))
    assert "".join(marks.codes) == "/\\/I####NNON", "AttendStartDate, no AttendSessions wrapper"


def test_leaver_summary_only_attendance_and_warnings() -> None:
    batch = CtfSource.parse_file(FIX / "ctf-leaver.xml", {})
    records = list(batch.records)
    assert not [r for r in records if isinstance(r, MarksRecord)], "summary counts only: no marks"
    (e,) = [r for r in records if isinstance(r, EnrolmentRecord)]
    assert (e.leaving_date, e.leaving_reason, e.destination) == (date(2025, 11, 14), "Moved away", None)
    codes = sorted(w.code for w in batch.warnings)
    assert codes == ["bad_upn", "unknown_sen_status"]
    assert {w.code: w.dsl_only for w in batch.warnings} == {"bad_upn": False, "unknown_sen_status": True}
    assert all("B234567890123" not in (w.message + (w.where or "")) for w in batch.warnings)


def test_bad_records_reject_the_file_with_record_numbers(engine: Engine) -> None:
    apply(engine, FIX / "ctf-25.xml")
    before = snapshot(engine)
    with pytest.raises(ImportRejected) as info:
        apply(engine, FIX / "ctf-bad-records.xml")
    text = str(info.value)
    assert "record 2, field AttendanceMarks" in text and "record 4, field UPN: is missing" in text
    assert "record 3, field DOB" in text and "10/01/18" not in text
    assert "Sample" not in text and "Nobody" not in text
    assert snapshot(engine) == before


@pytest.mark.parametrize("name", ["ctf-truncated.xml", "billion-laughs.xml"])
def test_truncated_or_hostile_file_changes_nothing(engine: Engine, name: str) -> None:
    apply(engine, FIX / "ctf-25.xml")
    before = snapshot(engine)
    with pytest.raises(ImportRejected):
        apply(engine, FIX / name)
    assert snapshot(engine) == before


def test_same_file_twice_then_a_newer_file_with_a_correction(engine: Engine, tmp_path: Path) -> None:
    assert apply(engine, FIX / "ctf-25.xml").status == "ok"
    before = snapshot(engine)
    assert apply(engine, FIX / "ctf-25.xml").status == "skipped"
    newer = tmp_path / "ctf-newer.xml"
    newer.write_text((FIX / "ctf-25.xml").read_text().replace("/\\/I####NNONNNNNNN", "/\\/I####INONNNNNNN"))
    assert snapshot(engine) == before
    apply(engine, newer)
    with engine.connect() as conn:
        changes = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.old_code, t.mark_changes.c.new_code)).all()
    assert [tuple(c) for c in changes] == [(date(2025, 11, 10), "N", "I")]


def test_partial_file_does_not_remove_contacts(engine: Engine, tmp_path: Path) -> None:
    apply(engine, FIX / "ctf-25.xml")
    partial = tmp_path / "partial.xml"
    text = (FIX / "ctf-namespace.xml").read_text().replace(">full<", ">partial<")
    partial.write_text(text)
    assert CtfSource.parse_file(partial, {}).replaces == frozenset()
    apply(engine, partial)
    with engine.connect() as conn:
        assert len(conn.execute(select(t.contacts)).all()) == 4


def test_writer_round_trip_with_and_without_namespace(tmp_path: Path) -> None:
    records = parse(FIX / "ctf-25.xml")
    for ns, start_el in ((None, "AttendanceStartDate"), (NS_2010, "AttendStartDate")):
        path = write_ctf(tmp_path / "out.xml", records, SCHOOL, namespace=ns, start_element=start_el)
        assert parse(path) == records


def test_upn_check_letter() -> None:
    assert upn.is_valid("A123456789012") and upn.is_valid("P234567890123")
    assert upn.problem("B123456789012") == "the check letter does not match the rest of the UPN"
    temporary = upn.make("12345678901A")
    assert upn.is_valid(temporary) and temporary[-1] == "A"
    assert upn.problem("A12345") is not None and upn.normalise(" a123 456789012 ") == "A123456789012"


# -- a pupil with only some parts (a day's partial file: UPN and attendance) --------------------------
def _rich_pupil() -> list[ET.Element]:
    """The fixture's first pupil's parts, with a pupil's own phones, e-mail and Gender added."""
    pupil = ET.parse(FIX / "ctf-25.xml").getroot().find("CTFpupilData/Pupil")
    assert pupil is not None
    extra = ET.fromstring("<x><Gender>F</Gender><Phones><Phone><PhoneNo>01452 000000</PhoneNo></Phone></Phones>"
                          "<Email>pupil@example.org</Email></x>")
    return [*pupil, *extra]


def _file_of(parts: list[ET.Element]) -> bytes:
    root = ET.parse(FIX / "ctf-25.xml").getroot()
    data = root.find("CTFpupilData")
    assert data is not None
    for p in list(data):
        data.remove(p)
    pupil = ET.SubElement(data, "Pupil")
    pupil.extend(parts)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _read(content: bytes) -> list[object]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "partial.xml"
        path.write_bytes(content)
        return parse(path)


PARTS = [el.tag for el in _rich_pupil() if el.tag != "UPN"]


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(PARTS)))
def test_a_pupil_with_some_parts_reads_as_with_all_parts_searched(kept: set[str]) -> None:
    """Whatever parts a pupil has, the records are those of the full reading: an empty ``Surname``
    (no value) makes the reader search every part, and must change nothing."""
    parts = [el for el in _rich_pupil() if el.tag == "UPN" or el.tag in kept]
    searched = parts if "Surname" in kept else [*parts, ET.fromstring("<Surname> </Surname>")]
    assert _read(_file_of(parts)) == _read(_file_of(searched))


@pytest.mark.parametrize("tag", sorted({"Surname", "Forename", "BasicDetails", "DOB", "Sex", "Gender", "Address",
                                        "Phones", "Email"}))
def test_each_detail_alone_is_read(tag: str) -> None:
    parts = [el for el in _rich_pupil() if el.tag in ("UPN", tag, "Attendance")]
    records = _read(_file_of(parts))
    pupil = next(r for r in records if isinstance(r, PupilRecord))
    assert pupil != PupilRecord("A123456789012", "A123456789012"), f"{tag} was not read"
    assert any(isinstance(r, MarksRecord) for r in records)


def test_upn_and_attendance_only() -> None:
    records = _read(_file_of([el for el in _rich_pupil() if el.tag in ("UPN", "Attendance")]))
    assert records[1:] == [PupilRecord("A123456789012", "A123456789012"),
                           MarksRecord("A123456789012", date(2025, 11, 6), "/\\/I####NNONNNNNNN")]


@pytest.mark.parametrize(("tag", "kind"), [("Contacts", ContactRecord), ("SENhistory", FlagRecord),
                                           ("SchoolHistory", EnrolmentRecord), ("Attendance", MarksRecord)])
def test_each_other_part_alone_is_read(tag: str, kind: type) -> None:
    records = _read(_file_of([el for el in _rich_pupil() if el.tag in ("UPN", tag)]))
    assert any(isinstance(r, kind) for r in records), f"{tag} was not read"


def test_looked_after_alone_is_read() -> None:
    in_care = ET.fromstring("<LookedAfter><InCare>true</InCare></LookedAfter>")
    records = _read(_file_of([el for el in _rich_pupil() if el.tag == "UPN"] + [in_care]))
    assert [r.kind for r in records if isinstance(r, FlagRecord)] == ["looked_after"]


def test_a_date_or_yes_no_written_the_same_way_twice_is_read_or_refused_each_time() -> None:
    """Texts already read are remembered: the same good text reads the same for every pupil, and
    the same bad text is a problem for every pupil that has it."""
    good = _rich_pupil()
    bad_start = [ET.fromstring(ET.tostring(el).replace(b"2025-11-06", b"06/11/25")) if el.tag == "Attendance" else el
                 for el in good]
    bad_care = [ET.fromstring(b"<LookedAfter><InCare>perhaps</InCare></LookedAfter>") if el.tag == "LookedAfter"
                else el for el in good]
    root = ET.fromstring(_file_of(good))
    data = root.find("CTFpupilData")
    assert data is not None
    for parts in (good, bad_start, bad_care, bad_start, bad_care):
        ET.SubElement(data, "Pupil").extend(parts)
    with pytest.raises(ImportRejected) as info:
        _read(ET.tostring(root, encoding="utf-8", xml_declaration=True))
    text = str(info.value)
    for n in (3, 5):
        assert f"record {n}, field AttendanceStartDate: is not a date" in text
    for n in (4, 6):
        assert f"record {n}, field LookedAfter/InCare: is not true or false" in text
    assert "record 1," not in text and "record 2," not in text
    good_only = ET.fromstring(_file_of(good))
    more = good_only.find("CTFpupilData")
    assert more is not None
    ET.SubElement(more, "Pupil").extend(_rich_pupil())
    marks = [r for r in _read(ET.tostring(good_only, encoding="utf-8", xml_declaration=True))
             if isinstance(r, MarksRecord)]
    assert [m.start for m in marks] == [date(2025, 11, 6)] * 2


@pytest.mark.parametrize("start", ["<AttendanceStartDate> </AttendanceStartDate>", "<AttendStartDate/>"])
def test_marks_with_an_empty_start_date_reject_the_file_naming_the_field(start: str) -> None:
    """Marks whose start date is written but empty cannot be placed: before, they were dropped
    without a word (a child's absences lost); now the file is refused naming record and field."""
    attendance = ET.fromstring(f"<Attendance><YearData><AttendSessions>{start}"
                               "<AttendanceMarks>NNNN</AttendanceMarks></AttendSessions></YearData></Attendance>")
    parts = [el for el in _rich_pupil() if el.tag == "UPN"] + [attendance]
    with pytest.raises(ImportRejected) as info:
        _read(_file_of(parts))
    tag = "AttendanceStartDate" if "AttendanceStartDate" in start else "AttendStartDate"
    assert f"record 1, field {tag}: is empty while the marks are there" in str(info.value)


def test_a_header_without_source_school_or_version_is_warned_about_once() -> None:
    root = ET.fromstring(_file_of([el for el in _rich_pupil() if el.tag in ("UPN", "Attendance")]))
    header = root.find("Header")
    assert header is not None
    for tag in ("SourceSchool", "CTFversion"):
        el = header.find(tag)
        assert el is not None
        header.remove(el)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "no-source.xml"
        path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
        batch = CtfSource.parse_file(path, {})
        list(batch.records)
    assert [w.code for w in batch.warnings].count("ctf_version") == 1


def _history(*schools: str) -> ET.Element:
    return ET.fromstring("<SchoolHistory>" + "".join(schools) + "</SchoolHistory>")


OURS = "<School><LEA>916</LEA><Estab>2999</Estab><EntryDate>2022-09-05</EntryDate>{}</School>"


def test_one_entry_of_this_school_given_twice_is_one_enrolment() -> None:
    upn_ = [el for el in _rich_pupil() if el.tag == "UPN"]
    records = _read(_file_of([*upn_, _history(OURS.format(""), OURS.format(""))]))
    assert [r for r in records if isinstance(r, EnrolmentRecord)] == [
        EnrolmentRecord("A123456789012", entry_date=date(2022, 9, 5))]


def test_two_entries_of_this_school_with_one_entry_date_that_differ_refuse_the_file() -> None:
    """Before, the first entry was kept without a word: a leaving date in the second was lost, and
    the child looked still on roll (no "destination unknown" case)."""
    upn_ = [el for el in _rich_pupil() if el.tag == "UPN"]
    parts = [*upn_, _history(OURS.format(""), OURS.format("<LeavingDate>2025-11-14</LeavingDate>"))]
    with pytest.raises(ImportRejected) as info:
        _read(_file_of(parts))
    assert "record 1, field SchoolHistory/LeavingDate: differs between two entries" in str(info.value)
