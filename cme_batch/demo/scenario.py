"""Which demo pupil gets which planted story, and the story itself.

Each story is one line of DOMAIN.md made concrete: a streak across half term and the INSET
day, one across the extra holiday, one with a register gap, one of each stage at ``as_of``, a
mark corrected by a newer export, a place not taken up, a leaver gone to an unknown
destination, a pupil missing repeatedly, a child on a protection plan, and the near misses that
must NOT open a case. ``Planter`` records what each must cause.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import date

from cme_batch.demo import term
from cme_batch.demo.people import Child, Family
from cme_batch.demo.plants import LaReturn, Planter

D = date  # short alias: the stories below are mostly dates

#: The newer export that corrects a mark arrives before this night's run.
CORRECTIONS_ON = D(2025, 11, 25)
LEAVER_WITH_DESTINATION = D(2025, 10, 17)
LEAVER_DESTINATION_UNKNOWN = D(2025, 11, 21)
JOINER_FIRST_DAY = D(2025, 11, 10)
NO_SHOW_FIRST_DAY = D(2025, 12, 1)


@dataclass
class Cast:
    """The pupils chosen for each story (``roles``) and those kept free of background noise."""

    roles: dict[str, list[Child]] = field(default_factory=dict)

    def one(self, role: str) -> Child:
        return self.roles[role][0]

    def planted_keys(self) -> set[str]:
        return {c.key for kids in self.roles.values() for c in kids}


class Picker:
    """Chooses pupils at random, at most one story per family (so a story's siblings stay ordinary)."""

    def __init__(self, rng: random.Random, families: list[Family]) -> None:
        self.rng = rng
        self.families = families
        self.used: set[int] = set()

    def _free(self) -> list[Family]:
        return [f for i, f in enumerate(self.families) if i not in self.used]

    def _take(self, family: Family) -> None:
        self.used.add(self.families.index(family))

    def one(self, year: str | None = None) -> Child:
        pool = [(f, c) for f in self._free() for c in f.children if year is None or c.year == year]
        family, child = self.rng.choice(pool)
        self._take(family)
        return child

    def family_of(self, size: int) -> list[Child]:
        family = self.rng.choice([f for f in self._free() if len(f.children) == size])
        self._take(family)
        return list(family.children)

    def remaining(self) -> list[Child]:
        return [c for f in self._free() for c in f.children]


#: Story name -> required year group (None: any). Order matters only for reproducibility.
SINGLE_ROLES: tuple[tuple[str, str | None], ...] = (
    ("summer_no_return", None), ("half_term_return", None), ("extra_holiday_explained", None),
    ("corrected_mark", None), ("broken_by_present", None), ("stage_first_day_call", None),
    ("stage_contact_all", "R"), ("stage_dsl_review", None), ("stage_home_visit", None),
    ("stage_referral_prepare", None), ("stage_referral_due", None), ("register_gap", None),
    ("cpp_alert", None), ("young_carer_early_review", "5"), ("repeat_missing", None), ("near_repeat", None),
    ("leaver_with_destination", "4"), ("leaver_destination_unknown", "2"), ("holiday_la_return", None),
    ("explained_same_day", None), ("illness_week", None),
)


def cast(picker: Picker) -> Cast:
    c = Cast()
    c.roles["long_missing_siblings"] = picker.family_of(2)
    for role, year in SINGLE_ROLES:
        c.roles[role] = [picker.one(year)]
    return c


def plant(p: Planter, c: Cast, joiner: Child, no_show: Child, looked_after: Child) -> None:
    """Write every story into the registers and record its expectations."""
    k = {role: kids[0].key for role, kids in c.roles.items()}
    # Back from summer nine school days late: referral drafted, then the child turns up.
    p.unexplained(k["summer_no_return"], "summer_no_return", D(2025, 9, 2), 9, "returned")
    # Wed 22 Oct to Wed 5 Nov across half term and the INSET day (3 Nov, '#'): 5 school days.
    p.unexplained(k["half_term_return"], "half_term_return", D(2025, 10, 22), 5, "returned")
    # Wed 12 Nov to Tue 18 Nov across the extra holiday (Fri 14 Nov): 4 days, then an illness mark.
    p.unexplained(k["extra_holiday_explained"], "extra_holiday_explained", D(2025, 11, 12), 4, "explained")
    # Two days of N; the newer export (before the night of 25 Nov) turns both into I.
    key = k["corrected_mark"]
    p.unexplained(key, "corrected_mark", D(2025, 11, 24), 2, "returned")
    p.cases[-1] = replace(p.cases[-1], stage="first_day_call", school_days=1, closed_on=CORRECTIONS_ON,
                          closed_reason="explained")
    p.must_not(key, "unexplained_absence", "corrected_mark",
               "its N marks were corrected to I by a newer export", never=False)
    # Two days of N, then N in the morning but seen in the afternoon: the streak breaks.
    key = k["broken_by_present"]
    p.unexplained(key, "broken_by_present", D(2025, 12, 16), 2, "returned")
    p.mark(key, D(2025, 12, 18), ("N", "\\"))
    p.must_not(key, "unexplained_absence", "broken_by_present", "seen on the afternoon of 18 Dec", never=False)
    # One pupil at each stage on as_of (the last day of term).
    p.open_streak(k["stage_first_day_call"], "stage_first_day_call", 1, codes=("O", "O"))
    p.open_streak(k["stage_contact_all"], "stage_contact_all", 2)
    p.open_streak(k["stage_dsl_review"], "stage_dsl_review", 3)
    p.open_streak(k["stage_home_visit"], "stage_home_visit", 6)
    p.open_streak(k["stage_referral_prepare"], "stage_referral_prepare", 8, codes=("N", "O"))
    p.open_streak(k["stage_referral_due"], "stage_referral_due", 12)
    # No register at all on Thu 11 Dec inside a streak: 9 counting days and a gap, never a break.
    p.open_streak(k["register_gap"], "register_gap", 9, gaps=(D(2025, 12, 11),))
    p.open_streak(k["cpp_alert"], "cpp_alert", 1)
    p.open_streak(k["young_carer_early_review"], "young_carer_early_review", 2)
    # Two siblings gone since Mon 10 Nov, across the extra holiday: referral overdue.
    for child in c.roles["long_missing_siblings"]:
        days = len(term.school_days_between(D(2025, 11, 10), p.as_of))
        p.open_streak(child.key, "long_missing_siblings", days)
    # Three episodes of two days within 60 school days: repeat missing.
    key = k["repeat_missing"]
    for first in (D(2025, 9, 29), D(2025, 10, 16), D(2025, 11, 18)):
        p.unexplained(key, "repeat_missing", first, 2, "returned")
    p.other(key, "repeat_missing", "repeat_missing", None)
    # Two episodes of two days and one of a single day: not repeat missing.
    key = k["near_repeat"]
    for first, days in ((D(2025, 10, 2), 2), (D(2025, 11, 6), 2), (D(2025, 12, 2), 1)):
        p.unexplained(key, "near_repeat", first, days, "returned")
    p.must_not(key, "repeat_missing", "near_repeat", "only two of its episodes last 2+ school days")
    # Leavers.
    p.other(k["leaver_destination_unknown"], "destination_unknown", "leaver_destination_unknown",
            "referral_prepare")
    p.must_not(k["leaver_with_destination"], "destination_unknown", "leaver_with_destination",
               "the destination school is recorded")
    # Admissions: one never turns up (one case, place not taken up), one starts as agreed.
    days = len(term.school_days_between(NO_SHOW_FIRST_DAY, p.as_of))
    for d in term.school_days_between(NO_SHOW_FIRST_DAY, p.as_of):
        p.mark(no_show.key, d, ("N", "N"))
    p.other(no_show.key, "place_not_taken_up", "place_not_taken_up", "referral_prepare",
            streak_start=NO_SHOW_FIRST_DAY, school_days=days)
    p.la_returns.append(LaReturn(no_show.key, NO_SHOW_FIRST_DAY, days))
    p.must_not(no_show.key, "unexplained_absence", "place_not_taken_up",
               "a child who has not taken up a place has the one case, place_not_taken_up")
    p.must_not(joiner.key, "place_not_taken_up", "admission_attends", "started on the agreed first day")
    # Explained and unauthorised-but-known absence: no CME case.
    key = k["holiday_la_return"]
    holiday = term.school_days_between(D(2025, 12, 8), p.as_of)
    for d in holiday:
        p.mark(key, d, ("G", "G"))
    p.la_returns.append(LaReturn(key, holiday[0], len(holiday)))
    p.must_not(key, "unexplained_absence", "holiday_la_return", "holiday not granted is explained (G)")
    p.mark(k["explained_same_day"], p.as_of, ("N", "I"))
    p.must_not(k["explained_same_day"], "unexplained_absence", "explained_same_day",
               "N in the morning, illness reported by the afternoon")
    for d in term.school_days_between(D(2025, 12, 15), p.as_of):
        p.mark(k["illness_week"], d, ("I", "I"))
    p.must_not(k["illness_week"], "unexplained_absence", "illness_week", "illness is authorised absence")
    p.must_not(looked_after.key, "unexplained_absence", "looked_after_attends", "attends every day")
