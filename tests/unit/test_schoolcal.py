"""The school calendar: terms, closures, bank holidays, whole-school # sessions, the register fallback."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cme_batch import marks as mk
from cme_batch import schoolcal
from cme_batch.config import CalendarConfig, Term

SUMMER_2026 = CalendarConfig(terms=(Term(date(2026, 4, 13), date(2026, 5, 22)), Term(date(2026, 6, 1), date(2026, 7, 22))),
                             closures=(date(2026, 4, 13),))
LEN = mk.strip_length(2025)  # 2024/25 has as many sessions
FULL = [(0, LEN)]


def strip(year: int, marks: dict[date, str], fill: str = "-") -> str:
    """A strip with ``fill`` on every weekday of the year and ``marks`` (``{day: "AMPM"}``) over it."""
    chars = list(mk.empty_strip(year))
    day = mk.year_start(year)
    while mk.academic_year_of(day) == year:
        if day.weekday() < 5:
            i = mk.position(day, "AM")
            chars[i] = chars[i + 1] = fill
        day += timedelta(days=1)
    for d, pair in marks.items():
        i = mk.position(d, "AM")
        chars[i], chars[i + 1] = pair[0], pair[1]
    return "".join(chars)


def test_school_days_are_term_weekdays_without_closures_and_bank_holidays() -> None:
    cal = schoolcal.build(SUMMER_2026, date(2026, 4, 1), date(2026, 6, 5))
    assert not cal.is_school_day(date(2026, 4, 10))  # Easter holidays: outside any term
    assert not cal.is_school_day(date(2026, 4, 13))  # INSET at the start of term
    assert cal.is_school_day(date(2026, 4, 14))
    assert not cal.is_school_day(date(2026, 4, 18))  # Saturday
    assert not cal.is_school_day(date(2026, 5, 4))  # May Day
    assert not cal.is_school_day(date(2026, 5, 25))  # half term (and the spring bank holiday)
    assert cal.count(date(2026, 4, 1), date(2026, 5, 22)) == 28
    assert cal.school_days(date(2026, 5, 1), date(2026, 5, 6)) == [date(2026, 5, 1), date(2026, 5, 5), date(2026, 5, 6)]
    assert cal.warnings == []


def test_the_configuration_overrides_the_bank_holidays() -> None:
    extra = CalendarConfig(terms=SUMMER_2026.terms, extra_holidays=(date(2026, 5, 8),), not_holidays=(date(2026, 5, 4),))
    cal = schoolcal.build(extra, date(2026, 5, 1), date(2026, 5, 15))
    assert cal.is_school_day(date(2026, 5, 4)) and not cal.is_school_day(date(2026, 5, 8))
    off = CalendarConfig(terms=SUMMER_2026.terms, bank_holidays=False)
    assert schoolcal.build(off, date(2026, 5, 1), date(2026, 5, 15)).is_school_day(date(2026, 5, 4))


def test_nth_school_day_after_skips_weekends_and_holidays() -> None:
    cal = schoolcal.build(SUMMER_2026, date(2026, 4, 1), date(2026, 7, 31))
    assert cal.nth_school_day_after(date(2026, 4, 30), 1) == date(2026, 5, 1)
    assert cal.nth_school_day_after(date(2026, 4, 30), 2) == date(2026, 5, 5)  # over the weekend and May Day
    assert cal.nth_school_day_after(date(2026, 5, 2), 1) == date(2026, 5, 5)  # from a Saturday
    assert cal.nth_school_day_after(date(2026, 5, 21), 2) == date(2026, 6, 1)  # over half term
    assert cal.nth_school_day_after(date(2026, 7, 21), 5) is None  # past the last configured day
    assert cal.nth_school_day_back(date(2026, 5, 5), 2) == date(2026, 5, 1)
    with pytest.raises(ValueError):
        cal.nth_school_day_after(date(2026, 5, 1), 0)


def test_a_session_where_everyone_on_roll_has_hash_is_a_closure() -> None:
    snow, half = date(2025, 12, 2), date(2025, 12, 3)
    marks = {snow: "##", half: "#/", date(2025, 12, 4): "#/"}
    everyone = [(strip(2025, marks, "/"), [(0, mk.strip_length(2025))]) for _ in range(3)]
    # one pupil left on 1 December: not on roll, so their missing marks do not count
    left = [(strip(2025, {}, "-"), [(0, mk.position(date(2025, 12, 1), "PM") + 1)])]
    # one pupil on roll who has no mark at all on the 4th: the school was open for them
    gap = [(strip(2025, {snow: "##", half: "#/", date(2025, 12, 4): "-/"}, "/"), [(0, mk.strip_length(2025))])]
    facts = schoolcal.register_facts(2025, everyone + left + gap, fallback=False)
    closed_days = {mk.day_of_position(2025, p) for p in facts.closed}
    assert closed_days == {(snow, "AM"), (snow, "PM"), (half, "AM")}
    cfg = CalendarConfig(terms=(Term(date(2025, 9, 2), date(2025, 12, 19)),))
    cal = schoolcal.build(cfg, date(2025, 11, 24), date(2025, 12, 19), {2025: facts})
    assert not cal.is_school_day(snow)  # no open session
    assert cal.is_school_day(half)  # open in the afternoon
    assert cal.is_school_day(date(2025, 12, 4))


def test_without_terms_the_registers_decide_and_a_warning_says_so() -> None:
    year = 2025
    open_day, quiet_day, half_day = date(2025, 9, 8), date(2025, 9, 9), date(2025, 9, 10)
    marked = {open_day: "/\\", quiet_day: "--", half_day: "N/"}
    rows = [(strip(year, {**marked, quiet_day: "/\\", half_day: "/\\"} if i < 2 else marked), FULL)
            for i in range(5)]
    # only 2 of 5 pupils have marks on the 9th: not a school day; everyone on the 10th
    stray = [(strip(year, {date(2025, 9, 13): "/\\"}), FULL)]  # a mark on a Saturday never makes one
    facts = schoolcal.register_facts(year, rows + stray, fallback=True)
    assert facts.last_marked == date(2025, 9, 13)
    cal = schoolcal.build(CalendarConfig(), date(2025, 9, 1), date(2025, 9, 30), {year: facts})
    assert cal.is_school_day(open_day) and cal.is_school_day(half_day)
    assert not cal.is_school_day(quiet_day)
    assert not cal.is_school_day(date(2025, 9, 5))  # before any register: nobody marked
    assert cal.is_school_day(date(2025, 9, 15))  # after the last register: projected, for due dates
    assert not cal.is_school_day(date(2025, 9, 13))
    assert len(cal.warnings) == 1 and "2025/26 has no term dates" in cal.warnings[0]


def test_half_of_the_pupils_on_roll_is_enough() -> None:
    day = date(2025, 9, 8)
    rows = [(strip(2025, {day: "/\\"}), FULL), (strip(2025, {day: "--"}), FULL),
            # not on roll on the 8th: neither counted nor in the denominator
            (strip(2025, {day: "--"}), [(mk.position(date(2025, 9, 15), "AM"), LEN)]),
            (strip(2025, {day: "--"}), [(mk.position(date(2025, 9, 15), "AM"), LEN)])]
    facts = schoolcal.register_facts(2025, rows, fallback=True)
    assert facts.open is not None and mk.position(day, "AM") in facts.open


def test_a_year_with_terms_ignores_the_fallback_and_last_year_uses_it() -> None:
    cfg = CalendarConfig(terms=(Term(date(2025, 9, 2), date(2025, 12, 19)),))
    last_year = schoolcal.register_facts(2024, [(strip(2024, {date(2025, 7, 14): "/\\"}, "-"), FULL)],
                                         fallback=True)
    this_year = schoolcal.register_facts(2025, [(strip(2025, {date(2025, 9, 2): "/\\"}, "-"), FULL)],
                                         fallback=False)
    assert this_year.open is None
    cal = schoolcal.build(cfg, date(2024, 8, 1), date(2025, 9, 30), {2024: last_year, 2025: this_year})
    assert cal.is_school_day(date(2025, 7, 14)) and not cal.is_school_day(date(2025, 7, 15))
    assert cal.is_school_day(date(2025, 9, 2))
    assert any("2024/25" in w for w in cal.warnings)


def test_term_warnings_after_the_last_configured_term() -> None:
    assert schoolcal.term_warnings(SUMMER_2026, date(2026, 6, 30)) == []
    [w, next_year] = schoolcal.term_warnings(SUMMER_2026, date(2026, 7, 24))
    assert "after the last configured term" in w and "2026-07-22" in w
    assert "no term dates are configured for 2026/27" in next_year


def test_from_july_a_missing_next_year_of_term_dates_is_a_warning_until_it_is_added() -> None:
    [w] = schoolcal.term_warnings(SUMMER_2026, date(2026, 7, 1))
    assert "2026/27" in w and "before September" in w
    autumn = CalendarConfig(terms=(*SUMMER_2026.terms, Term(date(2026, 9, 3), date(2026, 10, 23))))
    assert schoolcal.term_warnings(autumn, date(2026, 7, 1)) == []


def test_england_s_bank_holidays_are_those_the_holidays_package_gives_for_england() -> None:
    """The United Kingdom class is loaded from its module's file (a faster way than the package's
    registry, which imports every country): the holidays must be the package's own, every year
    from 2015 to 2035 (Easter, the substitute days, the jubilee and coronation days)."""
    from pathlib import Path

    import holidays

    if (Path(holidays.__file__ or "").parent / "countries" / "united_kingdom.py").is_file():
        assert "cme_batch" in schoolcal._united_kingdom().__module__  # the faster way was taken
    documented = holidays.country_holidays("GB", subdiv="ENG", years=range(2015, 2036))
    assert schoolcal._england(2015, 2035) == frozenset(documented)
    assert date(2022, 6, 3) in schoolcal._england(2022, 2022)  # the Platinum Jubilee's extra day
    assert date(2023, 5, 8) in schoolcal._england(2023, 2023)  # the coronation's
