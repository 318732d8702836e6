"""Streaks: every rule and example of DOMAIN.md 4, on real strips and a real calendar."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from cme_batch import marks as mk
from cme_batch import schoolcal
from cme_batch.codes import Classifier
from cme_batch.config import CalendarConfig, Term
from cme_batch.streaks import PupilStreaks, episodes, evaluate, school_day_index

# Autumn 2025: half term 27-31 October, INSET on 3 November.
AUTUMN = CalendarConfig(terms=(Term(date(2025, 9, 2), date(2025, 10, 24)), Term(date(2025, 11, 3), date(2025, 12, 19))),
                        closures=(date(2025, 11, 3),))
Marks = Mapping[date, tuple[str, str]]


def letters_for(marks: Marks, years: Iterable[int], local: Mapping[str, str] | None = None,
                subcodes: Mapping[str, str] | None = None) -> tuple[str, date, Classifier]:
    """Class letters of the strips holding ``marks`` (``{day: (am, pm)}``), from the first year's 1 August.

    The strips are written first, then classified, as the store does: the classifier knows
    every symbol the alphabet handed out.
    """
    alphabet = mk.Alphabet()
    years = sorted(years)
    strips = {y: list(mk.empty_strip(y)) for y in years}
    for day, pair in marks.items():
        y = mk.academic_year_of(day)
        for k, code in enumerate(pair):
            strips[y][mk.position(day, "AM") + k] = alphabet.symbol_for(code)
    classifier = Classifier(local, subcodes, alphabet)
    letters = "".join(classifier.classify("".join(strips[y]), y) for y in years)
    return letters, mk.year_start(years[0]), classifier


def streaks_of(marks: Marks, as_of: date, cal: CalendarConfig | schoolcal.SchoolCalendar = AUTUMN,
               floor: date | None = None) -> PupilStreaks:
    years = {mk.academic_year_of(d) for d in marks} | {mk.academic_year_of(as_of)}
    letters, base, _ = letters_for(marks, years)
    calendar = cal if isinstance(cal, schoolcal.SchoolCalendar) else schoolcal.build(cal, base, as_of)
    days = calendar.school_days(base, as_of)
    return evaluate(letters, base, school_day_index(reversed(days), base), as_of, floor)


def days(start: date, end: date, pair: tuple[str, str], cal: CalendarConfig = AUTUMN) -> dict[date, tuple[str, str]]:
    """The same marks on every school day from start to end."""
    return {d: pair for d in schoolcal.build(cal, start, end).school_days(start, end)}


def test_counting_is_in_school_days_across_half_term() -> None:
    marks = {date(2025, 10, 23): ("/", "\\"), date(2025, 10, 24): ("N", "N"), date(2025, 11, 4): ("N", "N")}
    s = streaks_of(marks, date(2025, 11, 4))
    # Friday before half term and the first day after it (3 November is INSET): two days
    assert s.unexplained.days == 2
    assert s.unexplained.start == date(2025, 10, 24)
    assert s.unexplained.register_gaps == ()
    assert s.last_attended == date(2025, 10, 23)


def test_weekends_holidays_and_closures_neither_break_nor_extend() -> None:
    marks = days(date(2025, 10, 20), date(2025, 11, 7), ("N", "N"))
    s = streaks_of({date(2025, 10, 17): ("/", "\\"), **marks}, date(2025, 11, 7))
    assert s.unexplained.days == 5 + 4  # 20-24 October, 4-7 November
    assert s.unexplained.counted[4:6] == (date(2025, 10, 24), date(2025, 11, 4))


def test_mixed_day_seen_in_the_afternoon_breaks() -> None:
    marks = {date(2025, 9, 8): ("N", "N"), date(2025, 9, 9): ("N", "/")}
    s = streaks_of(marks, date(2025, 9, 9))
    assert s.unexplained.days == 0 and s.unexplained.start is None
    assert s.unauthorised.days == 0
    assert s.last_attended == date(2025, 9, 9)


def test_mixed_day_explained_in_the_afternoon_breaks_the_unexplained_streak() -> None:
    marks = {date(2025, 9, 8): ("N", "N"), date(2025, 9, 9): ("N", "I")}
    s = streaks_of(marks, date(2025, 9, 9))
    assert s.unexplained.days == 0
    assert s.unauthorised.days == 0  # I is authorised: it breaks this one too
    assert s.last_attended is None


def test_a_closed_morning_and_an_unexplained_afternoon_counts() -> None:
    marks = {date(2025, 9, 8): ("N", "N"), date(2025, 9, 9): ("#", "N")}
    s = streaks_of(marks, date(2025, 9, 9))
    assert s.unexplained.days == 2 and s.unexplained.start == date(2025, 9, 8)


def test_the_unauthorised_streak_counts_g_and_u_but_the_unexplained_one_breaks() -> None:
    marks = {date(2025, 9, 8): ("N", "N"), date(2025, 9, 9): ("G", "G"), date(2025, 9, 10): ("U", "N"),
             date(2025, 9, 11): ("O", "O")}
    s = streaks_of(marks, date(2025, 9, 11))
    assert (s.unexplained.days, s.unexplained.start) == (1, date(2025, 9, 11))
    assert (s.unauthorised.days, s.unauthorised.start) == (4, date(2025, 9, 8))
    assert s.last_attended == date(2025, 9, 10)  # late after the register closed: the child was seen


def test_a_missing_register_is_a_gap_that_neither_shortens_nor_ends_the_streak() -> None:
    marks = {date(2025, 9, 8): ("/", "\\"), date(2025, 9, 9): ("N", "N"), date(2025, 9, 10): ("-", "-"),
             date(2025, 9, 11): ("N", "N"), date(2025, 9, 12): ("N", "-")}
    s = streaks_of(marks, date(2025, 9, 12))
    assert s.unexplained.days == 3
    assert s.unexplained.counted == (date(2025, 9, 9), date(2025, 9, 11), date(2025, 9, 12))
    assert s.unexplained.register_gaps == (date(2025, 9, 10),)  # a half-marked day counts, it is no gap


def test_an_unknown_code_is_neutral_and_a_gap() -> None:
    marks = {date(2025, 9, 8): ("/", "\\"), date(2025, 9, 9): ("N", "N"), date(2025, 9, 10): ("l", "!"),
             date(2025, 9, 11): ("N", "l")}
    s = streaks_of(marks, date(2025, 9, 11))
    assert s.unexplained.days == 2
    assert s.unexplained.register_gaps == (date(2025, 9, 10),)


def test_a_neutral_day_is_skipped_without_a_gap() -> None:
    marks = {date(2025, 9, 8): ("/", "\\"), date(2025, 9, 9): ("N", "N"), date(2025, 9, 10): ("X", "Y1"),
             date(2025, 9, 11): ("N", "N")}
    s = streaks_of(marks, date(2025, 9, 11))
    assert s.unexplained.days == 2 and s.unexplained.register_gaps == ()


def test_gaps_since_the_last_break_show_even_with_no_streak() -> None:
    marks = {date(2025, 9, 8): ("/", "\\")}  # nothing recorded on the 9th and 10th
    s = streaks_of(marks, date(2025, 9, 10))
    assert s.unexplained.days == 0 and s.unexplained.start is None
    assert s.unexplained.register_gaps == (date(2025, 9, 9), date(2025, 9, 10))


def test_gaps_before_a_break_are_forgotten() -> None:
    marks = {date(2025, 9, 8): ("-", "-"), date(2025, 9, 9): ("I", "I"), date(2025, 9, 10): ("N", "N")}
    s = streaks_of(marks, date(2025, 9, 10))
    assert s.unexplained.days == 1 and s.unexplained.register_gaps == ()


def test_length_is_counted_up_to_the_evaluation_date_only() -> None:
    marks = {date(2025, 9, 8): ("/", "/"), **days(date(2025, 9, 9), date(2025, 9, 19), ("N", "N"))}
    assert streaks_of(marks, date(2025, 9, 12)).unexplained.days == 4
    assert streaks_of(marks, date(2025, 9, 13)).unexplained.days == 4  # a Saturday: the same
    assert streaks_of(marks, date(2025, 9, 19)).unexplained.days == 9


def test_a_streak_does_not_reach_before_the_first_day_on_roll() -> None:
    marks = days(date(2025, 9, 8), date(2025, 9, 19), ("N", "N"))
    s = streaks_of(marks, date(2025, 9, 19), floor=date(2025, 9, 15))
    assert s.unexplained.days == 5 and s.unexplained.start == date(2025, 9, 15)
    assert s.complete


def test_a_streak_that_crosses_the_2024_code_change_and_the_summer() -> None:
    cal = CalendarConfig(terms=(Term(date(2024, 4, 15), date(2024, 7, 19)), Term(date(2024, 9, 3), date(2024, 12, 20))))
    marks = {
        date(2024, 7, 16): ("J", "J"),  # legacy: an interview, educational activity: the child was seen
        date(2024, 7, 17): ("N", "N"),
        date(2024, 7, 18): ("H", "N"),  # legacy H: authorised holiday: breaks the unexplained streak
        date(2024, 7, 19): ("N", "N"),
        date(2024, 9, 3): ("N", "O"),
        date(2024, 9, 4): ("J", "J"),  # no longer a code in the 2024 set: unknown, a gap
        date(2024, 9, 5): ("N", "Y"),  # Y is no longer neutral either: unknown is dropped, N counts
        date(2024, 9, 6): ("N", "N"),
    }
    s = streaks_of(marks, date(2024, 9, 6), cal)
    assert s.unexplained.counted == (date(2024, 7, 19), date(2024, 9, 3), date(2024, 9, 5), date(2024, 9, 6))
    assert s.unexplained.register_gaps == (date(2024, 9, 4),)
    assert s.unauthorised.start == date(2024, 7, 19)  # H is authorised: a break for both
    assert s.last_attended == date(2024, 7, 16)


def test_last_attended_counts_educational_activity_and_looks_into_last_year() -> None:
    cal = CalendarConfig(terms=(Term(date(2025, 6, 2), date(2025, 7, 18)), Term(date(2025, 9, 2), date(2025, 10, 24))))
    marks = {date(2025, 7, 17): ("V", "V"), **days(date(2025, 7, 18), date(2025, 9, 5), ("N", "N"), cal)}
    s = streaks_of(marks, date(2025, 9, 5), cal)
    assert s.last_attended == date(2025, 7, 17)
    assert s.unexplained.start == date(2025, 7, 18) and s.unexplained.days == 5


def test_a_walk_that_runs_out_of_strips_says_so() -> None:
    marks = days(date(2025, 9, 2), date(2025, 9, 5), ("N", "N"))
    letters, base, _ = letters_for(marks, [2025])
    cal = schoolcal.build(AUTUMN, base, date(2025, 9, 5))
    s = evaluate(letters, base, school_day_index(reversed(cal.school_days(base, date(2025, 9, 5))), base),
                 date(2025, 9, 5))
    assert s.unexplained.days == 4 and not s.complete


def test_episodes_in_a_date_range() -> None:
    marks = {date(2025, 9, 8): ("N", "N"), date(2025, 9, 9): ("N", "N"), date(2025, 9, 10): ("/", "/"),
             date(2025, 9, 11): ("N", "N"), date(2025, 9, 12): ("-", "-"), date(2025, 9, 15): ("N", "I"),
             date(2025, 9, 16): ("N", "N")}
    letters, base, _ = letters_for(marks, [2025])
    cal = schoolcal.build(AUTUMN, base, date(2025, 9, 16))
    found = episodes(letters, school_day_index(cal.school_days(date(2025, 9, 8), date(2025, 9, 16)), base))
    assert [(e.start, e.days, e.register_gaps, e.broke_on) for e in found] == [
        (date(2025, 9, 8), 2, (), date(2025, 9, 10)),
        (date(2025, 9, 11), 1, (date(2025, 9, 12),), date(2025, 9, 15)),
        (date(2025, 9, 16), 1, (), None),
    ]
    late = episodes(letters, school_day_index(cal.school_days(date(2025, 9, 9), date(2025, 9, 16)), base))
    assert late[0].start == date(2025, 9, 9) and late[0].days == 1  # seen from the range's first day only


def test_a_calendar_given_as_days() -> None:
    """The engine takes any calendar: here only two school days a week."""
    cal = schoolcal.SchoolCalendar([date(2025, 9, 8) + timedelta(days=7 * w + k) for w in range(3) for k in (0, 3)])
    marks = {d: ("N", "N") for d in cal.days}
    marks[date(2025, 9, 9)] = ("/", "/")  # not a school day in this calendar: no break, but the child was seen
    s = streaks_of(marks, date(2025, 9, 25), cal)
    assert s.unexplained.days == 6
    assert s.last_attended == date(2025, 9, 9)
