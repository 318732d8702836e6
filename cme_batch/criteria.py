"""CME criteria and case decisions (DOMAIN.md 5): pure functions over plain facts.

``decide`` takes one pupil's facts as of an evaluation date (streaks, admission, leaving,
vulnerability flags, recent episodes) and the pupil's cases, and returns the ``Change`` list
that brings the cases in line: open, update (stage, school days, due date...), close, reopen.
Each change carries its audit events; an event names the first date whose marks are its
evidence and the store side (``cme_batch.detect``) attaches those marks.

Rules kept here, beyond the tables of DOMAIN.md 5:

- one case per pupil per episode and never two open cases of one kind; a case that detect
  closed is *reopened* when the same episode comes back (a correction undone); a case a person
  closed is left closed for that episode, except an unexplained absence that goes on
  (``raised_again_at``: on the LA's criterion day, then every as many school days more);
- ``place_not_taken_up`` takes precedence: an open ``unexplained_absence`` case of the same
  child is closed ``superseded``;
- a stage never moves backwards (a corrected mark may shorten a streak; the steps already
  taken stay taken);
- a child who leaves the roll closes an ``unexplained_absence`` case as ``left``
  (``destination_unknown`` then applies if no destination is recorded).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from cme_batch.config import Thresholds
from cme_batch.marks import academic_year_of
from cme_batch.schoolcal import SchoolCalendar, opens_academic_year
from cme_batch.streaks import NO_STREAK, PupilStreaks, Streak

STAGES = ("first_day_call", "contact_all", "dsl_review", "home_visit", "referral_prepare", "referral_due")

UNEXPLAINED_ABSENCE = "unexplained_absence"
PLACE_NOT_TAKEN_UP = "place_not_taken_up"
DESTINATION_UNKNOWN = "destination_unknown"
REPEAT_MISSING = "repeat_missing"
KINDS = (UNEXPLAINED_ABSENCE, PLACE_NOT_TAKEN_UP, DESTINATION_UNKNOWN, REPEAT_MISSING)

OPEN, CLOSED = "open", "closed"
IMMEDIATE_SOCIAL_CARE = "immediate_social_care"
SOCIAL_CARE_TEXT = ("inform Social Care immediately and follow the safeguarding partnership's procedures "
                    "(child protection plan or looked-after child)")
#: Flags that raise the immediate_social_care alert.
SOCIAL_CARE_FLAGS = frozenset({"child_protection_plan", "looked_after"})
#: The policy's vulnerable groups: dsl_review from the first day.
EARLY_DSL_FLAGS = SOCIAL_CARE_FLAGS | frozenset({
    "domestic_abuse", "highly_mobile", "young_carer", "permanently_excluded", "medical_emotional",
    "parent_mental_health", "parent_learning_difficulty"})
#: The reasons detect closes a case with (a case closed for any other reason was closed by a person).
SYSTEM_CLOSE_REASONS = frozenset({"returned", "explained", "attended", "withdrawn", "destination_known", "left",
                                  "superseded", "no_longer_applies"})
#: Words that say the destination is not known, in a destination or a leaving reason: "no forwarding
#: address", "lost pupil" (the DfE's lost pupils database) and "CME" (children missing education) too.
_UNKNOWN_DESTINATION = re.compile(
    r"unknown|whereabouts|missing|not\s+(?:known|recorded|given|yet\s+known)|\btbc\b|to\s+be\s+confirmed"
    r"|no\s+forwarding|lost\s+pupil|\bcme\b",
    re.IGNORECASE)
#: Whole destinations that are no destination (upper case, single spaces, no full stop at the end). "Not
#: applicable" and "not stated" only as the whole destination: as a leaving reason they say nothing of it.
_PLACEHOLDER_DESTINATIONS = {"", "MMM", "MMMM", "XXX", "XXXX", "UNKNOWN", "N/A", "NA", "NONE", "NIL", "TBA", "N/K", "NK",
                             "NOT APPLICABLE", "NOT STATED",
                             # whole destinations that name no school: a child gone where nobody can check
                             "OTHER", "OTHERS", "OTHER SCHOOL", "ANOTHER SCHOOL", "A SCHOOL", "SCHOOL", "NEW SCHOOL",
                             "A NEW SCHOOL", "DIFFERENT SCHOOL", "A DIFFERENT SCHOOL", "ELSEWHERE", "MOVED",
                             "MOVED AWAY", "MOVED HOUSE", "MOVED AREA", "MOVED OUT OF AREA", "OUT OF AREA",
                             "OUT OF COUNTY", "OUT OF BOROUGH", "ABROAD", "MOVED ABROAD", "OVERSEAS", "EMIGRATED",
                             "LEFT THE COUNTRY", "LEFT THE UK", "LEFT UK"}
#: A placeholder written however the MIS joins it: "MMMMMMM", "MMM/MMMM", "XXX XXXX" (the CTF's
#: unknown LA and establishment numbers), or no letter or digit at all ("-", "?", "...").
_PLACEHOLDER_SHAPE = re.compile(r"[^A-Za-z0-9]*|[MmXx\W_]*")


# -- the rules, one small function each -----------------------------------------------------
def stage_for(days: int, th: Thresholds, early_dsl: bool = False) -> str | None:
    """The policy step an unexplained streak of ``days`` school days has reached."""
    reached = [s for s in STAGES if days >= (1 if s == "dsl_review" and early_dsl else getattr(th, s))]
    return reached[-1] if reached else None


def stage_rank(stage: str | None) -> int:
    return STAGES.index(stage) if stage in STAGES else -1


def compulsory_school_age_start(dob: date) -> date:
    """31 December, 31 March or 31 August, whichever comes first on or after the fifth birthday."""
    try:
        fifth = dob.replace(year=dob.year + 5)
    except ValueError:  # born 29 February: the birthday falls on 1 March in other years
        fifth = date(dob.year + 5, 3, 1)
    y = fifth.year
    return next(d for d in (date(y, 3, 31), date(y, 8, 31), date(y, 12, 31), date(y + 1, 3, 31)) if d >= fifth)


def compulsory_school_age(dob: date | None, on: date) -> bool | None:
    """Whether the child is of compulsory school age on ``on`` (None when the date of birth is unknown).

    A date of birth so far in the future that the start cannot be computed (a typing slip in the
    MIS, stored before imports refused such dates) counts as unknown, so detect never stops on it.
    """
    if dob is None or dob.year > date.max.year - 6:
        return None
    return on >= compulsory_school_age_start(dob)


def destination_recorded(destination: str | None) -> bool:
    """A destination is recorded: not empty, not a placeholder, and not itself saying it is unknown."""
    return not (destination is None or " ".join(destination.split()).upper().rstrip(".") in _PLACEHOLDER_DESTINATIONS
                or _PLACEHOLDER_SHAPE.fullmatch(destination.strip()) is not None
                or _UNKNOWN_DESTINATION.search(destination))


def destination_unknown(destination: str | None, leaving_reason: str | None) -> bool:
    """No destination recorded (or a placeholder), or a leaving reason that says it is unknown."""
    if not destination_recorded(destination):
        return True
    return bool(leaving_reason and _UNKNOWN_DESTINATION.search(leaving_reason))


def absence_days(streak: Streak, since: date | None = None) -> list[date]:
    """The school days of absence of an unexplained streak: its counting days and its register gaps
    from its first day on, oldest first.

    A register gap inside the streak is a school day of absence here: the child was not seen, and
    a missing register must never hold back the policy's steps or push the referral later (the
    streak's length, ``school_days``, still counts only the days with unexplained marks). ``since``
    is the start of the case the streak continues, when that is earlier than the streak's own
    start (its first day's mark has since become a missing register): gaps from then on count too.
    """
    first = since if since is not None and (streak.start is None or since < streak.start) else streak.start
    return sorted(set(streak.counted) | {g for g in streak.register_gaps if first is not None and g >= first})


def unexplained_due(streak: Streak, th: Thresholds, calendar: SchoolCalendar, as_of: date,
                    since: date | None = None) -> date | None:
    """The date of the streak's referral_due-th school day of absence (``absence_days``): past if
    reached, else projected by the calendar."""
    days = absence_days(streak, since)
    if len(days) >= th.referral_due:
        return days[th.referral_due - 1]
    return calendar.nth_school_day_after(as_of, th.referral_due - len(days))


# -- facts in, changes out --------------------------------------------------------------------
@dataclass(frozen=True)
class PupilFacts:
    """What detect knows about one pupil as of the evaluation date (no names: ids only)."""

    pupil_id: int
    on_roll: bool
    streaks: PupilStreaks = field(default_factory=lambda: PupilStreaks(NO_STREAK, NO_STREAK, None))
    dob: date | None = None
    flags: frozenset[str] = frozenset()  # active on the evaluation date
    admission_date: date | None = None  # the current admission's agreed first day (else its entry date)
    admission_withdrawn: bool = False
    leaving_date: date | None = None  # of the latest admission, when passed (``Context.leavings_to``)
    leaving_reason: str | None = None
    destination: str | None = None
    repeat_episodes: tuple[Streak, ...] = ()  # unexplained episodes in the repeat window
    upn: str | None = None


@dataclass(frozen=True)
class Context:
    as_of: date
    thresholds: Thresholds
    calendar: SchoolCalendar
    # the first day of the repeat window: an older admission or leaving opens no case (the store
    # may hold no registers from before it, nor know whether the child came), but an open case
    # of one is followed to its end
    window_start: date
    # leavings dated up to this date have passed (None: the evaluation date); see ``leavings_to``
    left_by: date | None = None

    @property
    def leavings_to(self) -> date:
        """The last leaving date that counts as passed: the evaluation date, or later when no school
        day lies after it up to the leaving date and the leaving date has come (``detect.leavings_to``):
        a leaving dated in a holiday is seen in the holiday, not on the first day of the next term."""
        return self.left_by if self.left_by is not None and self.left_by > self.as_of else self.as_of


@dataclass(frozen=True)
class CaseState:
    """A case as stored (the fields decisions depend on)."""

    id: int
    kind: str
    status: str
    stage: str | None
    episode_start: date | None
    opened_on: date
    school_days: int | None = None
    last_attended: date | None = None
    referral_due: date | None = None
    register_gaps: tuple[str, ...] = ()
    alerts: tuple[dict[str, Any], ...] = ()
    compulsory_school_age: bool | None = None
    closed_reason: str | None = None
    closed_on: date | None = None
    opened_destination: str | None = None  # destination_unknown: the destination recorded when it (re)opened
    referred: bool = False  # the referral went to the LA
    #: destination_unknown: the leaving reason recorded when it (re)opened, if its event says (``opened_reason_known``)
    opened_reason: str | None = None
    opened_reason_known: bool = False


@dataclass(frozen=True)
class Event:
    kind: str  # opened, stage, updated, alert, closed, reopened
    stage: str | None
    detail: dict[str, Any]
    evidence_from: date | None = None  # the marks from this date to the evaluation date are its evidence


@dataclass
class Change:
    action: str  # open, update, close, reopen
    kind: str
    case_id: int | None
    values: dict[str, Any]
    events: list[Event] = field(default_factory=list)


TRACKED = ("stage", "episode_start", "school_days", "last_attended", "referral_due", "register_gaps",
           "compulsory_school_age")


def _json(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v


def _current(c: CaseState) -> dict[str, Any]:
    return {"stage": c.stage, "episode_start": c.episode_start, "school_days": c.school_days,
            "last_attended": c.last_attended, "referral_due": c.referral_due,
            "register_gaps": list(c.register_gaps), "compulsory_school_age": c.compulsory_school_age}


def _alerts(f: PupilFacts, kind: str, existing: tuple[dict[str, Any], ...], as_of: date
            ) -> tuple[list[dict[str, Any]], list[Event]]:
    """The immediate_social_care alert, raised once per case for a child protection plan or looked-after child."""
    flags = sorted(f.flags & SOCIAL_CARE_FLAGS)
    if kind == REPEAT_MISSING or not flags or any(a.get("kind") == IMMEDIATE_SOCIAL_CARE for a in existing):
        return list(existing), []
    alert = {"kind": IMMEDIATE_SOCIAL_CARE, "raised_on": as_of.isoformat(), "flags": flags, "action": SOCIAL_CARE_TEXT}
    return [*existing, alert], [Event("alert", None, {"alert": IMMEDIATE_SOCIAL_CARE, "flags": flags,
                                                      "action": SOCIAL_CARE_TEXT})]


def _ensure(f: PupilFacts, cases: list[CaseState], kind: str, target: dict[str, Any], ctx: Context,
            evidence_from: date | None, why: dict[str, Any], episode: frozenset[date] | None = None) -> list[Change]:
    """The criterion holds for the episode in ``target``: update its open case, reopen or open one.

    A closed case belongs to this episode when its ``episode_start`` is the target's, or one of
    the days in ``episode`` (a streak whose start moved earlier by a correction is the same one).
    """
    open_case = next((c for c in cases if c.kind == kind and c.status == OPEN), None)
    if open_case is not None:
        return _update(f, open_case, target, ctx, evidence_from)
    days = episode or frozenset({target["episode_start"]})
    same = [c for c in cases if c.kind == kind and c.episode_start in days]
    if not same and kind == UNEXPLAINED_ABSENCE:
        # a person closed the absence, then a correction explained its first day(s): what is left of
        # it is the episode the person decided on, not a new one to ask about the next morning
        same = [c for c in cases if c.kind == kind and _closed_by_person(c) and _covers(c, target["episode_start"])]
    if same:
        last = max(same, key=lambda c: c.id)
        if last.closed_reason not in SYSTEM_CLOSE_REASONS:
            again = raised_again_at(last, ctx.thresholds)
            if again is None or _days_absent(target["school_days"], target["register_gaps"],
                                             target["episode_start"]) < again:
                return []  # a person closed this episode's case: leave it so, for now
            return _update(f, last, target, ctx, evidence_from, reopen=True, why={
                "unexplained_days_at_close": _days_absent(last.school_days, last.register_gaps, last.episode_start),
                "raised_again_at": again})
        return _update(f, last, target, ctx, evidence_from, reopen=True, facts=why)
    alerts, alert_events = _alerts(f, kind, (), ctx.as_of)
    values = {**target, "alerts": alerts, "status": OPEN, "opened_on": ctx.as_of}
    detail = {"kind": kind, **{k: _json(v) for k, v in target.items()}, **why}
    return [Change("open", kind, None, values, [Event("opened", target["stage"], detail, evidence_from),
                                                  *alert_events])]


def _closed_by_person(case: CaseState) -> bool:
    return case.status == CLOSED and case.closed_reason is not None and case.closed_reason not in SYSTEM_CLOSE_REASONS


def _covers(case: CaseState, start: date | None) -> bool:
    """Whether a streak starting on ``start`` began while ``case``'s episode went on (from its first day
    to its close): a streak whose first days a correction explained since the case closed."""
    return start is not None and case.episode_start is not None and case.closed_on is not None \
        and case.episode_start <= start <= case.closed_on


def raised_again_at(case: CaseState, th: Thresholds) -> int | None:
    """The school days of absence at which a case a person closed is opened again, while its episode
    goes on unexplained (None: never).

    Only an unexplained-absence case: the DSL's CLOSE records a decision, but the register still
    says "unexplained" day after day, and a child missing education must not go unwatched because
    of an early word ("mum rang, he's ill") that nobody wrote into the register. A case closed
    before the LA's criterion day (``referral_due``, 10) is raised again on that day; one closed
    on or after it, each time the absence has gone on for that many more school days.
    """
    if case.kind != UNEXPLAINED_ABSENCE:
        return None
    at_close = _days_absent(case.school_days, case.register_gaps, case.episode_start)
    return th.referral_due if at_close < th.referral_due else at_close + th.referral_due


def _days_absent(school_days: int | None, register_gaps: Sequence[str], start: date | None) -> int:
    """School days of an absence with its register gaps from its first day on, as the due date counts them."""
    first = start.isoformat() if start is not None else ""
    return (school_days or 0) + sum(1 for g in register_gaps if g >= first)


def _update(f: PupilFacts, case: CaseState, target: dict[str, Any], ctx: Context, evidence_from: date | None,
            reopen: bool = False, why: dict[str, Any] | None = None, facts: dict[str, Any] | None = None
            ) -> list[Change]:
    """``why``: a person's close overridden (the reopening's reason); ``facts``: what the criterion
    found, kept on a reopening's event as on an opening's (a leaving's reason and destination)."""
    old = _current(case)
    new = dict(target)
    if stage_rank(new["stage"]) < stage_rank(old["stage"]):
        new["stage"] = old["stage"]  # steps already taken stay taken
    changed = {k: [_json(old[k]), _json(new[k])] for k in TRACKED if old[k] != new[k]}
    alerts, events = _alerts(f, case.kind, case.alerts, ctx.as_of)
    values: dict[str, Any] = {k: new[k] for k in changed}
    if reopen:
        values.update(status=OPEN, closed_on=None, closed_reason=None)
        if why is not None and not case.referred:
            # a person's CLOSE came after any CONFIRM or HOLD: the referral must be decided afresh
            # (one already sent keeps its confirmation: the LA's update says who confirmed it)
            values.update(confirmed_at=None, confirmed_by=None, confirmation_message_id=None, hold_reason=None)
        events.insert(0, Event("reopened", new["stage"], {"previous_reason": case.closed_reason,
                                                           "changed": changed, **(facts or {}), **(why or {})},
                               evidence_from))
    elif "stage" in changed:
        passed = [s for s in STAGES if stage_rank(old["stage"]) < stage_rank(s) < stage_rank(new["stage"])]
        events.insert(0, Event("stage", new["stage"], {"from": old["stage"], "to": new["stage"], "passed": passed,
                                                       "changed": changed}, evidence_from))
    elif changed:
        events.insert(0, Event("updated", new["stage"], {"changed": changed}, evidence_from))
    if events:
        values["alerts"] = alerts
        return [Change("reopen" if reopen else "update", case.kind, case.id, values, events)]
    return []


def _close(case: CaseState, reason: str, f: PupilFacts, ctx: Context) -> Change:
    values = {"status": CLOSED, "closed_on": ctx.as_of, "closed_reason": reason,
              "last_attended": f.streaks.last_attended}
    detail = {"reason": reason, "school_days": case.school_days, "last_attended": _json(f.streaks.last_attended)}
    evidence = case.episode_start if case.kind != DESTINATION_UNKNOWN else None
    return Change("close", case.kind, case.id, values, [Event("closed", case.stage, detail, evidence)])


def window_floor(window_start: date, calendar: SchoolCalendar) -> date:
    """The earliest date within the repeat window whose first school day is ``window_start``: the
    days with no school just before it count as within (a weekend, an INSET day; when the calendar
    knows no earlier school day and ``window_start`` opens an academic year, as in a school's first
    year on the system, the summer holiday back to 1 August; any other first day the calendar knows,
    only the weekend before it). Before, an agreed first day or a leaving on the INSET day or the 31 August before
    the first term the calendar knew was never looked at: no case, ever.

    A ``window_start`` before every school day the calendar knows was projected there
    (``window_start_for``): the floor is it, or the weekend just before it."""
    days = calendar.days
    i = bisect_left(days, window_start)
    if i > 0:
        return days[i - 1] + timedelta(days=1)
    projected = bool(days) and window_start < days[0]
    if not projected and opens_academic_year(window_start):
        return date(window_start.year, 8, 1)  # the academic year's first school day: the summer before it
    # any other first day the calendar knows (a school that configured its terms from January on): the
    # days before it were school days or not, nobody said; only the weekend just before is surely none
    # (back to 1 August, the whole autumn term's leavers were "in the window" in January)
    floor = window_start
    while (floor - timedelta(days=1)).weekday() >= 5:
        floor -= timedelta(days=1)
    return floor


def _in_window(d: date | None, ctx: Context, upto: date | None = None) -> bool:
    return d is not None and d <= (upto or ctx.as_of) and (
        d >= ctx.window_start or d >= window_floor(ctx.window_start, ctx.calendar))


def _judged(d: date | None, ctx: Context, case: CaseState | None, upto: date | None = None) -> bool:
    """Whether an admission or leaving on ``d`` is looked at: within the repeat window, or the episode
    of a case already open (however long ago it began: a case never closes just by growing old).
    ``upto``: the last date that has passed (the evaluation date; for a leaving, ``Context.leavings_to``)."""
    upto = upto or ctx.as_of
    return _in_window(d, ctx, upto) or (case is not None and d is not None and case.episode_start == d <= upto)


def place_not_taken_up(f: PupilFacts, ctx: Context, case: CaseState | None = None) -> bool:
    """An agreed first day has passed and the child has not been seen since (``case``: the open one).

    "Passed" means a school day has come since: an agreed first day in the holidays, on an INSET
    or closure day, or before a term has begun, has given the child no day to come yet.
    """
    seen = f.streaks.last_attended
    return (f.on_roll and _judged(f.admission_date, ctx, case) and not f.admission_withdrawn
            and not (seen is not None and f.admission_date is not None and seen >= f.admission_date)
            and f.admission_date is not None and ctx.calendar.count(f.admission_date, ctx.as_of) > 0)


def _du_case(cases: list[CaseState], leaving: date | None) -> CaseState | None:
    """The pupil's open destination_unknown case, else the latest one of this leaving."""
    du = [c for c in cases if c.kind == DESTINATION_UNKNOWN]
    return next((c for c in du if c.status == OPEN), None) or next(
        (c for c in reversed(du) if leaving is not None and c.episode_start == leaving), None)


def destination_still_unknown(f: PupilFacts, ctx: Context, case: CaseState | None) -> bool:
    """destination_unknown holds for a leaver: opens by DOMAIN's rule (no destination recorded,
    or a leaving reason that says it is unknown); once a case of this leaving exists, it also
    ends when a destination is recorded that was not there when the case opened, even if the
    leaving reason, which schools seldom edit, still says unknown."""
    left = f.leaving_date is not None and f.leaving_date <= ctx.leavings_to
    if not (left and _judged(f.leaving_date, ctx, case if case is not None and case.status == OPEN else None,
                             ctx.leavings_to)):
        return False
    if not destination_unknown(f.destination, f.leaving_reason):
        return False
    if case is None or not (destination_recorded(f.destination) and f.destination != case.opened_destination):
        return True
    # a destination recorded since the case (re)opened, but the leaving reason edited since to say it is
    # unknown (the school named says the child never arrived): the destination has proved false
    return case.opened_reason_known and f.leaving_reason != case.opened_reason and \
        bool(f.leaving_reason and _UNKNOWN_DESTINATION.search(f.leaving_reason))


def decide(f: PupilFacts, cases: list[CaseState], ctx: Context) -> list[Change]:
    """Every change one pupil's cases need as of ``ctx.as_of``."""
    th, as_of = ctx.thresholds, ctx.as_of
    out: list[Change] = []
    csa = compulsory_school_age(f.dob, as_of)
    opened = {c.kind: c for c in cases if c.status == OPEN}
    last_seen = f.streaks.last_attended

    # place not taken up
    pntu = place_not_taken_up(f, ctx, opened.get(PLACE_NOT_TAKEN_UP))
    if pntu:
        assert f.admission_date is not None
        prior = opened.get(PLACE_NOT_TAKEN_UP)
        due = prior.referral_due if prior and prior.referral_due else as_of
        target = {"stage": "referral_prepare", "episode_start": f.admission_date,
                  "school_days": ctx.calendar.count(f.admission_date, as_of), "last_attended": last_seen,
                  "referral_due": due, "register_gaps": [], "compulsory_school_age": csa}
        out += _ensure(f, cases, PLACE_NOT_TAKEN_UP, target, ctx, f.admission_date,
                       {"admission_date": f.admission_date.isoformat()})
    elif PLACE_NOT_TAKEN_UP in opened:
        c = opened[PLACE_NOT_TAKEN_UP]
        seen = last_seen is not None and c.episode_start is not None and last_seen >= c.episode_start
        reason = "attended" if seen else "withdrawn" if f.admission_withdrawn else \
            "left" if not f.on_roll else "no_longer_applies"
        out.append(_close(c, reason, f, ctx))

    # unexplained absence
    streak = f.streaks.unexplained
    live = f.on_roll and streak.days > 0 and not pntu
    ua = opened.get(UNEXPLAINED_ABSENCE)
    # the open case goes on while there has been no break since it began (its first day may since
    # have become a missing register, or lie before the marks read)
    goes_on = ua is not None and live and ua.episode_start is not None and (
        streak.after is None or streak.after < ua.episode_start) and not (
        last_seen is not None and last_seen >= ua.episode_start)
    # A referred case whose child is absent today, but a day inside it now shows her seen (a mark
    # corrected or laid late, after the night that day was evaluated): the LA has a missing child,
    # and she still is one. Closing it "returned" sent the LA an update that the child had returned
    # to school, and asked the DSL to refer the same child again under a new reference; the case goes
    # on with the streak since that day, and the LA is told when the child really comes back.
    goes_on = goes_on or (ua is not None and ua.referred and live and ua.episode_start is not None
                          and streak.start is not None and streak.after is not None
                          and ua.episode_start <= streak.after < streak.start)
    if ua is not None and not goes_on:
        seen = last_seen is not None and ua.episode_start is not None and last_seen >= ua.episode_start
        reason = "left" if not f.on_roll else "superseded" if pntu else "returned" if seen else "explained"
        out.append(_close(ua, reason, f, ctx))
        cases = [x for x in cases if x.id != ua.id] + [replace(ua, status=CLOSED, closed_reason=reason,
                                                               closed_on=as_of)]
    if live:
        early = bool(f.flags & EARLY_DSL_FLAGS)
        start, days = streak.start, streak.days
        since: date | None = None
        kept_due: date | None = None
        if goes_on and ua is not None and ua.episode_start is not None and start is not None \
                and ua.episode_start < start:
            since = ua.episode_start
            if not f.streaks.complete:  # begun before the marks read: its start, length and due date are the case's
                start, days, kept_due = ua.episode_start, max(ua.school_days or 0, days), ua.referral_due
        # the steps go by school days of absence, register gaps included, as the referral's due date does:
        # counting marked days alone, a child with missing registers reached the due date still short of
        # "referral prepared", so no confirmation was ever asked and no overdue warning given
        absent = max(days, len(absence_days(streak, since)))
        target = {"stage": stage_for(absent, th, early), "episode_start": start,
                  "school_days": days, "last_attended": last_seen,
                  "referral_due": kept_due or unexplained_due(streak, th, ctx.calendar, as_of, since),
                  "register_gaps": [d.isoformat() for d in streak.register_gaps], "compulsory_school_age": csa}
        out += _ensure(f, cases, UNEXPLAINED_ABSENCE, target, ctx, streak.start, {}, frozenset(streak.counted))

    # destination unknown
    left = f.leaving_date is not None and f.leaving_date <= ctx.leavings_to
    du = destination_still_unknown(f, ctx, _du_case(cases, f.leaving_date))
    if du:
        assert f.leaving_date is not None
        prior = opened.get(DESTINATION_UNKNOWN)
        # due at once: on the evaluation date, or on the leaving date when that is later (a leaving
        # dated in a holiday, seen before the next school day): never before the child left
        target = {"stage": "referral_prepare", "episode_start": f.leaving_date, "school_days": None,
                  "last_attended": last_seen, "referral_due": prior.referral_due if prior and prior.referral_due
                  else max(as_of, f.leaving_date), "register_gaps": [], "compulsory_school_age": csa}
        out += _ensure(f, cases, DESTINATION_UNKNOWN, target, ctx, None,
                       {"leaving_date": _json(f.leaving_date), "leaving_reason": f.leaving_reason,
                        "destination": f.destination})
    elif DESTINATION_UNKNOWN in opened:
        # readmitted and not come: the place not taken up is the child's case now, not "no longer applies"
        reason = "destination_known" if left else "superseded" if pntu else "no_longer_applies"
        out.append(_close(opened[DESTINATION_UNKNOWN], reason, f, ctx))

    # repeat missing: never closed here (the DSL closes it)
    qualifying = [e for e in f.repeat_episodes if e.days >= th.repeat_min_days]
    if f.on_roll and len(qualifying) >= th.repeat_episodes:
        newest = qualifying[-1].start
        assert newest is not None
        prior = opened.get(REPEAT_MISSING)
        # a case the DSL closed covered every episode begun by then (a correction may since have
        # moved the newest one's start): only an episode begun after it raises a new case
        if prior is not None or not any(x.kind == REPEAT_MISSING and newest <= (x.closed_on or x.opened_on)
                                        for x in cases):
            target = {"stage": "dsl_review", "episode_start": newest,
                      "school_days": sum(e.days for e in qualifying), "last_attended": last_seen,
                      "referral_due": None, "register_gaps": [], "compulsory_school_age": csa}
            why = {"episodes": [{"start": _json(e.start), "school_days": e.days} for e in qualifying]}
            out += _ensure(f, cases, REPEAT_MISSING, target, ctx, qualifying[0].start, why)
    return out


def window_start_for(as_of: date, calendar: SchoolCalendar, school_days: int) -> date:
    """The first school day of the last ``school_days`` school days up to ``as_of`` (the repeat window).

    When the calendar knows fewer school days up to ``as_of`` (a school's first weeks on the system,
    with no term dates nor registers of the year before), the ones it lacks are counted back from
    its first school day over the weekdays it knows nothing of (``SchoolCalendar.projected_back``:
    no bank holidays, closures or August), and a warning on the calendar says so. Before, the
    window stopped at the first school day the calendar knew (the summer holiday before it counted
    as inside): a school that came to cme-batch in September never looked at a child who left in
    July with no destination, nor at a July place never taken up.
    """
    found = calendar.nth_school_day_back(as_of, school_days)
    if found is not None:
        return found
    if not calendar.days:
        return as_of - timedelta(days=1)
    first = calendar.days[0]
    known = calendar.count(first, as_of)
    before = min(first, as_of + timedelta(days=1))
    start = calendar.projected_back(before, school_days - known)
    calendar.warnings.append(window_warning(as_of, known, before, start, school_days))
    return start


def window_warning(as_of: date, known: int, before: date, start: date, school_days: int) -> str:
    """The warning for a repeat window the calendar is too short for (``window_start_for``)."""
    year = academic_year_of(start)
    floor = window_floor(start, SchoolCalendar([before]))
    return (f"the calendar knows only {known} school day(s) up to {as_of:%a %d %b %Y}, none before "
            f"{before:%a %d %b %Y}: no term dates nor registers say which days before it were school days. "
            f"Leavers and agreed first days are looked at back to {floor:%a %d %b %Y}, the "
            f"{school_days}-school-day window's other {school_days - known} day(s) counted as "
            f"weekdays (without bank holidays, closures and August); add the {year}/{(year + 1) % 100:02d} terms "
            "to [[calendar.terms]] (and import that year's registers) for the exact window")
