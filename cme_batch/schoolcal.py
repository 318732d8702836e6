"""The school calendar: which dates are school days (DOMAIN.md 3).

A date is a school day when it is a weekday inside a configured term, not an INSET or other
closure day, not an England bank holiday (the ``holidays`` package, subdivision ENG, plus
``extra_holidays`` minus ``not_holidays``), and not a whole-school closure in the registers
(both sessions ``#`` for every pupil on roll). An academic year with no term dates configured
falls back to the registers: a weekday is a school day when at least half the pupils on roll
have a real mark (not ``#``, not no-mark) in one of its sessions; dates after both the last mark
of anyone and the evaluation date are projected as weekdays, so due dates can still be computed.
A warning says so.

The registers also overrule the configuration the other way: a weekday the configuration makes no
school day (outside every term, an INSET or other closure, a bank holiday) on which at
least half the pupils on roll have a mark that says something about them (not ``#``, no mark,
``X``, ``Y`` or ``Z``) is a school day all the same, and a warning names it. DOMAIN.md 1 defines
a school day as a date the school is open to pupils: a moved INSET day, a forgotten half of a
term or a bank holiday the school opened on in exchange for another day are such dates, and an
absence on them must count (before, it was silently dropped and the child never counted missing).

``register_facts`` reads what the registers say about one academic year from raw strips
(see ``cme_batch.marks``) without a loop per mark; ``build``
joins it with the configuration into a ``SchoolCalendar``, which answers the questions the
engine asks: is this a school day, which school days lie in a range, which is the nth school
day after a date.
"""

from __future__ import annotations

import importlib.util
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, cast

import holidays as holidays_pkg

from cme_batch import marks as mk
from cme_batch.config import CalendarConfig


class SchoolCalendar:
    """A sorted set of school days with the lookups the engine needs."""

    def __init__(self, days: Iterable[date], warnings: Iterable[str] = (),
                 config: CalendarConfig | None = None) -> None:
        self.days: list[date] = sorted(set(days))
        self._set = frozenset(self.days)
        self.warnings: list[str] = list(warnings)
        self.config = config if config is not None else CalendarConfig()

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

    def projected_back(self, before: date, n: int) -> date:
        """The ``n``-th day counting back from the day before ``before`` (n >= 1) on which the school
        may have been open, where the calendar knows nothing (no terms, no registers): a weekday, not
        a bank holiday or configured closure, not in August. When ``before`` opens an academic year
        (August, or September up to the 10th), the count starts at the 31 July before it: the summer
        holiday is surely no school. Unknown holidays count as school days, so the date found is never
        earlier than the true one when the school kept England's usual holidays."""
        if n < 1:
            raise ValueError("n must be at least 1")
        day = before - timedelta(days=1)
        if opens_academic_year(before):
            day = min(day, date(before.year, 7, 31))
        hols = bank_holidays(self.config, day.year - 1, day.year)
        closures = set(self.config.closures)
        while True:
            if day.weekday() < 5 and day.month != 8 and day not in hols and day not in closures:
                n -= 1
                if n == 0:
                    return day
            day -= timedelta(days=1)


@dataclass(frozen=True)
class YearRegisters:
    """What one academic year's registers say about the calendar.

    ``closed`` and ``open`` are strip positions (see ``cme_batch.marks.position``): sessions
    where every pupil on roll has ``#``, and sessions where at least half the pupils on roll
    have a real mark (computed only for the fallback, else None). ``last_marked`` is the last
    date on which anybody has a real mark (fallback only). ``beyond`` (with term dates only) holds
    the weekday sessions the configuration makes no school session where at least half the pupils
    on roll have a mark that says something about them (``_SAYS``): the school was open after all.
    """

    academic_year: int
    closed: frozenset[int]
    open: frozenset[int] | None
    last_marked: date | None
    beyond: frozenset[int] = frozenset()


class _Tally:
    """Per-session counts over many pupils, a byte per session per pupil, summed as big integers.

    A strip becomes one byte string (1 for a real mark, 0 for ``#`` and no mark: a C-level
    ``bytes.translate``), read as one integer whose bytes are counter fields. 255 pupils fit in
    a byte field, so every 255 pupils the sum is spilled into a list of plain counts.
    """

    def __init__(self, length: int, table: bytes | None = None, within: int | None = None) -> None:
        self.length = length
        self.counts = [0] * length
        self.roll = [0] * length
        self._sum = self._roll = self._n = 0
        self._masks: dict[tuple[tuple[int, int], ...], int] = {}
        self._table = _REAL_BYTES if table is None else table
        self._within = within  # only these sessions (a byte mask as ``int.from_bytes`` reads it)

    def add(self, strip: str, ranges: tuple[tuple[int, int], ...]) -> None:
        mask = self._masks.get(ranges)
        if mask is None:
            on = bytearray(self.length)
            for lo, hi in ranges:
                on[max(lo, 0):min(hi, self.length)] = b"\x01" * (min(hi, self.length) - max(lo, 0))
            mask = int.from_bytes(on, "big")
            mask = self._masks[ranges] = mask if self._within is None else mask & self._within
        real = strip.encode("ascii", errors="replace").translate(self._table)  # '?' for a private-use code
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
#: A mark that says something about the pupil, for a day the configuration makes no school day: not
#: '#' (closed), no mark, nor the neutral X, Y, Z an MIS may write for everyone on a non-school day.
_SAYS = bytes(0 if chr(i) in ("#", mk.NO_MARK, "X", "Y", "Z") else 1 for i in range(256))
#: Pupils whose strips are all read for ``beyond``: past them only the sessions where at least a
#: quarter of these had a mark (none, almost always) are counted on. A school's whole roll is read;
#: a local authority's store of 100,000 pupils is not read a second time for a rare event.
BEYOND_SAMPLE = 1024


def _mask(length: int, positions: Iterable[int]) -> int:
    on = bytearray(length)
    for p in positions:
        on[p] = 1
    return int.from_bytes(on, "big")


class _Beyond:
    """Counts, over the pupils on roll, the marks that say something about them in the sessions the
    configuration makes no school session (``YearRegisters.beyond``): every pupil's for the first
    ``BEYOND_SAMPLE``, then, for the rest, only in the sessions where those showed a quarter marked.

    ``lo``/``hi``: only the strip positions from ``lo`` to ``hi`` (excluded); each strip given is then
    ``strip[lo:hi]`` (``opened_sessions``). Every position's count is the same as over whole strips."""

    def __init__(self, academic_year: int, school: frozenset[int], lo: int = 0, hi: int | None = None) -> None:
        hi = mk.strip_length(academic_year) if hi is None else hi
        self.lo, self.length = lo, hi - lo
        length = self.length
        start = mk.year_start(academic_year)
        # weekdays only: the configuration cannot make a weekend a school day, so a warning about one
        # could never be cleared (DOMAIN.md 3's fallback counts weekdays too)
        weekdays = (p for p in range(lo, hi) if (start + timedelta(days=p // 2)).weekday() < 5)
        self.first = _Tally(length, _SAYS, _mask(length, (p - lo for p in weekdays if p not in school)))
        self.rest: _Tally | None = None
        self.n = 0
        self.wanted = True  # whether more strips are wanted
        self._shifted: dict[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] = {}

    def add(self, strip: str, ranges: tuple[tuple[int, int], ...]) -> None:
        if self.lo or self.length != len(strip):
            shifted = self._shifted.get(ranges)
            if shifted is None:  # on roll within the window, counted from its start (a range outside it dropped)
                shifted = self._shifted[ranges] = tuple(
                    (max(a - self.lo, 0), min(b - self.lo, self.length)) for a, b in ranges
                    if b > self.lo and a < self.lo + self.length)
            ranges = shifted
        if self.rest is not None:
            self.rest.add(strip, ranges)
            return
        self.first.add(strip, ranges)
        self.n += 1
        if self.n == BEYOND_SAMPLE:
            counts, roll = self.first.done()
            watch = [p for p, (c, r) in enumerate(zip(counts, roll)) if c and 4 * c >= r]
            if watch:
                self.rest = _Tally(self.length, _SAYS, _mask(self.length, watch))
            else:
                self.wanted = False

    def result(self) -> frozenset[int]:
        counts, roll = self.first.done()
        if self.rest is not None:
            more, more_roll = self.rest.done()
            counts = [a + b for a, b in zip(counts, more)]
            roll = [a + b for a, b in zip(roll, more_roll)]
        return frozenset(p + self.lo for p, (c, r) in enumerate(zip(counts, roll)) if c and 2 * c >= r)


def opened_sessions(academic_year: int, rows: Iterable[tuple[str, Sequence[tuple[int, int]]]],
                    candidates: Iterable[int], lo: int, hi: int) -> frozenset[int]:
    """``YearRegisters.beyond`` for the strip positions ``lo`` to ``hi`` (excluded) alone, as
    ``register_facts`` finds it for a whole year: ``rows`` hold each pupil's ``strip[lo:hi]`` with the
    strip positions they were on roll (of the whole strip); ``candidates`` the configuration's school
    sessions (``candidate_sessions``). For the nightly run's evaluation date, which needs a few days
    of the registers, not every pupil's whole year (``cme_batch.detect.registers_open_days``)."""
    beyond = _Beyond(academic_year, frozenset(candidates), lo, hi)
    for strip, ranges in rows:
        if not beyond.wanted:
            break
        beyond.add(strip, tuple(ranges))
    return beyond.result()


def register_facts(academic_year: int, rows: Iterable[tuple[str, Sequence[tuple[int, int]]]],
                   fallback: bool, candidates: Iterable[int] | None = None) -> YearRegisters:
    """Read closures (and, for the fallback, open sessions) from one year's raw strips.

    ``rows`` holds each pupil's strip with the strip positions they were on roll, as
    ``[(lo, hi), ...]`` (``hi`` excluded). A closure can only be one of the ``candidates``
    (the sessions the configuration calls school sessions; all when None): a candidate dies at
    the first pupil on roll without ``#`` there, so with terms configured the pass usually ends
    after one pupil. The fallback counts real marks per session for every pupil (``_Tally``).
    With term dates (``candidates`` given, no fallback), the sessions outside them where the
    registers show the school open are found too (``_Beyond``: a school's whole roll is read).
    """
    length = mk.strip_length(academic_year)
    school = None if candidates is None else frozenset(candidates)
    alive = set(range(length)) if school is None else set(school)
    supported: set[int] = set()
    tally = _Tally(length) if fallback else None
    beyond = _Beyond(academic_year, school) if school is not None and not fallback else None
    for strip, ranges in rows:
        if not alive and tally is None and (beyond is None or not beyond.wanted):
            break
        if alive:
            for p in [p for p in alive if any(lo <= p < hi for lo, hi in ranges)]:
                if strip[p] == "#":
                    supported.add(p)
                else:
                    alive.discard(p)
        if tally is not None:
            tally.add(strip, tuple(ranges))
        if beyond is not None and beyond.wanted:
            beyond.add(strip, tuple(ranges))
    opened: frozenset[int] | None = None
    last_marked: date | None = None
    if tally is not None:
        counts, roll = tally.done()
        opened = frozenset(p for p, (n, of) in enumerate(zip(counts, roll)) if n and 2 * n >= of)
        last = max((p for p, n in enumerate(counts) if n), default=None)
        last_marked = mk.day_of_position(academic_year, last)[0] if last is not None else None
    return YearRegisters(academic_year, frozenset(alive & supported), opened, last_marked,
                         beyond.result() if beyond is not None else frozenset())


def candidate_sessions(cfg: CalendarConfig, academic_year: int) -> list[int] | None:
    """The strip positions the configuration makes school sessions (None: no terms, every session)."""
    if not has_terms(cfg, academic_year):
        return None
    first = mk.year_start(academic_year)
    days = build(cfg, first, mk.year_start(academic_year + 1) - timedelta(days=1)).days
    return [p for d in days for p in (mk.position(d, "AM"), mk.position(d, "PM"))]


@lru_cache(maxsize=32)
def _england(first_year: int, last_year: int) -> frozenset[date]:
    return frozenset(_united_kingdom()(subdiv="ENG", years=range(first_year, last_year + 1)))


@lru_cache(maxsize=1)
def _united_kingdom() -> Callable[..., Any]:
    """The ``holidays`` package's United Kingdom calendar class.

    Every way the package offers to it (``country_holidays``, ``holidays.GB``, importing
    ``holidays.countries.united_kingdom``) first imports ``holidays.countries``, which imports
    every country the package knows: about 0.04 s, which ``detect`` paid each night, against
    3 ms for the one module. So the module is loaded from its own file, under a private name
    (the package's own modules are left as they are); where the package is not laid out so, or
    the module does not load, the class comes through ``country_holidays`` as before. Either
    way it is the package's own class (``test_schoolcal.py`` compares their holidays)."""
    path = Path(holidays_pkg.__file__ or "").parent / "countries" / "united_kingdom.py"
    try:
        spec = importlib.util.spec_from_file_location("cme_batch._holidays_united_kingdom", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ImportError(path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = module.UnitedKingdom
        if isinstance(found, type) and issubclass(found, holidays_pkg.HolidayBase):
            return cast(Callable[..., Any], found)
    except Exception:  # noqa: BLE001, S110 - another layout of the package: its documented way below
        pass
    return partial(holidays_pkg.country_holidays, "GB")


def bank_holidays(cfg: CalendarConfig, first_year: int, last_year: int) -> set[date]:
    """England bank holidays of the calendar years given, as the configuration adjusts them."""
    days = set(_england(first_year, last_year)) if cfg.bank_holidays else set()
    return (days | set(cfg.extra_holidays)) - set(cfg.not_holidays)


#: The latest September day an academic year's first school day falls on (England: the first week or so).
SEPTEMBER_START_LATEST = 10


def opens_academic_year(day: date) -> bool:
    """Whether ``day`` can be an academic year's first school day (the summer holiday just before it)."""
    return day.month == 8 or (day.month == 9 and day.day <= SEPTEMBER_START_LATEST)


def has_terms(cfg: CalendarConfig, academic_year: int) -> bool:
    """Whether any configured term falls in the academic year (else its days come from the registers)."""
    start, end = mk.year_start(academic_year), mk.year_start(academic_year + 1) - timedelta(days=1)
    return any(t.start <= end and t.end >= start for t in cfg.terms)


#: A term starting further ahead than this looks like a year typed wrong (``term_doubts``).
TERM_AHEAD_DAYS = 550
#: The longest gap between two terms of one academic year that is a holiday (Christmas, Easter:
#: about two or three weeks); a longer one looks like a term left out.
TERM_GAP_DAYS = 35


def term_doubts(cfg: CalendarConfig, today: date) -> list[str]:
    """What in the configured terms looks like a typing mistake, for ``check-config`` to say: a
    term starting over a year and a half ahead (2062 for 2026), terms that overlap, or a gap of
    more than five weeks between two terms of one academic year (a term left out). Such a
    calendar puts a holiday where the school is open: the registers show it once the days come
    (``opened_warning``), but due dates worked out ahead cross it."""
    out: list[str] = []
    terms = sorted(cfg.terms, key=lambda t: t.start)
    for t in terms:
        if (t.start - today).days > TERM_AHEAD_DAYS:
            out.append(f"the term starting {t.start:%d %b %Y} is {(t.start - today).days // 365 or 1} year(s) ahead: "
                       "is its year typed right?")
    for a, b in zip(terms, terms[1:], strict=False):
        if b.start <= a.end:
            out.append(f"the terms {a.start:%d %b %Y}-{a.end:%d %b %Y} and {b.start:%d %b %Y}-{b.end:%d %b %Y} overlap")
        elif mk.academic_year_of(a.end) == mk.academic_year_of(b.start) and (b.start - a.end).days > TERM_GAP_DAYS:
            out.append(f"no term from {a.end:%d %b %Y} to {b.start:%d %b %Y} ({(b.start - a.end).days} days): "
                       "is a term left out?")
    return out


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

    A day the configuration makes no school day but the registers show open (``YearRegisters.beyond``;
    in a year without term dates, a closure or bank holiday among the open days) is a school day,
    named in a warning (``opened_warning``).
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
    opened: dict[date, str] = {}  # school days only the registers make: why the configuration did not
    day = first
    while day <= last:
        weekday = day.weekday() < 5
        off = day in closures or day in hols
        year = mk.academic_year_of(day)
        reg = registers.get(year)
        am = mk.position(day, "AM")
        if reg is not None and am in reg.closed and am + 1 in reg.closed:
            pass
        elif modes[year]:
            if weekday and not off and any(t.start <= day <= t.end for t in terms):
                days.append(day)
            elif reg is not None and (am in reg.beyond or am + 1 in reg.beyond):
                days.append(day)
                opened[day] = _why_not(day, cfg, closures, hols)
        elif not weekday:
            pass
        elif registers_end is None or day > registers_end:
            if not off:
                days.append(day)  # the future, or no registers at all: projected weekdays
        elif reg is not None and reg.open is not None and (am in reg.open or am + 1 in reg.open):
            days.append(day)
            if off:
                opened[day] = _why_not(day, cfg, closures, hols)
        day += timedelta(days=1)
    warnings = [fallback_warning(y) for y in sorted(registers) if not modes.get(y, True)]
    if opened:
        warnings.append(opened_warning(opened))
    return SchoolCalendar(days, warnings, cfg)


def _why_not(day: date, cfg: CalendarConfig, closures: set[date], hols: set[date]) -> str:
    """Why the configuration makes the weekday ``day`` no school day, naming the key to correct."""
    if day in closures:
        return "a closure in calendar.closures"
    if day in cfg.extra_holidays:
        return "a holiday in calendar.extra_holidays"
    if day in hols:
        return "a bank holiday"
    return "outside every term in calendar.terms"


#: Days an ``opened_warning`` names one by one (or as runs); the rest are counted.
OPENED_SHOWN = 6


def opened_warning(opened: Mapping[date, str]) -> str:
    """The warning for school days only the registers make: the days (runs of them joined), why the
    configuration made them none, and what to correct. No pupil is named: it is about the school."""
    runs: list[list[Any]] = []  # [first, last, why]
    for day in sorted(opened):
        why = opened[day]
        if runs and runs[-1][2] == why and (day - runs[-1][1]).days <= 3:
            runs[-1][1] = day
        else:
            runs.append([day, day, why])
    shown = [f"{a:%a %d %b %Y} ({why})" if a == b else f"{a:%a %d %b %Y} to {b:%a %d %b %Y} ({why})"
             for a, b, why in runs[:OPENED_SHOWN]]
    more = f" and {len(runs) - OPENED_SHOWN} more" if len(runs) > OPENED_SHOWN else ""
    return (f"the registers show the school open on {len(opened)} day(s) the configuration makes no school day: "
            f"{'; '.join(shown)}{more}. At least half the pupils on roll have a mark on each, so they count as "
            "school days (an absence on them counts, and the nightly run evaluates them); correct [calendar] in the "
            "configuration (terms, closures, extra_holidays or not_holidays)")


def term_warnings(cfg: CalendarConfig, as_of: date) -> list[str]:
    """Warn when the evaluation date lies past the last configured term of its academic year, and
    from July when the next academic year has no term dates yet (a school that keeps term dates
    is told before September, not by a summer of guessed school days and due dates)."""
    year = mk.academic_year_of(as_of)
    ends = [t.end for t in cfg.terms if mk.academic_year_of(t.end) == year]
    out = []
    if ends and as_of > max(ends):
        out.append(f"the evaluation date {as_of} is after the last configured term (ending {max(ends)}): "
                   "later dates count as holidays (unless the registers show the school open) until the next term's "
                   "dates are added")
    if ends and as_of >= date(year + 1, 7, 1) and not any(mk.academic_year_of(t.start) == year + 1 for t in cfg.terms):
        out.append(f"no term dates are configured for {year + 1}/{(year + 2) % 100:02d}: add them to [calendar] "
                   "before September, or school days from then on are guessed from the registers")
    return out
