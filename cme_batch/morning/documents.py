"""The office summary and the DSL digest as documents (rendered by ``cme_batch.report``).

The office summary carries attendance facts: names, year groups, counts, steps and dates, and
no safeguarding flags. The digest carries everything in the summary plus vulnerability,
``immediate_social_care`` alerts first and in red, the cases awaiting the DSL's confirmation
with how to answer, referrals held back, and replies kept for review. Subjects carry the
school, the date and counts, never anything about a child.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from cme_batch.app import in_school_time
from cme_batch.criteria import STAGES
from cme_batch.morning.facts import FLAG_LABEL, KIND_LABEL, NEXT_STEP, STAGE_LABEL, CaseFact, Facts
from cme_batch.report import AMBER, RED, Document, Row, Section


def _d(day: date | None) -> str:
    return day.strftime("%a %d %b %Y") if day else "-"


def data_banners(f: Facts, stale_only: bool = False) -> list[tuple[str, str]]:
    """The banners saying the MIS data behind the morning's emails is not current (``stale_only``: not
    the note that no source is configured; what the office's action emails carry)."""
    out: list[tuple[str, str]] = []
    for s in f.stale_or_failed:
        when = s.last_success.strftime("%d %b %Y %H:%M UTC") if s.last_success else "never"
        if s.registers_at is not None:  # its other reports were read later: absences count from this
            when = f"{s.registers_at:%d %b %Y %H:%M UTC} for its registers (its other reports: {when})"
        why = f" Last error: {s.error}" if s.error else ""
        out.append((RED, f"DATA NOT CURRENT: source '{s.name}' last read successfully {when}.{why} "
                         "Absences since then are not counted here: check the MIS export."))
    for s in f.sources:
        if s.set_aside is not None:
            folder, names = s.set_aside
            out.append((RED, f"NOT IMPORTED: source '{s.name}' refused {len(names)} file(s), set aside in {folder} so that "
                             f"the files after them could be read: {', '.join(names)}. Correct the records named on the "
                             "morning each was refused in the MIS and export again, then delete the file(s) from "
                             "that folder."))
    if not f.sources and not stale_only:
        out.append((AMBER, "No MIS source is configured: only imported files are counted."))
    return out


def subject_counts(f: Facts) -> str:
    calls = sum(1 for c in f.cases if c.office_step == "first_day_call")
    stale = " - DATA NOT CURRENT" if f.stale_or_failed else ""
    return f"{len(f.cases)} open case(s), {calls} first-day call(s){stale}"


def _stage_rows(cases: list[CaseFact], as_of: date, office: bool) -> list[Row]:
    """Each absent child's step, next step and due date; for the office, only what attendance alone says.

    A vulnerable child's case is at the DSL's review from day 1 (DOMAIN.md 5): its step beside
    another child's on the same day would tell the office the child is vulnerable. So the office
    does not get the children still at its own steps (they are on its call lists above, by school
    days alike), nor the reason the DSL gave for a HOLD (a DSL note). A child at its office step's
    school days whose step the office was asked for already in this absence (``CaseFact.office_done``:
    a correction made the absence shorter) is on no call list: the office gets its school days, by
    the office's step alone, and that nothing is asked again.
    """
    rows = []
    for c in cases:
        if office and c.office_step is not None:
            continue
        if office and c.office_done is not None:
            rows.append(Row([f"{c.pupil}, {c.year_group}", f"{STAGE_LABEL[c.office_done]}, day {c.days_absent}",
                             "Office: already asked for this absence (a register correction made it shorter): "
                             "nothing to do again today", "-"]))
            continue
        # read the morning after ``as_of``: a step due by that date is missed, as the digest's
        # "Awaiting your confirmation" says of the same referral (a 10th day that was yesterday)
        overdue = c.next_due is not None and c.next_due <= as_of
        step = "On hold by the DSL" if office and c.held else c.next_step
        missed = [] if office else [NEXT_STEP[STAGES[STAGES.index(x) - 1]][1] for x in c.dsl_not_asked]
        if missed:  # nights caught up: the case went past steps no morning's digest asked for
            step = ("NOT ASKED on any morning before (the nights were caught up): " + "; ".join(missed)
                    + ". Do them now. Then: " + step)
            overdue = True
        if not office and c.referred and c.raised_again:
            # the referrals stage sent the LA the close, then an update that the case is open again
            step = ("Referred; closed by reply (the LA was sent the close), raised again as the register "
                    "still says unexplained: the LA is sent an update that the case is open again")
        rows.append(Row([f"{c.pupil}, {c.year_group}", f"{STAGE_LABEL.get(c.stage or '', c.stage or '-')}, "
                         f"day {c.days_absent}", step, _d(c.next_due) + (" OVERDUE" if overdue else "")],
                        RED if overdue else ""))
    return rows


def _no_stage_rows(absences: list[CaseFact], office: bool) -> str:
    """What "pupils at each step" says when it lists nobody. For the office, the children on its call
    lists are left out of it: "no pupil" would then deny that an absence listed above has gone on
    past the office's steps (a catch-up morning lists children at any day of absence)."""
    if not office:
        return "No pupil has an unexplained absence streak."
    if any(c.office_step is not None for c in absences):
        return "No other pupil has an unexplained absence streak."
    return "No pupil has an unexplained absence streak beyond the office's steps."


def _office_rows(cases: list[CaseFact], step: str) -> list[Row]:
    """The children whose office step (policy III or IV) falls today, by school days, whatever their stage
    (an absence, or a place not taken up: ``facts.office_step``), in class and name order.

    A vulnerable child's DSL review from day 1 is in addition to the office's call and emergency
    contacts, not instead of them; listed in the order of the cases (by stage), its child came
    first every time, which told the office who is vulnerable. A child with no emergency contact
    recorded is said so: the office cannot make the call, and the DSL must know (policy step V).
    """
    due = sorted((c for c in cases if c.office_step == step), key=lambda c: (c.reg_group, c.pupil, c.ref))
    return [Row([c.pupil, c.year_group, c.reg_group, _d(c.streak_start),
                 str(len(c.contacts)) if c.contacts else "none recorded: tell the DSL"]) for c in due]


def _common_sections(f: Facts, office: bool = False) -> list[Section]:
    """The sections both emails share; ``office`` leaves out what only the DSL may see (``_stage_rows``)."""
    absences = f.of_kind("unexplained_absence")
    sections = [
        Section("First-day calls today", ["Pupil", "Year", "Class", "Absent since", "Contacts"],
                _office_rows(f.cases, "first_day_call"),
                intro="Call by 10:00 the parents or carers of each child below who has not reported the absence.",
                empty="No first-day calls."),
        Section("Emergency contacts to try today", ["Pupil", "Year", "Class", "Absent since", "Contacts"],
                _office_rows(f.cases, "contact_all"),
                intro="Still no contact: try every known emergency contact of each child below, at various "
                      "times of the morning.",
                empty="No emergency contacts to try."),
        Section("Unexplained absence: pupils at each step",
                ["Pupil", "Step reached", "Next step", "Due"], _stage_rows(absences, f.as_of, office),
                intro="Pupils on the first-day call and emergency contact lists above are not repeated here."
                      if office else "",
                empty=_no_stage_rows(absences, office)),
        Section("Places not taken up", ["Pupil", "Year", "Agreed first day", "School days", "Referral due"],
                [Row([c.pupil, c.year_group, _d(c.streak_start), str(c.school_days), _d(c.referral_due)])
                 for c in f.of_kind("place_not_taken_up")], empty="None."),
        Section("Left with destination unknown", ["Pupil", "Year", "Left", "Last attended"],
                [Row([c.pupil, c.year_group, _d(c.streak_start), _d(c.last_attended)])
                 for c in f.of_kind("destination_unknown")], empty="None."),
        Section("Repeated missing episodes", ["Pupil", "Year", "Next step"],
                [Row([c.pupil, c.year_group, c.next_step]) for c in f.of_kind("repeat_missing")], empty="None."),
        Section("LA 10-day return: new entries", ["Pupil", "Year", "Unauthorised since", "School days"],
                [Row([r["pupil"], r["year"], _d(r["start"]), str(r["days"])]) for r in f.la_returns],
                intro="Pupils whose unauthorised absence reached 10 school days: list them in the return to the LA.",
                empty="No new entries."),
    ]
    gaps = [Row([c.pupil, c.ref, ", ".join(c.register_gaps)]) for c in f.cases if c.register_gaps]
    gap_section = Section("Register gaps and unknown codes", ["Pupil", "Case", "Days with no mark"], gaps,
                          intro="A missing register never shortens a streak; please complete these registers.",
                          empty="No register gaps in open cases.")
    gap_section.notes = list(f.register_warnings)
    sections.append(gap_section)
    # the office is not told of vulnerability records (a child protection status Arbor gave in a code
    # not read): the DSL is (DOMAIN.md 7: the least data each reader needs)
    listed = [w for w in f.import_warnings if not (office and w[0])]
    shown = listed[:IMPORT_WARNINGS_SHOWN]
    imported = Section(
        "Problems in the data the MIS sent", ["Where", "Problem"],
        [Row([where, what if n == 1 else f"{what} ({n} times)"], AMBER) for _dsl_only, where, what, n in shown],
        intro="Found in the exports imported since the last summary. Nothing here was refused: correct each in "
              "the MIS, so that the next export is right.",
        empty="None.")
    notes = [f"{len(listed) - len(shown)} more: see the import's own report in the log."] if len(listed) > len(shown) else []
    if len(listed) < len(f.import_warnings):
        notes.append(f"{len(f.import_warnings) - len(listed)} about vulnerability records: in the DSL's digest.")
    imported.notes = notes
    sections.append(imported)
    sections.append(Section(
        "Email problems", ["Message", "Problem"],
        [Row([f"#{p.id} {p.purpose}", p.text], RED if p.kind in ("failed", "unknown") else "") for p in f.outbox_problems],
        empty="All email delivered."))
    return sections


def office_document(f: Facts) -> Document:
    return Document(
        title=f"CME summary: {f.school}",
        subtitle=f"Registers as of {_d(f.as_of)}. {subject_counts(f)}.",
        banners=data_banners(f),
        sections=_common_sections(f, office=True),
        footer="Sent by cme-batch for the office. Safeguarding detail goes to the DSL only. "
               "To record a call or a contact, reply to the case's own action email (NOTE <case ref> ...).")


def _how_to_answer(c: CaseFact) -> str:
    return (f"How to answer: reply to the confirmation request email of the case, with the first line "
            f"CONFIRM {c.ref} (or HOLD {c.ref} <reason>, CLOSE {c.ref} <reason>, NOTE {c.ref} <text>). "
            "Keep the subject: its code proves the reply is yours.")


#: The import warnings listed in one summary or digest (the rest are counted).
IMPORT_WARNINGS_SHOWN = 30

#: Replies from other senders than the school's staff listed in one digest (the rest are counted).
REVIEW_OTHERS_SHOWN = 20


def _review_section(replies: list[dict[str, Any]]) -> Section:
    """Every reply kept for review from the DSL, deputy or office, and the first others: a mailbox
    that also receives newsletters, bounces and out-of-office answers must not bury the DSL's."""
    staff = [r for r in replies if r.get("staff", True)]
    others = [r for r in replies if not r.get("staff", True)]
    shown = staff + others[:REVIEW_OTHERS_SHOWN]
    section = Section("Replies kept for review (not acted on)", ["Received", "From", "Case", "Why kept"],
                      [Row([_received(r["received_at"]) if r.get("received_at") else "-",
                            r.get("sender") or "-", r.get("case_ref") or "-", r.get("reason") or ""],
                           RED if r.get("staff", True) else "") for r in shown], empty="None.")
    if len(others) > REVIEW_OTHERS_SHOWN:
        section.notes = [f"{len(others) - REVIEW_OTHERS_SHOWN} more from senders who are not the school's staff "
                         "are kept, unlisted (newsletters, bounces, out-of-office answers: none can act on a case)."]
    return section


def _received(moment: datetime) -> str:
    """When a reply came, by the school's clocks (GMT or BST, said): stored in UTC, it read an hour
    early all summer."""
    return f"{in_school_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC)):%a %d %b %Y %H:%M %Z}"


def _social_care(alerts: list[Any]) -> bool:
    return any((a.get("kind") if isinstance(a, dict) else a) == "immediate_social_care" for a in alerts)


def _vulnerable(flags: list[str], alerts: list[Any]) -> str:
    """What made a child's absence call for Social Care: the flags recorded now, and those the alert
    was raised for (a flag a later export removed is still the reason)."""
    raised = [k for a in alerts if isinstance(a, dict) and a.get("kind") == "immediate_social_care"
              for k in a.get("flags") or []]
    return ", ".join(FLAG_LABEL.get(x, x) for x in dict.fromkeys([*flags, *raised]))


def overdue(f: Facts) -> set[str]:
    """The cases awaiting the DSL's confirmation whose referral was due by the evaluation date.

    The digest is read the morning after its evaluation date: a referral due by that date and not
    confirmed has missed it ("by the 10th day"), though the date is not yet "before" the evaluation."""
    return {c.ref for c in f.cases if c.awaiting_confirmation and c.referral_due is not None
            and c.referral_due <= f.as_of}


def dsl_document(f: Facts, *, update: bool = False, reminder: bool = False) -> Document:
    """The DSL's digest; ``update`` for a further digest of the same date (see ``queue.queue_morning``),
    ``reminder`` for one sent again on a morning with no new school day because a referral is overdue."""
    alerts = [c for c in f.cases if _social_care(c.alerts)]
    # a case that opened and closed between two summaries (nights caught up after the server was
    # off): its alert was never on a morning's digest, and Social Care is still to be told
    alerts_closed = [x for x in f.closed if _social_care(x["alerts"])]
    awaiting = [c for c in f.cases if c.awaiting_confirmation]
    late = overdue(f)
    sections = [
        Section("IMMEDIATE: inform Social Care", ["Pupil", "Year", "Case", "Vulnerability", "Absent since"],
                [*(Row([c.pupil, c.year_group, c.ref, _vulnerable(c.flags, c.alerts), _d(c.streak_start)], RED)
                   for c in alerts),
                 *(Row([x["pupil"], x["year"], x["ref"], _vulnerable([], x["alerts"]),
                        f"{_d(x['episode_start'])} (case closed {_d(x['closed_on'])}: "
                        f"{str(x['reason'] or '').replace('_', ' ')})"], RED) for x in alerts_closed)],
                intro="Child protection plan or looked-after child absent without explanation: inform Social "
                      "Care immediately and follow the safeguarding partnership's procedures."
                      + (" A case closed since the last summary is listed too: its absence was never on a "
                         "morning's digest." if alerts_closed else ""),
                empty="No alerts.", tone=RED if alerts or alerts_closed else ""),
        Section("Awaiting your confirmation", ["Case", "Pupil", "Why", "School days", "Referral due"],
                [Row([c.ref, c.pupil, KIND_LABEL.get(c.kind, c.kind) + (
                      f" (on hold: {c.held or 'no reason given'}; CONFIRM lifts it)" if c.held is not None else "") + (
                      f". {c.raised_again}" if c.raised_again else ""),
                      c.days_shown,
                      _d(c.referral_due) + (" OVERDUE" if c.ref in late else "")],
                     RED if c.ref in late else "") for c in awaiting],
                intro="A referral is never sent without your confirmation. Each case has its own confirmation "
                      "request email: reply to it.",
                empty="No referral is waiting for you.",
                notes=[_how_to_answer(awaiting[0])] if awaiting else []),
        Section("Referrals confirmed but not sent", ["Case", "Pupil", "Why not sent"],
                [Row([c.ref, c.pupil, c.referral_held or ""], RED) for c in f.cases if c.referral_held],
                empty="None."),
        Section("Vulnerability of pupils with open cases", ["Case", "Pupil", "Recorded", "Compulsory school age"],
                [Row([c.ref, c.pupil, ", ".join(FLAG_LABEL.get(x, x) for x in c.flags),
                      {True: "yes", False: "no: below compulsory school age", None: "unknown"}[
                          c.compulsory_school_age]]) for c in f.cases if c.flags or c.compulsory_school_age is False],
                empty="No vulnerability recorded for pupils with open cases."),
        Section("Closed since the last summary", ["Case", "Pupil", "Why", "Opened", "Closed", "Reason"],
                [Row([x["ref"], x["pupil"], KIND_LABEL.get(x["kind"], x["kind"]), _d(x["opened_on"]),
                      _d(x["closed_on"]), str(x["reason"] or "").replace("_", " ")]) for x in f.closed],
                empty="None."),
        _review_section(f.review_replies),
    ]
    banners = data_banners(f)
    if late:
        banners.insert(0, (RED, f"{len(late)} referral(s) past the due date without your confirmation."))
    if reminder:
        banners.insert(1 if late else 0, (RED, "Sent again this morning (no school day since the last digest: a "
                                               "weekend or holiday) because a referral is past its due date without "
                                               "your confirmation: the LA's CME team works through the holidays."))
    if update:
        banners.insert(0, (AMBER, "An update to this morning's digest: the summary ran again and found email "
                                  "problems or replies kept for review that the first digest could not show."))
    if awaiting and not f.confirm_by_reply:
        banners.insert(0, (RED, "Confirmation by reply is not set up (no replies.token_keys in the configuration): "
                                "no referral can be confirmed or sent until the school's IT technician adds one."))
    return Document(
        title=f"CME digest for the DSL: {f.school}",
        subtitle=f"Registers as of {_d(f.as_of)}. {subject_counts(f)}, {len(awaiting)} awaiting confirmation.",
        banners=banners, sections=sections + _common_sections(f),
        footer="Sent by cme-batch to the DSL and deputy DSL only. Do not forward.")
