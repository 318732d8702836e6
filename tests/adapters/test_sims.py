"""The sims-xml adapter: CommandReporter quirks, all-or-nothing imports into a real store.

Fixtures (tests/adapters/fixtures/sims-*.xml) are constructed, not real exports: the field
names follow adapters/sims/README.md, the quirks follow formats.md 2.2 ([C]: `_x0020_`
names, empty fields left out, iso-8859-1, `Year  9`; [U]: the marks report's field names).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, select

from adapters.sims import SimsXmlSource
from adapters.sims.writer import write_reports
from cme_batch.config import CodesConfig, SourceConfig
from cme_batch.errors import ImportRejected
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.adapters.contract import AdapterContract
from tests.helpers import snapshot

FIX = Path(__file__).with_name("fixtures")
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
CODES = CodesConfig(local={}, subcodes={"I01": "I"})


def parse(name: str, **options: object) -> tuple[list[object], list[object]]:
    batch = SimsXmlSource.parse_file(FIX / name, {"codes": CODES, **options})
    return list(batch.records), batch.warnings


def store(engine: Engine, *names: str) -> int:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test School")
    for n in names:
        ingest.apply_batch(engine, school, SimsXmlSource.parse_file(FIX / n, {"codes": CODES}), NOW)
    return school


class TestSimsContract(AdapterContract):
    adapter = "sims-xml"
    bad_settings: ClassVar[list[dict[str, Any]]] = [{"drop_dir": 5}, {"max_age_hours": -1}, {"reports": ["pupils", "timetable"]},
                    {"fields": {"not_a_field": "X"}}, {"flag_fields": {"Domestic Abuse": "not_a_flag"}},
                    {"drop_folder": "typo"}]

    def make_config(self, tmp_path: Path) -> SourceConfig:
        drop = tmp_path / "drop"
        drop.mkdir(exist_ok=True)
        for kind in ("pupils", "admissions", "leavers", "marks"):
            shutil.copy(FIX / f"sims-{kind}.xml", drop / f"{kind}-20251201T0200.xml")
        return SourceConfig("office-sims", "sims-xml", {"drop_dir": "drop", "max_age_hours": 26}, tmp_path)


def test_marks_report_quirks() -> None:
    records, warnings = parse("sims-marks.xml")
    pupils = {r.pupil_key: r for r in records if isinstance(r, PupilRecord)}
    marks = {r.pupil_key: r for r in records if isinstance(r, MarksRecord)}
    assert set(pupils) == {"1234", "1235", "1236"}, "Adno is the key, leading zeros dropped"
    assert pupils["1234"].year_group == "3" and pupils["1236"].year_group == "10"
    m = marks["1234"]
    assert m.start == date(2025, 11, 3)
    # Mon AM N, PM no Mark element (-), Tue I01 mapped to I, PM a local '@'; Sat 8 Nov AM '/'
    assert m.codes[:4] == ("N", "-", "I", "@")
    assert m.codes[10] == "/" and all(c == "" for c in m.codes[4:10])
    assert marks["1235"].codes == ("/", "-"), "a Mark of '-' is no mark"
    assert marks["1236"].codes == ("C1", "L"), "multi-character codes are kept whole"
    by_code = {w.code: w for w in warnings}
    assert "'@'" in by_code["unknown_code"].message and "record 4" in by_code["unknown_code"].where
    assert by_code["bad_upn"].where.endswith("record 8") and by_code["bad_upn"].pupil_key == "1236"
    assert "1 mark(s)" in by_code["mark_outside_calendar"].message
    for w in warnings:
        assert "B234567890123" not in w.message + (w.where or "") and "Example" not in w.message


def test_pupils_report_gives_contacts_flags_and_decoded_names() -> None:
    records, warnings = parse("sims-pupils.xml")
    assert not warnings
    p = next(r for r in records if isinstance(r, PupilRecord) and r.pupil_key == "1234")
    assert p.legal_forename == "Zoë", "iso-8859-1 decoded"
    assert p.dob == date(2018, 5, 1) and p.sex == "F" and p.address is not None
    assert p.address.postcode == "GL1 1AA" and p.address.lines[0] == "1 Example Street"
    contacts = [r for r in records if isinstance(r, ContactRecord)]
    assert [(c.contact_key, c.priority, c.parental_responsibility) for c in contacts] == [
        ("501", 1, True), ("502", 2, False)]
    assert contacts[0].lives_with is True and contacts[0].phones == ("07700 900123",)
    flags = {(r.pupil_key, r.kind) for r in records if isinstance(r, FlagRecord)}
    assert flags == {("1234", "looked_after"), ("1234", "young_carer"), ("1234", "sen_support"),
                     ("1235", "child_protection_plan")}
    assert not [r for r in records if isinstance(r, EnrolmentRecord)], "admissions come from their own reports"


def test_admissions_and_leavers() -> None:
    records, _ = parse("sims-admissions.xml")
    enrol = {r.pupil_key: r for r in records if isinstance(r, EnrolmentRecord)}
    assert enrol["1240"].admission_date == date(2025, 11, 3) and not enrol["1240"].withdrawn
    assert enrol["1241"].withdrawn
    records, _ = parse("sims-leavers.xml")
    (leaver,) = [r for r in records if isinstance(r, EnrolmentRecord)]
    assert leaver.leaving_date == date(2025, 11, 14) and leaver.destination is None, "'Unknown' is no destination"


def test_report_kind_is_found_from_fields_when_the_name_says_nothing(tmp_path: Path) -> None:
    shutil.copy(FIX / "sims-leavers.xml", tmp_path / "export.xml")
    batch = SimsXmlSource.parse_file(tmp_path / "export.xml", {})
    assert any(isinstance(r, EnrolmentRecord) and r.leaving_date for r in batch.records)
    shutil.copy(FIX / "sims-pupils.xml", tmp_path / "Student List.xml")
    assert SimsXmlSource.parse_file(tmp_path / "Student List.xml", {}).replaces == {"contacts", "flags"}


def test_school_specific_field_names_are_mapped(tmp_path: Path) -> None:
    text = (FIX / "sims-pupils.xml").read_bytes().replace(b"Legal_x0020_Surname", b"Surname_x0020__x0028_legal_x0029_")
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "pupils-1.xml").write_bytes(text.replace(b"Young_x0020_Carer", b"Domestic_x0020_Abuse"))
    cfg = SourceConfig("sims", "sims-xml", {"drop_dir": "drop", "max_age_hours": 0, "reports": ["pupils"],
                                            "fields": {"legal_surname": "Surname (legal)"},
                                            "flag_fields": {"Domestic Abuse": "domestic_abuse"}}, tmp_path)
    from cme_batch.sources import SourceContext, build_source

    (batch,) = build_source(cfg).batches(SourceContext(now=NOW))
    records = list(batch.records)
    assert next(r for r in records if isinstance(r, PupilRecord)).legal_surname == "Example"
    assert ("1234", "domestic_abuse") in {(r.pupil_key, r.kind) for r in records if isinstance(r, FlagRecord)}


def test_utf8_without_declaration_and_names_without_spaces() -> None:
    records, warnings = parse("sims-marks-utf8.xml")
    assert not warnings
    assert next(r for r in records if isinstance(r, PupilRecord)).legal_surname == "Exémple"


def test_wrong_declared_encoding_is_read_and_warned() -> None:
    records, warnings = parse("sims-wrong-encoding.xml")
    assert next(r for r in records if isinstance(r, PupilRecord)).legal_surname == "Sampé"
    # (the fixture's report has no contact field: its stored contacts are kept, and that is said)
    assert [w.code for w in warnings] == ["encoding", "no_contacts"] and "Windows-1252" in warnings[0].message


@pytest.mark.parametrize("name, expected", [
    ("sims-truncated.xml", "not well-formed"),
    ("sims-error.xml", "CommandReporter wrote an error"),
    ("billion-laughs.xml", "DOCTYPE"),
])
def test_unreadable_files_are_rejected_and_change_nothing(engine: Engine, name: str, expected: str) -> None:
    school = store(engine, "sims-pupils.xml", "sims-marks.xml")
    before = snapshot(engine)
    started = time.monotonic()
    with pytest.raises(ImportRejected) as info:
        ingest.apply_batch(engine, school, SimsXmlSource.parse_file(FIX / name, {}), NOW)
    assert time.monotonic() - started < 2, "refused at once, never expanded"
    assert expected in str(info.value) and name in str(info.value)
    assert snapshot(engine) == before


def test_bad_values_reject_the_whole_file_naming_record_and_field(engine: Engine) -> None:
    school = store(engine)
    with pytest.raises(ImportRejected) as info:
        ingest.apply_batch(engine, school, SimsXmlSource.parse_file(FIX / "sims-bad-values.xml", {}), NOW)
    problems = info.value.problems
    assert any(p.startswith("record 2, field Date:") for p in problems)
    assert any(p.startswith("record 3, field Session:") and "'Noon'" in p for p in problems)
    assert any(p.startswith("record 4, field Adno:") for p in problems)
    dob = next(p for p in problems if "Date of Birth" in p)
    assert "2018" not in dob and "withheld" in dob, "a date of birth is never repeated"
    with engine.connect() as conn:
        assert conn.execute(select(t.pupils)).first() is None, "record 1 was good but nothing was stored"


def test_later_export_updates_and_removes_what_the_mis_removed(engine: Engine) -> None:
    store(engine, "sims-pupils.xml")
    store(engine, "sims-pupils-later.xml")
    with engine.connect() as conn:
        contacts = conn.execute(select(t.contacts.c.contact_key)).scalars().all()
        flags = set(conn.execute(select(t.flags.c.kind)).scalars().all())
    assert contacts == ["501"]
    assert flags == {"young_carer", "sen_support", "child_protection_plan"}, "In Care cleared in SIMS"


def test_reimport_changes_nothing_and_a_corrected_mark_is_audited(engine: Engine) -> None:
    store(engine, "sims-pupils.xml", "sims-marks.xml")
    before = snapshot(engine)
    store(engine, "sims-marks.xml")
    assert snapshot(engine) == before
    store(engine, "sims-marks-corrected.xml")
    with engine.connect() as conn:
        changes = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.session, t.mark_changes.c.old_code,
                                      t.mark_changes.c.new_code)).all()
        runs = conn.execute(select(t.ingest_runs.c.origin, t.ingest_runs.c.checksum, t.ingest_runs.c.counts)
                            .where(t.ingest_runs.c.status == "ok")).all()
    assert [tuple(c) for c in changes] == [(date(2025, 11, 3), "AM", "N", "I")]
    assert [r.origin for r in runs] == ["sims-pupils.xml", "sims-marks.xml", "sims-marks-corrected.xml"]
    assert all(len(r.checksum) == 64 for r in runs) and runs[1].counts["marks"] == 9


def test_writer_round_trip(tmp_path: Path) -> None:
    records, _ = parse("sims-pupils.xml")
    marks, _ = parse("sims-marks.xml")
    extra = [r for r in marks if isinstance(r, PupilRecord) and r.pupil_key == "1236"]
    paths = write_reports(tmp_path, extra + records + [r for r in marks if isinstance(r, MarksRecord)])
    again = list(SimsXmlSource.parse_file(paths["pupils"], {}).records)
    assert set(again) == set(records) | set(extra)
    written = [r for r in SimsXmlSource.parse_file(paths["marks"], {}).records if isinstance(r, MarksRecord)]
    assert {(m.pupil_key, m.start, m.codes) for m in written} == {
        (m.pupil_key, m.start, m.codes) for m in marks if isinstance(m, MarksRecord)}


@pytest.mark.parametrize("declared, data, expected, warned", [
    ("iso-8859-1", "Zoë".encode(), "Zoë", "declares ISO-8859-1 but its bytes are UTF-8"),
    ("UTF-16", "\ufeffZoë".encode("utf-16-le"), "Zoë", None),
    ("iso-8859-1", "Zoë".encode("iso-8859-1"), "Zoë", None),
    ("UTF-8 with a byte-order mark", "Zoë".encode(), "Zoë", None),  # as Windows tools often write
])
def test_encodings(tmp_path: Path, declared: str, data: bytes, expected: str, warned: str | None) -> None:
    if declared == "UTF-16":
        body = f'<?xml version="1.0" encoding="UTF-16"?><SuperStarReport><Record><Adno>1</Adno>' \
               f'<Legal_x0020_Forename>{expected}</Legal_x0020_Forename></Record></SuperStarReport>'
        raw = b"\xff\xfe" + body.encode("utf-16-le")
    elif declared.startswith("UTF-8"):
        raw = ('\ufeff<?xml version="1.0" encoding="UTF-8"?><SuperStarReport><Record><Adno>1</Adno>'
               f"<Legal_x0020_Forename>{expected}</Legal_x0020_Forename></Record></SuperStarReport>").encode()
    else:
        raw = (f'<?xml version="1.0" encoding="{declared}"?><SuperStarReport><Record><Adno>1</Adno>'
               '<Legal_x0020_Forename>').encode("ascii") + data + \
              b"</Legal_x0020_Forename></Record></SuperStarReport>"
    (tmp_path / "pupils.xml").write_bytes(raw)
    batch = SimsXmlSource.parse_file(tmp_path / "pupils.xml", {})
    (pupil,) = list(batch.records)
    assert isinstance(pupil, PupilRecord) and pupil.legal_forename == expected
    assert [w.message for w in batch.warnings if w.code == "encoding"] == ([
        "the file declares ISO-8859-1 but its bytes are UTF-8; read as UTF-8"] if warned else [])


def test_entity_references_without_a_dtd_are_refused(tmp_path: Path) -> None:
    (tmp_path / "x.xml").write_text('<?xml version="1.0"?><SuperStarReport><Record><Adno>&secret;</Adno>'
                                    "</Record></SuperStarReport>")
    with pytest.raises(ImportRejected, match="undefined entity") as refused:
        list(SimsXmlSource.parse_file(tmp_path / "x.xml", {}).records)
    assert "secret" not in str(refused.value)  # the file's own text (a name, say) is never quoted


def test_field_layouts_namespaces_repeats_and_aliases_read_as_written(tmp_path: Path) -> None:
    """Records are read by field position once per layout; unusual layouts must read the same."""
    rows = (
        # namespaced, a comment and an entity inside values
        '<Record><Adno>0012</Adno><UPN>A123456789012</UPN><Date>2025-11-03T00:00:00</Date>'
        "<Session>AM</Session><Mark>/<!-- x --></Mark></Record>"
        # a later row of the same pupil with the fields in another order
        '<Record><Mark>\\</Mark><Session>PM</Session><Date>2025-11-03</Date><Adno>12</Adno></Record>'
        # the mark given twice (texts joined, as the old reader did) and the date under an alias
        '<Record><Adno>12</Adno><Attendance_x0020_Date>2025-11-04</Attendance_x0020_Date><Session>AM</Session>'
        "<Mark>N</Mark><Mark></Mark></Record>"
    )
    path = tmp_path / "marks-20251105T180000.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><SuperStarReport xmlns="urn:x">{rows}</SuperStarReport>',
                    encoding="utf-8")
    batch = SimsXmlSource.parse_file(path, {"codes": CODES})
    records = list(batch.records)
    marks = [r for r in records if isinstance(r, MarksRecord)]
    assert [p.pupil_key for p in records if isinstance(p, PupilRecord)] == ["12"]
    assert marks == [MarksRecord("12", date(2025, 11, 3), ("/", "\\", "N"))]


def test_marks_rows_of_the_same_size_but_another_shape_are_read_by_name(tmp_path: Path) -> None:
    """A known pupil's row is read by position only while it has the planned shape: a row with
    as many fields but Date and Session swapped, or a blank Adno, must still read right (and
    texts with spaces around them read as without)."""
    rows = (
        "<Record><Adno>7</Adno><UPN>A123456789012</UPN><Date>2025-11-03</Date><Session>AM</Session><Mark>/</Mark></Record>"
        "<Record><Adno>7</Adno><UPN>A123456789012</UPN><Date> 2025-11-03 </Date><Session>PM </Session>"
        "<Mark> \\ </Mark></Record>"
        "<Record><Adno>7</Adno><UPN>A123456789012</UPN><Session>AM</Session><Date>2025-11-04</Date><Mark>N</Mark></Record>"
        "<Record><Adno>0007</Adno><UPN>A123456789012</UPN><Date>2025-11-04</Date><Session>PM</Session><Mark> </Mark>"
        "</Record>"
        "<Record><Adno> </Adno><Person_x0020_ID>99</Person_x0020_ID><Date>2025-11-05</Date><Session>AM</Session>"
        "<Mark>L</Mark></Record>"
    )
    path = tmp_path / "marks-20251105T180000.xml"
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><SuperStarReport>{rows}</SuperStarReport>', encoding="utf-8")
    records = list(SimsXmlSource.parse_file(path, {"codes": CODES}).records)
    assert [p.pupil_key for p in records if isinstance(p, PupilRecord)] == ["7", "id:99"]
    assert [r for r in records if isinstance(r, MarksRecord)] == [
        MarksRecord("7", date(2025, 11, 3), ("/", "\\", "N", "-")), MarksRecord("id:99", date(2025, 11, 5), ("L",))]


def _marks_file(path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """A marks export of (Adno, date, session, mark) rows, every row with the same UPN field
    (one pupil's, unless the test says otherwise)."""
    body = "".join(f"<Record><Adno>{a}</Adno><UPN>A123456789012</UPN><Date>{d}</Date><Session>{s}</Session>"
                   f"<Mark>{m}</Mark></Record>" for a, d, s, m in rows)
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?><SuperStarReport>{body}</SuperStarReport>',
                    encoding="utf-8")
    return path


def _refused(engine: Engine, school: int, path: Path) -> list[str]:
    """Import ``path``, which must be refused with the store unchanged; its problems."""
    before = snapshot(engine)
    with pytest.raises(ImportRejected) as info:
        ingest.apply_batch(engine, school, SimsXmlSource.parse_file(path, {"codes": CODES}), NOW)
    assert path.name in str(info.value)
    assert snapshot(engine) == before, "nothing of a refused file is stored"
    return info.value.problems


@pytest.mark.parametrize("fixture, name, really", [
    ("sims-marks.xml", "pupils-20251111T0200.xml", "marks"),  # every mark lost, contacts and flags removed
    ("sims-admissions.xml", "pupils-20251111T0200.xml", "admissions"),  # contacts and flags removed
    ("sims-pupils.xml", "admissions-20251111T0200.xml", "pupils"),
    ("sims-pupils.xml", "marks-20251111T0200.xml", "pupils"),
    ("sims-leavers.xml", "marks-20251111T0200.xml", "leavers"),
])
def test_an_export_saved_under_another_reports_name_is_refused(engine: Engine, tmp_path: Path, fixture: str,
                                                              name: str, really: str) -> None:
    """The export task's map pointing at the wrong report: the file is refused as not what its
    name says, and the stored contacts, flags and marks stay as they were."""
    school = store(engine, "sims-pupils.xml", "sims-marks.xml")
    (tmp_path / name).write_bytes((FIX / fixture).read_bytes() + b"\n")  # not the bytes already imported
    (problem,) = _refused(engine, school, tmp_path / name)
    assert problem.startswith(f"record 1: has the {really} report's fields (")
    assert f"its file name says it is the {name.split('-')[0]} report" in problem


def test_admissions_and_leavers_under_each_others_names_are_read_alike(tmp_path: Path) -> None:
    """Both are read into enrolments the same way: no reason to refuse either."""
    shutil.copy(FIX / "sims-leavers.xml", tmp_path / "admissions-20251111T0200.xml")
    records = list(SimsXmlSource.parse_file(tmp_path / "admissions-20251111T0200.xml", {}).records)
    assert [r.leaving_date for r in records if isinstance(r, EnrolmentRecord)] == [date(2025, 11, 14)]


@pytest.mark.parametrize("spill_after", [None, 1])
def test_two_marks_for_one_session_are_refused_however_far_apart(engine: Engine, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                spill_after: int | None) -> None:
    """Rows for Mon 10 Nov AM, 'N' and then '/', with a row three weeks later between them (or
    next to each other while the open runs are handed on to keep memory flat): refused naming
    both records, as when they are next to each other."""
    from adapters.sims import parser

    if spill_after is not None:
        monkeypatch.setattr(parser, "MAX_BUFFERED", spill_after)
    school = store(engine)
    far = [("1234", "2025-11-10", "AM", "N"), ("1234", "2025-11-10", "PM", "N"), ("1234", "2025-12-01", "AM", "N")]
    rows = (far if spill_after is None else far[:2]) + [("1234", "2025-11-10", "AM", "/")]
    problems = _refused(engine, school, _marks_file(tmp_path / "marks-20251202T0200.xml", rows))
    assert problems == [f"record {len(rows)}, field Mark: contradicts record 1, an earlier row for the same "
                        "pupil and session ('N' then '/')"]


def test_a_session_given_twice_alike_far_apart_is_read_once(tmp_path: Path) -> None:
    """The same mark repeated far away (a pupil listed twice in the report) is no contradiction."""
    rows = [("1234", "2025-11-10", "AM", "N"), ("1234", "2025-12-01", "AM", "/"), ("1234", "2025-11-10", "AM", "N")]
    records = list(SimsXmlSource.parse_file(_marks_file(tmp_path / "marks-1.xml", rows), {"codes": CODES}).records)
    assert sorted((r.start, r.codes) for r in records if isinstance(r, MarksRecord)) == [
        (date(2025, 11, 10), ("N",)), (date(2025, 11, 10), ("N",)), (date(2025, 12, 1), ("/",))]


@pytest.mark.parametrize("priority", ["\u00b2", "99999999999999999999"])
def test_a_contact_priority_that_is_no_small_whole_number_is_refused(engine: Engine, tmp_path: Path,
                                                                    priority: str) -> None:
    """'²' passes str.isdigit but not int(); 20 digits do not fit the store: both were a crash."""
    school = store(engine, "sims-pupils.xml")
    text = (FIX / "sims-pupils.xml").read_text(encoding="iso-8859-1")
    path = tmp_path / "pupils-20251111T0200.xml"
    path.write_text(text.replace("<Contact_x0020_Priority>1<", f"<Contact_x0020_Priority>{priority}<", 1),
                    encoding="utf-8" if priority == "\u00b2" else "iso-8859-1")
    if priority == "\u00b2":
        path.write_bytes(path.read_bytes().replace(b'encoding="iso-8859-1"', b'encoding="UTF-8"'))
    assert _refused(engine, school, path) == [
        f"record 1, field Contact Priority: is not a whole number from 0 to 9999: {priority!r}"]


def test_one_upn_on_two_adnos_is_refused_not_merged(engine: Engine, tmp_path: Path) -> None:
    """Two admission numbers with one UPN: stored as one pupil, one child's N marks were laid
    over by the other's presence. Refused, naming both records and never the UPN."""
    school = store(engine)
    days = ("2025-11-10", "2025-11-11")
    rows = [("1234", d, s, "N") for d in days for s in ("AM", "PM")] + [
        ("5678", d, s, "/") for d in days for s in ("AM", "PM")]
    problems = _refused(engine, school, _marks_file(tmp_path / "marks-20251112T0200.xml", rows))
    assert problems == ["record 5, field UPN: is also on record 1, another pupil's (1234): a UPN belongs to one "
                        "child; correct it in SIMS"]
    assert "A123456789012" not in " ".join(problems)
