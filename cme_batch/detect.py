"""The detect stage: read the store in bulk, evaluate every pupil, open/advance/close cases.

Public functions (for the summary, the digest, the referral and nightly):

- ``evaluate(app, as_of)`` / ``evaluate_conn(conn, config, school_id, as_of)`` -> ``Evaluation``:
  every pupil's streaks as of a date. ``.facts(pupil_id)`` is a ``criteria.PupilFacts`` whose
  ``.streaks`` holds both streaks and ``last_attended``; ``.on_roll`` the pupils on roll;
  ``.results.streaks`` only the pupils with a streak or a register gap (fast to scan);
  ``.calendar`` the ``SchoolCalendar`` used; ``.warnings`` data-quality warnings (unknown
  codes, calendar fallback); ``.marks(pupil_id, start, end)`` the marks, for evidence. Read only.
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
  other kinds), ``register_gaps`` (ISO dates), ``alerts`` (list of ``{"kind":
  "immediate_social_care", "raised_on", "flags", "action"}``), ``compulsory_school_age``,
  ``closed_on``/``closed_reason`` (``returned``, ``explained``, ``attended``, ``withdrawn``,
  ``destination_known``, ``left``, ``superseded``, ``no_longer_applies``; any other reason is a
  person's and detect never reopens that episode).
- ``case_events`` (actor ``"system"``, ``as_of`` the evaluation date), by ``kind``:
  ``opened`` detail ``{"kind", "stage", "episode_start", "school_days", "last_attended",
  "referral_due", "register_gaps", "compulsory_school_age", ...}`` plus ``admission_date``,
  ``leaving_date``/``leaving_reason`` or ``episodes`` by kind; ``stage`` ``{"from", "to", "passed",
  "changed"}``; ``updated`` ``{"changed": {field: [old, new]}}``; ``alert`` ``{"alert", "flags",
  "action"}``; ``closed`` ``{"reason", "school_days", "last_attended"}``; ``reopened``
  ``{"previous_reason", "changed"}``. ``evidence`` is the list of marks behind the event,
  ``[{"date": "YYYY-MM-DD", "session": "AM"|"PM", "code": "N"}, ...]``: every session of every
  school day from the episode's first day to the evaluation date (empty for a leaver).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from cme_batch import codes, criteria, schoolcal
from cme_batch import marks as mk
from cme_batch.app import App
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.model import SESSIONS
from cme_batch.store import tables as t
from cme_batch.store.ingest import load_alphabet
from cme_batch.streaks import Many, evaluate_many

#: How far past the evaluation date the calendar is built (for projected due dates).
HORIZON = timedelta(days=400)
Range = tuple[date | None, date | None]


@dataclass
class _Enrolments:
    """One pupil's admissions, reduced to what the engine needs."""

    ranges: list[Range] = field(default_factory=list)  # on roll from..to, both included (None: open)
    current: Any = None  # the row of the latest admission started by the evaluation date


def _enrolments(rows: Iterable[Any], as_of: date) -> dict[int, _Enrolments]:
    """Admissions by pupil. Two sources' rows for the same admission (same first day): the newest wins."""
    latest: dict[tuple[int, date | None], Any] = {}
    for r in sorted(rows, key=lambda r: (r.updated_at, r.id)):
        latest[(r.pupil_id, r.entry_date or r.admission_date)] = r
    out: dict[int, _Enrolments] = defaultdict(_Enrolments)
    for r in sorted(latest.values(), key=lambda r: (r.entry_date or r.admission_date or date.min, r.id)):
        e = out[r.pupil_id]
        start = r.entry_date or r.admission_date
        if not r.withdrawn:
            e.ranges.append((start, r.leaving_date))
        if start is None or start <= as_of:
            e.current = r
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


def _strips(conn: Connection, school_id: int, year: int) -> dict[int, str]:
    """Every pupil's strip for one academic year: one query."""
    return dict(conn.execute(select(t.mark_strips.c.pupil_id, t.mark_strips.c.marks).join(
        t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id).where(
        t.pupils.c.school_id == school_id, t.mark_strips.c.academic_year == year)).all())


@dataclass
class Evaluation:
    """Every pupil's streaks as of ``as_of``, and what was needed to compute them.

    Per-pupil objects are made on demand (``facts``): a local authority's 100,000 pupils are
    held as a few dicts, with entries only where there is news.
    """

    as_of: date
    calendar: schoolcal.SchoolCalendar
    warnings: list[str]
    window_start: date  # of the repeat_missing window
    base: date  # the first date the strips read cover
    alphabet: mk.Alphabet
    strips: dict[int, dict[int, str]]  # academic year -> pupil id -> raw strip
    people: dict[int, tuple[str | None, date | None]]  # pupil id -> (UPN, date of birth)
    on_roll: dict[int, date | None]  # pupil id -> first day on roll (None: no admission recorded)
    results: Many
    enrolments: dict[int, Any]  # pupil id -> the current admission's row
    flags: dict[int, frozenset[str]]  # active on the evaluation date

    def facts(self, pupil_id: int) -> criteria.PupilFacts:
        """What the criteria need to know about one pupil."""
        upn, dob = self.people[pupil_id]
        cur = self.enrolments.get(pupil_id)
        left: date | None = None
        if cur is not None and cur.leaving_date is not None and cur.leaving_date <= self.as_of:
            left = cur.leaving_date
        return criteria.PupilFacts(
            pupil_id=pupil_id, on_roll=pupil_id in self.on_roll, streaks=self.results.get(pupil_id), dob=dob,
            flags=self.flags.get(pupil_id, frozenset()), upn=upn,
            admission_date=cur.admission_date if cur is not None else None,
            admission_withdrawn=bool(cur.withdrawn) if cur is not None else False,
            leaving_date=left, leaving_reason=cur.leaving_reason if cur is not None and left else None,
            destination=cur.destination if cur is not None and left else None,
            repeat_episodes=self.results.repeats.get(pupil_id, ()))

    def with_news(self) -> set[int]:
        """Pupils a criterion might apply to (with the pupils who have cases, all that detect looks at)."""
        near = {pid for pid, e in self.enrolments.items()
                if any(d is not None and self.window_start <= d <= self.as_of
                       for d in (e.admission_date, e.leaving_date))}
        return {pid for pid, s in self.results.streaks.items() if s.unexplained.days} | set(
            self.results.repeats) | near

    def marks(self, pupil_id: int, start: date | None, end: date) -> list[dict[str, str]]:
        """The marks of every school day from ``start`` to ``end`` (evidence), as codes."""
        if start is None:
            return []
        out = []
        for day in self.calendar.school_days(max(start, self.base), end):
            strip = self.strips.get(mk.academic_year_of(day), {}).get(pupil_id)
            i = mk.position(day, "AM")
            for k, session in enumerate(SESSIONS):
                sym = strip[i + k] if strip else mk.NO_MARK
                out.append({"date": day.isoformat(), "session": session, "code": self.alphabet.code_for(sym)})
        return out


class _Evaluator:
    """The bulk evaluation: one query per table, then a few C-level string operations per pupil."""

    def __init__(self, conn: Connection, config: Config, school_id: int, as_of: date) -> None:
        self.conn, self.config, self.school_id, self.as_of = conn, config, school_id, as_of
        self.th = config.thresholds
        p, e, f = t.pupils, t.enrolments, t.flags
        self.people = {pid: (upn, dob) for pid, upn, dob in conn.execute(
            select(p.c.id, p.c.upn, p.c.dob).where(p.c.school_id == school_id)).all()}
        self.enrolments = _enrolments(conn.execute(select(e).join(p, p.c.id == e.c.pupil_id).where(
            p.c.school_id == school_id)).all(), as_of)
        self.on_roll: dict[int, date | None] = dict.fromkeys(self.people)  # no admission recorded: on roll
        for pid, admissions in self.enrolments.items():
            on, floor = _on_roll(admissions.ranges, as_of)
            if on:
                self.on_roll[pid] = floor
            else:
                self.on_roll.pop(pid, None)
        flags: dict[int, set[str]] = defaultdict(set)
        for pid, kind, start, end in conn.execute(select(f.c.pupil_id, f.c.kind, f.c.start_date, f.c.end_date).join(
                p, p.c.id == f.c.pupil_id).where(p.c.school_id == school_id)).all():
            if (start is None or start <= as_of) and (end is None or end >= as_of):
                flags[pid].add(kind)
        self.flags = {pid: frozenset(k) for pid, k in flags.items()}
        self.alphabet = load_alphabet(conn)
        self.classifier = codes.Classifier(config.codes.local, config.codes.subcodes, self.alphabet)
        self.strips: dict[int, dict[int, str]] = {}
        self.registers: dict[int, schoolcal.YearRegisters] = {}
        self.year = mk.academic_year_of(as_of)
        self._load(self.year)

    def _ranges(self, pid: int) -> list[Range] | None:
        e = self.enrolments.get(pid)
        return e.ranges if e is not None else None

    def _load(self, year: int) -> None:
        """Read one academic year's strips and rebuild the calendar with what they say."""
        strips = _strips(self.conn, self.school_id, year)
        self.strips[year] = strips
        cal = self.config.calendar
        rows = ((s, _strip_ranges(self._ranges(pid), year)) for pid, s in strips.items())
        self.registers[year] = schoolcal.register_facts(year, rows, not schoolcal.has_terms(cal, year),
                                                        schoolcal.candidate_sessions(cal, year))
        self.base = mk.year_start(min(self.strips))
        self.calendar = schoolcal.build(cal, self.base, self.as_of + HORIZON, self.registers)
        self.window_start = criteria.window_start_for(self.as_of, self.calendar, self.th.repeat_window_days)

    def _many(self, pids: Iterable[int]) -> Many:
        cur = self.strips[self.year]
        pupils = [(pid, pid in self.on_roll, self.on_roll.get(pid)) for pid in pids
                  if pid in self.on_roll or pid in cur or any(pid in s for s in self.strips.values())]
        return evaluate_many(pupils, self.strips, self.classifier, self.calendar.school_days(self.base, self.as_of),
                             self.as_of, self.window_start, self.th.repeat_episodes * self.th.repeat_min_days)

    def run(self) -> Evaluation:
        if self.window_start < mk.year_start(self.year) or \
                self.calendar.count(mk.year_start(self.year), self.as_of) < self.th.repeat_window_days:
            self._load(self.year - 1)  # the repeat window reaches into last year
        results = self._many(self.people)
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
        unknown = self.classifier.unknown_codes(results.unknown.values())
        warnings = [*self.classifier.warnings, *self.calendar.warnings,
                    *schoolcal.term_warnings(self.config.calendar, self.as_of),
                    *(codes.warning_text(u) for u in unknown)]
        current = {pid: e.current for pid, e in self.enrolments.items() if e.current is not None}
        return Evaluation(self.as_of, self.calendar, warnings, self.window_start, self.base, self.alphabet,
                          self.strips, self.people, self.on_roll, results, current, self.flags)


def evaluate_conn(conn: Connection, config: Config, school_id: int, as_of: date) -> Evaluation:
    """Every pupil's streaks and facts as of ``as_of`` (read only)."""
    return _Evaluator(conn, config, school_id, as_of).run()


def evaluate(app: App, as_of: date) -> Evaluation:
    with app.engine().connect() as conn:
        return evaluate_conn(conn, app.config, app.school_id, as_of)


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
    """Every case of the school, by pupil, and each case's reference by id."""
    c = t.cases
    out: dict[int, list[criteria.CaseState]] = defaultdict(list)
    refs: dict[int, str] = {}
    for r in conn.execute(select(c).join(t.pupils, t.pupils.c.id == c.c.pupil_id).where(
            t.pupils.c.school_id == school_id).order_by(c.c.id)).mappings():
        refs[r["id"]] = r["ref"]
        out[r["pupil_id"]].append(criteria.CaseState(
            r["id"], r["kind"], r["status"], r["stage"], r["episode_start"], r["opened_on"], r["school_days"],
            r["last_attended"], r["referral_due"], tuple(r["register_gaps"] or ()), tuple(r["alerts"] or ()),
            r["compulsory_school_age"], r["closed_reason"], r["closed_on"]))
    return out, refs


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
    """Evaluate every pupil as of ``as_of`` and bring the cases in line, in one transaction."""
    now = app.now()
    with app.engine().begin() as conn:
        last = last_run(conn, app.school_id)
        if last is not None and as_of < last:
            raise BadInputError(
                f"--as-of {as_of} is before the last detect run ({last}): cases already hold that later state, "
                "so nothing was changed; use 'cme-batch streaks --as-of' to look at an earlier date")
        ev = evaluate_conn(conn, app.config, app.school_id, as_of)
        ctx = criteria.Context(as_of, app.config.thresholds, ev.calendar, ev.window_start)
        states, case_refs = _case_states(conn, app.school_id)
        refs = _Refs(conn)
        report = DetectReport(as_of, warnings=list(ev.warnings))
        # pupils with news, with an open case, or with a case closed lately (its episode may come back)
        watched = {pid for pid, cs in states.items() if pid in ev.people and any(
            c.status == criteria.OPEN or (c.closed_on or as_of) >= ev.window_start for c in cs)}
        decided = [(pid, ch) for pid in sorted(ev.with_news() | watched)
                   for ch in criteria.decide(ev.facts(pid), states.get(pid, []), ctx)]
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
        conn.execute(insert(t.detect_runs).values(school_id=app.school_id, as_of=as_of, at=now, run_id=app.run_id,
                                                  counts=report.counts(), warnings=report.warnings))
    app.log(stage="detect").info("detect done", as_of=as_of.isoformat(), **report.counts(),
                                 warnings=len(report.warnings))
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
    seen = set(conn.execute(select(t.la_returns.c.pupil_id, t.la_returns.c.episode_start).join(
        t.pupils, t.pupils.c.id == t.la_returns.c.pupil_id).where(t.pupils.c.school_id == school_id)).all())
    listed = [pid for pid, s in sorted(due.items()) if (pid, s.start) not in seen]
    if listed:
        conn.execute(insert(t.la_returns), [
            {"pupil_id": pid, "episode_start": due[pid].start, "reached_on": due[pid].nth_day(days),
             "listed_on": ev.as_of, "school_days": due[pid].days} for pid in listed])
    return listed


def list_returns(conn: Connection, school_id: int, listed_on: date) -> list[dict[str, Any]]:
    """The LA 10-day return as listed on one date."""
    r, p = t.la_returns, t.pupils
    rows = conn.execute(select(r, p.c.upn, p.c.dob).join(p, p.c.id == r.c.pupil_id).where(
        p.c.school_id == school_id, r.c.listed_on == listed_on).order_by(r.c.episode_start, r.c.id)).mappings()
    return [{"upn": x["upn"], "pupil_id": x["pupil_id"], "unauthorised_start": x["episode_start"].isoformat(),
             "reached_on": x["reached_on"].isoformat(), "school_days": x["school_days"],
             "listed_on": x["listed_on"].isoformat(),
             "compulsory_school_age": criteria.compulsory_school_age(x["dob"], listed_on)} for x in rows]
