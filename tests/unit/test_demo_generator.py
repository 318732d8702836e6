"""The demo school generator: realistic, reproducible, fictional, and with every planted case in it."""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest

from cme_batch import upn
from cme_batch.config import parse
from cme_batch.demo import DemoSchool, generate, term
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord

Marks = dict[str, dict[date, tuple[str, str]]]


@pytest.fixture(scope="module")
def school() -> DemoSchool:
    return generate()


def of(school: DemoSchool, kind: type) -> list:
    return [r for r in school.records if isinstance(r, kind)]


def marks_by_day(records: list) -> Marks:
    """pupil_key -> date -> (AM, PM), only for days a record says something about."""
    out: Marks = defaultdict(dict)
    for r in records:
        if isinstance(r, MarksRecord):
            for i in range(0, len(r.codes), 2):
                am, pm = r.codes[i], r.codes[i + 1] if i + 1 < len(r.codes) else ""
                if am or pm:
                    out[r.pupil_key][r.start + timedelta(days=i // 2)] = (am, pm)
    return out


def role(school: DemoSchool, name: str) -> str:
    return next(c.pupil_key for c in school.planted if c.role == name)


def test_same_seed_same_school_and_another_seed_another() -> None:
    a, b, c = generate(7, 120), generate(7, 120), generate(8, 120)
    assert a.records == b.records and a.planted == b.planted and a.corrections == b.corrections
    assert a.records != c.records


def test_about_420_pupils_from_reception_to_year_6(school: DemoSchool) -> None:
    pupils = of(school, PupilRecord)
    assert len(pupils) == 420
    assert len({p.pupil_key for p in pupils}) == 420
    assert all(re.fullmatch(r"ADNO\d{4}", p.pupil_key) for p in pupils)
    years = Counter(p.year_group for p in pupils)
    assert set(years) == {"R", "1", "2", "3", "4", "5", "6"}
    assert all(55 <= n <= 65 for n in years.values())
    # Dates of birth fit the year group: Reception children were born 2020-09-01..2021-08-31.
    assert all(date(2020, 9, 1) <= p.dob <= date(2021, 8, 31) for p in pupils if p.year_group == "R")


def test_every_upn_is_valid_and_unique(school: DemoSchool) -> None:
    upns = [p.upn for p in of(school, PupilRecord)]
    assert all(u and upn.is_valid(u) for u in upns)
    assert len(set(upns)) == len(upns)


def test_siblings_share_contacts_and_address(school: DemoSchool) -> None:
    pupils = {p.pupil_key: p for p in of(school, PupilRecord)}
    children_of: dict[str, set[str]] = defaultdict(set)
    for c in of(school, ContactRecord):
        children_of[c.contact_key].add(c.pupil_key)
    families = [kids for kids in children_of.values() if len(kids) > 1]
    assert len(families) >= 40
    for kids in families:
        assert len({pupils[k].address for k in kids}) == 1
    first_contacts = [c for c in of(school, ContactRecord) if c.priority == 1]
    assert all(c.parental_responsibility is not None and c.phones for c in first_contacts)
    assert len(first_contacts) == 420  # every pupil has a first contact


def test_nothing_looks_like_real_personal_data(school: DemoSchool) -> None:
    emails = [e for c in of(school, ContactRecord) for e in c.emails]
    emails += re.findall(r"[\w.+-]+@[\w.-]+", school.config_toml("state", "mail"))
    assert emails and all(e.endswith(("example.org", "example.com")) for e in emails)
    phones = [p for r in of(school, ContactRecord) + of(school, PupilRecord) for p in r.phones]
    assert phones and all(re.fullmatch(r"07700 900\d{3}|01632 960\d{3}", p) for p in phones)
    surnames = {p.legal_surname for p in of(school, PupilRecord)}
    published = json.dumps(school.expectations())
    assert not any(s and s in published for s in surnames)


def test_marks_cover_every_school_day_of_the_term(school: DemoSchool) -> None:
    marks = marks_by_day(school.records)
    enrolments = {e.pupil_key: e for e in of(school, EnrolmentRecord)}
    assert len(term.SCHOOL_DAYS) == 72
    for key, e in enrolments.items():
        first = max(e.entry_date or term.TERM_START, term.TERM_START)
        last = min(e.leaving_date or term.TERM_END, term.TERM_END)
        days = marks[key]
        assert [d for d in term.SCHOOL_DAYS if first <= d <= last] == sorted(
            d for d in days if term.is_school_day(d))
        assert all(am and pm for am, pm in days.values())
        for d in term.CLOSURES:
            if first <= d <= last:
                assert days[d] == ("#", "#")
        assert not any(d.weekday() >= 5 or d in term.EXTRA_HOLIDAYS for d in days)


def test_the_registers_look_like_a_real_primary(school: DemoSchool) -> None:
    codes = Counter(c for r in of(school, MarksRecord) for c in r.codes if c)
    sessions = sum(codes.values())
    present = codes["/"] + codes["\\"] + codes["L"]
    assert 0.90 < present / sessions < 0.98
    for code in ("L", "I", "M", "G", "U", "N", "O", "C1", "V", "R", "#", "-"):
        assert codes[code] > 0, code


def test_each_planted_kind_and_story_is_there(school: DemoSchool) -> None:
    kinds = Counter(c.kind for c in school.planted)
    assert set(kinds) == {"unexplained_absence", "place_not_taken_up", "destination_unknown", "repeat_missing"}
    stages_open = {c.stage for c in school.planted if c.open_at_as_of and c.kind == "unexplained_absence"}
    assert stages_open == {"first_day_call", "contact_all", "dsl_review", "home_visit", "referral_prepare",
                           "referral_due"}
    roles = {c.role for c in school.planted}
    assert {"half_term_return", "extra_holiday_explained", "register_gap", "corrected_mark", "cpp_alert",
            "summer_no_return", "broken_by_present", "repeat_missing", "place_not_taken_up",
            "leaver_destination_unknown"} <= roles
    assert {n.role for n in school.no_case} >= {"near_repeat", "leaver_with_destination", "explained_same_day",
                                                "holiday_la_return", "admission_attends"}
    cpp = next(c for c in school.planted if c.role == "cpp_alert")
    assert cpp.alerts == ("immediate_social_care",)
    assert FlagRecord(cpp.pupil_key, "child_protection_plan", date(2025, 6, 12), None,
                      "Child protection plan") in school.records
    gap = next(c for c in school.planted if c.role == "register_gap")
    assert gap.register_gaps == (date(2025, 12, 11),) and gap.school_days == 9
    # Nine counting days and the gap day make Friday 19 Dec the tenth: the gap does not delay it
    # into January (5 Jan is an INSET day, the referral would otherwise fall due on the 6th).
    assert gap.referral_due == date(2025, 12, 19)
    # Gone since Monday 10 Nov: the 10th day skips the extra holiday on Friday 14 Nov.
    missing = [c for c in school.planted if c.role == "long_missing_siblings"]
    assert len(missing) == 2 and all(c.referral_due == date(2025, 11, 24) for c in missing)
    assert all(c.stage == "referral_due" and c.school_days == 29 for c in missing)


def test_planted_streaks_are_in_the_registers(school: DemoSchool) -> None:
    marks = marks_by_day(school.records)
    half = marks[role(school, "half_term_return")]
    assert [half[d] for d in (date(2025, 10, 24), date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 6))] == [
        ("N", "N"), ("#", "#"), ("N", "N"), ("/", "\\")]
    across = marks[role(school, "extra_holiday_explained")]
    assert across[date(2025, 11, 13)] == across[date(2025, 11, 17)] == ("N", "N")
    assert date(2025, 11, 14) not in across
    assert marks[role(school, "register_gap")][date(2025, 12, 11)] == ("-", "-")
    no_show = next(e for e in of(school, EnrolmentRecord) if e.pupil_key == role(school, "place_not_taken_up"))
    assert no_show.admission_date == date(2025, 12, 1)
    assert all(v == ("N", "N") for v in marks[no_show.pupil_key].values())
    unknown = next(e for e in of(school, EnrolmentRecord)
                   if e.pupil_key == role(school, "leaver_destination_unknown"))
    assert unknown.leaving_date == date(2025, 11, 21) and unknown.destination is None


def test_the_newer_export_turns_the_n_marks_into_illness(school: DemoSchool) -> None:
    key = role(school, "corrected_mark")
    before = marks_by_day(school.records)[key]
    after = marks_by_day(school.corrections)[key]
    assert before[date(2025, 11, 24)] == before[date(2025, 11, 25)] == ("N", "N")
    assert after == {date(2025, 11, 24): ("I", "I"), date(2025, 11, 25): ("I", "I")}
    assert school.corrections_on == date(2025, 11, 25)


def test_no_unplanted_pupil_has_a_day_of_unexplained_absence(school: DemoSchool) -> None:
    """Every case the engine opens must come from a plant, or the expectations could not be exact."""
    planted = {c.pupil_key for c in school.planted} | {n.pupil_key for n in school.no_case}
    unexplained = {"N", "O"}
    for key, days in marks_by_day(school.records).items():
        if key in planted:
            continue
        for am, pm in days.values():
            assert not ({am, pm} <= unexplained | {"-"} and {am, pm} & unexplained), key


def test_config_is_valid_for_the_demo_calendar(school: DemoSchool) -> None:
    cfg = parse(tomllib.loads(school.config_toml("state", "mail")))
    assert cfg.school.name == "The John Moore Primary School" and cfg.school.la_number == "916"
    assert set(term.CLOSURES) <= set(cfg.calendar.closures)
    assert cfg.calendar.extra_holidays == (date(2025, 11, 14),)
    assert cfg.calendar.terms[0].start == term.TERM_START and cfg.calendar.terms[1].end == term.TERM_END
    assert cfg.mail.transport == "maildrop"


def test_a_small_school_still_has_every_story() -> None:
    small = generate(3, 80)
    assert len(small.pupil_keys()) == 80
    assert {c.role for c in small.planted} == {c.role for c in generate().planted}
    with pytest.raises(ValueError):
        generate(3, 20)
