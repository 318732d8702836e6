"""The detect stage: read the store in bulk, evaluate every pupil, open/advance/close cases.

Public functions (for the summary, the digest, the referral and nightly):

- ``evaluate(app, as_of)`` / ``evaluate_conn(conn, config, school_id, as_of)`` -> ``Evaluation``:
  every pupil's streaks as of a date. ``.facts(pupil_id)`` is a ``criteria.PupilFacts`` whose
  ``.streaks`` holds both streaks and ``last_attended``; ``.on_roll`` the pupils on roll;
  ``.results.streaks`` only the pupils with a streak or a register gap (fast to scan);
  ``.calendar`` the ``SchoolCalendar`` used; ``.warnings`` data-quality warnings (unknown
  codes, calendar fallback); ``.marks(pupil_id, start, end)`` the marks, for evidence. Read only.
  UPNs and dates of birth are read when first needed: ``.load_people(ids)`` reads those of the
  pupils about to be asked about; ``facts`` of a pupil not loaded reads every pupil's, once.
- ``run_detect(app, as_of)`` -> ``DetectReport``: applies the changes in ONE transaction and
  records a ``detect_runs`` row. Running it again for the same date changes nothing. An
  ``as_of`` earlier than the latest run's is refused (``BadInputError``): the cases hold newer
  state, and evaluating backwards would close and reopen them. ``streaks --as-of`` can look at
  any past date without changing anything.
- ``record_returns(conn, school_id, evaluation, days)`` / ``list_returns(conn, school_id, listed_on)``: the LA
  10-day return, one ``la_returns`` row per pupil per unauthorised episode.

What is stored (read by others):

- ``cases``: ``ref`` (``CME-YYYY-NNNN``, year of opening, numbered in order, never reused),
  ``kind`` (``unexplained_absence``, ``place_not_taken_up``, ``destination_unknown``,
  ``repeat_missing``), ``status`` (``open``/``closed``), ``stage`` (``first_day_call``,
  ``contact_all``, ``dsl_review``, ``home_visit``, ``referral_prepare``, ``referral_due``; the other
  kinds start at ``referral_prepare``, ``repeat_missing`` at ``dsl_review``), ``episode_start``
  (streak start, agreed first day, leaving date, or newest repeat episode), ``school_days``,
  ``last_attended``, ``referral_due`` (the streak's 10th school day, register gaps counted as days
  of it; the opening date for the
  other kinds, or for ``destination_unknown`` the leaving date when that is later: a leaving dated in a
  holiday, after the evaluation date, counts as passed once its date has come and no school day lies
  before it, ``leavings_to``; the case's ``opened_on`` and events' ``as_of`` stay the evaluation date),
  ``register_gaps`` (ISO dates), ``alerts`` (list of ``{"kind":
  "immediate_social_care", "raised_on", "flags", "action"}``), ``compulsory_school_age``,
  ``closed_on``/``closed_reason`` (``returned``, ``explained``, ``attended``, ``withdrawn``,
  ``destination_known``, ``left``, ``superseded``, ``no_longer_applies``; any other reason is a
  person's, and detect reopens that episode's case only for an unexplained absence that goes on:
  ``criteria.raised_again_at``).
- ``case_events`` (actor ``"system"``, ``as_of`` the evaluation date), by ``kind``:
  ``opened`` detail ``{"kind", "stage", "episode_start", "school_days", "last_attended",
  "referral_due", "register_gaps", "compulsory_school_age", ...}`` plus ``admission_date``,
  ``leaving_date``/``leaving_reason`` or ``episodes`` by kind; ``stage`` ``{"from", "to", "passed",
  "changed"}``; ``updated`` ``{"changed": {field: [old, new]}}``; ``alert`` ``{"alert", "flags",
  "action"}``; ``closed`` ``{"reason", "school_days", "last_attended"}``; ``reopened``
  ``{"previous_reason", "changed"}``, plus ``{"unexplained_days_at_close", "raised_again_at"}`` after
  a person's close (the confirmation and hold of a case not yet referred cleared). ``evidence`` is
  the list of marks behind the event, ``[{"date": "YYYY-MM-DD", "session": "AM"|"PM", "code": "N"},
  ...]``: every session of every school day from the episode's first day to the evaluation date
  (empty for a leaver).
"""

from __future__ import annotations

import functools
import gc
from collections import defaultdict, namedtuple
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Connection, Select, bindparam, func, insert, select, update

from cme_batch import codes, criteria, schoolcal
from cme_batch import marks as mk
from cme_batch.app import App, in_school_time
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.model import SESSIONS
from cme_batch.store import bulk
from cme_batch.store import tables as t
from cme_batch.store.ingest import load_alphabet
from cme_batch.streaks import Many, Streak, evaluate_many

#: How far past the evaluation date the calendar is built (for projected due dates).
HORIZON = timedelta(days=400)
#: A pupil whose leaving date has passed is on roll again when marked on one of this many last school days after it.
REGISTERED_DAYS = 5
Range = tuple[date | None, date | None]


@dataclass
class _Enrolments:
    """One pupil's admissions, reduced to what the engine needs."""

    ranges: list[Range] = field(default_factory=list)  # on roll from..to, both included (None: open)
    current: Any = None  # the row of the latest admission started by the evaluation date


def _enrolments(rows: Iterable[Any], as_of: date) -> dict[int, _Enrolments]:
    """Admissions by pupil. Two sources' rows for the same admission (same first day): the newest wins.

    Each row has the ``enrolments`` columns ``pupil_id``, ``id``, ``updated_at``, ``withdrawn``,
    ``leaving_date`` and ``first``, the first day (``entry_date``, else ``admission_date``).
    """
    latest: dict[tuple[int, date | None], Any] = {}
    for r in sorted(rows, key=lambda r: (r.updated_at, r.id)):
        latest[(r.pupil_id, r.first)] = r
    out: dict[int, _Enrolments] = defaultdict(_Enrolments)
    kept: list[Any] = list(latest.values())
    dateless = {r.pupil_id for r in kept if r.first is None and r.leaving_date is not None}
    if dateless:  # a few pupils: each such leaving ends its admission
        kept = [r for r in kept if r.pupil_id not in dateless]
        for pid in dateless:
            kept += ended_by_dateless_leavings([r for (p, _first), r in latest.items() if p == pid])
    for r in sorted(kept, key=lambda r: (r.first or date.min, r.id)):
        e = out[r.pupil_id]
        start = r.first
        if not r.withdrawn:
            e.ranges.append((start, r.leaving_date))
        if start is None or start <= as_of:
            e.current = r
    return out


#: What a leaving gives the admission it ends (those of the columns a query read).
_LEAVING_FIELDS = ("leaving_date", "leaving_reason", "destination")


@functools.cache
def _row_type(fields: tuple[str, ...]) -> Any:
    """A named tuple with these fields: a row read by position and by name, as a query's."""
    return namedtuple("Admission", fields)  # noqa: PYI024


def ended_by_dateless_leavings(rows: list[Any]) -> list[Any]:
    """One pupil's admission rows (each with ``first``, its first day, and ``_fields``: a query's
    rows or named tuples), with each leaving that has no first day put on the admission it ends.

    The store knows an admission by its first day, so a leaving an export gives without one (a
    SIMS leavers report without Admission Date) is a row of its own, and the admission another
    export gave stayed open: the child on roll, no "destination unknown" case. Such a leaving ends
    the latest admission that began on or before it and has no leaving (nor a withdrawal) of its
    own; with none, it stays as it is (on roll until it, as before)."""
    def dateless(r: Any) -> bool:
        return r.first is None and r.leaving_date is not None and not r.withdrawn

    leavings = [r for r in rows if dateless(r)]
    out = [r for r in rows if not dateless(r)]
    for leaving in sorted(leavings, key=lambda r: r.leaving_date):
        ended = [i for i, r in enumerate(out) if r.first is not None and r.first <= leaving.leaving_date
                 and r.leaving_date is None and not r.withdrawn]
        if not ended:
            out.append(leaving)
            continue
        i = max(ended, key=lambda i: out[i].first)
        admission = out[i]
        fields: tuple[str, ...] = admission._fields
        out[i] = _row_type(fields)(*(getattr(leaving if f in _LEAVING_FIELDS else admission, f) for f in fields))
    return out


def _on_roll(ranges: list[Range] | None, day: date) -> tuple[bool, date | None]:
    """Whether a pupil is on roll on ``day``, and since when. No admissions at all: always on roll."""
    if ranges is None:
        return True, None
    for lo, hi in ranges:
        if (lo is None or lo <= day) and (hi is None or hi >= day):
            return True, lo
    return False, None


def _strip_ranges(ranges: list[Range] | None, year: int) -> tuple[tuple[int, int], ...]:
    length = mk.strip_length(year)
    if ranges is None:
        return ((0, length),)
    first, last = mk.year_start(year), mk.year_start(year + 1) - timedelta(days=1)
    out = []
    for lo, hi in ranges:
        if (lo is not None and lo > last) or (hi is not None and hi < first):
            continue
        out.append((0 if lo is None or lo < first else mk.position(lo, "AM"),
                    length if hi is None or hi > last else mk.position(hi, "PM") + 1))
    return tuple(out)


_Query = TypeVar("_Query", bound=Select[Any])


#: Positions in an admission row (see ``_Evaluator._admissions``); the names work too, slowly.
_FIRST, _LEAVING, _WITHDRAWN, _ADMITTED, _REASON, _DESTINATION = 1, 2, 3, 4, 5, 6


class _FirstDays:
    """The first day each admission gave its child (``of``): its agreed start date, else the day it
    put the child on roll (a CTF's ``EntryDate``, SIMS's Admission Date without an Agreed Start
    Date: a transfer put straight on roll). A child not seen since is a place not taken up either
    way; but an entry date counts only where the registers read hold the school's first school
    day from it (any pupil marked then): in a school's first weeks on the system, with no register
    from before them, a child on roll since before is not a child who never came."""

    def __init__(self, strips: dict[int, dict[int, str]], calendar: schoolcal.SchoolCalendar) -> None:
        self.strips, self.calendar = strips, calendar
        self.covered: dict[date, bool] = {}

    def of(self, row: Any) -> date | None:
        agreed: date | None = row[_ADMITTED]
        if agreed is not None:
            return agreed
        entry: date | None = row[_FIRST]
        if entry is None:
            return None
        if entry not in self.covered:
            self.covered[entry] = self._registers_from(entry)
        return entry if self.covered[entry] else None

    def _registers_from(self, entry: date) -> bool:
        days = self.calendar.school_days(entry, entry + timedelta(days=31))
        if not days:
            return False
        day = days[0]
        strips = self.strips.get(mk.academic_year_of(day))
        if not strips:
            return False
        at, blank = mk.position(day, "AM"), mk.NO_MARK * 2
        return any(s[at:at + 2] != blank for s in strips.values())


def _utc_date(moment: datetime) -> date:
    """UTC's date of a stored moment (SQLite gives it back without a zone: it is UTC)."""
    return (moment.astimezone(UTC) if moment.tzinfo else moment).date()


def _of_school(query: _Query, pupil_id: ColumnElement[int], school_id: int, alone: bool) -> _Query:
    """Keep the rows of one school's pupils (``pupil_id`` is the query's column naming the pupil).

    A store holding only that school (``alone``, the usual case) needs no join: every pupil is
    the school's (foreign keys), and the join's 100,000 index lookups cost a tenth of a second.
    """
    if alone:
        return query
    return query.join(t.pupils, t.pupils.c.id == pupil_id).where(t.pupils.c.school_id == school_id)


def _strips(conn: Connection, school_id: int, year: int, alone: bool) -> dict[int, str]:
    """Every pupil's strip for one academic year: one query, straight from the driver (half the
    time of SQLAlchemy's rows for 100,000 strips)."""
    s = t.mark_strips
    return dict(bulk.select_rows(conn, _of_school(select(s.c.pupil_id, s.c.marks).where(s.c.academic_year == year),
                                                  s.c.pupil_id, school_id, alone)))


Person = tuple[str | None, date | None]  # UPN, date of birth
#: Reads the UPN and date of birth of the pupils given (None: of every pupil of the school).
PeopleReader = Callable[[Sequence[int] | None], dict[int, Person]]
#: Pupil ids per ``IN (...)`` (well under any database's limit on parameters); for more than
#: _PEOPLE_ALL pupils, one query reads the whole school.
_PEOPLE_CHUNK, _PEOPLE_ALL = 500, 20_000


def _people(conn: Connection, school_id: int, pupil_ids: Sequence[int] | None) -> dict[int, Person]:
    """UPN and date of birth by pupil id, of the school's pupils given or (None) of all of them.

    The date of birth is in no index, so reading it means reading each pupil's whole row (names,
    address...): a third of a second for 100,000 pupils. Detect needs it only for the pupils it
    decides about, a few hundred a day, read by id (a condition on the school too makes SQLite
    scan the school's index instead: it is checked here).
    """
    p = t.pupils
    if pupil_ids is None:
        return {pid: (upn, dob) for pid, upn, dob in conn.execute(
            select(p.c.id, p.c.upn, p.c.dob).where(p.c.school_id == school_id))}
    ids = sorted(pupil_ids)
    query = select(p.c.id, p.c.upn, p.c.dob, p.c.school_id)
    return {pid: (upn, dob) for i in range(0, len(ids), _PEOPLE_CHUNK)
            for pid, upn, dob, school in conn.execute(query.where(p.c.id.in_(ids[i:i + _PEOPLE_CHUNK])))
            if school == school_id}


@dataclass
class Evaluation:
    """Every pupil's streaks as of ``as_of``, and what was needed to compute them.

    Per-pupil objects are made on demand (``facts``): a local authority's 100,000 pupils are
    held as a few dicts, with entries only where there is news. Pupils' UPN and date of birth
    are read on demand too (``load_people``; ``facts`` of a pupil not loaded reads every pupil's).
    """

    as_of: date
    calendar: schoolcal.SchoolCalendar
    warnings: list[str]
    window_start: date  # of the repeat_missing window
    base: date  # the first date the strips read cover
    alphabet: mk.Alphabet
    strips: dict[int, dict[int, str]]  # academic year -> pupil id -> raw strip
    on_roll: dict[int, date | None]  # pupil id -> first day on roll (None: no admission recorded)
    results: Many
    enrolments: dict[int, Any]  # pupil id -> the current admission's row (see _Evaluator._admissions)
    flags: dict[int, frozenset[str]]  # active on the evaluation date
    read_people: PeopleReader = field(repr=False)
    people: dict[int, Person] = field(default_factory=dict, repr=False)  # pupil id -> (UPN, date of birth)
    _everyone: bool = field(default=False, repr=False)  # people holds every pupil of the school
    #: pupils whose recorded leaving date has passed but whom the registers still mark (see
    #: ``_Evaluator._still_registered``): on roll, their leaving not counted
    still_registered: frozenset[int] = frozenset()
    #: leavings dated up to this date have passed (``leavings_to``): the evaluation date, or later in a holiday
    left_by: date | None = None
    _days: dict[date, tuple[str, int, int]] = field(default_factory=dict, repr=False)  # see _day

    def __post_init__(self) -> None:
        self.first_days = _FirstDays(self.strips, self.calendar)

    def load_people(self, pupil_ids: Iterable[int]) -> None:
        """Read the UPN and date of birth of these pupils now, in a few queries (before asking their ``facts``)."""
        missing = [pid for pid in pupil_ids if pid not in self.people]
        if len(missing) > _PEOPLE_ALL:
            self._load_everyone()
        elif missing and not self._everyone:
            self.people.update(self.read_people(missing))

    def _load_everyone(self) -> None:
        if not self._everyone:
            self.people.update(self.read_people(None))
            self._everyone = True

    def facts(self, pupil_id: int) -> criteria.PupilFacts:
        """What the criteria need to know about one pupil."""
        if pupil_id not in self.people:
            self._load_everyone()  # asked about pupils one by one (streaks --all): read everyone's at once
        upn, dob = self.people[pupil_id]
        cur = self.enrolments.get(pupil_id)
        left: date | None = None
        if cur is not None and cur[_LEAVING] is not None and cur[_LEAVING] <= self.leavings_to \
                and pupil_id not in self.still_registered:
            left = cur[_LEAVING]
        return criteria.PupilFacts(
            pupil_id=pupil_id, on_roll=pupil_id in self.on_roll, streaks=self.results.get(pupil_id), dob=dob,
            flags=self.flags.get(pupil_id, frozenset()), upn=upn,
            admission_date=self.first_days.of(cur) if cur is not None else None,
            admission_withdrawn=bool(cur[_WITHDRAWN]) if cur is not None else False,
            leaving_date=left, leaving_reason=cur[_REASON] if cur is not None and left else None,
            destination=cur[_DESTINATION] if cur is not None and left else None,
            repeat_episodes=self.results.repeats.get(pupil_id, ()))

    @property
    def leavings_to(self) -> date:
        """The last leaving date that counts as passed (``leavings_to``; the evaluation date at least)."""
        return max(self.as_of, self.left_by or self.as_of)

    def with_news(self) -> set[int]:
        """Pupils a criterion might apply to (with the pupils who have cases, all that detect looks at).

        An unexplained streak, unexplained episodes in the repeat window, or a current admission
        starting or ending in it.
        """
        lo, hi, left = criteria.window_floor(self.window_start, self.calendar), self.as_of, self.leavings_to
        out = {pid for pid, s in self.results.streaks.items() if s.unexplained.days}
        out.update(self.results.repeats)
        out.update(pid for pid, e in self.enrolments.items()
                   if ((first := self.first_days.of(e)) is not None and lo <= first <= hi)
                   or (e[_LEAVING] is not None and lo <= e[_LEAVING] <= left))
        return out

    def marks(self, pupil_id: int, start: date | None, end: date) -> list[dict[str, str]]:
        """The marks of every school day from ``start`` to ``end`` (evidence), as codes."""
        if start is None:
            return []
        out = []
        code_for = self.alphabet.code_for
        for day in self.calendar.school_days(max(start, self.base), end):
            iso, year, i = self._day(day)
            strip = self.strips.get(year, {}).get(pupil_id)
            for k, session in enumerate(SESSIONS):
                sym = strip[i + k] if strip else mk.NO_MARK
                out.append({"date": iso, "session": session, "code": code_for(sym)})
        return out

    def _day(self, day: date) -> tuple[str, int, int]:
        """A school day's ISO date, academic year and AM position (the evidence of a day run asks them again and again)."""
        found = self._days.get(day)
        if found is None:
            found = self._days[day] = (day.isoformat(), mk.academic_year_of(day), mk.position(day, "AM"))
        return found


class _Evaluator:
    """The bulk evaluation: one query per table, then a few C-level string operations per pupil."""

    def __init__(self, conn: Connection, config: Config, school_id: int, as_of: date,
                 read_people: PeopleReader, today: date | None = None) -> None:
        self.conn, self.config, self.school_id, self.as_of = conn, config, school_id, as_of
        self.today = today
        self.read_people = read_people
        self.th = config.thresholds
        p, f = t.pupils, t.flags
        self.alone = conn.execute(select(t.schools.c.id)).scalars().all() == [school_id]
        self.pupils: Sequence[int] = [pid for (pid,) in bulk.select_rows(conn, select(p.c.id).where(
            p.c.school_id == school_id))]
        self._admissions()
        flags: dict[int, set[str]] = defaultdict(set)
        for pid, kind, start, end in conn.execute(self._of_school(
                select(f.c.pupil_id, f.c.kind, f.c.start_date, f.c.end_date), f.c.pupil_id)).all():
            if (start is None or start <= as_of) and (end is None or end >= as_of):
                flags[pid].add(kind)
        self.flags = {pid: frozenset(k) for pid, k in flags.items()}
        self.alphabet = load_alphabet(conn)
        self.classifier = codes.Classifier(config.codes.local, config.codes.subcodes, self.alphabet)
        self.strips: dict[int, dict[int, str]] = {}
        self.registers: dict[int, schoolcal.YearRegisters] = {}
        self.year = mk.academic_year_of(as_of)
        self._load(self.year)

    def _of_school(self, query: _Query, pupil_id: ColumnElement[int]) -> _Query:
        return _of_school(query, pupil_id, self.school_id, self.alone)

    def _admissions(self) -> None:
        """Who is on roll (and since when) and each pupil's current admission, from the enrolments.

        Almost every pupil has one admission row, used as read: one query, no sorting. Only the
        pupils with several rows (two sources, a readmission) are read again with the columns
        ``_enrolments`` needs to pick the newest row of each admission and put them in order.
        Rows are read by position (``_ADMITTED``...): by name costs a microsecond a time.
        """
        e, as_of = t.enrolments, self.as_of
        columns = (e.c.pupil_id, func.coalesce(e.c.entry_date, e.c.admission_date).label("first"), e.c.leaving_date,
                   e.c.withdrawn, e.c.admission_date, e.c.leaving_reason, e.c.destination)
        rows = bulk.select_rows(self.conn, self._of_school(select(*columns), e.c.pupil_id))
        only: dict[int, Any] = {r[0]: r for r in rows}  # pupil id -> their only admission row
        several: dict[int, _Enrolments] = {}
        if len(only) < len(rows):
            repeated = select(e.c.pupil_id).group_by(e.c.pupil_id).having(func.count() > 1)
            several = _enrolments(self.conn.execute(self._of_school(
                select(*columns, e.c.id, e.c.updated_at).where(e.c.pupil_id.in_(repeated)), e.c.pupil_id)).all(), as_of)
            for pid in several:
                only.pop(pid, None)
        self._only, self._several = only, several
        # the current admission is the latest started by the evaluation date: a pupil's only one if it has
        self.current: dict[int, Any] = {pid: r for pid, r in only.items() if r[_FIRST] is None or r[_FIRST] <= as_of}
        self.on_roll: dict[int, date | None] = {  # pupil id -> first day on roll (None: no admission recorded)
            pid: r[_FIRST] for pid, r in self.current.items()
            if not r[_WITHDRAWN] and (r[_LEAVING] is None or r[_LEAVING] >= as_of)}
        for pid, admissions in several.items():
            on, floor = _on_roll(admissions.ranges, as_of)
            if on:
                self.on_roll[pid] = floor
            if admissions.current is not None:
                self.current[pid] = admissions.current
        if len(only) + len(several) < len(self.pupils):  # (every row is one of the school's pupils')
            self.on_roll.update((pid, None) for pid in self.pupils if pid not in only and pid not in several)

    def _ranges(self, pid: int) -> list[Range] | None:
        r = self._only.get(pid)
        if r is not None:
            return [] if r[_WITHDRAWN] else [(r[_FIRST], r[_LEAVING])]
        e = self._several.get(pid)
        return e.ranges if e is not None else None

    def _load(self, year: int) -> None:
        """Read one academic year's strips and rebuild the calendar with what they say."""
        strips = _strips(self.conn, self.school_id, year, self.alone)
        self.strips[year] = strips
        cal = self.config.calendar
        rows = ((s, _strip_ranges(self._ranges(pid), year)) for pid, s in strips.items())
        self.registers[year] = schoolcal.register_facts(year, rows, not schoolcal.has_terms(cal, year),
                                                        schoolcal.candidate_sessions(cal, year))
        self.base = mk.year_start(min(self.strips))
        self.calendar = schoolcal.build(cal, self.base, self.as_of + HORIZON, self.registers, self.as_of)
        self.window_start = criteria.window_start_for(self.as_of, self.calendar, self.th.repeat_window_days)

    def _many(self, pids: Iterable[int]) -> Many:
        roll = self.on_roll
        strips = list(self.strips.values())
        pupils = [(pid, True, roll[pid]) if pid in roll else (pid, False, None) for pid in pids
                  if pid in roll or any(pid in s for s in strips)]
        return evaluate_many(pupils, self.strips, self.classifier, self.calendar.school_days(self.base, self.as_of),
                             self.as_of, self.window_start, self.th.repeat_episodes * self.th.repeat_min_days)

    def _still_registered(self) -> dict[int, date]:
        """Pupils whose recorded leaving date has passed but who have a register mark that says
        something about the child (not neutral, no mark or an unknown code) on one of the last
        ``REGISTERED_DAYS`` school days after it, with the last such day.

        The MIS registers only the pupils on its roll, so such marks mean the leaving was undone
        there (a July leaver who came back in September). A SIMS leavers report lists this
        academic year's leavers only, and an admission a SIMS export stops giving is kept as
        stored: the July leaving stayed in the store, and the child, marked absent every day of
        September, was "left" for good, with no absence case. Only marks laid after the leaving
        was stored count (the year's strip changed since the admission row did): marks stored
        before a leaving entered late and dated back are the past, not a register still kept
        (over the summer the evaluation date stays on the last day of term, and such a leaver's
        "destination unknown" would have waited for September).
        """
        last = self.calendar.school_days(
            self.calendar.nth_school_day_back(self.as_of, REGISTERED_DAYS) or self.base, self.as_of)
        if not last:
            return {}
        told = (codes.PRESENT, codes.LATE_AFTER_CLOSE, codes.EDUCATIONAL, codes.AUTHORISED,
                codes.UNAUTHORISED_EXPLAINED, codes.UNEXPLAINED, codes.UNABLE)
        symbols = {legacy: self.classifier.symbols(told, codes.CHANGEOVER - timedelta(days=1) if legacy
                                                   else codes.CHANGEOVER) for legacy in (True, False)}
        out: dict[int, date] = {}
        for pid, r in self.current.items():
            leaving = r[_LEAVING]
            if leaving is None or leaving >= self.as_of or r[_WITHDRAWN] or pid in self.on_roll:
                continue
            for day in reversed(last):
                if day <= leaving:
                    break
                strip = self.strips.get(mk.academic_year_of(day), {}).get(pid)
                am = mk.position(day, "AM")
                if strip and (strip[am] in symbols[day < codes.CHANGEOVER]
                              or strip[am + 1] in symbols[day < codes.CHANGEOVER]):
                    out[pid] = day
                    break
        return self._laid_since_leaving(out)

    def _laid_since_leaving(self, found: dict[int, date]) -> dict[int, date]:
        """Of ``found`` (pupil -> a marked day after the leaving), those whose marks of that day's year
        were stored after their leaving was (a few pupils: read by id)."""
        s, e = t.mark_strips.c, t.enrolments.c
        pids = sorted(found)
        strips: dict[tuple[int, int], Any] = {}
        leavings: dict[int, Any] = {}
        for i in range(0, len(pids), _PEOPLE_CHUNK):
            chunk = pids[i:i + _PEOPLE_CHUNK]
            strips.update(((pid, year), at) for pid, year, at in self.conn.execute(
                select(s.pupil_id, s.academic_year, s.updated_at).where(s.pupil_id.in_(chunk))))
            leavings.update(self.conn.execute(select(e.pupil_id, func.max(e.updated_at)).where(
                e.pupil_id.in_(chunk), e.leaving_date.is_not(None)).group_by(e.pupil_id)).all())
        out = {}
        for pid, day in found.items():
            laid, left = strips.get((pid, mk.academic_year_of(day))), leavings.get(pid)
            # the marked day itself after the day the leaving was stored: the strip changes for any
            # correction (an old mark made "late"), and a leaving dated back has marks after it that
            # were laid before it was stored, so a later strip alone does not say these were
            if laid is not None and left is not None and laid > left and day > _utc_date(left):
                out[pid] = day
        return out

    def _registered_warning(self, found: dict[int, date]) -> list[str]:
        """The warning for pupils taken back on roll (``_still_registered``): counts and classes, never names."""
        if not found:
            return []
        return [f"{len(found)} pupil(s) recorded as having left still have register marks after their leaving "
                f"date (the last on {max(found.values()):%a %d %b %Y}; class(es): {self._classes(found)}): "
                "they are watched as pupils on roll. If a child did leave, remove those marks in the MIS; if not, "
                "the MIS's leavers export still gives the old leaving date: correct it there"]

    def run(self) -> Evaluation:
        if self.window_start < mk.year_start(self.year) or \
                self.calendar.count(mk.year_start(self.year), self.as_of) < self.th.repeat_window_days:
            self._load(self.year - 1)  # the repeat window reaches into last year
        registered = self._still_registered()
        for pid in registered:
            self.on_roll[pid] = self.current[pid][_FIRST]  # as if the leaving had not been: the MIS undid it
        results = self._many(self.pupils)
        incomplete = [pid for pid, s in results.streaks.items() if not s.complete]
        if incomplete and self.year - 1 not in self.strips:
            self._load(self.year - 1)  # a few pupils' streaks began last year, or they were last seen then
            again = self._many(incomplete)
            for pid in incomplete:
                results.streaks.pop(pid, None)
                results.repeats.pop(pid, None)
            results.streaks.update(again.streaks)
            results.last_attended.update(again.last_attended)
            results.repeats.update(again.repeats)
        unknown = self.classifier.unknown_codes(results.unknown.values(), results.unknown.keys())
        self.first_days = _FirstDays(self.strips, self.calendar)  # (the calendar as last loaded)
        warnings = [*self.classifier.warnings, *self.calendar.warnings,
                    *schoolcal.term_warnings(self.config.calendar, self.as_of),
                    *(codes.warning_text(u, self._unknown_where(u)) for u in unknown),
                    *self._missing_registers(results),
                    *self._registered_warning(registered)]
        return Evaluation(self.as_of, self.calendar, warnings, self.window_start, self.base, self.alphabet,
                          self.strips, self.on_roll, results, self.current, self.flags, self.read_people,
                          still_registered=frozenset(registered),
                          left_by=leavings_to(self.calendar, self.as_of, self.today))

    def _unknown_where(self, u: codes.UnknownCode) -> str:
        """The classes and days an unknown code of this year's strips is found in (never a pupil),
        for the office to find those registers."""
        first, last = mk.day_of_position(self.year, u.first)[0], mk.day_of_position(self.year, u.last)[0]
        when = f"on {first:%a %d %b %Y}" if first == last else f"from {first:%a %d %b %Y} to {last:%a %d %b %Y}"
        return f"class(es): {self._classes(u.keys)}; {when}"

    def _missing_registers(self, results: Many) -> list[str]:
        """A warning when pupils on roll have no mark at all on the last school day up to the evaluation date.

        A child with no mark that day is on no list of the morning (no streak starts on a missing
        register), so a register left untaken would look like a quiet day: the summary names the
        classes and counts the pupils (never names them: warnings are logged and stored).
        """
        day = self.calendar.nth_school_day_back(self.as_of, 1)
        if day is None:
            return []
        def on_roll_by(pid: int) -> bool:
            if pid not in self.on_roll:
                return False
            first = self.on_roll[pid]
            return first is None or first <= day

        pids = sorted(pid for pid, s in results.streaks.items()
                      if s.unexplained.register_gaps and s.unexplained.register_gaps[-1] == day and on_roll_by(pid))
        # a gap made by an unknown code is a mark the office can see (the unknown-code warning names it);
        # a child whose place was not taken up is a case of its own, on the lists already (``_awaited``)
        year, am = mk.academic_year_of(day), mk.position(day, "AM")
        year_strips = self.strips.get(year, {})
        pids = [pid for pid in pids if mk.NO_MARK in (year_strips.get(pid) or mk.NO_MARK * (am + 2))[am:am + 2]
                and not self._awaited(pid, results)]
        if not pids:
            return []
        out = [f"no register mark on {day:%a %d %b %Y} for {len(pids)} pupil(s) on roll (class(es): "
               f"{self._classes(pids)}): a child absent that day is on no list here until the "
               "register is completed in the MIS"]
        # not one mark since they were last seen, for as long as an absence takes to reach the LA's
        # criterion: a child taken off roll in the MIS without the leaving reaching cme-batch (or gone
        # from its exports altogether) looks just like this, and no streak counts a day with no mark
        unseen = {pid: results.streaks[pid].unexplained for pid in pids}
        unseen = {pid: s for pid, s in unseen.items() if s.days == 0 and len(s.register_gaps) >= self.th.referral_due}
        if unseen:
            since = min(s.register_gaps[0] for s in unseen.values())
            out.append(f"{len(unseen)} pupil(s) on roll have had no register mark at all for {self.th.referral_due} "
                       f"school days or more (the longest since {since:%a %d %b %Y}; class(es): "
                       f"{self._classes(unseen)}): a child taken off roll in the MIS without the leaving reaching "
                       "cme-batch, or gone from its exports, looks like this and is on no other list here. Check "
                       "each in the MIS today: record the leaving, with the destination, or complete the registers")
        return out

    def _awaited(self, pid: int, results: Many) -> bool:
        """A child with an agreed first day not seen since it: a place not taken up, on that list
        already (``criteria.place_not_taken_up``: its agreed first day in the repeat window), not a
        child gone from the MIS's exports (on roll for years: no mark this year is just that), nor
        a register left incomplete: both no-mark warnings leave it out (``_missing_registers``)."""
        row = self.current.get(pid)
        admitted = self.first_days.of(row) if row is not None else None
        seen = results.streaks[pid].last_attended
        return admitted is not None and admitted >= criteria.window_floor(self.window_start, self.calendar) \
            and (seen is None or seen < admitted)

    def _classes(self, pids: Iterable[int]) -> str:
        """The registration groups of some pupils, for a warning (never their names)."""
        p = t.pupils.c
        ids = sorted(pids)
        groups: set[str] = set()
        for i in range(0, len(ids), _PEOPLE_CHUNK):
            groups.update(g or "no class recorded" for g in self.conn.execute(
                select(p.reg_group).where(p.id.in_(ids[i:i + _PEOPLE_CHUNK]))).scalars())
        return ", ".join(sorted(groups))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while pupils are read in bulk.

    Reading 100,000 pupils makes some 400,000 rows and tuples, none of them in a reference
    cycle (reference counting frees them all), and the collector would walk them again and
    again as they pile up: a third of the evaluation's time. It runs again afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def leavings_to(calendar: schoolcal.SchoolCalendar, as_of: date, today: date | None) -> date:
    """The last leaving date that counts as passed when evaluating as of ``as_of`` on ``today``.

    A leaving on or before the evaluation date has passed (DOMAIN.md 5). So has one dated later
    when no school day lies after the evaluation date up to the leaving date, and the leaving date
    has come (``today``: the run's date in England; None: the evaluation date alone counts): over a
    holiday the evaluation date stays on the last school day before it, and a leaving dated in the
    holiday would otherwise wait for the next term, while the LA's CME team works through it. A
    leaving dated on a school day after the evaluation date (``--as-of`` an old date, or a leaving
    recorded in advance) still waits for that day's registers, and one dated ahead in a holiday
    for its date.
    """
    if today is None or today <= as_of:
        return as_of
    following = calendar.nth_school_day_after(as_of, 1)
    last = today if following is None else min(today, following - timedelta(days=1))
    return max(as_of, last)


def registers_taken(app: App, day: date) -> bool:
    """Whether any pupil of the school has a register mark (any code, a closure's too) on ``day``:
    the store read for that day's two sessions only."""
    s = t.mark_strips
    at = mk.position(day, "AM") + 1  # (substr counts from 1)
    with app.engine().connect() as conn:
        school_id = app.school_id
        alone = conn.execute(select(t.schools.c.id)).scalars().all() == [school_id]
        found = conn.execute(_of_school(select(s.c.pupil_id).where(
            s.c.academic_year == mk.academic_year_of(day), func.substr(s.c.marks, at, 2) != mk.NO_MARK * 2),
            s.c.pupil_id, school_id, alone).limit(1)).first()
    return found is not None


def registers_open_days(app: App, first: date, last: date) -> list[date]:
    """The weekdays from ``first`` to ``last`` the configuration makes no school day but the registers
    show the school open, as ``detect`` counts them (``schoolcal.register_facts``: ``beyond``).

    For the nightly run's default evaluation date and its catch-up of missed nights, which go by the
    same school days as ``detect``. Cheap: the store is read only when such weekdays lie in the range
    (holiday, INSET-day and bank-holiday mornings; none on an ordinary school morning), and then
    only their sessions of each pupil's strip (``substr`` in the query), with the admissions that
    say who was on roll, as ``_Evaluator`` reads them. A year without term dates is left out: there
    the configuration counts every weekday, and the registers decide in ``detect``.
    """
    if first > last:
        return []
    cal = app.config.calendar
    configured = set(schoolcal.build(cal, first, last).days)
    wanted: dict[int, list[date]] = defaultdict(list)
    day = first
    while day <= last:
        year = mk.academic_year_of(day)
        if day.weekday() < 5 and day not in configured and schoolcal.has_terms(cal, year):
            wanted[year].append(day)
        day += timedelta(days=1)
    if not wanted:
        return []
    out: list[date] = []
    with app.engine().connect() as conn:
        school_id = app.school_id
        alone = conn.execute(select(t.schools.c.id)).scalars().all() == [school_id]
        e = t.enrolments
        ranges = _enrolments(conn.execute(_of_school(select(
            e.c.pupil_id, e.c.id, e.c.updated_at, e.c.withdrawn, e.c.leaving_date,
            func.coalesce(e.c.entry_date, e.c.admission_date).label("first")), e.c.pupil_id, school_id, alone)).all(),
            last)
        s = t.mark_strips
        for year, days in sorted(wanted.items()):
            lo, hi = mk.position(days[0], "AM"), mk.position(days[-1], "PM") + 1
            rows = conn.execute(_of_school(select(s.c.pupil_id, func.substr(s.c.marks, lo + 1, hi - lo)).where(
                s.c.academic_year == year), s.c.pupil_id, school_id, alone))
            opened = schoolcal.opened_sessions(
                year, ((part, _strip_ranges(ranges[pid].ranges if pid in ranges else None, year)) for pid, part in rows),
                schoolcal.candidate_sessions(cal, year) or (), lo, hi)
            out += [d for d in days if mk.position(d, "AM") in opened or mk.position(d, "PM") in opened]
    return out


def school_today(app: App) -> date:
    """The date of the app's clock in England: the day a run is made."""
    return in_school_time(app.now()).date()


def evaluate_conn(conn: Connection, config: Config, school_id: int, as_of: date,
                  today: date | None = None) -> Evaluation:
    """Every pupil's streaks and facts as of ``as_of`` (read only); ``today``: the run's date in England,
    for a leaving dated after the evaluation date with no school day before it (``leavings_to``).

    ``facts`` may read pupils' UPN and date of birth through ``conn``: use the evaluation while it is open.
    """
    with _collector_paused():
        return _Evaluator(conn, config, school_id, as_of, partial(_people, conn, school_id), today).run()


def evaluate(app: App, as_of: date) -> Evaluation:
    def read_people(pupil_ids: Sequence[int] | None) -> dict[int, Person]:
        with app.engine().connect() as conn:
            return _people(conn, app.school_id, pupil_ids)

    with app.engine().connect() as conn, _collector_paused():
        return _Evaluator(conn, app.config, app.school_id, as_of, read_people, school_today(app)).run()


# -- the write side ---------------------------------------------------------------------------
@dataclass
class DetectReport:
    """What one detect run changed: one entry per case touched, and the counts."""

    as_of: date
    changes: list[dict[str, Any]] = field(default_factory=list)  # {"ref", "action", "kind", "stage", "reason"}
    events: int = 0
    la_returns: int = 0
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.changes:
            out[c["action"]] += 1
        return {**out, "events": self.events, "la_returns": self.la_returns}

    def __str__(self) -> str:
        """One line for the nightly record: what changed, never who."""
        n = self.counts()
        text = (f"as of {self.as_of}: {n.get('open', 0)} opened, {n.get('update', 0)} updated, "
                f"{n.get('close', 0)} closed, {n.get('reopen', 0)} reopened; {self.la_returns} new on the LA return")
        return text + (f"; {len(self.warnings)} warning(s)" if self.warnings else "")


def _case_states(conn: Connection, school_id: int) -> tuple[dict[int, list[criteria.CaseState]], dict[int, str]]:
    """Every case of the school, by pupil, and each case's reference by id (only the columns decisions need)."""
    c = t.cases
    out: dict[int, list[criteria.CaseState]] = defaultdict(list)
    refs: dict[int, str] = {}
    query = select(c.c.id, c.c.ref, c.c.pupil_id, c.c.kind, c.c.status, c.c.stage, c.c.episode_start, c.c.opened_on,
                   c.c.school_days, c.c.last_attended, c.c.referral_due, c.c.register_gaps, c.c.alerts,
                   c.c.compulsory_school_age, c.c.closed_reason, c.c.closed_on, c.c.referred_at).join(
        t.pupils, t.pupils.c.id == c.c.pupil_id).where(t.pupils.c.school_id == school_id).order_by(c.c.id)
    rows = conn.execute(query).all()
    leavings = _opened_leavings(conn, [r[0] for r in rows if r[3] == criteria.DESTINATION_UNKNOWN])
    for (case_id, ref, pid, kind, status, stage, start, opened, days, last, due, gaps, alerts, csa, reason,
         closed, referred) in rows:
        refs[case_id] = ref
        destination, why, known = leavings.get(case_id, (None, None, False))
        out[pid].append(criteria.CaseState(case_id, kind, status, stage, start, opened, days, last, due,
                                           tuple(gaps or ()), tuple(alerts or ()), csa, reason, closed,
                                           destination, referred is not None, why, known))
    return out, refs


def _opened_leavings(conn: Connection, case_ids: Sequence[int]) -> dict[int, tuple[str | None, str | None, bool]]:
    """The destination and the leaving reason recorded when each destination_unknown case last
    opened or reopened (the latest such event that gives them), and whether the event gave the reason.

    A case opened before its event carried them counts as opened with no destination recorded.
    """
    e, out = t.case_events, {}
    for i in range(0, len(case_ids), _PEOPLE_CHUNK):
        query = select(e.c.case_id, e.c.kind, e.c.detail).where(
            e.c.kind.in_(("opened", "reopened")), e.c.case_id.in_(case_ids[i:i + _PEOPLE_CHUNK])).order_by(e.c.id)
        for case_id, kind, detail in conn.execute(query):
            detail = detail or {}
            if kind == "opened" or "destination" in detail:
                out[case_id] = (detail.get("destination"), detail.get("leaving_reason"), "leaving_reason" in detail)
    return out


class _Refs:
    """Case references ``CME-YYYY-NNNN``: the year of opening and the next number in it."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.last: dict[int, int] = {}

    def next(self, year: int) -> str:
        if year not in self.last:
            prefix = f"CME-{year}-"
            refs = self.conn.execute(select(t.cases.c.ref).where(t.cases.c.ref.like(prefix + "%"))).scalars()
            self.last[year] = max((int(r[len(prefix):]) for r in refs if r[len(prefix):].isdigit()), default=0)
        self.last[year] += 1
        return f"CME-{year}-{self.last[year]:04d}"


def last_run(conn: Connection, school_id: int) -> date | None:
    """The evaluation date of the latest detect run for this school."""
    return conn.execute(select(func.max(t.detect_runs.c.as_of)).where(
        t.detect_runs.c.school_id == school_id)).scalar()


def run_detect(app: App, as_of: date) -> DetectReport:
    """Evaluate every pupil as of ``as_of`` and bring the cases in line, in one transaction.

    Under the ``detect`` lock, waited for: a ``detect`` started by hand while the night's runs (or
    the other way round) reads the store only once the first has written its cases, so it finds
    them instead of opening the same cases a second time (their references collided, and the run
    failed).
    """
    from cme_batch.runlock import STAGE_WAIT_SECONDS, run_lock

    now = app.now()
    with run_lock(app.engine(), app.state_dir, "detect", wait=STAGE_WAIT_SECONDS), app.engine().begin() as conn, \
            _collector_paused():
        last = last_run(conn, app.school_id)
        if last is not None and as_of < last:
            raise BadInputError(
                f"--as-of {as_of} is before the last detect run ({last}): cases already hold that later state, "
                "so nothing was changed; use 'cme-batch streaks --as-of' to look at an earlier date")
        report = _detect(conn, app, as_of, now)  # the evaluation is freed here, before the collector runs again
        conn.execute(insert(t.detect_runs).values(school_id=app.school_id, as_of=as_of, at=now, run_id=app.run_id,
                                                  counts=report.counts(), warnings=report.warnings))
    app.log(stage="detect").info("detect done", as_of=as_of.isoformat(), **report.counts(),
                                 warnings=len(report.warnings))
    return report


def _detect(conn: Connection, app: App, as_of: date, now: datetime) -> DetectReport:
    """Evaluate, decide and write the cases, their events and the LA return (not the detect_runs row)."""
    ev = evaluate_conn(conn, app.config, app.school_id, as_of, in_school_time(now).date())
    ctx = criteria.Context(as_of, app.config.thresholds, ev.calendar, ev.window_start, ev.leavings_to)
    states, case_refs = _case_states(conn, app.school_id)
    refs = _Refs(conn)
    report = DetectReport(as_of, warnings=list(ev.warnings))
    # pupils with news, with an open case, or with a case closed lately (its episode may come back);
    # every pupil with a case is the school's (_case_states), so the evaluation knows them all
    watched = {pid for pid, cs in states.items() if any(
        c.status == criteria.OPEN or (c.closed_on or as_of) >= ev.window_start for c in cs)}
    pids = sorted(ev.with_news() | watched)
    ev.load_people(pids)
    decided = [(pid, ch) for pid in pids for ch in criteria.decide(ev.facts(pid), states.get(pid, []), ctx)]
    case_ids = _write(conn, decided, refs, case_refs, as_of, now)
    events = []
    for (pid, ch), case_id in zip(decided, case_ids):
        report.changes.append({"ref": case_refs[case_id], "action": ch.action, "kind": ch.kind,
                               "stage": ch.values.get("stage"), "reason": ch.values.get("closed_reason")})
        events += [{"case_id": case_id, "at": now, "as_of": as_of, "kind": e.kind, "stage": e.stage,
                    "actor": "system", "detail": e.detail, "evidence": ev.marks(pid, e.evidence_from, as_of)}
                   for e in ch.events]
    if events:
        conn.execute(insert(t.case_events), events)
    report.events = len(events)
    report.la_returns = len(record_returns(conn, app.school_id, ev, app.config.thresholds.la_return_days))
    return report


def _write(conn: Connection, decided: list[tuple[int, criteria.Change]], refs: _Refs, case_refs: dict[int, str],
           as_of: date, now: Any) -> list[int]:
    """Write the changes to ``cases`` in a few statements; returns each change's case id (new refs join case_refs)."""
    ids: list[int | None] = [ch.case_id for _, ch in decided]
    opens = [i for i, (_, ch) in enumerate(decided) if ch.action == "open"]
    if opens:
        rows = [{"ref": refs.next(as_of.year), "pupil_id": decided[i][0], "kind": decided[i][1].kind,
                 "updated_at": now, **decided[i][1].values} for i in opens]
        new_ids = conn.execute(insert(t.cases).returning(t.cases.c.id, sort_by_parameter_order=True), rows).scalars()
        for i, row, case_id in zip(opens, rows, new_ids):
            ids[i] = case_id
            case_refs[case_id] = row["ref"]
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for _, ch in decided:
        if ch.action != "open":
            by_columns[tuple(sorted(ch.values))].append({"case_id": ch.case_id, "v_updated_at": now,
                                                         **{f"v_{k}": v for k, v in ch.values.items()}})
    for columns, params in by_columns.items():
        conn.execute(update(t.cases).where(t.cases.c.id == bindparam("case_id")).values(
            updated_at=bindparam("v_updated_at"), **{c: bindparam(f"v_{c}") for c in columns}), params)
    assert all(i is not None for i in ids)
    return [int(i) for i in ids if i is not None]


# -- the LA 10-day return -----------------------------------------------------------------------
def record_returns(conn: Connection, school_id: int, ev: Evaluation, days: int) -> list[int]:
    """List every pupil whose unauthorised streak has reached ``days`` school days, once per episode.

    Returns the pupil ids newly listed (with ``listed_on`` = the evaluation date).
    """
    due = {pid: s.unauthorised for pid, s in ev.results.streaks.items()
           if pid in ev.on_roll and s.unauthorised.days >= days}
    if not due:
        return []
    seen: dict[int, list[tuple[date, date]]] = defaultdict(list)
    for pid, start, reached in conn.execute(select(
            t.la_returns.c.pupil_id, t.la_returns.c.episode_start, t.la_returns.c.reached_on).join(
            t.pupils, t.pupils.c.id == t.la_returns.c.pupil_id).where(t.pupils.c.school_id == school_id)):
        seen[pid].append((start, reached))
    listed = [pid for pid, s in sorted(due.items()) if not _listed_already(
        seen.get(pid, []), s, ev.on_roll[pid], ev.results.get(pid).last_attended)]
    if listed:
        conn.execute(insert(t.la_returns), [
            {"pupil_id": pid, "episode_start": due[pid].start, "reached_on": due[pid].nth_day(days),
             "listed_on": ev.as_of, "school_days": due[pid].days} for pid in listed])
    return listed


def _listed_already(listings: list[tuple[date, date]], streak: Streak, on_roll_since: date | None,
                    last_attended: date | None) -> bool:
    """Whether the episode ``streak`` belongs to was listed (``listings``: each one's start and the
    day it reached the count), under any start it has had.

    A correction can move an episode's start without ending it (its first day made a missing
    register, the day before it made unauthorised, its first day explained), and a streak longer
    than the strips read shows a later start than its own: a listing since the last break before
    the streak (or, with no break read, since the pupil came on roll) is this episode's, and so is
    one whose days run into the streak when the child has not been seen since it began.
    """
    for start, reached in listings:
        if streak.after is not None and start > streak.after:
            return True
        if streak.after is None and (on_roll_since is None or start >= on_roll_since):
            return True
        if streak.start is not None and reached >= streak.start and (last_attended is None or last_attended < start):
            return True
    return False


def list_returns(conn: Connection, school_id: int, listed_on: date) -> list[dict[str, Any]]:
    """The LA 10-day return as listed on one date."""
    r, p = t.la_returns, t.pupils
    rows = conn.execute(select(r, p.c.upn, p.c.dob).join(p, p.c.id == r.c.pupil_id).where(
        p.c.school_id == school_id, r.c.listed_on == listed_on).order_by(r.c.episode_start, r.c.id)).mappings()
    return [{"upn": x["upn"], "pupil_id": x["pupil_id"], "unauthorised_start": x["episode_start"].isoformat(),
             "reached_on": x["reached_on"].isoformat(), "school_days": x["school_days"],
             "listed_on": x["listed_on"].isoformat(),
             "compulsory_school_age": criteria.compulsory_school_age(x["dob"], listed_on)} for x in rows]
