"""Writing model records as a Common Transfer File.

Used for the demo school, the benchmarks (an LA-scale CTF) and the round-trip tests. Pupils
are written one at a time, so a file of 100,000 pupils needs no more memory than one.
What a CTF cannot say is left out: flags other than looked-after and SEN, the agreed start
date and withdrawn admissions, and two-character codes (see ``adapters.ctf.marks.NARROW``).

    from adapters.ctf.writer import write_ctf
    write_ctf(path, records, school=SchoolInfo("916", "2999", "The John Moore Primary School"))
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from adapters.ctf.marks import encode_marks
from cme_batch.dropfolder import AtomicText
from cme_batch.marks import academic_year_of
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    Record,
    SchoolInfo,
)

NS_2010 = "http://www.dcsf.gov.uk/schemas/cbds"
PRESENT, UNAUTHORISED = set("/\\L"), set("GNOU")
NOT_POSSIBLE = set("#XZDQY-")


def _el(name: str, value: object | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape(str(value))}</{name}>"


class CtfWriter(AtomicText):
    """One CTF, written pupil by pupil to a temporary name and renamed when complete."""

    def __init__(self, path: Path, school: SchoolInfo, *, dest: SchoolInfo | None = None, version: str = "25.0",
                 when: datetime | None = None, namespace: str | None = None,
                 start_element: str = "AttendanceStartDate", qualifier: str = "full") -> None:
        super().__init__(path, "utf-8")
        self.school, self.start_element = school, start_element
        when = when or datetime(2025, 12, 1, 2, 0)
        ns = f' xmlns="{namespace}"' if namespace else ""
        dest = dest or school
        self.write(
            f'<?xml version="1.0" encoding="UTF-8"?>\n<CTfile{ns}>\n  <Header>'
            f"{_el('DocumentName', 'Common Transfer File')}{_el('CTFversion', version)}"
            f"{_el('DateTime', when.isoformat(timespec='seconds'))}{_el('DocumentQualifier', qualifier)}"
            f"{_el('SupplierID', 'CME-BATCH')}<SourceSchool>{_el('LEA', school.la_number)}"
            f"{_el('Estab', school.establishment_number)}{_el('SchoolName', school.name)}"
            f"{_el('AcademicYear', academic_year_of(when.date()))}</SourceSchool>"
            f"<DestSchool>{_el('LEA', dest.la_number)}{_el('Estab', dest.establishment_number)}</DestSchool>"
            "</Header>\n  <CTFpupilData>\n")

    @staticmethod
    def _address(a: Address | None) -> str:
        if a is None:
            return ""
        lines = "".join(_el(f"AddressLine{i}", v) for i, v in enumerate(a.lines[:5], 1))
        return f"<Address>{'<AddressLines>' + lines + '</AddressLines>' if lines else ''}" \
               f"{_el('PostCode', a.postcode)}</Address>"

    @staticmethod
    def _phones(phones: Sequence[str]) -> str:
        if not phones:
            return ""
        return "<Phones>" + "".join(f"<Phone>{_el('TelephoneType', 'H')}{_el('PhoneNo', p)}</Phone>"
                                    for p in phones) + "</Phones>"

    def pupil(self, p: PupilRecord, contacts: Sequence[ContactRecord] = (), flags: Sequence[FlagRecord] = (),
              enrolments: Sequence[EnrolmentRecord] = (), marks: Sequence[MarksRecord] = ()) -> None:
        s = self.school
        out = ["    <Pupil>", _el("UPN", p.upn or p.pupil_key), _el("Surname", p.legal_surname),
               _el("Forename", p.legal_forename), _el("DOB", p.dob.isoformat() if p.dob else None), _el("Sex", p.sex)]
        basic = ("".join(_el("FormerUPN", u) for u in p.former_upns[-1:])
                 + _el("PreferredSurname", p.preferred_surname) + _el("PreferredForename", p.preferred_forename)
                 + _el("MiddleNames", p.middle_names) + _el("NCyearActual", p.year_group))
        out.append(f"<BasicDetails>{basic}</BasicDetails>" if basic else "")
        kinds = {f.kind for f in flags}
        out.append(f"<LookedAfter>{_el('InCare', 'looked_after' in kinds)}</LookedAfter>")
        sen = [f for f in flags if f.kind in ("ehcp", "sen_support")]
        if sen:
            out.append("<SENhistory>" + "".join(
                f"<SEN>{_el('StartDate', f.start.isoformat() if f.start else None)}"
                f"{_el('SENprovision', 'E' if f.kind == 'ehcp' else 'K')}</SEN>" for f in sen) + "</SENhistory>")
        out += [self._address(p.address), self._phones(p.phones), "".join(_el("Email", e) for e in p.emails)]
        if contacts:
            out.append("<Contacts>")
            for c in contacts:
                same = c.address is not None and c.address == p.address
                out.append(f"<Contact>{_el('Order', c.priority)}{_el('Title', c.title)}{_el('Surname', c.surname)}"
                           f"{_el('Forename', c.forename)}{_el('Relationship', c.relationship)}"
                           f"{_el('Responsibility', c.parental_responsibility)}"
                           f"{_el('AddressAsPupil', True) if same else self._address(c.address)}"
                           f"{self._phones(c.phones)}{''.join(_el('Email', e) for e in c.emails)}</Contact>")
            out.append("</Contacts>")
        years = year_strings(marks)
        if years:
            out.append("<Attendance>")
            for year, (start, text) in sorted(years.items()):
                out.append(
                    f"<YearData>{_el('Year', year)}{_el('LEA', s.la_number)}{_el('Estab', s.establishment_number)}"
                    f"{_el('SchoolName', s.name)}{_counts(text)}<AttendSessions>"
                    f"{_el(self.start_element, start.isoformat())}{_el('AttendanceMarks', text)}"
                    "</AttendSessions></YearData>")
            out.append("</Attendance>")
        if enrolments:
            out.append("<SchoolHistory>" + "".join(
                f"<School>{_el('LEA', s.la_number)}{_el('Estab', s.establishment_number)}{_el('SchoolName', s.name)}"
                f"{_el('EntryDate', e.entry_date.isoformat() if e.entry_date else None)}"
                f"{_el('LeavingDate', e.leaving_date.isoformat() if e.leaving_date else None)}"
                f"{_el('LeavingReason', e.leaving_reason)}</School>" for e in enrolments if e.entry_date)
                + "</SchoolHistory>")
        out.append("</Pupil>\n")
        self.write("".join(out))

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.write("  </CTFpupilData>\n</CTfile>\n")
        super().__exit__(kind, *exc)


def year_strings(marks: Iterable[MarksRecord]) -> dict[int, tuple[date, str]]:
    """Per academic year: (first day with a mark, marks string to the last day with one).

    Sessions no record speaks about are ``#`` at weekends and ``-`` (no mark) on weekdays.
    A year covered by one record with a mark for every session (a whole year's string, as
    the benchmarks write for 100,000 pupils) is joined at C speed; anything else session by session.
    """
    spans: dict[int, list[tuple[int, tuple[str, ...] | str]]] = defaultdict(list)
    for m in marks:
        base, i, n = m.start.toordinal() * 2, 0, len(m.codes)
        while i < n:
            year = academic_year_of(date.fromordinal((base + i) // 2))
            j = min(n, 2 * date(year + 1, 8, 1).toordinal() - base)
            spans[year].append((base + i, m.codes[i:j]))
            i = j
    out = {}
    for year, parts in spans.items():
        if len(parts) == 1 and (isinstance(parts[0][1], str) or "" not in parts[0][1]):  # a str: no gaps
            first, codes = parts[0]
            if len(codes) % 2:
                pm_of = date.fromordinal((first + len(codes)) // 2)
                codes = (*codes, "#" if pm_of.weekday() >= 5 else "-")
            out[year] = (date.fromordinal(first // 2), encode_marks(codes))
            continue
        sessions = {first + k: code for first, codes in parts for k, code in enumerate(codes) if code}
        if not sessions:
            continue
        first, last = min(sessions) // 2 * 2, max(sessions) // 2 * 2 + 1
        filled = []
        for idx in range(first, last + 1):
            have = sessions.get(idx)
            filled.append(have if have is not None else "#" if date.fromordinal(idx // 2).weekday() >= 5 else "-")
        out[year] = (date.fromordinal(first // 2), encode_marks(filled))
    return out


def _count(text: str, chars: Iterable[str]) -> int:
    return sum(text.count(c) for c in chars)


def _counts(text: str) -> str:
    possible = len(text) - _count(text, NOT_POSSIBLE)
    attended = _count(text, PRESENT)
    unauth = _count(text, UNAUTHORISED)
    return (_el("SessionsPossible", possible) + _el("SessionsAuthorised", possible - attended - unauth)
            + _el("SessionsAttended", attended) + _el("SessionsUnauthorised", unauth))


def write_ctf(path: Path, records: Iterable[Record], school: SchoolInfo, **options: object) -> Path:
    """A CTF for a mixed stream of records (grouped by pupil here); ``options`` go to CtfWriter."""
    pupils: dict[str, PupilRecord] = {}
    groups: dict[str, tuple[list[ContactRecord], list[FlagRecord], list[EnrolmentRecord], list[MarksRecord]]] = \
        defaultdict(lambda: ([], [], [], []))
    for r in records:
        if isinstance(r, PupilRecord):
            pupils[r.pupil_key] = r
        elif isinstance(r, ContactRecord):
            groups[r.pupil_key][0].append(r)
        elif isinstance(r, FlagRecord):
            groups[r.pupil_key][1].append(r)
        elif isinstance(r, EnrolmentRecord):
            groups[r.pupil_key][2].append(r)
        elif isinstance(r, MarksRecord):
            groups[r.pupil_key][3].append(r)
    with CtfWriter(path, school, **options) as w:  # type: ignore[arg-type]
        for key, p in pupils.items():
            w.pupil(p, *groups[key])
    return path


__all__ = ["NS_2010", "CtfWriter", "write_ctf", "year_strings"]
