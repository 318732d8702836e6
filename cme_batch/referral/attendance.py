"""Attendance facts a referral states: this year's attendance and compulsory school age.

Both are pure functions of plain data. The session classes follow DOMAIN.md 2 (codes are
classified by their date: the 2024 set from 19 August 2024, the older set before). The engine's
own classifier (``cme_batch.codes``) was not in the tree when this was written; once it is, the
``session_class`` function below should delegate to it so there is one table of codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

NEW_CODES_FROM = date(2024, 8, 19)

_CLASSES_2024: dict[str, tuple[str, ...]] = {
    "present": ("/", "\\", "L"),
    "late_after_close": ("U",),
    "educational_activity": ("K", "V", "P", "W", "B", "D"),
    "authorised": ("C", "C1", "C2", "E", "I", "M", "J1", "R", "S", "T"),
    "unauthorised_explained": ("G",),
    "unexplained": ("N", "O"),
    "unable_pupil": ("Q", "Y5", "Y7"),
    "neutral": ("X", "Y1", "Y2", "Y3", "Y4", "Y6", "Z", "#"),
}
_CLASSES_LEGACY: dict[str, tuple[str, ...]] = {
    "present": ("/", "\\", "L"),
    "late_after_close": ("U",),
    "educational_activity": ("B", "D", "J", "P", "V", "W"),
    "authorised": ("C", "E", "F", "H", "I", "M", "R", "S", "T"),
    "unauthorised_explained": ("G",),
    "unexplained": ("N", "O"),
    "neutral": ("X", "Y", "Z", "#"),
}
_BY_CODE_2024 = {c: k for k, codes in _CLASSES_2024.items() for c in codes}
_BY_CODE_LEGACY = {c: k for k, codes in _CLASSES_LEGACY.items() for c in codes}

#: Codes national statistics do not count as possible sessions (DOMAIN.md 2, statistical notes).
NOT_POSSIBLE = frozenset({"D", "X", "Z", "#", "Q", "Y", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7"})
ATTENDED_CLASSES = frozenset({"present", "educational_activity"})
UNAUTHORISED_CLASSES = frozenset({"late_after_close", "unauthorised_explained", "unexplained"})


def session_class(code: str, day: date, local: Mapping[str, str] | None = None,
                  subcodes: Mapping[str, str] | None = None) -> str:
    """The class of one mark on ``day`` (``no_mark`` for ``-`` or blank, ``unknown`` for anything else)."""
    if not code or not code.strip() or code == "-":
        return "no_mark"
    code = (subcodes or {}).get(code, code)
    table = _BY_CODE_2024 if day >= NEW_CODES_FROM else _BY_CODE_LEGACY
    if code in table:
        return table[code]
    return (local or {}).get(code, "unknown")


@dataclass(frozen=True)
class AttendanceSummary:
    academic_year: str
    first_day: date | None
    last_day: date
    possible: int
    attended: int
    authorised: int
    unauthorised: int

    @property
    def percent(self) -> float | None:
        return round(100.0 * self.attended / self.possible, 1) if self.possible else None

    def as_dict(self) -> dict[str, object]:
        return {
            "academic_year": self.academic_year,
            "from": self.first_day.isoformat() if self.first_day else None,
            "to": self.last_day.isoformat(),
            "possible_sessions": self.possible,
            "attended_sessions": self.attended,
            "authorised_absence_sessions": self.authorised,
            "unauthorised_absence_sessions": self.unauthorised,
            "attendance_percent": self.percent,
        }


def summarise(sessions: Iterable[tuple[date, str, str]], academic_year: int, until: date,
              local: Mapping[str, str] | None = None, subcodes: Mapping[str, str] | None = None
              ) -> AttendanceSummary:
    """Count possible, attended and absent sessions from ``(day, session, code)`` up to ``until``.

    A session is possible unless it has no mark, an unknown code or a code national statistics
    leave out (``D``, ``X``, ``Z``, ``#``, ``Q``, ``Y*``); attended means present or at an approved
    educational activity, as in the DfE's attendance figures.
    """
    possible = attended = authorised = unauthorised = 0
    first: date | None = None
    for day, _session, code in sessions:
        if day > until:
            continue
        cls = session_class(code, day, local, subcodes)
        national = (subcodes or {}).get(code, code)
        if cls in ("no_mark", "unknown", "neutral") or national in NOT_POSSIBLE:
            continue
        possible += 1
        first = day if first is None or day < first else first
        if cls in ATTENDED_CLASSES:
            attended += 1
        elif cls == "authorised":
            authorised += 1
        elif cls in UNAUTHORISED_CLASSES:
            unauthorised += 1
        else:  # unable_pupil codes that are possible sessions: absence, neither permitted nor not
            authorised += 1
    label = f"{academic_year}/{(academic_year + 1) % 100:02d}"
    return AttendanceSummary(label, first, until, possible, attended, authorised, unauthorised)


def _birthday(dob: date, years: int) -> date:
    """The date a person born on ``dob`` reaches ``years`` (29 February counts as 1 March)."""
    try:
        return dob.replace(year=dob.year + years)
    except ValueError:
        return date(dob.year + years, 3, 1)


def compulsory_school_age_from(dob: date) -> date:
    """The first prescribed day (31 December, 31 March, 31 August) on or after the fifth birthday."""
    fifth = _birthday(dob, 5)
    candidates = [date(fifth.year, 3, 31), date(fifth.year, 8, 31), date(fifth.year, 12, 31)]
    return next(d for d in candidates if d >= fifth)


def compulsory_school_age(dob: date | None, on: date) -> dict[str, object]:
    """Whether the child is of compulsory school age on ``on``, and from when."""
    if dob is None:
        return {"status": "unknown", "from": None}
    start = compulsory_school_age_from(dob)
    status = "of_compulsory_school_age" if on >= start else "below_compulsory_school_age"
    return {"status": status, "from": start.isoformat()}
