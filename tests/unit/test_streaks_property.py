"""The fast streak engine against a slow, obviously correct reference, over random calendars and marks.

The reference reads DOMAIN.md 4 literally: go through the school days in order, classify each
mark on its own by its date (``Classifier.class_of``), drop what is neutral, unknown or missing,
and restart the count at every break. The engine under test classifies whole strips with
``str.translate`` and walks back from the evaluation date. Calendars are random subsets of the
days around the 2024 code change and a 1 August year boundary; marks include gaps, unknown
codes, local codes, sub-codes and two-character codes.
"""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cme_batch import marks as mk
from cme_batch.codes import ATTENDED, Classifier
from cme_batch.schoolcal import SchoolCalendar
from cme_batch.streaks import episodes, evaluate, school_day_index
from tests.unit.test_streaks import letters_for

LOCAL = {"7": "authorised", "@": "present", "8": "unexplained"}
SUBCODES = {"I01": "I", "N01": "N", "X01": "X"}
COUNTS = {"unexplained": {"unexplained"},
          "unauthorised": {"unexplained", "unauthorised_explained", "late_after_close"}}
DROPPED = {"neutral", "unknown", "no_mark"}
# N is frequent so that long streaks happen; everything else appears too.
CODES = (["N"] * 12 + ["O", "G", "G", "U", "/", "\\", "L", "I", "M", "C", "C1", "J1", "J", "H", "F", "Y", "K",
                        "Q", "Y5", "Y1", "X", "Z", "#", "#", "-", "-", "-", "", "B", "D", "P", "V", "W", "E",
                        "l", "!", "7", "@", "8", "I01", "N01", "X01", "ZZ"])


def reference(marks: dict[date, tuple[str, str]], school_days: list[date], as_of: date, floor: date | None,
              kind: str, c: Classifier) -> tuple[list[date], list[date], list[tuple[list[date], list[date]]]]:
    """(counting days, register gaps) of the current streak, and every episode, the slow way."""
    counted: list[date] = []
    gaps: list[date] = []
    done: list[tuple[list[date], list[date]]] = []
    for d in sorted(school_days):
        if d > as_of or (floor is not None and d < floor):
            continue
        classes = [c.class_of(code, d) for code in marks.get(d, ("-", "-"))]
        left = [k for k in classes if k not in DROPPED]
        if not left:
            if any(k in ("unknown", "no_mark") for k in classes):
                gaps.append(d)
        elif all(k in COUNTS[kind] for k in left):
            counted.append(d)
        else:
            if counted:
                done.append((counted, gaps))
            counted, gaps = [], []
    return counted, gaps, done + ([(counted, gaps)] if counted else [])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[date, tuple[str, str]], list[date], date, date | None]:
    first = draw(st.sampled_from([date(2024, 6, 17), date(2024, 7, 22), date(2024, 8, 5), date(2025, 7, 7)]))
    first += timedelta(days=draw(st.integers(0, 30)))
    span = [first + timedelta(days=i) for i in range(draw(st.integers(1, 45)))]
    school = [d for d, keep in zip(span, draw(st.lists(st.booleans(), min_size=len(span), max_size=len(span))))
              if keep]
    codes = st.sampled_from(CODES)
    marks = {d: (draw(codes), draw(codes)) for d in span if draw(st.integers(0, 9))}  # some days hold nothing
    as_of = draw(st.sampled_from(span))
    floor = draw(st.one_of(st.none(), st.sampled_from(span)))
    return marks, school, as_of, floor


@settings(max_examples=400, deadline=None)
@given(scenarios())
@example(({}, [date(2024, 7, 29)], date(2024, 8, 1), None))  # a gap just before a 1 August year boundary
def test_the_engine_agrees_with_the_reference(scenario: tuple[dict[date, tuple[str, str]], list[date], date,
                                                              date | None]) -> None:
    marks, school, as_of, floor = scenario
    years = sorted({mk.academic_year_of(d) for d in [*marks, *school, as_of]})
    years = [years[0], years[0] + 1]
    letters, base, classifier = letters_for(marks, years, LOCAL, SUBCODES)
    calendar = SchoolCalendar(school)
    up_to = calendar.school_days(base, as_of)
    got = evaluate(letters, base, school_day_index(reversed(up_to), base), as_of, floor)

    for kind, streak in (("unexplained", got.unexplained), ("unauthorised", got.unauthorised)):
        counted, gaps, _ = reference(marks, school, as_of, floor, kind, classifier)
        assert list(streak.counted) == counted, kind
        assert list(streak.register_gaps) == gaps, kind
        assert streak.days == len(counted)
        assert streak.start == (counted[0] if counted else None)

    seen = [d for d, pair in marks.items() if d <= as_of and any(classifier.class_of(c, d) in ATTENDED for c in pair)]
    assert got.last_attended == (max(seen) if seen else None)

    window = [d for d in up_to if floor is None or d >= floor]
    found = episodes(letters, school_day_index(window, base))
    _, _, expected = reference(marks, school, as_of, floor, "unexplained", classifier)
    assert [(list(e.counted), list(e.register_gaps)) for e in found] == expected


@st.composite
def schools(draw: st.DrawFn) -> tuple[list[dict[date, tuple[str, str]]], list[date], date, list[date | None]]:
    """Several pupils over the same calendar; most are in school on the evaluation date, as in real life."""
    first = draw(st.sampled_from([date(2025, 9, 1), date(2024, 8, 12), date(2025, 7, 14)]))
    span = [first + timedelta(days=i) for i in range(draw(st.integers(5, 40)))]
    school = sorted({*(d for d in span if draw(st.integers(0, 4))), span[-1]})
    as_of = draw(st.sampled_from([span[-1], *school]))
    pupils, floors = [], []
    for _ in range(draw(st.integers(1, 6))):
        codes = st.sampled_from(CODES)
        marks = {d: (draw(codes), draw(codes)) for d in span if draw(st.integers(0, 9))}
        if draw(st.booleans()):
            marks[as_of] = (draw(st.sampled_from(["/", "L", "B", "V", "U", "G", "N"])), draw(codes))
        pupils.append(marks)
        floors.append(draw(st.one_of(st.none(), st.sampled_from(span))))
    return pupils, school, as_of, floors


@settings(max_examples=300, deadline=None)
@given(schools())
def test_the_bulk_pass_agrees_with_one_pupil_at_a_time(
        school_: tuple[list[dict[date, tuple[str, str]]], list[date], date, list[date | None]]) -> None:
    from cme_batch.streaks import evaluate_many

    pupils, school, as_of, floors = school_
    year = mk.academic_year_of(as_of)
    years = [year - 1, year]
    alphabet = mk.Alphabet()
    strips: dict[int, dict[int, str]] = {y: {} for y in years}
    for pid, marks in enumerate(pupils):
        chars = {y: list(mk.empty_strip(y)) for y in years}
        for d, pair in marks.items():
            y = mk.academic_year_of(d)
            if y in chars:
                for k, code in enumerate(pair):
                    chars[y][mk.position(d, "AM") + k] = alphabet.symbol_for(code)
        for y in years:
            strips[y][pid] = "".join(chars[y])
    classifier = Classifier(LOCAL, SUBCODES, alphabet)
    base = mk.year_start(years[0])
    days = [d for d in school if d <= as_of]
    window_start = days[0] if days else as_of
    on_roll = [(pid, floors[pid] is None or floors[pid] <= as_of, floors[pid]) for pid in range(len(pupils))]
    many = evaluate_many(on_roll, strips, classifier, days, as_of, window_start, 2)
    for pid, roll, floor in on_roll:
        letters = "".join(classifier.classify(strips[y][pid], y) for y in years)
        one = evaluate(letters, base, school_day_index(reversed(days), base), as_of, floor)
        got = many.get(pid)
        assert got.last_attended == one.last_attended
        if roll:
            assert (got.unexplained, got.unauthorised) == (one.unexplained, one.unauthorised)
            eps = episodes(letters, [(d, i) for d, i in school_day_index(days, base) if floor is None or d >= floor])
            needed = letters.count("N", 2 * (window_start - base).days, 2 * ((as_of - base).days + 1)) >= 2
            assert many.repeats.get(pid, ()) == (tuple(eps) if needed else ())
        else:
            assert got.unexplained.days == 0 and got.unauthorised.days == 0
        this_year = letters[2 * (mk.year_start(year) - base).days:2 * ((as_of - base).days + 1)]
        assert (pid in many.unknown) == ("?" in this_year)
