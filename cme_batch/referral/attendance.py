"""Attendance facts a referral states: this year's attendance and compulsory school age.

Both are pure functions of plain data. Marks are classified by ``cme_batch.codes`` (the one
table of codes, by date); this module adds only the statistical rule of which sessions count
as possible, and the compulsory-school-age rule of DOMAIN.md 5.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from cme_batch import codes

#: Codes national statistics do not count as possible sessions (DOMAIN.md 2, statistical notes).
NOT_POSSIBLE = frozenset({"D", "X", "Z", "#", "Q", "Y", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7"})
ATTENDED_CLASSES = frozenset({codes.PRESENT, codes.EDUCATIONAL})
UNAUTHORISED_CLASSES = frozenset({codes.LATE_AFTER_CLOSE, codes.UNAUTHORISED_EXPLAINED, codes.UNEXPLAINED})
NOT_COUNTED = frozenset({codes.NO_MARK, codes.UNKNOWN, codes.NEUTRAL})


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
              classifier: codes.Classifier) -> AttendanceSummary:
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
        cls = classifier.class_of(code, day)
        if cls in NOT_COUNTED or classifier.subcodes.get(code, code) in NOT_POSSIBLE:
            continue
        possible += 1
        first = day if first is None or day < first else first
        if cls in ATTENDED_CLASSES:
            attended += 1
        elif cls == codes.AUTHORISED:
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
