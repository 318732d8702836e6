"""The school calendar: which dates are school days (DOMAIN.md 3).

A date is a school day when it is a weekday inside a configured term, not an INSET or other
closure day, not an England bank holiday (the ``holidays`` package, subdivision ENG, plus
``extra_holidays`` minus ``not_holidays``), and not a whole-school closure in the registers
(both sessions ``#`` for every pupil on roll). An academic year with no term dates configured
falls back to the registers: a weekday is a school day when at least half the pupils on roll
have a real mark (not ``#``, not no-mark) in one of its sessions; dates after both the last mark
of anyone and the evaluation date are projected as weekdays, so due dates can still be computed.
A warning says so.

``register_facts`` reads what the registers say about one academic year from raw strips
(see ``cme_batch.marks``) without a loop per mark; ``build``
joins it with the configuration into a ``SchoolCalendar``, which answers the questions the
engine asks: is this a school day, which school days lie in a range, which is the nth school
day after a date.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays as holidays_pkg

from cme_batch import marks as mk
from cme_batch.config import CalendarConfig


class SchoolCalendar:
    """A sorted set of school days with the lookups the engine needs."""

    def __init__(self, days: Iterable[date], warnings: Iterable[str] = ()) -> None:
        self.days: list[date] = sorted(set(days))
        self._set = frozenset(self.days)
        self.warnings: list[str] = list(warnings)

    def is_school_day(self, day: date) -> bool:
        return day in self._set

    def school_days(self, start: date, end: date) -> list[date]:
        """The school days from ``start`` to ``end``, both included, oldest first."""
        return self.days[bisect_left(self.days, start):bisect_right(self.days, end)]

    def count(self, start: date, end: date) -> int:
        return bisect_right(self.days, end) - bisect_left(self.days, start)

    def nth_school_day_after(self, day: date, n: int) -> date | None:
        """The ``n``-th school day after ``day`` (``n`` >= 1); None when the calendar does not reach it."""
        if n < 1:
            raise ValueError("n must be at least 1")
        i = bisect_right(self.days, day) + n - 1
        return self.days[i] if i < len(self.days) else None

    def nth_school_day_back(self, day: date, n: int) -> date | None:
        """The ``n``-th school day counting back from ``day`` included (n=1: the last school day <= day)."""
        if n < 1:
            raise ValueError("n must be at least 1")
        i = bisect_right(self.days, day) - n
        return self.days[i] if i >= 0 else None


@dataclass(frozen=True)
class YearRegisters:
    """What one academic year's registers say about the calendar.

    ``closed`` and ``open`` are strip positions (see ``cme_batch.marks.position``): sessions
    where every pupil on roll has ``#``, and sessions where at least half the pupils on roll
    have a real mark (computed only for the fallback, else None). ``last_marked`` is the last
    date on which anybody has a real mark (fallback only).
    """

    academic_year: int
    closed: frozenset[int]
    open: frozenset[int] | None
    last_marked: date | None


class _Tally:
    """Per-session counts over many pupils, a byte per session per pupil, summed as big integers.

    A strip becomes one byte string (1 for a real mark, 0 for ``#`` and no mark: a C-level
    ``bytes.translate``), read as one integer whose bytes are counter fields. 255 pupils fit in
    a byte field, so every 255 pupils the sum is spilled into a list of plain counts.
    """

    def __init__(self, length: int) -> None:
        self.length = length
        self.counts = [0] * length
        self.roll = [0] * length
        self._sum = self._roll = self._n = 0
        self._masks: dict[tuple[tuple[int, int], ...], int] = {}

    def add(self, strip: str, ranges: tuple[tuple[int, int], ...]) -> None:
        mask = self._masks.get(ranges)
        if mask is None:
            on = bytearray(self.length)
            for lo, hi in ranges:
                on[max(lo, 0):min(hi, self.length)] = b"\x01" * (min(hi, self.length) - max(lo, 0))
            mask = self._masks[ranges] = int.from_bytes(on, "big")
        real = strip.encode("ascii", errors="replace").translate(_REAL_BYTES)  # '?' for a private-use code
        self._sum += int.from_bytes(real, "big") & mask
        self._roll += mask
        self._n += 1
        if self._n == 255:
            self._spill()

    def _spill(self) -> None:
        for total, part in ((self.counts, self._sum), (self.roll, self._roll)):
            for i, n in enumerate(part.to_bytes(self.length, "big")):
                total[i] += n
        self._sum = self._roll = self._n = 0

    def done(self) -> tuple[list[int], list[int]]:
        self._spill()
        return self.counts, self.roll


_REAL_BYTES = bytes(0 if chr(i) in ("#", mk.NO_MARK) else 1 for i in range(256))


def register_facts(academic_year: int, rows: Iterable[tuple[str, Sequence[tuple[int, int]]]],
                   fallback: bool, candidates: Iterable[int] | None = None) -> YearRegisters:
    """Read closures (and, for the fallback, open sessions) from one year's raw strips.

    ``rows`` holds each pupil's strip with the strip positions they were on roll, as
    ``[(lo, hi), ...]`` (``hi`` excluded). A closure can only be one of the ``candidates``
    (the sessions the configuration calls school sessions; all when None): a candidate dies at
    the first pupil on roll without ``#`` there, so with terms configured the pass usually ends
    after one pupil. The fallback counts real marks per session for every pupil (``_Tally``).
    """
    length = mk.strip_length(academic_year)
    alive = set(range(length)) if candidates is None else set(candidates)
    supported: set[int] = set()
    tally = _Tally(length) if fallback else None
    for strip, ranges in rows:
        if alive:
            for p in [p for p in alive if any(lo <= p < hi for lo, hi in ranges)]:
                if strip[p] == "#":
                    supported.add(p)
                else:
                    alive.discard(p)
        elif tally is None:
            break
        if tally is not None:
            tally.add(strip, tuple(ranges))
    opened: frozenset[int] | None = None
    last_marked: date | None = None
    if tally is not None:
        counts, roll = tally.done()
        opened = frozenset(p for p, (n, of) in enumerate(zip(counts, roll)) if n and 2 * n >= of)
        last = max((p for p, n in enumerate(counts) if n), default=None)
        last_marked = mk.day_of_position(academic_year, last)[0] if last is not None else None
    return YearRegisters(academic_year, frozenset(alive & supported), opened, last_marked)


def candidate_sessions(cfg: CalendarConfig, academic_year: int) -> list[int] | None:
    """The strip positions the configuration makes school sessions (None: no terms, every session)."""
    if not has_terms(cfg, academic_year):
        return None
    first = mk.year_start(academic_year)
    days = build(cfg, first, mk.year_start(academic_year + 1) - timedelta(days=1)).days
    return [p for d in days for p in (mk.position(d, "AM"), mk.position(d, "PM"))]


@lru_cache(maxsize=32)
def _england(first_year: int, last_year: int) -> frozenset[date]:
    return frozenset(holidays_pkg.country_holidays("GB", subdiv="ENG", years=range(first_year, last_year + 1)))


def bank_holidays(cfg: CalendarConfig, first_year: int, last_year: int) -> set[date]:
    """England bank holidays of the calendar years given, as the configuration adjusts them."""
    days = set(_england(first_year, last_year)) if cfg.bank_holidays else set()
    return (days | set(cfg.extra_holidays)) - set(cfg.not_holidays)


def has_terms(cfg: CalendarConfig, academic_year: int) -> bool:
    """Whether any configured term falls in the academic year (else its days come from the registers)."""
    start, end = mk.year_start(academic_year), mk.year_start(academic_year + 1) - timedelta(days=1)
    return any(t.start <= end and t.end >= start for t in cfg.terms)


def fallback_warning(academic_year: int) -> str:
    return (f"academic year {academic_year}/{(academic_year + 1) % 100:02d} has no term dates configured: "
            "school days are inferred from the registers (a weekday on which at least half the pupils on roll "
            "have a mark); add [[calendar.terms]] to the configuration")


def build(cfg: CalendarConfig, first: date, last: date,
          registers: Mapping[int, YearRegisters] | None = None, as_of: date | None = None) -> SchoolCalendar:
    """The school days from ``first`` to ``last`` by the configuration and the registers read so far.

    ``as_of`` is the evaluation date the registers were read for: in a year without term dates,
    a weekday up to it is a school day only when the registers say so, and weekdays are
    projected only after it (and after the last mark). Without it, a new academic year whose
    term dates were not yet added counted every weekday of the summer holiday as a school day
    with no register: a July absence grew through August and reached its referral date there.
    """
    registers = registers or {}
    hols = bank_holidays(cfg, first.year, last.year)
    closures = set(cfg.closures)
    # the registers run to the last mark of a fallback year, or through a year with terms, and
    # at least to the evaluation date they were read for
    ends = [r.last_marked if r.open is not None else mk.year_start(r.academic_year + 1) - timedelta(days=1)
            for r in registers.values()]
    if registers and as_of is not None:
        ends.append(as_of)
    registers_end = max((e for e in ends if e is not None), default=None)
    terms = sorted(cfg.terms, key=lambda t: t.start)
    modes = {y: has_terms(cfg, y) for y in range(mk.academic_year_of(first), mk.academic_year_of(last) + 1)}
    days: list[date] = []
    day = first
    while day <= last:
        if day.weekday() < 5 and day not in closures and day not in hols:
            year = mk.academic_year_of(day)
            reg = registers.get(year)
            am = mk.position(day, "AM")
            if reg is not None and am in reg.closed and am + 1 in reg.closed:
                pass
            elif modes[year]:
                if any(t.start <= day <= t.end for t in terms):
                    days.append(day)
            elif registers_end is None or day > registers_end:
                days.append(day)  # the future, or no registers at all: projected weekdays
            elif reg is not None and reg.open is not None and (am in reg.open or am + 1 in reg.open):
                days.append(day)
        day += timedelta(days=1)
    warnings = [fallback_warning(y) for y in sorted(registers) if not modes.get(y, True)]
    return SchoolCalendar(days, warnings)


def term_warnings(cfg: CalendarConfig, as_of: date) -> list[str]:
    """Warn when the evaluation date lies past the last configured term of its academic year, and
    from July when the next academic year has no term dates yet (a school that keeps term dates
    is told before September, not by a summer of guessed school days and due dates)."""
    year = mk.academic_year_of(as_of)
    ends = [t.end for t in cfg.terms if mk.academic_year_of(t.end) == year]
    out = []
    if ends and as_of > max(ends):
        out.append(f"the evaluation date {as_of} is after the last configured term (ending {max(ends)}): "
                   "later dates count as holidays until the next term's dates are added")
    if ends and as_of >= date(year + 1, 7, 1) and not any(mk.academic_year_of(t.start) == year + 1 for t in cfg.terms):
        out.append(f"no term dates are configured for {year + 1}/{(year + 2) % 100:02d}: add them to [calendar] "
                   "before September, or school days from then on are guessed from the registers")
    return out
