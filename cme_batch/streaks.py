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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from cme_batch import marks as mk
from cme_batch.codes import (
    ATTENDED,
    CHANGEOVER,
    EDUCATIONAL,
    LATE_AFTER_CLOSE,
    LETTERS,
    NEUTRAL,
    NO_MARK,
    PRESENT,
    UNAUTHORISED_EXPLAINED,
    UNEXPLAINED,
    UNKNOWN,
    Classifier,
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
    while it is still running, as the current streak always is. ``after`` is, for the current
    streak (``walk``), the school day of the last break before it: None when the marks looked at
    hold none. A case that began after that day belongs to this streak, whatever became of the
    days between (a first day corrected to a missing register does not end an episode).
    """

    counted: tuple[date, ...] = ()
    register_gaps: tuple[date, ...] = ()
    broke_on: date | None = None
    after: date | None = None

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
    counted: tuple[list[date], list[date]] = ([], [])  # unexplained, unauthorised; newest first
    gaps: tuple[list[date], list[date]] = ([], [])
    running = [True, True]
    broke: list[date | None] = [None, None]
    complete = not days_desc
    for day, i in days_desc:
        if floor is not None and day < floor:
            complete = True
            break
        roles = PAIRS[letters[i:i + 2]]
        for k in (0, 1):
            if running[k]:
                if roles[k] == COUNT:
                    counted[k].append(day)
                elif roles[k] == BREAK:
                    running[k] = False
                    broke[k] = day
                elif roles[k] == GAP:
                    gaps[k].append(day)
        if not (running[0] or running[1]):
            complete = True
            break
    return _streak(counted[0], gaps[0], broke[0]), _streak(counted[1], gaps[1], broke[1]), complete


def _streak(days: list[date], gaps: list[date], after: date | None) -> Streak:
    """A Streak from lists collected newest first, running since the break on ``after``."""
    if not days and not gaps:
        return NO_STREAK
    return Streak(tuple(reversed(days)), tuple(reversed(gaps)), after=after)


def last_attended(letters: str, base: date, end: int) -> date | None:
    """The last date before index ``end`` with a ``present``, ``late_after_close`` or educational session."""
    i = -1
    for c in _ATTENDED_LETTERS:  # each search only looks after the best found so far
        i = max(i, letters.rfind(c, i + 1, end))
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


# -- many pupils at once --------------------------------------------------------------------------
@dataclass
class Many:
    """The results of ``evaluate_many``: plain dicts keyed by pupil id, filled only where there is news.

    ``streaks`` holds the pupils with a streak, a register gap or an incomplete walk; every
    other pupil evaluated has both streaks empty and only a ``last_attended`` entry.
    ``repeats`` holds the unexplained episodes in the repeat window of pupils who may have
    enough of them; ``unknown`` the (strip, class letters) of this year's strips holding unknown codes.
    """

    streaks: dict[int, PupilStreaks] = field(default_factory=dict)
    last_attended: dict[int, date | None] = field(default_factory=dict)
    repeats: dict[int, tuple[Streak, ...]] = field(default_factory=dict)
    unknown: dict[int, tuple[str, str]] = field(default_factory=dict)

    def get(self, pupil_id: int) -> PupilStreaks:
        found = self.streaks.get(pupil_id)
        return found if found is not None else PupilStreaks(NO_STREAK, NO_STREAK, self.last_attended.get(pupil_id))


def evaluate_many(pupils: Iterable[tuple[int, bool, date | None]], strips: Mapping[int, Mapping[int, str]],
                  classifier: Classifier, school_days: Sequence[date], as_of: date, window_start: date,
                  repeat_need: int) -> Many:
    """Both streaks of every pupil given as ``(pupil id, on roll, first day on roll)``.

    ``strips`` maps academic year -> pupil id -> stored strip; ``school_days`` are the school
    days from the first year's 1 August to ``as_of``. Unexplained episodes since
    ``window_start`` are computed for pupils with at least ``repeat_need`` unexplained
    sessions there. The result is the same as ``evaluate`` pupil by pupil; the fast path only
    avoids classifying the strip of a pupil seen in school on ``as_of`` (almost everyone).
    """
    years = sorted(strips)
    base = mk.year_start(years[0])
    cur_year, cur = years[-1], strips[years[-1]]
    offset = 2 * (mk.year_start(cur_year) - base).days
    end = 2 * ((as_of - base).days + 1)
    days_desc = school_day_index(reversed(school_days), base)
    window = [(d, i) for d, i in reversed(days_desc) if d >= window_start]
    w = 2 * (window_start - base).days
    unexplained = tuple(classifier.symbols({UNEXPLAINED}, as_of) | classifier.symbols({UNEXPLAINED}, base))
    lo_cur, hi_cur = max(w - offset, 0), end - offset
    earlier = [(strips[y], max(w - o, 0), end - o) for y in years[:-1] for o in (2 * (mk.year_start(y) - base).days,)]
    seen = classifier.symbols({PRESENT, EDUCATIONAL}, as_of)
    known = classifier.known_ascii(as_of)
    quick = bool(days_desc) and days_desc[0][0] == as_of and not (mk.year_start(cur_year) < CHANGEOVER <= as_of)
    i0 = days_desc[0][1] - offset if quick else 0
    out = Many()
    seen_today = out.last_attended
    fast_pids: list[int] = []
    fast_strips: list[str] = []  # of the pupils seen today, checked for unknown codes at the end, in blocks
    for pid, on_roll, floor in pupils:
        raw = cur.get(pid)
        if quick and on_roll and raw is not None and (raw[i0] in seen or raw[i0 + 1] in seen) and (
                floor is None or floor <= as_of):
            seen_today[pid] = as_of  # seen today: both streaks broke today
            n = 0
            for sym in unexplained:
                n += raw.count(sym, lo_cur, hi_cur)
            for strip, lo, hi in earlier:
                old = strip.get(pid)
                if old:
                    for sym in unexplained:
                        n += old.count(sym, lo, hi)
            if n >= repeat_need:
                _episodes(out, pid, _letters(strips, years, classifier, pid, end), window, floor)
            fast_pids.append(pid)
            fast_strips.append(raw)
            continue
        letters = _letters(strips, years, classifier, pid, end)
        s = evaluate(letters, base, days_desc, as_of, floor)
        if not on_roll:
            s = PupilStreaks(NO_STREAK, NO_STREAK, s.last_attended, True)
        elif s.last_attended is None and (floor is None or floor < base):
            s = PupilStreaks(s.unexplained, s.unauthorised, None, False)  # last seen before these strips
        out.last_attended[pid] = s.last_attended
        if s.unexplained is not NO_STREAK or s.unauthorised is not NO_STREAK or not s.complete:
            out.streaks[pid] = s
        if on_roll and letters.count(LETTERS[UNEXPLAINED], max(w, 0), end) >= repeat_need:
            _episodes(out, pid, letters, window, floor)
        if LETTERS[UNKNOWN] in letters[offset:end]:
            out.unknown[pid] = ((cur.get(pid) or mk.empty_strip(cur_year))[:end - offset], letters[offset:end])
    _find_unknown(out, fast_pids, fast_strips, classifier, cur_year, end - offset, known)
    return out


def _letters(strips: Mapping[int, Mapping[int, str]], years: list[int], classifier: Classifier, pid: int,
             end: int) -> str:
    """One pupil's class letters over every year given, up to ``end``."""
    parts: list[str] = []
    done = 0
    for y in years:
        raw = strips[y].get(pid) or mk.empty_strip(y)
        parts.append(classifier.classify(raw, y, end - done if y == years[-1] else None))
        done += len(parts[-1])
    return "".join(parts)


def _episodes(out: Many, pid: int, letters: str, window: Sequence[tuple[date, int]], floor: date | None) -> None:
    found = episodes(letters, [(d, i) for d, i in window if floor is None or d >= floor])
    if found:
        out.repeats[pid] = tuple(found)


#: Strips checked for unknown codes at once (about 700 KB joined).
_BLOCK = 1024


def _find_unknown(out: Many, pids: Sequence[int], raws: Sequence[str], classifier: Classifier, year: int,
                  end: int, known: bytes) -> None:
    """Put in ``out.unknown`` the strips (of ``year``, up to index ``end``) holding a code of no class.

    ``known`` lists the ASCII symbols with a class; every session before ``end`` is in one code
    set (the fast path's condition). Unknown codes are rare, so strips are joined in blocks and
    each block checked in one C-level pass; a block holding an unknown code is halved until the
    strips holding it are found. A block with private-use symbols (``C1``...) is looked at strip
    by strip: only those strips need classifying.
    """
    blocks = [(b, min(b + _BLOCK, len(raws))) for b in range(0, len(raws), _BLOCK)]
    while blocks:
        lo, hi = blocks.pop()
        joined = "".join(raws[lo:hi])
        if joined.isascii():
            if not joined.encode("ascii").translate(None, known):
                continue
            if hi - lo > 1:
                mid = (lo + hi) // 2
                blocks += [(lo, mid), (mid, hi)]
                continue
        for pid, raw in zip(pids[lo:hi], raws[lo:hi]):
            if raw.isascii() and not raw.encode("ascii").translate(None, known):
                continue
            letters = classifier.classify(raw, year, end)
            if LETTERS[UNKNOWN] in letters:
                out.unknown[pid] = (raw[:end], letters)
