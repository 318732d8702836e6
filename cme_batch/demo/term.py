"""The demo school's autumn term 2025: the one calendar the generator and its expectations use.

This is deliberately a plain list, written out by hand from the term dates below, and not the
engine's calendar: the demo's expectations must be worked out independently of the code they
check. The same dates go into the demo configuration (``generator.config_toml``).

* Autumn 1: Monday 1 September to Friday 24 October 2025; 1 September is an INSET day.
* Half term: 27 to 31 October 2025.
* Autumn 2: Monday 3 November to Friday 19 December 2025; 3 November is an INSET day.
* Friday 14 November 2025 is a fictional one-off holiday in term (a "royal occasion"), given to
  the configuration as ``calendar.extra_holidays``. England has no bank holiday in this term
  (25 August is in the summer holiday), so this is how the demo plants a streak across a
  holiday: the school is shut, no register is taken, and a streak must step over the day.

INSET days appear in the registers as ``#`` for every pupil on roll; weekends, half term and
the extra holiday have no register at all.

The configuration also carries the rest of the academic year (``LATER_TERMS``, no marks), as a
school's would, so that a referral due date falling after Christmas is still a real date.
"""

from __future__ import annotations

from datetime import date, timedelta

TERM_START = date(2025, 9, 1)
TERM_END = date(2025, 12, 19)
TERMS: tuple[tuple[str, date, date], ...] = (
    ("Autumn 1", date(2025, 9, 1), date(2025, 10, 24)),
    ("Autumn 2", date(2025, 11, 3), date(2025, 12, 19)),
)
LATER_TERMS: tuple[tuple[str, date, date], ...] = (
    ("Spring 1", date(2026, 1, 5), date(2026, 2, 13)),
    ("Spring 2", date(2026, 2, 23), date(2026, 3, 27)),
    ("Summer 1", date(2026, 4, 13), date(2026, 5, 22)),
    ("Summer 2", date(2026, 6, 1), date(2026, 7, 21)),
)
CLOSURES: tuple[date, ...] = (date(2025, 9, 1), date(2025, 11, 3), date(2026, 1, 5))  # INSET days
EXTRA_HOLIDAYS: tuple[date, ...] = (date(2025, 11, 14),)  # fictional royal occasion
#: England and Wales bank holidays of the academic year, written out by hand (only 4 May 2026 is in term).
BANK_HOLIDAYS: tuple[date, ...] = (
    date(2025, 8, 25), date(2025, 12, 25), date(2025, 12, 26), date(2026, 1, 1), date(2026, 4, 3),
    date(2026, 4, 6), date(2026, 5, 4), date(2026, 5, 25),
)
#: The demo's evaluation date: the last day of term, so every mark the demo holds is in the past.
AS_OF = TERM_END


def calendar_days(start: date = TERM_START, end: date = TERM_END) -> list[date]:
    """Every calendar date from ``start`` to ``end`` inclusive."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def in_term(day: date) -> bool:
    return any(s <= day <= e for _, s, e in TERMS + LATER_TERMS)


def is_closure(day: date) -> bool:
    """A weekday in term on which the school is closed to pupils (registers hold ``#``)."""
    return day in CLOSURES


def is_school_day(day: date) -> bool:
    """A weekday in term that is neither an INSET day nor a holiday."""
    return (day.weekday() < 5 and in_term(day) and day not in CLOSURES and day not in EXTRA_HOLIDAYS
            and day not in BANK_HOLIDAYS)


def has_register(day: date) -> bool:
    """Whether the MIS holds any mark for this date: school days and INSET days (as ``#``)."""
    return is_school_day(day) or is_closure(day)


#: The school days of the autumn term: the days the demo has registers for.
SCHOOL_DAYS: tuple[date, ...] = tuple(d for d in calendar_days() if is_school_day(d))
#: Every school day of the academic year, for dates counted past the end of the autumn term.
YEAR_SCHOOL_DAYS: tuple[date, ...] = tuple(
    d for d in calendar_days(TERM_START, LATER_TERMS[-1][2]) if is_school_day(d))


def index(day: date) -> int:
    """Position of a school day in the year (0 for the first day of the autumn term)."""
    return YEAR_SCHOOL_DAYS.index(day)


def school_days_between(first: date, last: date) -> list[date]:
    """The school days from ``first`` to ``last`` inclusive."""
    return [d for d in SCHOOL_DAYS if first <= d <= last]


def next_school_day(day: date) -> date:
    return next(d for d in YEAR_SCHOOL_DAYS if d > day)
