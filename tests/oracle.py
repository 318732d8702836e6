"""A deliberately simple oracle of the domain rules (DOMAIN.md 2-5), for the system-level property tests.

Written from DOMAIN.md alone, in plain Python, one school day at a time: it imports nothing from
``cme_batch`` (no codes, calendar, streaks or criteria), so a mistake in the engine is not copied
here. Where DOMAIN.md is ambiguous it takes the reading safest for the child; each such choice
is marked "SAFEST".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

# -- 2. Attendance codes -----------------------------------------------------------------------------
CODE_CHANGE = date(2024, 8, 19)  # the 2024 regulations: marks dated before this use the older set


def _table(rows: Mapping[str, str]) -> dict[str, str]:
    return {code: cls for cls, codes in rows.items() for code in codes.split()}


CODES_2024 = _table({
    "present": "/ \\ L", "late_after_close": "U", "educational_activity": "K V P W B D",
    "authorised": "C C1 C2 E I M J1 R S T", "unauthorised_explained": "G", "unexplained": "N O",
    "unable_pupil": "Q Y5 Y7", "neutral": "X Y1 Y2 Y3 Y4 Y6 Z #", "no_mark": "-",
})
CODES_LEGACY = _table({
    "present": "/ \\ L", "late_after_close": "U", "educational_activity": "B D J P V W",
    "authorised": "C E F H I M R S T", "unauthorised_explained": "G", "unexplained": "N O",
    "neutral": "X Y Z #", "no_mark": "-",
})
ATTENDED = frozenset({"present", "late_after_close", "educational_activity"})
DROPPED = frozenset({"neutral", "unknown", "no_mark"})
COUNTS = {"unexplained": frozenset({"unexplained"}),
          "unauthorised": frozenset({"unexplained", "unauthorised_explained", "late_after_close"})}


def classify(code: str | None, day: date, local: Mapping[str, str] | None = None,
             subcodes: Mapping[str, str] | None = None) -> str:
    """The class of one mark, by the mark's date. A code nobody knows is ``unknown`` (treated as neutral)."""
    if code is None or code.strip() == "":
        return "no_mark"
    if local and code in local:
        return local[code]
    if subcodes and code in subcodes:
        code = subcodes[code]
    return (CODES_2024 if day >= CODE_CHANGE else CODES_LEGACY).get(code, "unknown")


# -- 3. The calendar -----------------------------------------------------------------------------------
#: England and Wales bank holidays (gov.uk), written out here rather than taken from a package.
ENGLAND_BANK_HOLIDAYS = frozenset(date.fromisoformat(d) for d in """
2024-01-01 2024-03-29 2024-04-01 2024-05-06 2024-05-27 2024-08-26 2024-12-25 2024-12-26
2025-01-01 2025-04-18 2025-04-21 2025-05-05 2025-05-26 2025-08-25 2025-12-25 2025-12-26
2026-01-01 2026-04-03 2026-04-06 2026-05-04 2026-05-25 2026-08-31 2026-12-25 2026-12-28
""".split())


@dataclass(frozen=True)
class Calendar:
    """School days: weekdays inside a term, minus closures and (bank + extra - not) holidays, minus
    dates on which every session was a whole-school ``#`` closure in the registers."""

    terms: tuple[tuple[date, date], ...]
    closures: frozenset[date] = frozenset()
    extra_holidays: frozenset[date] = frozenset()
    not_holidays: frozenset[date] = frozenset()
    closed_by_registers: frozenset[date] = frozenset()

    def is_school_day(self, d: date) -> bool:
        if d.weekday() >= 5 or not any(lo <= d <= hi for lo, hi in self.terms):
            return False
        holidays = (ENGLAND_BANK_HOLIDAYS | self.extra_holidays) - self.not_holidays
        return d not in self.closures and d not in holidays and d not in self.closed_by_registers

    def days(self, start: date, end: date) -> list[date]:
        out, d = [], start
        while d <= end:
            if self.is_school_day(d):
                out.append(d)
            d += timedelta(days=1)
        return out

    def nth_after(self, d: date, n: int) -> date:
        """The n-th school day strictly after ``d`` (n >= 1)."""
        while n:
            d += timedelta(days=1)
            if d > self.terms[-1][1]:
                raise ValueError("the calendar ends before that day")
            if self.is_school_day(d):
                n -= 1
        return d


# -- 4. Streaks ------------------------------------------------------------------------------------------
@dataclass
class Streak:
    counted: list[date] = field(default_factory=list)  # the counting days since the last break
    gaps: list[date] = field(default_factory=list)  # school days since the last break skipped for no_mark/unknown

    @property
    def days(self) -> int:
        return len(self.counted)

    @property
    def start(self) -> date | None:
        return self.counted[0] if self.counted else None

    def absence_days(self) -> list[date]:
        """SAFEST (and README's promise): the counting days and the register gaps from the streak's
        first day on are all school days of absence for the policy's steps and the referral's 10th
        day, so a missing register never holds a step back. DOMAIN.md alone counts only ``counted``;
        this is never fewer."""
        if not self.counted:
            return []
        return sorted([*self.counted, *(g for g in self.gaps if g > self.counted[0])])


@dataclass
class PupilView:
    """One pupil as of one evaluation date."""

    on_roll: bool
    unexplained: Streak
    unauthorised: Streak
    last_attended: date | None
    attended_on_as_of: bool
    seen: list[date]  # every day on roll up to the evaluation date with a session in school


def evaluate(marks: Mapping[date, tuple[str | None, str | None]], calendar: Calendar, as_of: date,
             roll_from: date | None, roll_to: date | None, local: Mapping[str, str] | None = None,
             subcodes: Mapping[str, str] | None = None) -> PupilView:
    """DOMAIN.md 4, read literally: walk the school days in order, drop neutral/unknown/no-mark
    sessions, count, skip or break. Only days on roll (``roll_from``..``roll_to``, None: open) count."""
    lo = roll_from or min([*marks, *(t[0] for t in calendar.terms)])
    hi = min(as_of, roll_to) if roll_to else as_of
    on_roll = (roll_from is None or roll_from <= as_of) and (roll_to is None or roll_to >= as_of)
    streaks = {kind: Streak() for kind in COUNTS}
    for d in calendar.days(lo, hi):
        classes = [classify(c, d, local, subcodes) for c in marks.get(d, (None, None))]
        left = [k for k in classes if k not in DROPPED]
        for kind, s in streaks.items():
            if not left:
                if any(k in ("no_mark", "unknown") for k in classes):
                    s.gaps.append(d)
            elif all(k in COUNTS[kind] for k in left):
                s.counted.append(d)
            else:
                s.counted, s.gaps = [], []
    seen = sorted(d for d, pair in marks.items() if (roll_from is None or d >= roll_from) and d <= hi
                  and any(classify(c, d, local, subcodes) in ATTENDED for c in pair))
    return PupilView(on_roll, streaks["unexplained"], streaks["unauthorised"], seen[-1] if seen else None,
                     as_of in seen, seen)


# -- 5. Criteria and stages --------------------------------------------------------------------------------
STAGES: Sequence[tuple[int, str]] = ((1, "first_day_call"), (2, "contact_all"), (3, "dsl_review"),
                                     (5, "home_visit"), (8, "referral_prepare"), (10, "referral_due"))
RANK = {name: i for i, (_, name) in enumerate(STAGES, start=1)}
#: A child protection plan or looked after: Social Care at once (and, SAFEST, the DSL's review on day 1 too).
SOCIAL_CARE_FLAGS = frozenset({"child_protection_plan", "looked_after"})
#: The policy's other vulnerable groups: the DSL's review moves to day 1.
EARLY_DSL_FLAGS = frozenset({"domestic_abuse", "highly_mobile", "young_carer", "permanently_excluded",
                             "medical_emotional", "parent_mental_health", "parent_learning_difficulty"})


def stage_for(days: int, flags: Iterable[str] = ()) -> str | None:
    """The stage an unexplained absence of ``days`` school days must have reached."""
    if days < 1:
        return None
    stage = [name for at, name in STAGES if at <= days][-1]
    if set(flags) & (EARLY_DSL_FLAGS | SOCIAL_CARE_FLAGS) and RANK[stage] < RANK["dsl_review"]:
        stage = "dsl_review"
    return stage


def referral_due(streak: Streak, calendar: Calendar, as_of: date) -> date | None:
    """The streak's 10th school day of absence; while it is ahead, projected by the calendar
    ("on day 7 of a streak, three school days ahead, skipping holidays")."""
    days = streak.absence_days()
    if not days:
        return None
    if len(days) >= 10:
        return days[9]
    return calendar.nth_after(as_of, 10 - len(days))


def destination_unknown(destination: str | None, leaving_reason: str | None) -> bool:
    """SAFEST: a blank destination, or one that says it is unknown, is no destination; a leaving
    reason that says the destination or whereabouts are unknown makes it unknown whatever else."""
    dest = (destination or "").strip().lower()
    reason = (leaving_reason or "").lower()
    return dest in ("", "unknown", "not known") or "unknown" in reason or "not known" in reason
