"""The calendar's register facts for a store of many pupils: a day the configuration makes no
school day but the registers show open is found past the first pupils read (a local authority's
store), and a day marked for fewer than half the pupils on roll is not taken as open.

The engine's behaviour on a real store is in ``tests/integration/test_calendar_review.py``.
"""

from __future__ import annotations

from datetime import date

from cme_batch import marks as mk
from cme_batch import schoolcal
from cme_batch.config import CalendarConfig, Term

CFG = CalendarConfig(terms=(Term(date(2025, 9, 2), date(2025, 10, 24)), Term(date(2025, 11, 3), date(2025, 12, 19))),
                     closures=(date(2025, 11, 3),))
OPEN_INSET = date(2025, 11, 3)  # a closure in the configuration; 56% of the roll marked
HOLIDAY_CLUB = date(2025, 10, 29)  # half term; 40% of the roll marked
PUPILS = 3000
READ_FIRST = 1024  # the pupils whose strips are read in full (schoolcal.BEYOND_SAMPLE)


def _strips() -> list[str]:
    length = mk.strip_length(2025)
    school = schoolcal.build(CFG, date(2025, 8, 1), date(2026, 7, 31)).days
    out = []
    for i in range(PUPILS):
        s = list(mk.NO_MARK * length)
        for d in school:
            s[mk.position(d, "AM")], s[mk.position(d, "PM")] = "/", "\\"
        # the first pupils read: 30% marked on both days; the rest: 70% on the INSET day, 45% on the other
        first = i < READ_FIRST
        if (i % 10) < 3 if first else (i % 20) < 14:
            s[mk.position(OPEN_INSET, "AM")], s[mk.position(OPEN_INSET, "PM")] = "N", "/"
        if (i % 10) < 3 if first else (i % 20) < 9:
            s[mk.position(HOLIDAY_CLUB, "AM")] = "/"
        out.append("".join(s))
    return out


def test_a_day_the_registers_show_open_is_found_past_the_first_pupils_read() -> None:
    """Before, the configuration alone said which days were school days: the INSET day the school
    opened on after all was no school day, and no warning named it."""
    year = 2025
    length = mk.strip_length(year)
    facts = schoolcal.register_facts(year, ((s, ((0, length),)) for s in _strips()), False,
                                     schoolcal.candidate_sessions(CFG, year))
    cal = schoolcal.build(CFG, date(2025, 8, 1), date(2026, 7, 31), {year: facts}, date(2025, 11, 28))
    assert cal.is_school_day(OPEN_INSET)
    assert not cal.is_school_day(HOLIDAY_CLUB)  # 40% of the roll (a holiday club): not the school open
    [warning] = [w for w in cal.warnings if "the registers show the school open" in w]
    assert "Mon 03 Nov 2025 (a closure in calendar.closures)" in warning and "29 Oct" not in warning
