"""What a referral says (DOMAIN.md 6), gathered from the store for one case into a plain dict.

The dict is the JSON document (``referral.schema.json``) and the PDF is drawn from it, so both
always say the same. The store is read, never written. Columns read:

- ``cases``: ref, pupil_id, kind, status, stage, episode_start, opened_on, closed_on,
  closed_reason, school_days, last_attended, referral_due, register_gaps (JSON list of ISO
  dates), alerts (JSON list of names or of ``{"kind": ...}``), confirmed_at, confirmed_by,
  confirmation_message_id, referred_at;
- ``case_events``: at, as_of, kind, actor, detail. Events of kind ``action`` or ``note`` are the
  actions log. Their ``detail`` is ``{"action": ACTION, "outcome": "what happened",
  "who": "optional, defaults to the event's actor", "date": "optional ISO date, defaults to
  as_of, then England's date of at"}``, with ACTION one of ``ACTIONS`` or ``ACTION_ALIASES`` (an
  unknown name is kept as written); a note without ``action`` is shown with its ``text`` as the
  outcome.
  The latest ``as_of`` of any event is the date the case was evaluated on;
- ``pupils``, ``contacts``, ``flags``, ``enrolments``, ``mark_strips`` and ``mark_alphabet``.

Moments (``confirmed_at``, ``referred_at``, an event's ``at``) are stored in UTC; SQLite gives
them back naive, which means UTC here. The JSON keeps a moment as UTC with its offset, but the
date of a moment is always the school's (England's) date: 23:30 UTC in summer is already the
next day at the school and at the LA.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from cme_batch import codes, schoolcal
from cme_batch import marks as mk
from cme_batch.app import in_school_time
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.referral import attendance
from cme_batch.referral.people import Row, address_dict, contact_entries, full_name, siblings
from cme_batch.store import tables as t
from cme_batch.store.ingest import load_alphabet

SCHEMA_VERSION = "1.0"

#: Actions the policy asks for (steps III-VII), with the label the form shows.
ACTIONS: dict[str, str] = {
    "first_day_call": "First-day call to parents",
    "emergency_contacts": "Every emergency contact tried",
    "home_visit": "Home visit",
    "social_media_search": "Social media searches",
    "other_agencies": "Other agencies and school community asked",
    "social_care": "Social Care informed",
    "note": "Note",
    "closed_by_school": "Case closed by reply (raised again: the register still said unexplained)",
}
CHECKLIST = ("first_day_call", "emergency_contacts", "home_visit", "social_media_search", "other_agencies")
#: Other names the store holds for the same actions: a DSL's NOTE reply ``contacts-tried ...`` or
#: ``social-media ...`` is recorded by ``replies.parse`` under these, and must still tick the checklist.
ACTION_ALIASES: dict[str, str] = {"contacts_tried": "emergency_contacts", "social_media": "social_media_search"}

#: The LA form's three criteria, by case kind (repeated missing episodes are unexplained absence),
#: and whether the text goes on to say what the school's attempts to contact the family came to.
CRITERIA: dict[str, tuple[str, str, bool]] = {
    "unexplained_absence": ("continuous_absence", "10 or more days of continuous absence without explanation", True),
    "repeat_missing": ("continuous_absence", "Repeated episodes of unexplained absence", True),
    "place_not_taken_up": ("place_not_taken_up", "Has not taken up an allocated school place", True),
    "destination_unknown": ("destination_unknown", "Left the school suddenly; destination school and address unknown",
                            False),
}
#: Actions that try to reach the family: a call to parents, every emergency contact, a home visit.
#: Searches, asking other agencies, informing Social Care and notes are recorded, but are not that.
CONTACT_ATTEMPTS = frozenset({"first_day_call", "emergency_contacts", "home_visit"})
CONTACT_FAILED = "attempts to contact failed"
NO_CONTACT_ATTEMPT = "no contact attempt is recorded"

FLAG_LABELS: dict[str, str] = {
    "child_protection_plan": "Child protection plan", "looked_after": "Looked after (in care)",
    "child_in_need": "Child in need", "sen_support": "SEN support", "ehcp": "Education, health and care plan",
    "young_carer": "Young carer", "domestic_abuse": "Family fleeing domestic abuse",
    "highly_mobile": "Highly mobile family (armed forces, Gypsy, Roma, Traveller)",
    "permanently_excluded": "Permanently excluded", "medical_emotional": "Long-term medical or emotional needs",
    "parent_mental_health": "Parent with mental health problems",
    "parent_learning_difficulty": "Parent with learning difficulties",
}


#: School days of absence the LA's criterion for continuous absence names.
CRITERION_DAYS = 10


def criterion_of(case_kind: str, actions: list[dict[str, Any]], days: int | None = None) -> tuple[str, str]:
    """The case's LA criterion and its text, which says attempts to contact failed only when one is recorded.

    ``days``: the school days of the absence so far, days with no register mark included (as the
    due date counts them). The policy sends a referral *no later than* the 10th day, so the DSL
    may confirm it on the 8th: the text then says how many days it is, not "10 or more".
    """
    criterion, text, contact = CRITERIA.get(case_kind, ("continuous_absence", case_kind, False))
    if case_kind == "unexplained_absence" and days is not None and days < CRITERION_DAYS:
        text = (f"Continuous absence without explanation, {days} school day(s) so far: referred before the "
                f"{CRITERION_DAYS}th day, as the school's policy asks")
    if contact:
        tried = any(a["action"] in CONTACT_ATTEMPTS for a in actions)
        text = f"{text}; {CONTACT_FAILED if tried else NO_CONTACT_ATTEMPT}"
    return criterion, text


def _utc(moment: datetime) -> datetime:
    """A stored moment made aware: one without a zone (as SQLite gives it back) is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(v: date | datetime | None) -> str | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return _utc(v).astimezone(UTC).isoformat()
    return v.isoformat()


def _day(v: Any) -> date | None:
    """A date as stored, or the school's (England's) date of a moment, never UTC's date of it."""
    if v is None or isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, datetime):
        return in_school_time(_utc(v)).date()
    text = str(v)
    if len(text) > 10:  # an ISO moment written where a date was expected
        try:
            return in_school_time(_utc(datetime.fromisoformat(text))).date()
        except ValueError:
            pass
    return date.fromisoformat(text[:10])


def load_case(conn: Connection, case_id: int) -> Row:
    row = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).mappings().first()
    if row is None:
        raise BadInputError(f"no case with id {case_id}")
    return row


def _events(conn: Connection, case_id: int) -> list[Row]:
    return list(conn.execute(select(t.case_events).where(t.case_events.c.case_id == case_id)
                             .order_by(t.case_events.c.at, t.case_events.c.id)).mappings())


def evaluation_date(case: Row, events: list[Row], now: datetime, last_detect: date | None = None) -> date:
    """The date the case's facts are as of: its closing date, else the engine's latest run.

    With neither (no event, no detect run), it is the school's date at ``now`` (England's, not
    UTC's: at 23:30 UTC in summer it is already the next day at the school).

    An open case is re-evaluated by every detect run, but only a change writes an event: a leaver
    whose destination stays unknown has none after the day it opened. ``last_detect`` (the latest
    detect run of the pupil's school) keeps such a case's facts as of the night it was last checked.
    """
    today = in_school_time(_utc(now)).date()
    if case["closed_on"]:
        return _day(case["closed_on"]) or today
    days = [d for d in (_day(e["as_of"]) for e in events) if d]
    if last_detect is not None:
        days.append(last_detect)
    return max(days) if days else today


def _left_by(cfg: Config, as_of: date, now: datetime) -> date:
    """The last leaving date that has passed when the facts are as of ``as_of`` and read at ``now``:
    as ``detect`` reads leavings (``detect.leavings_to``), a leaving dated in the holiday after the
    evaluation date has passed once its date has come."""
    from cme_batch.detect import leavings_to

    today = in_school_time(_utc(now)).date()
    if today <= as_of:
        return as_of
    return leavings_to(schoolcal.build(cfg.calendar, as_of, today), as_of, today)


def _last_detect(conn: Connection, school_id: int) -> date | None:
    return _day(conn.execute(select(func.max(t.detect_runs.c.as_of)).where(
        t.detect_runs.c.school_id == school_id)).scalar())


def sessions(conn: Connection, pupil_id: int, start: date, end: date) -> Iterator[tuple[date, str, str]]:
    """Every (day, session, code) from ``start`` to ``end`` inclusive, ``-`` where nothing is recorded."""
    years = range(mk.academic_year_of(start), mk.academic_year_of(end) + 1)
    strips = dict(conn.execute(select(t.mark_strips.c.academic_year, t.mark_strips.c.marks).where(
        t.mark_strips.c.pupil_id == pupil_id, t.mark_strips.c.academic_year.in_(list(years)))).all())
    alphabet = load_alphabet(conn)
    day = start
    while day <= end:
        strip = strips.get(mk.academic_year_of(day))
        for s in ("AM", "PM"):
            code = alphabet.code_for(strip[mk.position(day, s)]) if strip else mk.NO_MARK
            yield day, s, code
        day += timedelta(days=1)


def _school(cfg: Config) -> dict[str, Any]:
    s, dsl = cfg.school, cfg.staff.dsl
    return {"name": s.name, "la_number": s.la_number, "establishment_number": s.establishment_number,
            "address": list(s.address), "postcode": s.postcode, "phone": s.phone, "email": s.email,
            "dsl": {"name": dsl.name, "phone": dsl.phone, "email": dsl.email}}


def _confirmation(case: Row, cfg: Config) -> dict[str, Any]:
    """Who confirmed, by name and role: the DSL or the deputy DSL may reply CONFIRM."""
    by = case["confirmed_by"]
    name, role = staff_roles(cfg).get(str(by or "").strip().lower(), (None, None))
    return {"confirmed": case["confirmed_at"] is not None, "by": by, "name": name, "role": role,
            "at": _iso(case["confirmed_at"]), "message_id": case["confirmation_message_id"]}


def _latest_enrolment(conn: Connection, pupil_id: int) -> dict[str, Any] | None:
    """The pupil's latest admission, ended by a leaving stored without a first day as ``detect``
    ends it (``detect.ended_by_dateless_leavings``)."""
    from cme_batch.detect import ended_by_dateless_leavings

    e = t.enrolments
    rows = conn.execute(select(e, func.coalesce(e.c.entry_date, e.c.admission_date).label("first")).where(
        e.c.pupil_id == pupil_id)).all()
    admissions = sorted(ended_by_dateless_leavings(list(rows)), key=lambda r: (r.first or date.min, r.id))
    return admissions[-1]._asdict() if admissions else None


def _child(p: Row, enrol: Row | None, as_of: date) -> dict[str, Any]:
    e = enrol or {}
    return {
        "legal_forename": p["legal_forename"], "legal_surname": p["legal_surname"],
        "middle_names": p["middle_names"],
        "preferred_forename": p["preferred_forename"], "preferred_surname": p["preferred_surname"],
        "date_of_birth": _iso(p["dob"]), "sex": p["sex"], "upn": p["upn"],
        "year_group": p["year_group"], "reg_group": p["reg_group"], "address": address_dict(p["address"]),
        "phones": list(p["phones"] or []), "emails": list(p["emails"] or []),
        "admission_date": _iso(e.get("admission_date")), "entry_date": _iso(e.get("entry_date")),
        "leaving_date": _iso(e.get("leaving_date")), "leaving_reason": e.get("leaving_reason"),
        "destination": e.get("destination"),
        "compulsory_school_age": attendance.compulsory_school_age(p["dob"], as_of),
    }


def _vulnerability(conn: Connection, pupil_id: int, case: Row, as_of: date) -> dict[str, Any]:
    """What is recorded of the child's vulnerability at any time from the absence's first day to
    ``as_of``: a plan that ended during the absence (the alert was raised for it) is still the
    LA's to know, with the day it ended (``until``)."""
    first = min(_day(case["episode_start"]) or as_of, as_of)
    flags = []
    for f in conn.execute(select(t.flags).where(t.flags.c.pupil_id == pupil_id).order_by(
            t.flags.c.kind, t.flags.c.start_date)).mappings():
        if (f["start_date"] and f["start_date"] > as_of) or (f["end_date"] and f["end_date"] < first):
            continue
        flag = {"kind": f["kind"], "label": FLAG_LABELS.get(f["kind"], f["kind"]),
                "since": _iso(f["start_date"]), "detail": f["detail"]}
        if f["end_date"] and f["end_date"] < as_of:
            flag["until"] = _iso(f["end_date"])
        flags.append(flag)
    kinds = {f["kind"] for f in flags}
    alerts = [a.get("kind", str(a)) if isinstance(a, dict) else str(a) for a in (case["alerts"] or [])]
    return {"child_protection_plan": "child_protection_plan" in kinds, "looked_after": "looked_after" in kinds,
            "sen": "ehcp" if "ehcp" in kinds else "sen_support" if "sen_support" in kinds else "none",
            "young_carer": "young_carer" in kinds, "flags": flags, "alerts": alerts}


def staff_roles(cfg: Config) -> dict[str, tuple[str, str]]:
    """The school staff's e-mail addresses (lower case) -> (name, role), the DSL's and the deputy's
    before the office's (one address given twice is the safeguarding role)."""
    staff: list[tuple[Any, str]] = [(p, "School office") for p in cfg.staff.office]
    staff += [(cfg.staff.deputy_dsl, "Deputy Designated Safeguarding Lead"), (cfg.staff.dsl, "Designated Safeguarding Lead")]
    return {person.email.strip().lower(): (person.name, role) for person, role in staff
            if person is not None and person.email.strip() and person.name.strip()}


def recorded_actions(conn: Connection, case_id: int, cfg: Config | None = None) -> list[dict[str, Any]]:
    """The case's actions log as the referral gives it (``_actions``): date, action, label, who, outcome."""
    return _actions(_events(conn, case_id), cfg)


def _actions(events: list[Row], cfg: Config | None = None) -> list[dict[str, Any]]:
    """The actions log; ``who`` is the member of staff's name and role when the address is one of
    theirs (the LA's officer reads a person, not a mailbox), else as recorded."""
    names = {email: f"{name} ({role})" for email, (name, role) in (staff_roles(cfg) if cfg else {}).items()}
    out = []
    for e in events:
        d = e["detail"] if isinstance(e["detail"], dict) else {}
        if e["kind"] == "closed" and d.get("reason") == "closed_by_dsl":
            # a person's CLOSE, the case raised again since (``criteria.raised_again_at``): what the
            # school was told then is part of what it knows ("mum rang, he is ill")
            out.append({"date": _iso(_day(e["at"])), "action": "closed_by_school",
                        "label": ACTIONS["closed_by_school"], "who": _who(e["actor"], names),
                        "outcome": str(d.get("text") or "")})
            continue
        if e["kind"] not in ("action", "note"):
            continue
        action = str(d.get("action") or "note")
        action = ACTION_ALIASES.get(action, action)
        when = _day(d.get("date")) or _day(e["as_of"]) or _day(e["at"])  # ``at``: England's date of it
        out.append({"date": _iso(when), "action": action, "label": ACTIONS.get(action, action),
                    "who": _who(d.get("who") or e["actor"], names),
                    "outcome": d.get("outcome") or d.get("text") or ""})
    return out


def _who(recorded: Any, names: dict[str, str]) -> str:
    text = str(recorded or "")
    return names.get(text.strip().lower(), text)


def _checklist(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"action": a, "label": ACTIONS[a],
             "dates": sorted({x["date"] for x in actions if x["action"] == a and x["date"]})} for a in CHECKLIST]


def _last_attended(conn: Connection, pupil_id: int, since: date | None, until: date,
                   classifier: codes.Classifier) -> date | None:
    if since is None:
        return None
    seen = [d for d, _s, c in sessions(conn, pupil_id, since, until) if classifier.class_of(c, d) in codes.ATTENDED]
    return max(seen) if seen else None


def _update(conn: Connection, case: Row, enrol: Row | None, as_of: date,
            classifier: codes.Classifier) -> dict[str, Any]:
    # England's date the referral was sent on: a referral queued at 00:30 BST went on that day,
    # not on UTC's day before, and the child's return is looked for from that day on.
    referred = _day(case["referred_at"])
    destination = (enrol or {}).get("destination")
    returned = _last_attended(conn, case["pupil_id"], referred, as_of, classifier)
    # a child referred for absence, then taken off roll with the new school recorded, has a destination
    # the LA needs to know of: not merely "closed"
    if (destination and (case["kind"] == "destination_unknown" or case["closed_reason"] == "left")) \
            or case["closed_reason"] == "destination_known":
        reason = "destination_known"
    elif returned or case["closed_reason"] == "returned":
        reason = "returned"
    else:
        reason = "closed" if case["status"] == "closed" else "other"
    return {"reason": reason, "referred_on": _iso(referred), "closed_on": _iso(case["closed_on"]),
            "closed_reason": case["closed_reason"], "last_attended": _iso(returned or case["last_attended"]),
            "destination": destination, "leaving_date": _iso((enrol or {}).get("leaving_date"))}


def build_document(conn: Connection, case_id: int, cfg: Config, now: datetime, kind: str = "referral"
                   ) -> dict[str, Any]:
    """The referral (or update) document for one case, as plain JSON-ready data."""
    if kind not in ("referral", "update"):
        raise ValueError(f"unknown bundle kind {kind!r}")
    case = load_case(conn, case_id)
    if kind == "update" and case["referred_at"] is None:
        raise BadInputError(f"case {case['ref']} was never referred, so there is nothing to update")
    events = _events(conn, case_id)
    pupil = conn.execute(select(t.pupils).where(t.pupils.c.id == case["pupil_id"])).mappings().one()
    as_of = evaluation_date(case, events, now, _last_detect(conn, pupil["school_id"]))
    enrol = _latest_enrolment(conn, pupil["id"])
    actions = _actions(events, cfg)
    days = None if case["school_days"] is None else case["school_days"] + len(case["register_gaps"] or [])
    criterion, criterion_text = criterion_of(case["kind"], actions, days)
    year = mk.academic_year_of(as_of)
    classifier = codes.Classifier(cfg.codes.local, cfg.codes.subcodes, load_alphabet(conn))
    att = attendance.summarise(sessions(conn, pupil["id"], mk.year_start(year), as_of), year, as_of, classifier)
    ref = cfg.referral
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "generated_at": _iso(now),
        "to": {"name": ref.la_name, "address": list(ref.la_address), "phone": ref.la_phone, "email": ref.la_email},
        "school": _school(cfg),
        "case": {
            "ref": case["ref"], "kind": case["kind"], "criterion": criterion, "criterion_text": criterion_text,
            "status": case["status"], "stage": case["stage"], "opened_on": _iso(case["opened_on"]),
            "evaluated_on": as_of.isoformat(), "episode_start": _iso(case["episode_start"]),
            "last_attended": _iso(case["last_attended"]), "school_days_missed": case["school_days"],
            "referral_due": _iso(case["referral_due"]),
            "register_gaps": [str(g) for g in (case["register_gaps"] or [])],
            "referred_at": _iso(case["referred_at"]),
            "earlier_referrals": _earlier_referrals(conn, case, now),
        },
        "child": _child(pupil, enrol, as_of),
        "attendance": att.as_dict(),
        "confirmation": _confirmation(case, cfg),
    }
    if kind == "update":
        doc["update"] = _update(conn, case, enrol, as_of, classifier)
        return doc
    contact_rows = list(conn.execute(select(t.contacts).where(t.contacts.c.pupil_id == pupil["id"])).mappings())
    contacts = contact_entries(contact_rows)
    start = _day(case["episode_start"])
    gaps = set(doc["case"]["register_gaps"])
    doc.update({
        "contacts": contacts,
        "lives_with": [c["name"] for c in contacts if c["lives_with"]],
        "siblings": siblings(conn, pupil, contact_rows, as_of, _left_by(cfg, as_of, now)),
        "vulnerability": _vulnerability(conn, pupil["id"], case, as_of),
        "actions": actions,
        "checklist": _checklist(actions),
        "evidence": _evidence(sessions(conn, pupil["id"], start, as_of) if start else iter(()), gaps),
    })
    return doc


def _earlier_referrals(conn: Connection, case: Row, now: datetime) -> list[dict[str, Any]]:
    """The child's other cases referred to the LA before this one (a "destination unknown" case
    after an absence referral): a second referral under a new reference, saying nothing of the
    first, reads as a new child, and its "no actions recorded" hides what the school did."""
    c = t.cases.c
    before = _utc(case["referred_at"]) if case["referred_at"] is not None else _utc(now)
    rows = conn.execute(select(c.ref, c.kind, c.referred_at, c.status, c.closed_reason).where(
        c.pupil_id == case["pupil_id"], c.id != case["id"], c.referred_at.is_not(None)).order_by(c.referred_at, c.id))
    return [{"ref": r.ref, "kind": r.kind, "referred_on": _iso(_day(r.referred_at)), "status": r.status,
             "closed_reason": r.closed_reason} for r in rows if _utc(r.referred_at) < before]


def _evidence(marks: Iterator[tuple[date, str, str]], gaps: set[str]) -> list[dict[str, str]]:
    """The episode's sessions on its school days: a day with a mark in either session, or a register gap.

    A session with no mark on such a day is shown as ``-`` (an afternoon register not taken), never
    left out: a day with no mark at all that is not a register gap is a weekend or holiday.
    """
    by_day: dict[date, list[tuple[str, str]]] = {}
    for d, s, c in marks:
        by_day.setdefault(d, []).append((s, c))
    return [{"date": d.isoformat(), "session": s, "code": c} for d, day in by_day.items()
            if d.isoformat() in gaps or any(c != mk.NO_MARK for _s, c in day) for s, c in day]


def child_display_name(doc: Row) -> str:
    c = doc["child"]
    return full_name(c["legal_forename"], c["legal_surname"])
