"""Writing model records as SIMS CommandReporter exports, as the scheduled task would.

Used for the demo school and the benchmarks (real files to import), and by the round-trip
tests. The output has CommandReporter's quirks: root ``SuperStarReport``, one ``Record``
per row, display names escaped as ``_xHHHH_``, empty fields left out, ISO-8859-1 by
default, year groups as ``Year  3``, ``-`` marks written as a row without ``Mark``.
Files are written atomically (temporary name, then rename), like the PowerShell script.

    from adapters.sims.writer import write_reports
    paths = write_reports(folder, records)   # {"pupils": Path, "admissions": ..., "leavers": ..., "marks": ...}
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from adapters.sims.fields import FIELDS, FLAG_FIELDS
from cme_batch.dropfolder import AtomicText
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record

_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
#: Flag kinds with a standard SIMS field (the rest are written under ``EXTRA_FLAG_NAMES``).
FLAG_FIELD_OF = {"looked_after": "in_care", "child_protection_plan": "child_protection_plan",
                 "child_in_need": "child_in_need", "young_carer": "young_carer", "highly_mobile": "service_child"}
EXTRA_FLAG_NAMES = {"domestic_abuse": "Domestic Abuse", "permanently_excluded": "Permanently Excluded",
                    "medical_emotional": "Medical Emotional Needs", "parent_mental_health": "Parent Mental Health",
                    "parent_learning_difficulty": "Parent Learning Difficulty"}
assert set(FLAG_FIELD_OF.values()) <= set(FLAG_FIELDS)


def encode_name(display: str) -> str:
    """A display name as CommandReporter writes it as an element name (``Legal_x0020_Surname``)."""
    out = []
    for i, c in enumerate(display):
        ok = c in _NAME_OK and not (i == 0 and (c.isdigit() or c in ".-"))
        out.append(c if ok else f"_x{ord(c):04X}_")
    return "".join(out)


def year_text(year_group: str) -> str:
    if year_group == "R":
        return "Reception"
    if year_group.startswith("N") and year_group[1:].isdigit():
        return f"Nursery {year_group[1:]}"
    return f"Year {year_group:>2}" if year_group.isdigit() else year_group


def _d(v: date | None) -> str | None:
    return None if v is None else f"{v.isoformat()}T00:00:00"


def _yes(v: bool | None) -> str | None:
    return None if v is None else ("Yes" if v else "No")


class ReportWriter(AtomicText):
    """One CommandReporter file, written row by row to a temporary name and renamed when complete."""

    def __init__(self, path: Path, encoding: str = "iso-8859-1") -> None:
        super().__init__(path, encoding, newline="\r\n")
        self._tags: dict[str, str] = {}
        self.write(f'<?xml version="1.0" encoding="{encoding}" standalone="yes"?>\n<SuperStarReport>\n')

    def row(self, fields: Mapping[str, str | None]) -> None:
        parts = ["  <Record>\n"]
        for name, value in fields.items():
            if value is None or value == "":
                continue
            tag = self._tags.get(name) or self._tags.setdefault(name, encode_name(name))
            parts.append(f"    <{tag}>{escape(value)}</{tag}>\n")
        parts.append("  </Record>\n")
        self.write("".join(parts))

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.write("</SuperStarReport>\n")
        super().__exit__(kind, *exc)


def _n(key: str) -> str:
    return FIELDS[key][0]


def identity(p: PupilRecord) -> dict[str, str | None]:
    return {_n("adno"): p.pupil_key, _n("upn"): p.upn, _n("legal_surname"): p.legal_surname,
            _n("legal_forename"): p.legal_forename, _n("preferred_surname"): p.preferred_surname,
            _n("preferred_forename"): p.preferred_forename, _n("middle_names"): p.middle_names,
            _n("dob"): _d(p.dob), _n("sex"): p.sex,
            _n("year_group"): year_text(p.year_group) if p.year_group else None, _n("reg_group"): p.reg_group}


def write_pupils(path: Path, pupils: Iterable[PupilRecord], contacts: Mapping[str, list[ContactRecord]],
                 flags: Mapping[str, list[FlagRecord]]) -> Path:
    """The pupils report: one row per pupil per contact, with address and flags."""
    with ReportWriter(path) as w:
        for p in pupils:
            base = identity(p)
            a = p.address
            lines = list(a.lines) if a else []
            base.update({_n("street"): lines[0] if lines else None, _n("district"): ", ".join(lines[1:]) or None,
                         _n("postcode"): a.postcode if a else None,
                         _n("telephone"): p.phones[0] if p.phones else None,
                         _n("email"): p.emails[0] if p.emails else None})
            for f in flags.get(p.pupil_key, []):
                if f.kind in FLAG_FIELD_OF:
                    base[_n(FLAG_FIELD_OF[f.kind])] = "Yes"
                elif f.kind in ("ehcp", "sen_support"):
                    base[_n("sen_status")] = "E" if f.kind == "ehcp" else "K"
                elif f.kind in EXTRA_FLAG_NAMES:
                    base[EXTRA_FLAG_NAMES[f.kind]] = "Yes"
            rows: list[ContactRecord | None] = [*contacts.get(p.pupil_key, [])] or [None]
            for c in rows:
                row = dict(base)
                if c is not None:
                    row.update({
                        _n("contact_id"): c.contact_key, _n("contact_priority"): str(c.priority) if c.priority else None,
                        _n("contact_title"): c.title, _n("contact_surname"): c.surname,
                        _n("contact_forename"): c.forename, _n("contact_relationship"): c.relationship,
                        _n("contact_responsibility"): _yes(c.parental_responsibility),
                        _n("contact_lives_with"): _yes(c.lives_with),
                        _n("contact_telephone"): c.phones[0] if c.phones else None,
                        _n("contact_mobile"): c.phones[1] if len(c.phones) > 1 else None,
                        _n("contact_email"): c.emails[0] if c.emails else None,
                        _n("contact_address"): ", ".join(c.address.lines) if c.address else None,
                        _n("contact_postcode"): c.address.postcode if c.address else None})
                w.row(row)
    return path


def write_enrolments(path: Path, pupils: Mapping[str, PupilRecord], enrolments: Iterable[EnrolmentRecord]) -> Path:
    """The admissions or leavers report: one row per enrolment, with the pupil's identity.

    Both carry Agreed Start Date and Admission Date, so that one admission is one enrolment
    in the store whichever report describes it."""
    with ReportWriter(path) as w:
        for e in enrolments:
            row = identity(pupils[e.pupil_key])
            row.update({_n("agreed_start"): _d(e.admission_date), _n("admission_date"): _d(e.entry_date),
                        _n("application_status"): "Withdrawn" if e.withdrawn else None,
                        _n("leaving_date"): _d(e.leaving_date), _n("leaving_reason"): e.leaving_reason,
                        _n("destination"): e.destination})
            w.row(row)
    return path


def write_marks(path: Path, pupils: Mapping[str, PupilRecord], marks: Iterable[MarksRecord]) -> Path:
    """The attendance report: one row per pupil per session (weekend ``#`` sessions left out)."""
    names = (_n("date"), _n("session"), _n("mark"))
    with ReportWriter(path) as w:
        for m in marks:
            p = pupils[m.pupil_key]
            who = {_n("adno"): p.pupil_key, _n("upn"): p.upn, _n("legal_surname"): p.legal_surname,
                   _n("legal_forename"): p.legal_forename,
                   _n("year_group"): year_text(p.year_group) if p.year_group else None, _n("reg_group"): p.reg_group}
            for i, code in enumerate(m.codes):
                if not code:
                    continue
                day = m.start + timedelta(days=i // 2)
                if code == "#" and day.weekday() >= 5:
                    continue
                w.row({**who, names[0]: _d(day), names[1]: "AM" if i % 2 == 0 else "PM",
                       names[2]: None if code == "-" else code})
    return path


def write_reports(folder: Path, records: Iterable[Record], stamp: str = "20251201T020000") -> dict[str, Path]:
    """All four reports for a mixed stream of records, named as the scheduled task names them."""
    pupils: dict[str, PupilRecord] = {}
    contacts: dict[str, list[ContactRecord]] = defaultdict(list)
    flags: dict[str, list[FlagRecord]] = defaultdict(list)
    enrolments: dict[str, list[EnrolmentRecord]] = defaultdict(list)
    marks: list[MarksRecord] = []
    for r in records:
        if isinstance(r, PupilRecord):
            pupils[r.pupil_key] = r
        elif isinstance(r, ContactRecord):
            contacts[r.pupil_key].append(r)
        elif isinstance(r, FlagRecord):
            flags[r.pupil_key].append(r)
        elif isinstance(r, EnrolmentRecord):
            enrolments[r.pupil_key].append(r)
        elif isinstance(r, MarksRecord):
            marks.append(r)
    folder.mkdir(parents=True, exist_ok=True)
    all_enrol = [e for es in enrolments.values() for e in es]
    return {
        "pupils": write_pupils(folder / f"pupils-{stamp}.xml", pupils.values(), contacts, flags),
        "admissions": write_enrolments(folder / f"admissions-{stamp}.xml", pupils,
                                       [e for e in all_enrol if not e.leaving_date]),
        "leavers": write_enrolments(folder / f"leavers-{stamp}.xml", pupils, [e for e in all_enrol if e.leaving_date]),
        "marks": write_marks(folder / f"marks-{stamp}.xml", pupils, marks),
    }
