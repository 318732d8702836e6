"""CME criteria and case decisions (DOMAIN.md 5), on plain facts."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cme_batch import criteria as cr
from cme_batch import schoolcal
from cme_batch.config import CalendarConfig, Term, Thresholds
from cme_batch.streaks import NO_STREAK, PupilStreaks, Streak

TH = Thresholds()
CAL = schoolcal.build(CalendarConfig(terms=(Term(date(2025, 9, 2), date(2025, 12, 19)),),
                                     closures=(date(2025, 11, 3),)), date(2025, 8, 1), date(2026, 1, 31))
AS_OF = date(2025, 11, 14)
CTX = cr.Context(AS_OF, TH, CAL, window_start=date(2024, 8, 1))


def streak(days: int, end: date = AS_OF, gaps: tuple[date, ...] = ()) -> Streak:
    counted = CAL.school_days(date(2025, 9, 1), end)[-days:] if days else []
    return Streak(tuple(counted), gaps)


def facts(days: int = 0, seen: date | None = date(2025, 10, 1), **kw: object) -> cr.PupilFacts:
    s = streak(days)
    return cr.PupilFacts(1, kw.pop("on_roll", True), PupilStreaks(s, s, seen), dob=date(2016, 5, 1), **kw)  # type: ignore[arg-type]


def state(change: cr.Change, case_id: int = 10) -> cr.CaseState:
    """The stored case after a change was applied (as detect would write it)."""
    v = change.values
    return cr.CaseState(case_id, change.kind, v["status"], v["stage"], v["episode_start"], v["opened_on"],
                        v["school_days"], v["last_attended"], v["referral_due"], tuple(v["register_gaps"]),
                        tuple(v["alerts"]), v["compulsory_school_age"])


@pytest.mark.parametrize(("days", "stage"), [(0, None), (1, "first_day_call"), (2, "contact_all"), (3, "dsl_review"),
                                              (4, "dsl_review"), (5, "home_visit"), (7, "home_visit"),
                                              (8, "referral_prepare"), (9, "referral_prepare"), (10, "referral_due"),
                                              (25, "referral_due")])
def test_stages_follow_the_policy_days(days: int, stage: str | None) -> None:
    assert cr.stage_for(days, TH) == stage


def test_vulnerable_groups_reach_dsl_review_on_day_one_and_thresholds_come_from_config() -> None:
    assert [cr.stage_for(d, TH, early_dsl=True) for d in (1, 2, 4, 5)] == [
        "dsl_review", "dsl_review", "dsl_review", "home_visit"]
    quick = Thresholds(first_day_call=1, contact_all=1, dsl_review=2, home_visit=2, referral_prepare=3, referral_due=4)
    assert [cr.stage_for(d, quick) for d in (1, 2, 3, 4)] == ["contact_all", "home_visit", "referral_prepare",
                                                              "referral_due"]


@pytest.mark.parametrize(("dob", "start"), [
    (date(2020, 9, 15), date(2025, 12, 31)),  # fifth birthday in the autumn
    (date(2020, 1, 10), date(2025, 3, 31)),  # in the spring
    (date(2020, 4, 1), date(2025, 8, 31)),  # in the summer
    (date(2020, 3, 31), date(2025, 3, 31)),  # on the prescribed day itself
    (date(2020, 12, 31), date(2025, 12, 31)),
    (date(2020, 11, 2), date(2025, 12, 31)),
    (date(2021, 2, 28), date(2026, 3, 31)),
])
def test_compulsory_school_age_starts_on_the_next_prescribed_day(dob: date, start: date) -> None:
    assert cr.compulsory_school_age_start(dob) == start
    assert cr.compulsory_school_age(dob, start) is True
    assert cr.compulsory_school_age(dob, start - timedelta(days=1)) is False


def test_a_leap_day_birthday_and_an_unknown_birthday() -> None:
    assert cr.compulsory_school_age_start(date(2020, 2, 29)) == date(2025, 3, 31)  # fifth birthday on 1 March
    assert cr.compulsory_school_age(None, AS_OF) is None


@pytest.mark.parametrize(("destination", "reason", "unknown"), [
    (None, None, True), ("", "Moved away", True), ("MMM", None, True), ("unknown", None, True),
    ("St Mary's CE Primary", None, False), ("916/2001", "Transferred", False),
    ("Elsewhere", "Whereabouts unknown", True), ("Elsewhere", "left the country, destination not known", True),
    # placeholders as MISs and people write them: before, each read as a known destination, so a
    # leaver with none never had a "destination unknown" case
    ("MMMMMMM", None, True), ("MMM/MMMM", None, True), ("XXX XXXX", None, True), ("-", None, True),
    ("?", None, True), ("...", None, True), ("Not recorded", None, True), ("TBC", None, True),
    ("to be confirmed", None, True), ("not yet known", None, True), ("Nil", None, True),
    # real destinations, including ones with an M or X in them
    ("Mix Lane Academy", None, False), ("Max Primary", None, False), ("MMX Academy Trust school", None, False),
    ("Tbilisi International School", None, False), ("X1", None, False),
    # what schools type for "not known" in any MIS (the SIMS adapter's own list read these, the CTF
    # and Arbor ones did not): each was a known destination, so the leaver never had a case
    ("N/K", None, True), ("nk", None, True), ("Not applicable", None, True), ("Not stated.", None, True),
    ("CME", None, True), ("Lost Pupil", None, True), ("Lost pupils database", None, True),
    ("No forwarding address", None, True), ("Abroad", "No forwarding address", True),
    ("Abroad", "Referred to CME", True), ("Elsewhere", "lost pupil", True),
    ("Acme Primary", None, False), ("Nkosi Academy", None, False), ("St Mary's CE Primary", "Not applicable", False),
    # whole destinations that name no school (fifteenth session): each was a known destination, so a
    # child gone where nobody could check never had a case
    ("Other", None, True), ("Another school", "Moved house", True), ("another  school.", None, True),
    ("New school", None, True), ("Moved away", None, True), ("Out of area", None, True), ("Abroad", None, True),
    ("Moved abroad", "Not applicable", True), ("Emigrated", None, True),
    # ... not a destination that names one, or says where the child is educated
    ("Another School Academy", None, False), ("New School Lane Primary", None, False),
    ("Elective home education", None, False), ("Overseas International School, Dubai", None, False),
])
def test_destination_unknown(destination: str | None, reason: str | None, unknown: bool) -> None:
    assert cr.destination_unknown(destination, reason) is unknown


def test_the_first_day_opens_a_case_with_the_due_date_of_the_tenth_day() -> None:
    [ch] = cr.decide(facts(1), [], CTX)
    assert (ch.action, ch.kind, ch.case_id) == ("open", "unexplained_absence", None)
    v = ch.values
    assert (v["stage"], v["school_days"], v["episode_start"], v["status"]) == ("first_day_call", 1, AS_OF, "open")
    assert v["referral_due"] == date(2025, 11, 27)  # nine school days after Friday 14 November
    assert v["compulsory_school_age"] is True and v["alerts"] == []
    assert [e.kind for e in ch.events] == ["opened"] and ch.events[0].evidence_from == AS_OF


def test_the_due_date_of_a_long_streak_is_its_tenth_day() -> None:
    [ch] = cr.decide(facts(12), [], CTX)
    assert ch.values["referral_due"] == streak(12).counted[9]
    assert ch.values["stage"] == "referral_due"


def test_nothing_changes_when_nothing_changed() -> None:
    [ch] = cr.decide(facts(3), [], CTX)
    assert cr.decide(facts(3), [state(ch)], CTX) == []


def test_a_child_protection_plan_raises_the_social_care_alert_once() -> None:
    f = facts(1, flags=frozenset({"child_protection_plan"}))
    [ch] = cr.decide(f, [], CTX)
    assert [e.kind for e in ch.events] == ["opened", "alert"]
    assert ch.values["stage"] == "dsl_review"
    [alert] = ch.values["alerts"]
    assert alert["kind"] == "immediate_social_care" and alert["flags"] == ["child_protection_plan"]
    assert "Social Care immediately" in alert["action"]
    assert cr.decide(f, [state(ch)], CTX) == []


def test_an_alert_is_raised_when_a_flag_arrives_during_a_case() -> None:
    [ch] = cr.decide(facts(2), [], CTX)
    [upd] = cr.decide(facts(2, flags=frozenset({"looked_after"})), [state(ch)], CTX)
    assert [e.kind for e in upd.events] == ["stage", "alert"]  # and dsl_review comes forward
    assert upd.values["stage"] == "dsl_review" and upd.values["alerts"][0]["flags"] == ["looked_after"]


def test_other_vulnerable_groups_move_dsl_review_to_day_one_without_an_alert() -> None:
    [ch] = cr.decide(facts(1, flags=frozenset({"young_carer"})), [], CTX)
    assert ch.values["stage"] == "dsl_review" and ch.values["alerts"] == []
    [plain] = cr.decide(facts(1, flags=frozenset({"sen_support"})), [], CTX)
    assert plain.values["stage"] == "first_day_call"


def test_the_streak_breaks_closes_returned_or_explained() -> None:
    [ch] = cr.decide(facts(4, seen=date(2025, 11, 7)), [], CTX)
    case = state(ch)
    [back] = cr.decide(facts(0, seen=AS_OF), [case], CTX)
    assert (back.action, back.values["closed_reason"], back.values["closed_on"]) == ("close", "returned", AS_OF)
    [expl] = cr.decide(facts(0, seen=date(2025, 11, 7)), [case], CTX)
    assert expl.values["closed_reason"] == "explained"


def test_a_new_episode_after_a_break_is_a_new_case() -> None:
    [ch] = cr.decide(facts(4), [], CTX)
    old = state(ch)
    later = cr.PupilFacts(1, True, PupilStreaks(streak(2), streak(2), date(2025, 11, 12)), dob=date(2016, 5, 1))
    assert streak(2).start is not None and old.episode_start is not None and streak(2).start > old.episode_start
    close, new = cr.decide(later, [old], CTX)
    assert (close.action, close.values["closed_reason"]) == ("close", "returned")
    assert (new.action, new.values["episode_start"], new.values["school_days"]) == ("open", streak(2).start, 2)


def test_a_case_detect_closed_is_reopened_when_the_same_episode_comes_back() -> None:
    [ch] = cr.decide(facts(4), [], CTX)
    closed = cr.CaseState(**{**state(ch).__dict__, "status": "closed", "closed_reason": "explained"})
    [re] = cr.decide(facts(4), [closed], CTX)  # the explanation was a mistake, corrected back to N
    assert re.action == "reopen" and re.case_id == 10 and re.values == {"status": "open", "closed_on": None,
                                                                         "closed_reason": None, "alerts": []}
    assert re.events[0].kind == "reopened" and re.events[0].detail["previous_reason"] == "explained"
    [longer] = cr.decide(facts(5), [closed], CTX)  # an earlier day corrected to N: still the same episode
    assert longer.action == "reopen" and longer.values["episode_start"] == streak(5).start
    by_dsl = cr.CaseState(**{**closed.__dict__, "closed_reason": "dsl: not missing, family abroad"})
    assert cr.decide(facts(5), [by_dsl], CTX) == []  # the DSL's decision stands for this episode


def test_an_absence_a_person_closed_is_raised_again_at_the_criterion_day_keeping_a_sent_referrals_confirmation(
        ) -> None:
    [ch] = cr.decide(facts(4), [], CTX)
    by_dsl = cr.CaseState(**{**state(ch).__dict__, "status": "closed", "closed_reason": "closed_by_dsl"})
    assert cr.decide(facts(9), [by_dsl], CTX) == []
    [re] = cr.decide(facts(10), [by_dsl], CTX)
    assert (re.action, re.values["status"], re.values["stage"]) == ("reopen", "open", "referral_due")
    assert re.values["confirmed_at"] is None and re.values["hold_reason"] is None  # to be decided afresh
    assert (re.events[0].detail["unexplained_days_at_close"], re.events[0].detail["raised_again_at"]) == (4, 10)
    # closed again on its 12th day: raised again on the 22nd; a referral already sent keeps its confirmation
    [ch12] = cr.decide(facts(12), [], CTX)
    sent = cr.CaseState(**{**state(ch12).__dict__, "status": "closed", "closed_reason": "closed_by_dsl",
                           "referred": True})
    assert cr.decide(facts(21), [sent], CTX) == []
    [again] = cr.decide(facts(22), [sent], CTX)
    assert again.action == "reopen" and "confirmed_at" not in again.values
    # the other kinds stay closed: their facts do not grow
    pntu = cr.CaseState(**{**by_dsl.__dict__, "kind": cr.PLACE_NOT_TAKEN_UP})
    assert cr.raised_again_at(pntu, TH) is None


def test_a_stage_never_moves_back() -> None:
    [ch] = cr.decide(facts(6), [], CTX)
    [upd] = cr.decide(facts(6, seen=date(2025, 10, 1)).__class__(
        1, True, PupilStreaks(Streak(streak(6).counted[:1] + streak(6).counted[2:]), NO_STREAK, date(2025, 10, 1)),
        dob=date(2016, 5, 1)), [state(ch)], CTX)
    assert "stage" not in upd.values and upd.values["school_days"] == 5


def test_place_not_taken_up_opens_at_referral_prepare_and_takes_precedence() -> None:
    f = facts(3, seen=None, admission_date=date(2025, 11, 12))
    [ch] = cr.decide(f, [], CTX)
    assert (ch.kind, ch.values["stage"], ch.values["episode_start"]) == ("place_not_taken_up", "referral_prepare",
                                                                          date(2025, 11, 12))
    assert ch.values["referral_due"] == AS_OF and ch.values["school_days"] == 3
    assert ch.events[0].detail["admission_date"] == "2025-11-12"
    # an unexplained case already open for the child is superseded
    [ua] = cr.decide(facts(3, seen=None), [], CTX)
    changes = cr.decide(f, [state(ua, 11)], CTX)
    assert [(c.action, c.kind) for c in changes] == [("open", "place_not_taken_up"), ("close", "unexplained_absence")]
    assert changes[1].values["closed_reason"] == "superseded"


def test_place_not_taken_up_closes_when_the_child_attends_or_the_admission_is_withdrawn() -> None:
    f = facts(3, seen=None, admission_date=date(2025, 11, 12))
    [ch] = cr.decide(f, [], CTX)
    [att] = cr.decide(facts(0, seen=AS_OF, admission_date=date(2025, 11, 12)), [state(ch)], CTX)
    assert att.values["closed_reason"] == "attended"
    [wd] = [c for c in cr.decide(facts(3, seen=None, admission_date=date(2025, 11, 12), admission_withdrawn=True),
                                 [state(ch)], CTX) if c.kind == "place_not_taken_up"]
    assert wd.values["closed_reason"] == "withdrawn"


def test_an_admission_older_than_the_marks_read_is_not_judged() -> None:
    ctx = cr.Context(AS_OF, TH, CAL, window_start=date(2025, 8, 1))
    assert cr.decide(facts(0, seen=None, admission_date=date(2023, 9, 4)), [], ctx) == []


def test_destination_unknown_opens_and_closes_when_a_destination_is_recorded() -> None:
    f = facts(0, on_roll=False, leaving_date=date(2025, 11, 10), leaving_reason="Moved, whereabouts unknown")
    [ch] = cr.decide(f, [], CTX)
    assert (ch.kind, ch.values["stage"], ch.values["episode_start"]) == ("destination_unknown", "referral_prepare",
                                                                          date(2025, 11, 10))
    assert ch.events[0].evidence_from is None
    known = facts(0, on_roll=False, leaving_date=date(2025, 11, 10), destination="St Mary's")
    [done] = cr.decide(known, [state(ch)], CTX)
    assert (done.action, done.values["closed_reason"]) == ("close", "destination_known")


def test_a_destination_proved_false_by_an_edited_leaving_reason_raises_the_case_again() -> None:
    """Fifteenth session: the school named in a destination says the child never came; the office edits
    the leaving reason to say so and leaves the destination as it was."""
    leaving, named = date(2025, 11, 10), "St Mary's"

    def du(**kw: object) -> cr.PupilFacts:
        return facts(0, on_roll=False, leaving_date=leaving, **kw)

    def closed(opened_destination: str | None, reason: str | None, known: bool = True) -> cr.CaseState:
        return cr.CaseState(10, cr.DESTINATION_UNKNOWN, "closed", "referral_prepare", leaving, leaving,
                            closed_reason="destination_known", closed_on=AS_OF, opened_destination=opened_destination,
                            opened_reason=reason, opened_reason_known=known)

    false = du(destination=named, leaving_reason="Did not arrive at St Mary's: whereabouts unknown")
    [again] = cr.decide(false, [closed(None, "Moved house")], CTX)
    assert again.action == "reopen" and again.events[0].detail["leaving_reason"].startswith("Did not arrive")
    # the reason the case opened with, left as it was, still says unknown: the destination closes it
    kept = du(destination=named, leaving_reason="Moved, whereabouts unknown")
    assert cr.decide(kept, [closed(None, "Moved, whereabouts unknown")], CTX) == []
    # ... and so does one whose opening did not record the reason (cases opened before it did)
    assert cr.decide(false, [closed(None, None, known=False)], CTX) == []
    # reopened with St Mary's and the edited reason: a new destination closes it again
    reopened = cr.CaseState(**{**closed(named, false.leaving_reason).__dict__, "status": "open",
                               "closed_reason": None, "closed_on": None})
    assert all(c.action != "close" for c in cr.decide(false, [reopened], CTX))
    [done] = cr.decide(du(destination="St John's", leaving_reason=false.leaving_reason), [reopened], CTX)
    assert (done.action, done.values["closed_reason"]) == ("close", "destination_known")


def test_leaving_closes_an_unexplained_case() -> None:
    [ch] = cr.decide(facts(4), [], CTX)
    changes = cr.decide(facts(0, on_roll=False, leaving_date=AS_OF, destination="St Mary's"), [state(ch)], CTX)
    assert [(c.action, c.values.get("closed_reason")) for c in changes] == [("close", "left")]


def test_repeat_missing_after_three_short_episodes_and_only_once_for_them() -> None:
    eps = tuple(Streak(tuple(CAL.school_days(s, s + timedelta(days=1)))) for s in
                (date(2025, 9, 15), date(2025, 10, 6), date(2025, 11, 10)))
    f = facts(0, repeat_episodes=eps)
    [ch] = cr.decide(f, [], CTX)
    assert (ch.kind, ch.values["stage"], ch.values["episode_start"]) == ("repeat_missing", "dsl_review",
                                                                          date(2025, 11, 10))
    assert ch.events[0].detail["episodes"][0] == {"start": "2025-09-15", "school_days": 2}
    closed_by_dsl = cr.CaseState(**{**state(ch).__dict__, "status": "closed", "closed_reason": "dsl",
                                    "opened_on": date(2025, 11, 11), "closed_on": date(2025, 11, 11)})
    assert cr.decide(f, [closed_by_dsl], CTX) == []  # the same three episodes do not open it again
    fourth = Streak(tuple(CAL.school_days(date(2025, 11, 12), date(2025, 11, 13))))
    [again] = cr.decide(facts(0, repeat_episodes=(*eps[1:], fourth)), [closed_by_dsl], CTX)
    assert again.action == "open" and again.values["episode_start"] == date(2025, 11, 12)
    # a correction moving the newest reviewed episode's start is no new episode
    moved = Streak(tuple(CAL.school_days(date(2025, 11, 11), date(2025, 11, 12))))
    assert cr.decide(facts(0, repeat_episodes=(*eps[:2], moved)), [closed_by_dsl], CTX) == []
    short = tuple(Streak(e.counted[:1]) for e in eps)
    assert cr.decide(facts(0, repeat_episodes=short), [], CTX) == []  # one-day episodes do not count


def test_an_impossible_date_of_birth_counts_as_unknown_not_a_crash() -> None:
    from cme_batch.criteria import compulsory_school_age

    assert compulsory_school_age(date(9999, 12, 31), date(2025, 12, 1)) is None
    assert compulsory_school_age(date(2019, 5, 1), date(2025, 12, 1)) is True


def test_a_case_older_than_the_marks_read_goes_on_with_its_own_start_and_due_date() -> None:
    """A streak running since before the strips detect read (a child absent for over a year)
    is the case's own episode: not closed as explained, its start and due date kept."""
    [opened] = cr.decide(facts(10), [], CTX)
    old = cr.CaseState(**{**state(opened).__dict__, "episode_start": date(2024, 6, 3), "school_days": 250,
                          "referral_due": date(2024, 6, 14)})
    cut = streak(30)  # all the marks read show: no break, the walk ran out of marks
    later = cr.PupilFacts(1, True, PupilStreaks(cut, cut, None, complete=False), dob=date(2016, 5, 1))
    [change] = cr.decide(later, [old], CTX)
    assert change.action == "update"
    assert "episode_start" not in change.values and "referral_due" not in change.values
    assert change.values.get("school_days", 250) == 250
