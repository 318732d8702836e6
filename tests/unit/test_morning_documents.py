"""The morning emails: what the office sees, what only the DSL sees, and subjects without children."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cme_batch.config import Thresholds
from cme_batch.mail.outbox import Problem
from cme_batch.morning import documents
from cme_batch.morning.facts import CaseFact, Facts, SourceFact, office_step
from cme_batch.report import render_html, render_text

AS_OF = date(2025, 12, 1)
NOW = datetime(2025, 12, 2, 5, 30, tzinfo=UTC)


def _case(ref: str, kind: str, stage: str | None, pupil: str, days: int, **kw: object) -> CaseFact:
    base = dict(id=int(ref[-4:]), ref=ref, kind=kind, stage=stage, pupil=pupil, year_group="Year 3",
                reg_group="3B", school_days=days, streak_start=date(2025, 11, 17), last_attended=date(2025, 11, 14),
                referral_due=date(2025, 11, 28), register_gaps=[], alerts=[], flags=[], confirmed=False, held=None,
                referral_held=None, referred=False, compulsory_school_age=True, next_step="do it",
                next_due=date(2025, 12, 2), office_step=office_step(kind, days, Thresholds()))
    base.update(kw)
    return CaseFact(**base)  # type: ignore[arg-type]


def _facts(**kw: object) -> Facts:
    cases = [
        _case("CME-2025-0001", "unexplained_absence", "first_day_call", "Amara Okafor", 1),
        _case("CME-2025-0002", "unexplained_absence", "referral_prepare", "Tobias Wren", 9,
              flags=["child_protection_plan"], alerts=[{"kind": "immediate_social_care"}],
              register_gaps=["2025-11-20"]),
        _case("CME-2025-0003", "place_not_taken_up", "referral_prepare", "Lena Frost", 4),
        _case("CME-2025-0004", "unexplained_absence", "home_visit", "Milo Hart", 6, next_due=date(2025, 11, 27)),
    ]
    base = dict(school="The John Moore Primary School", as_of=AS_OF, generated_at=NOW,
                sources=[SourceFact("sims", NOW, False, None)], cases=cases, la_returns=[],
                register_warnings=["unknown code '!' on 2 sessions"])
    base.update(kw)
    return Facts(**base)  # type: ignore[arg-type]


def test_office_summary_has_names_but_no_safeguarding_flags() -> None:
    doc = documents.office_document(_facts())
    text, page = render_text(doc), render_html(doc)
    for out in (text, page):
        assert "Amara Okafor" in out and "Year 3" in out
        assert "child protection" not in out.lower() and "social care" not in out.lower()
    assert "First-day calls today" in text and text.index("Amara Okafor") < text.index("Unexplained absence")
    assert "2025-11-20" in text and "unknown code '!'" in text


def test_digest_puts_social_care_alerts_first_in_red() -> None:
    doc = documents.dsl_document(_facts())
    assert doc.sections[0].title.startswith("IMMEDIATE") and doc.sections[0].rows[0].tone == "red"
    text = render_text(doc)
    assert text.index("IMMEDIATE") < text.index("Awaiting your confirmation") < text.index("First-day calls")
    assert "child protection plan" in text
    page = render_html(doc)
    assert "#b00020" in page and "Tobias Wren" in page


def test_digest_marks_overdue_confirmations_and_says_how_to_answer() -> None:
    doc = documents.dsl_document(_facts())
    awaiting = next(s for s in doc.sections if s.title == "Awaiting your confirmation")
    refs = [r.cells[0] for r in awaiting.rows]
    assert refs == ["CME-2025-0002", "CME-2025-0003"]
    assert all("OVERDUE" in r.cells[-1] and r.tone == "red" for r in awaiting.rows)
    assert any("CONFIRM CME-2025-0002" in n for n in awaiting.notes)  # the first awaiting case as the example
    assert doc.banners[0] == ("red", "2 referral(s) past the due date without your confirmation.")


def test_a_referral_due_on_the_evaluation_date_is_overdue_when_the_digest_is_read() -> None:
    """The digest for Monday's registers is read on Tuesday: a referral due on Monday and not
    confirmed has missed its day (DOMAIN: referral by the 10th day)."""
    due_yesterday = _case("CME-2025-0005", "unexplained_absence", "referral_due", "Ivy Marsh", 10,
                          referral_due=AS_OF)
    due_today = _case("CME-2025-0006", "unexplained_absence", "referral_prepare", "Noah Pike", 9,
                      referral_due=AS_OF + timedelta(days=1))
    doc = documents.dsl_document(_facts(cases=[due_yesterday, due_today]))
    awaiting = next(s for s in doc.sections if s.title == "Awaiting your confirmation")
    late, not_yet = awaiting.rows
    assert late.cells[-1].endswith("OVERDUE") and late.tone == "red"
    assert "OVERDUE" not in not_yet.cells[-1] and not_yet.tone == ""
    assert doc.banners[0] == ("red", "1 referral(s) past the due date without your confirmation.")


def test_the_step_table_says_overdue_of_the_referral_the_confirmation_table_calls_overdue() -> None:
    """The demo's digest showed one child's referral due on the evaluation date as OVERDUE in red
    under "Awaiting your confirmation", and as on time (no mark, no red) in "pupils at each step"."""
    due_yesterday = _case("CME-2025-0005", "unexplained_absence", "referral_due", "Ivy Marsh", 10,
                          referral_due=AS_OF, next_due=AS_OF)
    later = _case("CME-2025-0006", "unexplained_absence", "home_visit", "Noah Pike", 5,
                  next_due=AS_OF + timedelta(days=1))
    doc = documents.dsl_document(_facts(cases=[due_yesterday, later]))
    steps = next(s for s in doc.sections if s.title == "Unexplained absence: pupils at each step")
    late, not_yet = steps.rows
    assert late.cells[-1].endswith("OVERDUE") and late.tone == "red"
    assert "OVERDUE" not in not_yet.cells[-1] and not_yet.tone == ""


def test_the_office_is_not_told_no_pupil_is_past_its_steps_when_its_lists_hold_one() -> None:
    """A catch-up morning asks the office to try the contacts of a child absent for weeks; the steps
    table leaves that child out (listed above), and must not then say no pupil is past the office's steps."""
    weeks = _case("CME-2025-0009", "unexplained_absence", "referral_due", "Leo Nowak", 29,
                  office_step="contact_all")
    text = render_text(documents.office_document(_facts(cases=[weeks])))
    assert "Leo Nowak" in text and "beyond the office's steps" not in text
    assert "No other pupil has an unexplained absence streak." in text
    alone = render_text(documents.office_document(_facts(cases=[])))
    assert "No pupil has an unexplained absence streak beyond the office's steps." in alone


def test_a_leaver_with_no_known_destination_shows_no_school_days_count() -> None:
    """Their absence is not counted (no longer on roll): "0" read as "not absent at all"."""
    left = _case("CME-2025-0007", "destination_unknown", "referral_prepare", "Ada Vale", 0, referral_due=AS_OF)
    doc = documents.dsl_document(_facts(cases=[left]))
    (row,) = next(s for s in doc.sections if s.title == "Awaiting your confirmation").rows
    assert row.cells[3] == "-"


def test_the_confirmation_table_counts_days_as_the_steps_do_with_the_days_of_no_register_said() -> None:
    """The step table said "day 10" and the confirmation table "9" for one child (one day had no register)."""
    gap = _case("CME-2025-0008", "unexplained_absence", "referral_due", "Ivy Marsh", 9,
                streak_start=date(2025, 11, 17), register_gaps=["2025-11-20"])
    doc = documents.dsl_document(_facts(cases=[gap]))
    (row,) = next(s for s in doc.sections if s.title == "Awaiting your confirmation").rows
    assert row.cells[3] == "10 (1 with no register)"
    assert "day 10" in render_text(doc)


def test_stale_source_is_a_red_banner_in_both() -> None:
    facts = _facts(sources=[SourceFact("sims", None, True, "no export newer than 26 hours")])
    for doc in (documents.office_document(facts), documents.dsl_document(facts)):
        assert any(tone == "red" and "DATA NOT CURRENT" in text and "no export newer" in text
                   for tone, text in doc.banners)
    assert "DATA NOT CURRENT" in documents.subject_counts(facts)


def test_overdue_next_step_and_outbox_problems_are_shown() -> None:
    problem = Problem(7, "failed", "summary", None, "<x@school.example>", "550 mailbox unavailable")
    doc = documents.office_document(_facts(outbox_problems=[problem]))
    text = render_text(doc)
    assert "!! Milo Hart" in text and "OVERDUE" in text
    assert "   Tobias Wren" in text  # unflagged rows keep the columns aligned
    assert "550 mailbox unavailable" in text and "--requeue 7" in text


def test_a_message_held_with_an_unknown_outcome_is_shown_in_red_like_a_failure() -> None:
    held = Problem(8, "unknown", "referral", 3, "<y@school.example>", "sent the whole message but gave no answer")
    text = render_text(documents.office_document(_facts(outbox_problems=[held])))
    assert "!! #8 referral" in text and "may or may not have arrived" in text


def test_subject_counts_carry_no_child() -> None:
    subject = documents.subject_counts(_facts())
    assert subject == "4 open case(s), 1 first-day call(s)"


def test_html_escapes_what_it_shows() -> None:
    facts = _facts(cases=[_case("CME-2025-0009", "unexplained_absence", "first_day_call", "<b>Evil</b>", 1)])
    page = render_html(documents.office_document(facts))
    assert "<b>Evil</b>" not in page and "&lt;b&gt;Evil&lt;/b&gt;" in page


def test_digest_says_when_confirmation_by_reply_is_not_set_up() -> None:
    doc = documents.dsl_document(_facts(confirm_by_reply=False))
    assert doc.banners[0][0] == "red" and "replies.token_keys" in doc.banners[0][1]
    assert not any("token_keys" in text for _, text in documents.dsl_document(_facts()).banners)


def test_the_office_step_goes_by_school_days_whatever_the_stage() -> None:
    th = Thresholds()
    assert [office_step("unexplained_absence", n, th) for n in (0, 1, 2, 3, 9)] == [
        None, "first_day_call", "contact_all", None, None]
    # a child who has not come on the agreed first day is absent too: the office calls and tries contacts
    assert [office_step("place_not_taken_up", n, th) for n in (1, 2, 3)] == ["first_day_call", "contact_all", None]
    assert office_step("destination_unknown", 1, th) is None and office_step("repeat_missing", 1, th) is None
    assert office_step("unexplained_absence", 2, Thresholds(contact_all=3, dsl_review=4)) == "first_day_call"


def test_a_vulnerable_child_at_dsl_review_is_on_the_office_lists_without_saying_why() -> None:
    carer = _case("CME-2025-0011", "unexplained_absence", "dsl_review", "Yusuf Carter", 1, flags=["young_carer"])
    cp = _case("CME-2025-0012", "unexplained_absence", "dsl_review", "Poppy Stone", 2,
               flags=["child_protection_plan"], alerts=[{"kind": "immediate_social_care"}])
    facts = _facts(cases=[carer, cp])
    doc = documents.office_document(facts)
    rows = {s.title: [r.cells[0] for r in s.rows] for s in doc.sections}
    assert rows["First-day calls today"] == ["Yusuf Carter"]
    assert rows["Emergency contacts to try today"] == ["Poppy Stone"]
    assert documents.subject_counts(facts) == "2 open case(s), 1 first-day call(s)"
    text = render_text(doc).lower()
    assert "young carer" not in text and "child protection" not in text and "social care" not in text
    digest = documents.dsl_document(facts)  # the DSL side as it was: the alert first, the flags shown
    assert digest.sections[0].rows[0].cells[0] == "Poppy Stone" and "young carer" in render_text(digest)


def test_the_office_cannot_tell_a_vulnerable_child_from_another_absent_as_long() -> None:
    """A child protection plan puts the case at DSL review from day 1: the office sees the same as for any child."""
    plain = _case("CME-2025-0021", "unexplained_absence", "first_day_call", "Ada Lowe", 1,
                  next_step="Office: try every emergency contact", next_due=date(2025, 12, 2))
    cp = _case("CME-2025-0021", "unexplained_absence", "dsl_review", "Ada Lowe", 1,
               flags=["child_protection_plan"], alerts=[{"kind": "immediate_social_care"}],
               next_step="DSL: home visit within 5 school days", next_due=date(2025, 12, 8))
    office = [render_text(documents.office_document(_facts(cases=[c]))) for c in (plain, cp)]
    assert office[0] == office[1] and "Ada Lowe" in office[1]
    assert "DSL review" not in office[1] and "home visit" not in office[1]
    assert "3 DSL review, day 1" in render_text(documents.dsl_document(_facts(cases=[cp])))


def test_the_dsl_reason_for_a_hold_stays_out_of_the_office_summary() -> None:
    reason = "On hold by the DSL: social worker says the family is in a refuge"
    held = _case("CME-2025-0031", "unexplained_absence", "home_visit", "Ben Ives", 6, held="social worker says the "
                 "family is in a refuge", next_step=reason)
    office = render_text(documents.office_document(_facts(cases=[held])))
    assert "Ben Ives" in office and "On hold by the DSL" in office and "refuge" not in office
    assert reason in render_text(documents.dsl_document(_facts(cases=[held])))


def test_a_flood_of_other_mail_kept_for_review_does_not_bury_the_staffs_replies() -> None:
    from datetime import datetime

    at = datetime(2025, 11, 20, 7, 0)
    junk = [{"received_at": at, "sender": f"news{i}@shop.example", "case_ref": None, "reason": "no token",
             "staff": False} for i in range(500)]
    dsl = {"received_at": at, "sender": "dsl@school.example", "case_ref": "CME-2025-0009",
           "reason": "HTML only", "staff": True}
    text = render_text(documents.dsl_document(_facts(review_replies=[*junk, dsl])))
    section = text.split("Replies kept for review (not acted on)", 1)[1]
    assert "dsl@school.example" in section and "CME-2025-0009" in section
    assert section.count("@shop.example") == documents.REVIEW_OTHERS_SHOWN
    assert "480 more from senders who are not the school's staff" in section


def test_import_warnings_about_vulnerability_records_go_to_the_dsl_alone() -> None:
    """The night's import warnings are in both emails, but one about a vulnerability record (a child
    protection status in a code not read) only in the DSL's digest: the office is told one is there."""
    f = _facts(import_warnings=[
        (False, "sims: pupils.xml record 4", "UPN: the check letter does not match the rest of the UPN", 1),
        (True, "arbor: arbor vulnerability statuses",
         "Arbor ChildProtectionStatusAssignment 77 has status code 'XX': no child protection flag raised", 2)])
    office, digest = render_text(documents.office_document(f)), render_text(documents.dsl_document(f))
    assert "check letter does not match" in office and "check letter does not match" in digest
    assert "ChildProtectionStatusAssignment 77" in digest and "(2 times)" in digest
    assert "ChildProtectionStatusAssignment" not in office and "child protection" not in office.lower()
    assert "1 about vulnerability records: in the DSL's digest" in office
