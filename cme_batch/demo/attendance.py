"""Everyday register marks for the demo school, and how a term of them becomes a ``MarksRecord``.

The background is what a real primary looks like: most pupils present most sessions, some
illness (``I``), medical appointments (``M``), late marks (``L``, and ``U`` after the register
closed), holidays not granted (``G``, often stretching a half term), a religious observance
(``R``), a performance licence (``C1``), a sports fixture (``P``), a class trip (``V``), a class
whose afternoon register was never taken (``-``) and a pupil who did not come back after lunch
(``/`` then ``N``).

The background never holds a whole day of unexplained absence, and never an unauthorised run
longer than five school days: every case the engine opens must come from a planted streak
(``plants``), so the demo's expectations can be exact.
"""

from __future__ import annotations

import random
from datetime import date

from cme_batch.demo import term
from cme_batch.model import MarksRecord

Day = tuple[str, str]
PRESENT: Day = ("/", "\\")
CLOSED: Day = ("#", "#")
NO_REGISTER: Day = ("-", "-")


class Register:
    """One pupil's marks for the days they are on roll this term: date -> (AM, PM)."""

    def __init__(self, pupil_key: str, first: date | None = None, last: date | None = None) -> None:
        self.pupil_key = pupil_key
        first = max(first or term.TERM_START, term.TERM_START)
        last = min(last or term.TERM_END, term.TERM_END)
        self.days: dict[date, Day] = {
            d: (CLOSED if term.is_closure(d) else PRESENT)
            for d in term.calendar_days(first, last) if term.has_register(d)
        }

    def school_days(self) -> list[date]:
        return [d for d in self.days if term.is_school_day(d)]

    def set(self, day: date, marks: Day) -> None:
        if day not in self.days or not term.is_school_day(day):
            raise ValueError(f"{day} is not a school day on roll for {self.pupil_key}")
        self.days[day] = marks

    def get(self, day: date) -> Day:
        return self.days[day]

    def record(self) -> MarksRecord:
        """The whole run of sessions as one record; days without a register say nothing (``""``)."""
        first, last = min(self.days), max(self.days)
        codes: list[str] = []
        for d in term.calendar_days(first, last):
            codes.extend(self.days.get(d, ("", "")))
        return MarksRecord(self.pupil_key, first, tuple(codes))


def _run(rng: random.Random, days: list[date], length: int) -> list[date]:
    """``length`` consecutive school days (of this pupil) from a random start."""
    if len(days) < length:
        return []
    i = rng.randrange(len(days) - length + 1)
    return days[i:i + length]


def add_everyday_noise(rng: random.Random, reg: Register, persistent_absentee: bool = False) -> None:
    """Illness, appointments, lates and the occasional holiday: nothing that makes a CME case."""
    days = reg.school_days()
    if not days:
        return
    for _ in range(rng.choice((0, 0, 1, 1, 1, 2, 2, 3)) + (4 if persistent_absentee else 0)):
        for d in _run(rng, days, rng.choice((1, 1, 1, 2, 2, 3))):
            reg.set(d, ("I", "I"))
    if rng.random() < 0.04:
        # A family holiday not granted: often the days either side of half term.
        around_half_term = [d for d in days if date(2025, 10, 20) <= d <= date(2025, 11, 7)]
        pool = around_half_term if rng.random() < 0.5 and len(around_half_term) >= 5 else days
        for d in _run(rng, pool, rng.choice((3, 4, 5))):
            reg.set(d, ("G", "G"))
    if rng.random() < 0.35:
        reg.set(rng.choice(days), rng.choice((("M", "\\"), ("/", "M"))))
    for _ in range(rng.choice((0, 0, 0, 1, 1, 2, 3, 5)) + (3 if persistent_absentee else 0)):
        reg.set(rng.choice(days), ("L", "\\"))
    if rng.random() < 0.06:
        reg.set(rng.choice(days), ("U", "\\"))
    if rng.random() < 0.03:
        reg.set(rng.choice(days), ("/", "N"))  # not back after lunch: seen that day, so no case
    if rng.random() < 0.02:
        reg.set(rng.choice(days), ("/", "P"))  # a sports fixture in the afternoon


def whole_group_event(registers: list[Register], day: date, marks: Day, only_if_present: bool = True) -> None:
    """Give every pupil of a group the same marks on a day (a trip, a lost afternoon register)."""
    for reg in registers:
        if day in reg.days and (not only_if_present or reg.get(day) == PRESENT):
            reg.set(day, marks)


def afternoon_not_taken(registers: list[Register], day: date) -> None:
    """A class whose afternoon register was never completed: ``-`` in the PM session only."""
    for reg in registers:
        if day in reg.days:
            am, _ = reg.get(day)
            reg.set(day, (am, "-"))
