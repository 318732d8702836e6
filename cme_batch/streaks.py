"""Streaks: continuous absence counted in school days (DOMAIN.md 4).

Two streaks are kept for every pupil. On each school day the pupil's sessions are taken, the
``neutral``, ``unknown`` and ``no_mark`` ones dropped, and then:

- the **unexplained** streak counts the day when everything left is ``unexplained``;
- the **unauthorised** streak (the LA 10-day return) counts it when everything left is
  ``unexplained``, ``unauthorised_explained`` or ``late_after_close``;
- anything else left **breaks** the streak;
- a day with nothing left is **skipped**; when that is because of a missing or unknown mark, the
  day is a *register gap* of the streak (shown, never silently shortening or ending it).

A streak's length counts the counting days since the last break up to the evaluation date;
its start is the first of them. Holidays, weekends and closures are not school days, so they
neither count nor break.

Input is a string of class letters (``cme_batch.codes.Classifier.classify``) covering the
pupil's strips from a base date, two letters per calendar day (AM, PM), and the school days as
``(date, index of the AM letter)``. ``walk`` goes back from the evaluation date only as far as
the last break, which for almost every pupil is the day before: this is what keeps a whole
local authority's evaluation to a few C-level string operations per pupil.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from cme_batch.codes import (
    ATTENDED,
    LATE_AFTER_CLOSE,
    LETTERS,
    NEUTRAL,
    NO_MARK,
    UNAUTHORISED_EXPLAINED,
    UNEXPLAINED,
    UNKNOWN,
)

COUNT, BREAK, GAP, SKIP = "count", "break", "gap", "skip"
UNEXPLAINED_STREAK, UNAUTHORISED_STREAK = "unexplained", "unauthorised"

_DROPPED = frozenset(LETTERS[c] for c in (NEUTRAL, NO_MARK, UNKNOWN))
_GAPPY = frozenset(LETTERS[c] for c in (NO_MARK, UNKNOWN))
_COUNTS = {
    UNEXPLAINED_STREAK: frozenset({LETTERS[UNEXPLAINED]}),
    UNAUTHORISED_STREAK: frozenset(LETTERS[c] for c in (UNEXPLAINED, UNAUTHORISED_EXPLAINED, LATE_AFTER_CLOSE)),
}
_ATTENDED_LETTERS = tuple(LETTERS[c] for c in sorted(ATTENDED))


def day_role(am: str, pm: str, counts: frozenset[str]) -> str:
    """What one school day (its AM and PM class letters) does to a streak counting ``counts``."""
    left = [c for c in (am, pm) if c not in _DROPPED]
    if not left:
        return GAP if am in _GAPPY or pm in _GAPPY else SKIP
    return COUNT if all(c in counts for c in left) else BREAK


#: (unexplained role, unauthorised role) for every pair of AM and PM class letters.
PAIRS: dict[str, tuple[str, str]] = {
    a + b: (day_role(a, b, _COUNTS[UNEXPLAINED_STREAK]), day_role(a, b, _COUNTS[UNAUTHORISED_STREAK]))
    for a in LETTERS.values() for b in LETTERS.values()
}


@dataclass(frozen=True)
class Streak:
    """One streak (or one episode): its counting days and register gaps, oldest first.

    ``broke_on`` is the school day of the break that ended an episode (see ``episodes``); None
    while it is still running, as the current streak always is.
    """

    counted: tuple[date, ...] = ()
    register_gaps: tuple[date, ...] = ()
    broke_on: date | None = None

    @property
    def days(self) -> int:
        return len(self.counted)

    @property
    def start(self) -> date | None:
        return self.counted[0] if self.counted else None

    @property
    def last_day(self) -> date | None:
        return self.counted[-1] if self.counted else None

    def nth_day(self, n: int) -> date | None:
        """The date of the streak's ``n``-th counting day (1-based), if it has one."""
        return self.counted[n - 1] if 0 < n <= len(self.counted) else None


NO_STREAK = Streak()


@dataclass(frozen=True)
class PupilStreaks:
    """Both streaks of one pupil as of an evaluation date, and the last day the child was seen.

    ``complete`` is False when the walk ran out of marks (the start of the strips given) before
    finding a break or the pupil's first day on roll: the caller should supply an earlier year.
    """

    unexplained: Streak
    unauthorised: Streak
    last_attended: date | None
    complete: bool = True


def school_day_index(days: Iterable[date], base: date) -> list[tuple[date, int]]:
    """Pair each school day with the index of its AM letter in a string that starts at ``base``."""
    return [(d, 2 * (d - base).days) for d in days]


def walk(letters: str, days_desc: Sequence[tuple[date, int]], floor: date | None = None
         ) -> tuple[Streak, Streak, bool]:
    """Both streaks, walking the school days back from the evaluation date to the last break.

    ``days_desc`` lists the school days up to the evaluation date, newest first. Days before
    ``floor`` (the pupil's first day on roll) are not looked at. Returns the unexplained and
    unauthorised streaks and whether the walk is complete (see ``PupilStreaks``).
    """
    u_days: list[date] = []
    u_gaps: list[date] = []
    a_days: list[date] = []
    a_gaps: list[date] = []
    u_open = a_open = True
    complete = not days_desc
    for day, i in days_desc:
        if floor is not None and day < floor:
            complete = True
            break
        u, a = PAIRS[letters[i:i + 2]]
        if u_open:
            if u == COUNT:
                u_days.append(day)
            elif u == BREAK:
                u_open = False
            elif u == GAP:
                u_gaps.append(day)
        if a_open:
            if a == COUNT:
                a_days.append(day)
            elif a == BREAK:
                a_open = False
            elif a == GAP:
                a_gaps.append(day)
        if not (u_open or a_open):
            complete = True
            break
    return _streak(u_days, u_gaps), _streak(a_days, a_gaps), complete


def _streak(days: list[date], gaps: list[date]) -> Streak:
    """A Streak from lists collected newest first."""
    if not days and not gaps:
        return NO_STREAK
    return Streak(tuple(reversed(days)), tuple(reversed(gaps)))


def last_attended(letters: str, base: date, end: int) -> date | None:
    """The last date before index ``end`` with a ``present``, ``late_after_close`` or educational session."""
    i = max(letters.rfind(c, 0, end) for c in _ATTENDED_LETTERS)
    return base + timedelta(days=i // 2) if i >= 0 else None


def evaluate(letters: str, base: date, days_desc: Sequence[tuple[date, int]], as_of: date,
             floor: date | None = None) -> PupilStreaks:
    """Both streaks and the last attended date of one pupil as of ``as_of``."""
    unexplained, unauthorised, complete = walk(letters, days_desc, floor)
    end = 2 * ((as_of - base).days + 1)
    return PupilStreaks(unexplained, unauthorised, last_attended(letters, base, end), complete)


def episodes(letters: str, days_asc: Sequence[tuple[date, int]], kind: str = UNEXPLAINED_STREAK) -> list[Streak]:
    """Every episode of one streak kind over the school days given (oldest first).

    An episode runs from its first counting day to the next break; the last one may still be
    running (``broke_on`` None). An episode already running on the first day given is seen
    from that day only. Register gaps are those since the previous break.
    """
    k = 0 if kind == UNEXPLAINED_STREAK else 1
    out: list[Streak] = []
    days: list[date] = []
    gaps: list[date] = []
    for day, i in days_asc:
        role = PAIRS[letters[i:i + 2]][k]
        if role == COUNT:
            days.append(day)
        elif role == GAP:
            gaps.append(day)
        elif role == BREAK:
            if days:
                out.append(Streak(tuple(days), tuple(gaps), day))
            days, gaps = [], []
    if days:
        out.append(Streak(tuple(days), tuple(gaps), None))
    return out
