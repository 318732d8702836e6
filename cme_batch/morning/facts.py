"""What the morning emails say: the facts, read from the store in a few bulk queries.

``gather`` returns plain data for one evaluation date: the freshness of every source, the open
cases with their pupils, what each needs next and by when, LA 10-day return entries, register
gaps and unknown codes, outbox problems and replies kept for review. The office summary and the
DSL digest (``cme_batch.morning.documents``) are both built from it; the digest alone shows
vulnerability and safeguarding detail.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from cme_batch.app import in_school_time
from cme_batch.config import Config, Thresholds
from cme_batch.criteria import STAGES, stage_for
from cme_batch.errors import CmeError, brief
from cme_batch.schoolcal import SchoolCalendar
from cme_batch.store import ingest
from cme_batch.store import tables as t

#: The policy's next step once a case has reached a stage (DOMAIN.md 5, policy steps I-IX).
NEXT_STEP = {
    None: ("first_day_call", "Office: first-day call to parents who have not reported the absence, by 10:00"),
    "first_day_call": ("contact_all", "Office: try every emergency contact, at different times of the morning"),
    "contact_all": ("dsl_review", "DSL: check the CME criteria; siblings, other agencies, school community"),
    "dsl_review": ("home_visit", "DSL: home visit within 5 school days; social media searches"),
    "home_visit": ("referral_prepare", "DSL: referral drafted; confirm it by reply"),
    "referral_prepare": ("referral_due", "DSL: confirm the referral; it must reach the LA by the due date"),
    "referral_due": (None, "DSL: the referral is due to the LA now"),
}
#: The DSL's steps of an absence (policy VI and VII) that a digest asks for as a case's next step.
DSL_STEPS = ("dsl_review", "home_visit")
#: The office's steps of the policy (III and IV): a first-day call, then every emergency contact.
OFFICE_STAGES = ("first_day_call", "contact_all")
#: The cases of a child absent from school that the office calls about: a child who has not come on
#: the agreed first day is absent too (the one case is ``place_not_taken_up``, DOMAIN.md 5).
OFFICE_KINDS = ("unexplained_absence", "place_not_taken_up")
STAGE_LABEL = {
    "first_day_call": "1 first-day call", "contact_all": "2 contact all", "dsl_review": "3 DSL review",
    "home_visit": "4 home visit", "referral_prepare": "5 referral prepared", "referral_due": "6 referral due",
}
KIND_LABEL = {
    "unexplained_absence": "unexplained absence", "place_not_taken_up": "place not taken up",
    "destination_unknown": "left, destination unknown", "repeat_missing": "repeated missing episodes",
}
FLAG_LABEL = {
    "child_protection_plan": "child protection plan", "looked_after": "looked after (in care)",
    "domestic_abuse": "domestic abuse", "highly_mobile": "highly mobile family", "young_carer": "young carer",
    "permanently_excluded": "permanently excluded", "medical_emotional": "long-term medical/emotional needs",
    "parent_mental_health": "parent: mental health", "parent_learning_difficulty": "parent: learning difficulty",
    "sen_support": "SEN support", "ehcp": "EHCP", "child_in_need": "child in need",
}


def aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@dataclass
class SourceFact:
    name: str
    last_success: datetime | None
    stale: bool
    error: str | None
    #: When the source last stored registers (a file or pull with marks), when earlier than
    #: ``last_success`` (its other reports read since): absences after it are not counted.
    registers_at: datetime | None = None
    #: Files the store refused, set aside in this folder to let the files after them be read
    #: (a CTF drop folder): (folder, names), until a person deletes them.
    set_aside: tuple[str, tuple[str, ...]] | None = None


@dataclass
class CaseFact:
    id: int
    ref: str
    kind: str
    stage: str | None
    pupil: str  # "Forename Surname"
    year_group: str
    reg_group: str
    school_days: int
    streak_start: date | None
    last_attended: date | None
    referral_due: date | None
    register_gaps: list[str]
    alerts: list[Any]
    flags: list[str]
    confirmed: bool
    held: str | None  # the DSL's HOLD reason
    referral_held: str | None  # why a confirmed referral could not be sent
    referred: bool
    compulsory_school_age: bool | None
    next_step: str = ""
    next_due: date | None = None
    office_step: str | None = None  # the office's step due today (``office_step``), whatever the stage
    # the office's step of today's school days of absence, not asked again: the office was asked for
    # it (or a later one) already in this absence, before a correction made the absence shorter
    office_done: str | None = None
    raised_again: str | None = None  # closed by a person's reply, raised again as the absence went on
    # the DSL's steps of this absence (``DSL_STEPS``) that no digest gave as the next step: the case
    # went past them on nights whose morning sent none (the server was off), or in one night's jump
    dsl_not_asked: list[str] = field(default_factory=list)
    # the child's emergency contacts as recorded, priority order: (who, numbers and addresses); the
    # office's own steps are to call them (read only for the cases the office acts on)
    contacts: list[tuple[str, str]] = field(default_factory=list)

    @property
    def days_shown(self) -> str:
        """The school days to show beside the case, as the steps count them (``days_absent``), with
        the days of no register said apart (the referral form says so too); none for a child who
        left with no known destination (no longer on roll, their absence is not counted)."""
        if self.kind == "destination_unknown":
            return "-"
        gaps = self.days_absent - self.school_days
        return f"{self.days_absent} ({gaps} with no register)" if gaps else str(self.school_days)

    @property
    def days_absent(self) -> int:
        """School days of absence the policy's steps go by: an unexplained streak's days with its
        register gaps from its first day on (``criteria.absence_days``), else ``school_days``."""
        return _days_absent(self.kind, self.school_days, self.register_gaps, self.streak_start)

    @property
    def awaiting_confirmation(self) -> bool:
        """A referral the DSL must decide on: not confirmed yet, or held (only a CONFIRM lifts a
        HOLD, so a held case gets a fresh confirmation request once its last one is used)."""
        return (not self.referred and (not self.confirmed or self.held is not None) and self.kind != "repeat_missing"
                and self.stage in ("referral_prepare", "referral_due"))


@dataclass
class Facts:
    school: str
    as_of: date
    generated_at: datetime
    sources: list[SourceFact]
    cases: list[CaseFact]
    la_returns: list[dict[str, Any]]
    register_warnings: list[str]
    outbox_problems: list[Any] = field(default_factory=list)
    review_replies: list[dict[str, Any]] = field(default_factory=list)
    confirm_by_reply: bool = True  # false when no reply token key is configured
    # cases closed since the last summary (DSL only): with nights caught up after the server was
    # off, a case may have opened and closed without ever being open on a summary's morning
    closed: list[dict[str, Any]] = field(default_factory=list)
    #: The data-quality warnings of the imports stored since the last summary: (for the DSL alone,
    #: where, what, how many times), in the order they came (``_import_warnings``)
    import_warnings: list[tuple[bool, str, str, int]] = field(default_factory=list)

    @property
    def stale_or_failed(self) -> list[SourceFact]:
        return [s for s in self.sources if s.stale or s.error]

    def of_kind(self, kind: str) -> list[CaseFact]:
        return [c for c in self.cases if c.kind == kind]


def _sources(conn: Connection, config: Config, now: datetime) -> list[SourceFact]:
    rows = {r.source: r for r in conn.execute(select(t.source_state)).all()}
    limit = timedelta(hours=config.thresholds.stale_hours)
    out = []
    for s in config.sources:
        r = rows.get(s.name)
        last = aware(r.last_success_at) if r else None
        attempt = aware(r.last_attempt_at) if r else None
        error = brief(r.last_error) if r is not None and r.last_error else None
        failed_after = error is not None and (last is None or (attempt is not None and attempt > last))
        stale = last is None or now - last > limit
        registers = ingest.registers_stored_at(conn, s.name) if (stale or failed_after) and last is not None else None
        earlier = registers if registers is not None and last is not None and registers < last else None
        out.append(SourceFact(s.name, last, stale, error if failed_after else None, earlier, _set_aside(s)))
    return out


def _set_aside(cfg: Any) -> tuple[str, tuple[str, ...]] | None:
    """The refused files a source set aside and a person has not dealt with yet (see ``SourceFact``)."""
    from cme_batch.sources import build_source

    try:
        source = build_source(cfg)
    except CmeError:
        return None  # (a configuration the night's ingest already reports)
    waiting = getattr(source, "set_aside_files", None)
    folder, names = waiting() if waiting is not None else ("", [])
    return (folder, tuple(names)) if names else None


def office_step(kind: str, school_days: int, th: Thresholds, office_told: bool = True,
                done: Sequence[tuple[str, int]] = ()) -> str | None:
    """The office's step due today for a case (policy steps III and IV), from its school days of absence
    (``CaseFact.days_absent``: register gaps count, as they do for the case's stage).

    The office calls and tries every emergency contact for every child, a child who has not taken
    up a place included (its school days count from the agreed first day). A vulnerable child's case
    is at ``dsl_review`` from day 1 (DOMAIN.md 5), but that review is in addition to the office's
    steps, not instead of them: so the case's stage cannot say whether the office has a call to make.

    ``office_told`` is false when the office has not been asked for its last step (every emergency
    contact) for this absence (``_office_asks``): the server was off on those mornings, the store is
    new, or a correction moved the absence's first day earlier and its school days jumped past the
    office's days overnight. A child already past the office's days then still gets that step, once,
    instead of none at all.

    ``done`` are the office steps already asked for this absence (step, school days of absence
    then), the ask standing today left out (``_step_given``). A step asked at as many school days
    or more, or a later step, is not asked again: a correction that moves the absence's first day
    later (a shorter streak, or a new case for days already counted) would otherwise put the child
    back on a list the office has worked through.
    """
    if kind not in OFFICE_KINDS:
        return None
    step = stage_for(school_days, th)
    if step in OFFICE_STAGES:
        rank = OFFICE_STAGES.index(step)
        if any(OFFICE_STAGES.index(s) > rank or (s == step and n >= school_days) for s, n in done):
            return None
        return step
    return OFFICE_STAGES[-1] if not office_told and school_days > 0 else None


@dataclass(frozen=True)
class OfficeAsk:
    """An office step a summary gave for a case: the summary's evaluation date, the case, the first
    day of its absence then, the step, and the school days of absence then."""

    case_id: int
    on: date
    start: date | None
    step: str
    days: int


def _step_given(kind: str, case_id: int, start: date | None, days: int, th: Thresholds, asks: Sequence[OfficeAsk],
                legacy_told: bool = False) -> tuple[str | None, str | None]:
    """The office's step for a case today (``CaseFact.office_step``), given what the summaries before
    asked about the child (``asks``, of any of the child's cases); and, when the step of its school
    days is not asked again, that step (``CaseFact.office_done``).

    The asks that count are the case's own, and those of the child's other cases given on an
    evaluation date within this absence (a correction that makes the first day present closes the
    case and opens another for the days after it: the office has worked on those days already).
    The ask standing today (the same case, first day and school days: a morning with no new school
    day of absence, a half term) is listed again. ``legacy_told``: the summaries of the absence's
    first days may have been purged (``_history_from``), so it counts as told as before.
    """
    relevant = [a for a in asks if a.case_id == case_id or (start is not None and a.on >= start)]
    told = legacy_told or any(a.step == OFFICE_STAGES[-1] for a in relevant)
    done = [(a.step, a.days) for a in relevant if (a.case_id, a.start, a.days) != (case_id, start, days)]
    step = office_step(kind, days, th, told, done)
    natural = stage_for(days, th) if kind in OFFICE_KINDS else None
    return step, natural if step is None and natural in OFFICE_STAGES else None


def _summaries(conn: Connection, as_of: date) -> list[tuple[date, datetime]]:
    """The evaluation dates of the summaries queued before ``as_of``, with when each was queued, oldest first."""
    out = []
    for key, created in conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.created_at).where(
            t.outbox.c.purpose == "summary", t.outbox.c.idempotency_key.like("summary:%"),
            t.outbox.c.idempotency_key < f"summary:{as_of.isoformat()}")):
        try:
            day = date.fromisoformat(key.split(":")[1][:10])
        except ValueError:  # not a key this module wrote
            continue
        out.append((day, aware(created) or datetime.min.replace(tzinfo=UTC)))
    return sorted(out)


#: The case events that change what a case's school days of absence are (``criteria.Change``).
_STATE_EVENTS = ("opened", "stage", "updated", "reopened", "closed")


def _days_absent(kind: str, school_days: int | None, register_gaps: Sequence[str], start: date | None) -> int:
    """``CaseFact.days_absent`` of a case as stored at any time."""
    if kind != "unexplained_absence" or start is None:
        return school_days or 0
    first = start.isoformat()
    return (school_days or 0) + sum(1 for g in register_gaps if g >= first)


def _iso(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _history_from(config: Config, now: datetime) -> date:
    """The first date from which every summary queued is surely still stored: older sent ones are
    purged after ``retention.outbox_days`` (``cme_batch.purge``)."""
    return (now - timedelta(days=config.retention.outbox_days)).date()


def _office_asks(conn: Connection, config: Config, now: datetime, open_cases: list[tuple[int, int]],
                 summaries: list[tuple[date, datetime]]) -> dict[int, list[OfficeAsk]]:
    """The office steps each summary gave about each child (``open_cases``: case id, pupil id of the
    open cases the office acts on), by pupil, oldest first.

    No summary records its lists, so they are worked out again: each office case's school days of
    absence when the summary was queued, from the case's events (detect writes every change of its
    first day, school days and register gaps; a summary reads the cases as the last detect run
    before it left them), and the step ``_step_given`` gave it then. A correction since then does
    not change what the office was asked.
    """
    pids = sorted({pid for _, pid in open_cases})
    if not pids or not summaries:
        return {}
    c, ce = t.cases.c, t.case_events.c
    cases: dict[int, tuple[int, str]] = {}  # case id -> pupil id, kind
    for i in range(0, len(pids), 500):
        cases.update((r.id, (r.pupil_id, r.kind)) for r in conn.execute(select(c.id, c.pupil_id, c.kind).where(
            c.pupil_id.in_(pids[i:i + 500]), c.kind.in_(OFFICE_KINDS),
            (c.status == "open") | c.closed_on.is_(None) | (c.closed_on >= summaries[0][0]))))
    # each case's states, in order: (from when, open, first day, school days, register gaps)
    timeline: dict[int, list[tuple[datetime, bool, date | None, int | None, list[str]]]] = defaultdict(list)
    ids = sorted(cases)
    for i in range(0, len(ids), 500):
        for case_id, at, kind, detail in conn.execute(select(ce.case_id, ce.at, ce.kind, ce.detail).where(
                ce.case_id.in_(ids[i:i + 500]), ce.kind.in_(_STATE_EVENTS)).order_by(ce.id)):
            d = detail or {}
            states = timeline[case_id]
            _, is_open, start, days, gaps = states[-1] if states else (at, True, None, None, [])
            if kind == "opened":
                is_open, start, days, gaps = True, _iso(d.get("episode_start")), d.get("school_days"), \
                    list(d.get("register_gaps") or [])
            elif kind == "closed":
                is_open = False
            else:
                changed = d.get("changed") or {}
                is_open = is_open or kind == "reopened"
                if "episode_start" in changed:
                    start = _iso(changed["episode_start"][1])
                if "school_days" in changed:
                    days = changed["school_days"][1]
                if "register_gaps" in changed:
                    gaps = list(changed["register_gaps"][1] or [])
            states.append((aware(at) or now, is_open, start, days if isinstance(days, int) else None, gaps))
    by_pupil: dict[int, list[int]] = defaultdict(list)
    for case_id, (pid, _kind) in sorted(cases.items()):
        by_pupil[pid].append(case_id)
    times = {case_id: [s[0] for s in timeline.get(case_id, [])] for case_id in cases}
    floor, th, dates = _history_from(config, now), config.thresholds, [d for d, _ in summaries]
    asks: dict[int, list[OfficeAsk]] = {}
    for pid, case_ids in by_pupil.items():
        made: list[OfficeAsk] = []
        for n, (on, queued) in enumerate(summaries):
            for case_id in case_ids:
                states = timeline.get(case_id, [])
                i = bisect_right(times[case_id], queued)  # the state the summary read
                if i == 0 or not states[i - 1][1]:
                    continue
                _, _, start, school_days, gaps = states[i - 1]
                kind = cases[case_id][1]
                days = _days_absent(kind, school_days, gaps, start)
                legacy = start is not None and start < floor and _office_told(dates[:n], start)
                step, _ = _step_given(kind, case_id, start, days, th, made, legacy)
                if step is not None:
                    made.append(OfficeAsk(case_id, on, start, step, days))
        asks[pid] = made
    return asks


def _contacts(conn: Connection, cases: list[tuple[int, int]]) -> dict[int, list[tuple[str, str]]]:
    """The emergency contacts of each case's child (``cases``: case id, pupil id), first priority first."""
    by_pupil: dict[int, list[Any]] = defaultdict(list)
    pids = sorted({pid for _, pid in cases})
    k = t.contacts.c
    for i in range(0, len(pids), 500):
        for row in conn.execute(select(k.pupil_id, k.priority, k.title, k.forename, k.surname, k.relationship,
                                       k.phones, k.emails, k.id).where(k.pupil_id.in_(pids[i:i + 500]))):
            by_pupil[row.pupil_id].append(row)
    out: dict[int, list[tuple[str, str]]] = {}
    for case_id, pid in cases:
        rows = sorted(by_pupil.get(pid, []), key=lambda r: (r.priority is None, r.priority or 0, r.id))
        out[case_id] = [((" ".join(x for x in (r.title, r.forename, r.surname) if x) or "(no name)")
                         + (f" ({r.relationship})" if r.relationship else ""),
                         ", ".join([*(r.phones or []), *(r.emails or [])]) or "no number or email recorded")
                        for r in rows]
    return out


def _office_told(summaries: list[date], since: date | None) -> bool:
    """Whether a summary went out for an evaluation date on or after the absence's first day: what
    counts as the office told of an absence begun before the summaries still stored (``_history_from``),
    whose lists cannot be worked out again (``_office_asks``)."""
    return since is None or bisect_left(summaries, since) < len(summaries)


def _dsl_not_asked(conn: Connection, cases: list[tuple[int, str | None]]) -> dict[int, list[str]]:
    """For each absence case at or past one of the DSL's steps: those of them no digest gave as its
    next step (``DSL_STEPS``).

    A step is asked on a digest's date when the case was then at the stage before it. The case's
    stages come from its events (``opened``, ``stage``: the evaluation date each began, and those a
    night passed over at once). A step whose stage before it the case never had (a vulnerable child's
    case opens at the DSL's review) is not one it missed.
    """
    wanted = {cid: stage for cid, stage in cases
              if stage in STAGES and STAGES.index(stage) >= STAGES.index(DSL_STEPS[0])}
    if not wanted:
        return {}
    digests = sorted({date.fromisoformat(k.split(":")[1][:10]) for (k,) in conn.execute(
        select(t.outbox.c.idempotency_key).where(t.outbox.c.purpose == "digest",
                                                 t.outbox.c.idempotency_key.like("digest:%")))})
    history: dict[int, list[tuple[date, str, list[str]]]] = defaultdict(list)
    e = t.case_events.c
    for cid, on, stage, detail in conn.execute(select(e.case_id, e.as_of, e.stage, e.detail).where(
            e.case_id.in_(sorted(wanted)), e.kind.in_(("opened", "stage")), e.as_of.is_not(None),
            e.stage.is_not(None)).order_by(e.id)):
        history[cid].append((on, stage, list((detail or {}).get("passed") or []) if isinstance(detail, dict) else []))
    out: dict[int, list[str]] = {}
    for cid, stage in wanted.items():
        shown: set[str] = set()  # the stages the case was at on a digest's date
        had: set[str] = set()  # every stage the case had, or passed over
        entries = history.get(cid, [])
        for i, (on, st, passed) in enumerate(entries):
            had.update([st, *passed])
            until = entries[i + 1][0] if i + 1 < len(entries) else date.max
            if bisect_left(digests, on) < bisect_left(digests, until):
                shown.add(st)
        out[cid] = [step for step in DSL_STEPS if STAGES.index(step) <= STAGES.index(stage)
                    and STAGES[STAGES.index(step) - 1] in had and STAGES[STAGES.index(step) - 1] not in shown]
    return out


def _next_step(c: CaseFact, as_of: date, calendar: SchoolCalendar, config: Config) -> tuple[str, date | None]:
    """The policy's next step for a case, and the school day by which it falls due."""
    if c.kind == "repeat_missing":
        return "DSL: review the pattern of absence; reply CLOSE to its review request when resolved", None
    if c.held:
        return f"On hold by the DSL: {c.held}", None
    if c.confirmed and not c.referred:
        if c.referral_held:  # the reason is the DSL's to read (the digest's "Referrals confirmed but not sent")
            return "Referral confirmed, NOT sent to the LA yet: the DSL's digest says why", None
        return "Referral confirmed: being sent to the LA", None
    if c.referred:
        return "Referred to the LA: watch for the child's return", None
    if c.kind != "unexplained_absence":
        return "DSL: confirm the referral to the LA at the earliest opportunity", c.referral_due
    nxt, text = NEXT_STEP.get(c.stage, (None, ""))
    if nxt is None or (nxt == "referral_due" and c.referral_due is not None):
        # the case's own due date, as detect worked it out (with the closures the registers show)
        return text, c.referral_due
    day_no = getattr(config.thresholds, nxt)
    ahead = day_no - c.days_absent
    due = calendar.nth_school_day_after(as_of, ahead) if ahead >= 1 else as_of
    return text, due


def _not_queued(config: Config, now: datetime) -> str:
    """Why a confirmed referral, not on HOLD, is still not queued for the LA when the morning emails
    are written (the night's referrals stage runs before its summary stage).

    The referrals stage records an event only when no encryption is configured; when encryption is
    configured but cannot be used (the LA's certificate expired or missing, a passphrase refused) it
    logs the error and queues nothing, nothing unencrypted leaves, and the DSL must be told, or a
    referral confirmed on time would wait unseen past its due date. The keys are checked here as the
    referrals stage checks them, to give the DSL the reason; never the passphrase itself.
    """
    from cme_batch.errors import CmeError

    ref = config.referral
    try:
        method = ref.chosen_method()
        if method == "smime":
            from cme_batch.referral import smime

            smime.load_keys(ref, now)
        elif method == "pdf-passphrase" and ref.passphrase is not None:
            from cme_batch.referral import pdfcrypt

            pdfcrypt.read_passphrase(ref.passphrase)
    except CmeError as exc:
        return f"not queued for the LA: {str(exc).splitlines()[0]}"
    except Exception:  # noqa: BLE001 - the morning emails must go whatever this check meets
        pass
    return ("not queued for the LA: the referrals stage has not queued it; if this is still here tomorrow, "
            "ask the IT technician to look at the night's log (journalctl -u cme-batch)")


def _raised_again(conn: Connection, case_ids: list[int]) -> dict[int, str]:
    """For each open case whose latest reopening followed a person's close (``criteria.raised_again_at``):
    when and why it was closed, for the DSL to read beside it (else the request would look like a
    reply gone astray)."""
    ce = t.case_events.c
    latest: dict[int, tuple[str, dict[str, Any], Any]] = {}
    closes: dict[int, tuple[Any, dict[str, Any]]] = {}
    for i in range(0, len(case_ids), 500):
        for case_id, kind, at, detail in conn.execute(select(ce.case_id, ce.kind, ce.at, ce.detail).where(
                ce.case_id.in_(case_ids[i:i + 500]), ce.kind.in_(("closed", "reopened"))).order_by(ce.id)):
            if kind == "closed":
                closes[case_id] = (at, detail or {})
            elif "raised_again_at" in (detail or {}):
                # a reopening by a correction since (closed "returned", then the mark put back) says
                # nothing of why: the latest raising again still stands, with the close before it
                latest[case_id] = (kind, detail or {}, closes.get(case_id))
    out: dict[int, str] = {}
    for case_id, (_kind, detail, close) in latest.items():
        if "raised_again_at" not in detail:
            continue
        closed_at = aware(close[0]) if close else None
        when = f" on {in_school_time(closed_at):%a %d %b %Y}" if closed_at else ""
        why = f" ({close[1]['text']})" if close and close[1].get("text") else ""
        out[case_id] = (f"Raised again: this case was closed by reply{when}{why}, but the register still says "
                        f"the absence is unexplained ({detail['raised_again_at']} school days). To end it, record "
                        "the reason in the MIS register (or the child's leaving); otherwise decide on the referral.")
    return out


def gather(conn: Connection, config: Config, as_of: date, now: datetime, calendar: SchoolCalendar,
           outbox_problems: list[Any] | None = None, review_replies: list[dict[str, Any]] | None = None) -> Facts:
    """Everything both morning emails say, read in a handful of queries."""
    p, c = t.pupils.c, t.cases.c
    flags: dict[int, list[str]] = defaultdict(list)
    for pid, kind, start, end in conn.execute(select(t.flags.c.pupil_id, t.flags.c.kind, t.flags.c.start_date,
                                                     t.flags.c.end_date)):
        if (start is None or start <= as_of) and (end is None or end >= as_of):
            flags[pid].append(kind)
    held_reason: dict[int, str] = {}
    for case_id, detail in conn.execute(select(t.case_events.c.case_id, t.case_events.c.detail).where(
            t.case_events.c.kind == "referral_held").order_by(t.case_events.c.id)):
        held_reason[case_id] = (detail or {}).get("reason", "not sent")
    rows = conn.execute(select(
        c.id, c.ref, c.kind, c.stage, c.school_days, c.episode_start, c.last_attended, c.referral_due,
        c.register_gaps, c.alerts, c.confirmed_at, c.hold_reason, c.referred_at, c.compulsory_school_age,
        p.id.label("pupil_id"), p.legal_forename, p.legal_surname, p.preferred_forename, p.year_group,
        p.reg_group).join(t.pupils, p.id == c.pupil_id).where(c.status == "open").order_by(c.ref)).all()
    cases = []
    raised = _raised_again(conn, [r.id for r in rows])
    summaries = _summaries(conn, as_of)
    asks = _office_asks(conn, config, now, [(r.id, r.pupil_id) for r in rows if r.kind in OFFICE_KINDS], summaries)
    not_asked = _dsl_not_asked(conn, [(r.id, r.stage) for r in rows if r.kind == "unexplained_absence"])
    floor = _history_from(config, now)
    pupil_ids: list[int] = []
    stuck: list[str] = []  # why confirmed referrals are not queued, worked out once (``_not_queued``)
    for r in rows:
        name = f"{r.preferred_forename or r.legal_forename or ''} {r.legal_surname or ''}".strip() or "(no name)"
        cf = CaseFact(
            r.id, r.ref, r.kind, r.stage, name, _year(r.year_group), r.reg_group or "", r.school_days or 0,
            r.episode_start, r.last_attended, r.referral_due, list(r.register_gaps or []), list(r.alerts or []),
            sorted(set(flags.get(r.pupil_id, []))), r.confirmed_at is not None, r.hold_reason,
            held_reason.get(r.id) if r.confirmed_at is not None and r.referred_at is None else None,
            r.referred_at is not None, r.compulsory_school_age)
        if cf.confirmed and not cf.referred and cf.held is None and cf.referral_held is None:
            stuck = stuck or [_not_queued(config, now)]
            cf.referral_held = stuck[0]
        cf.raised_again = raised.get(r.id)
        cf.next_step, cf.next_due = _next_step(cf, as_of, calendar, config)
        cf.dsl_not_asked = not_asked.get(r.id, []) if cf.next_due is not None and not (
            cf.held or cf.confirmed or cf.referred or cf.raised_again) else []
        legacy = cf.streak_start is not None and cf.streak_start < floor and _office_told(
            [d for d, _ in summaries], cf.streak_start)
        cf.office_step, cf.office_done = _step_given(cf.kind, cf.id, cf.streak_start, cf.days_absent,
                                                     config.thresholds, asks.get(r.pupil_id, []), legacy)
        cases.append(cf)
        pupil_ids.append(r.pupil_id)
    contacts = _contacts(conn, [(cf.id, pid) for cf, pid in zip(cases, pupil_ids, strict=True)
                                if cf.office_step is not None])
    for cf in cases:
        cf.contacts = contacts.get(cf.id, [])
    cases.sort(key=lambda x: (-(STAGES.index(x.stage) if x.stage in STAGES else -1), -x.school_days, x.ref))
    since = _last_summary_before(conn, as_of)
    returns = [{"pupil": f"{r.legal_forename or ''} {r.legal_surname or ''}".strip(), "year": _year(r.year_group),
                "start": r.episode_start, "days": r.school_days}
               for r in conn.execute(select(t.la_returns.c.episode_start, t.la_returns.c.school_days,
                                            p.legal_forename, p.legal_surname, p.year_group)
                                     .join(t.pupils, p.id == t.la_returns.c.pupil_id)
                                     .where(t.la_returns.c.listed_on > since, t.la_returns.c.listed_on <= as_of)
                                     .order_by(t.la_returns.c.listed_on, t.la_returns.c.id))]
    closed = [{"ref": r.ref, "kind": r.kind, "pupil": f"{r.preferred_forename or r.legal_forename or ''} "
                                                       f"{r.legal_surname or ''}".strip() or "(no name)",
               "opened_on": r.opened_on, "closed_on": r.closed_on, "reason": r.closed_reason,
               "episode_start": r.episode_start, "year": _year(r.year_group), "alerts": list(r.alerts or [])}
              for r in conn.execute(select(c.ref, c.kind, c.opened_on, c.closed_on, c.closed_reason, c.episode_start,
                                           c.alerts, p.legal_forename, p.legal_surname, p.preferred_forename,
                                           p.year_group)
                                    .join(t.pupils, p.id == c.pupil_id)
                                    .where(c.status == "closed", c.closed_on > since, c.closed_on <= as_of)
                                    .order_by(c.closed_on, c.ref))]
    warnings: list[str] = []
    run = conn.execute(select(t.detect_runs.c.warnings).where(t.detect_runs.c.as_of == as_of)
                       .order_by(t.detect_runs.c.id.desc()).limit(1)).first()
    if run and run.warnings:
        warnings = [str(w.get("message", w)) if isinstance(w, dict) else str(w) for w in run.warnings]
    return Facts(config.school.name, as_of, now, _sources(conn, config, now), cases, returns, warnings,
                 list(outbox_problems or []), list(review_replies or []), closed=closed,
                 import_warnings=_import_warnings(conn, as_of, now))


def _import_warnings(conn: Connection, as_of: date, now: datetime) -> list[tuple[bool, str, str, int]]:
    """The warnings of the imports stored since the last summary was queued (the last day, if none):
    (whether for the DSL alone, ``Warning_.dsl_only``; the source and what it read; the warning
    with where in the file; how many times).

    An import keeps its warnings (a UPN whose check letter is wrong, marks dated on a weekend, a
    leaving without an admission...) with its run; the night is run by the timer, so without them
    here nobody read them. A warning never names a pupil (``model.Warning_``): it names the file
    and the record."""
    ob, ir = t.outbox.c, t.ingest_runs.c
    since = conn.execute(select(func.max(ob.created_at)).where(
        ob.purpose == "summary", ob.idempotency_key.like("summary:%"),
        ob.idempotency_key < f"summary:{as_of.isoformat()}")).scalar()
    since = aware(since) if since is not None else now - timedelta(days=1)
    seen: dict[tuple[bool, str, str], int] = {}
    for source, origin, warnings in conn.execute(select(ir.source, ir.origin, ir.warnings).where(
            ir.status == "ok", ir.started_at > since, ir.started_at <= now).order_by(ir.id)):
        for w in warnings or []:
            if not isinstance(w, dict) or not w.get("message"):
                continue
            where = w.get("where") or origin or ""
            key = (bool(w.get("dsl_only")), f"{source}: {where}" if where else str(source), str(w["message"]))
            seen[key] = seen.get(key, 0) + 1
    return [(dsl_only, where, what, n) for (dsl_only, where, what), n in seen.items()]


def _last_summary_before(conn: Connection, as_of: date) -> date:
    """The evaluation date of the last summary queued before ``as_of`` (the day before, if none):
    what was listed or closed after it has not been in any summary yet. Summaries are keyed
    ``summary:YYYY-MM-DD``, so the latest key before this date's is the latest summary."""
    key = conn.execute(select(func.max(t.outbox.c.idempotency_key)).where(
        t.outbox.c.purpose == "summary", t.outbox.c.idempotency_key.like("summary:%"),
        t.outbox.c.idempotency_key < f"summary:{as_of.isoformat()}")).scalar()
    try:
        return date.fromisoformat(key.split(":")[1][:10]) if key else as_of - timedelta(days=1)
    except ValueError:  # not a key this module wrote
        return as_of - timedelta(days=1)


def _year(year_group: str | None) -> str:
    if not year_group:
        return ""
    return "Reception" if year_group.upper() in ("R", "REC", "RECEPTION") else (
        f"Year {year_group}" if year_group.isdigit() else year_group)
