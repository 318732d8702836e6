"""The planted cases: streaks and admissions written into the demo registers, with what each must cause.

Every expectation is worked out here by hand from what is planted, counting on the demo's own
list of school days (``term``), never by asking the engine: these are the answers the engine
is checked against. The rules come from DOMAIN.md sections 4 and 5 with the default thresholds.

Expectations describe the engine run night by night, once per school day up to ``as_of``, with
the demo's "newer export" (``corrections``) loaded before the night of ``corrections_on``
(that is what ``cme-batch demo`` does). ``open_at_as_of`` marks the cases a single run as of
``as_of`` must also find open; the others were opened and closed on earlier nights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from cme_batch.config import Thresholds
from cme_batch.demo import term
from cme_batch.demo.attendance import PRESENT, Day, Register

STAGE_ORDER = ("first_day_call", "contact_all", "dsl_review", "home_visit", "referral_prepare", "referral_due")
#: Flags that raise the immediate social care alert (DOMAIN.md 5).
ALERT_FLAGS = frozenset({"child_protection_plan", "looked_after"})
#: Flags of the policy's other vulnerable groups: the DSL reviews on day 1.
EARLY_REVIEW_FLAGS = frozenset({"domestic_abuse", "highly_mobile", "young_carer", "permanently_excluded",
                                "medical_emotional", "parent_mental_health", "parent_learning_difficulty"})


@dataclass(frozen=True)
class ExpectedCase:
    """A case the engine must have opened by ``as_of``; dates are school days of the demo term."""

    pupil_key: str
    kind: str  # unexplained_absence, place_not_taken_up, destination_unknown, repeat_missing
    role: str  # which plant this is, e.g. "half_term_return"
    stage: str | None  # the stage reached (for a closed case: when it closed)
    open_at_as_of: bool
    streak_start: date | None = None
    school_days: int | None = None  # counting days of the streak (at as_of, or when it last counted)
    closed_on: date | None = None  # the night the case closes
    closed_reason: str | None = None  # returned, explained
    referral_due: date | None = None  # the date of the streak's 10th school day by the calendar
    register_gaps: tuple[date, ...] = ()
    alerts: tuple[str, ...] = ()
    below_compulsory_age: bool = False

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (v.isoformat() if isinstance(v, date) else
                    [x.isoformat() for x in v] if k == "register_gaps" else
                    list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


@dataclass(frozen=True)
class NoCase:
    """A pupil who must NOT have an open case of ``kind`` at ``as_of`` (and ``never``: not on any night)."""

    pupil_key: str
    kind: str
    role: str
    why: str
    never: bool = True


@dataclass(frozen=True)
class LaReturn:
    """A pupil whose unauthorised streak reaches 10 school days: listed for the LA 10-day return."""

    pupil_key: str
    start: date
    school_days: int
    open_at_as_of: bool = True


DEFAULTS = Thresholds()


def expected_stage(days: int, flags: frozenset[str] = frozenset(), th: Thresholds = DEFAULTS) -> str:
    """The furthest stage of the policy whose day has been reached."""
    due = {name: getattr(th, name) for name in STAGE_ORDER}
    # DOMAIN.md 5 moves dsl_review to day 1 for "the other groups"; a child on a protection plan or
    # in care, whose absence is reported to social care on day 1, is read as at least as urgent.
    if flags & (EARLY_REVIEW_FLAGS | ALERT_FLAGS):
        due["dsl_review"] = 1
    return [name for name in STAGE_ORDER if due[name] <= days][-1]


def referral_due(start: date) -> date:
    """The date of the streak's 10th school day by the calendar, counted from its first day.

    DOMAIN.md 5: on day 7 of a streak the referral is due three school days ahead, skipping
    holidays. A register gap inside the streak counts as a day of it here: the child was not
    seen, and a missing register must never push the referral later.
    """
    days = [d for d in term.YEAR_SCHOOL_DAYS if d >= start]
    return days[DEFAULTS.referral_due - 1]


class Planter:
    """Writes planted marks into registers and records what each plant must cause."""

    def __init__(self, registers: dict[str, Register], as_of: date = term.AS_OF) -> None:
        self.registers = registers
        self.as_of = as_of
        self.cases: list[ExpectedCase] = []
        self.no_case: list[NoCase] = []
        self.la_returns: list[LaReturn] = []
        self.flags: dict[str, frozenset[str]] = {}
        self.below_age: dict[str, bool] = {}

    def mark(self, key: str, day: date, marks: Day) -> None:
        self.registers[key].set(day, marks)

    def unexplained(self, key: str, role: str, first: date, count: int, end: str,
                    gaps: tuple[date, ...] = (), codes: Day = ("N", "N")) -> ExpectedCase:
        """An unexplained streak of ``count`` counting days from ``first``, skipping ``gaps`` (no register).

        ``end`` is ``open`` (the streak runs to as_of), ``returned`` (seen the next school day)
        or ``explained`` (an illness mark the next school day).
        """
        counting: list[date] = []
        day = first
        while len(counting) < count:
            if day in gaps:
                self.mark(key, day, ("-", "-"))
            else:
                self.mark(key, day, codes)
                counting.append(day)
            if len(counting) < count:
                day = term.next_school_day(day)
        last = counting[-1]
        closed_on, reason = None, None
        if end == "open":
            assert last == self.as_of, f"{role}: an open streak must run to as_of"
        else:
            closed_on = term.next_school_day(last)
            self.mark(key, closed_on, PRESENT if end == "returned" else ("I", "I"))
            reason = end
        flags = self.flags.get(key, frozenset())
        case = ExpectedCase(
            pupil_key=key, kind="unexplained_absence", role=role,
            stage=expected_stage(count + len(gaps), flags), open_at_as_of=end == "open", streak_start=first,
            school_days=count, closed_on=closed_on, closed_reason=reason, referral_due=referral_due(first),
            register_gaps=gaps, alerts=("immediate_social_care",) if flags & ALERT_FLAGS else (),
            below_compulsory_age=self.below_age.get(key, False))
        self.cases.append(case)
        if count >= DEFAULTS.la_return_days:
            self.la_returns.append(LaReturn(key, first, count, end == "open"))
        return case

    def open_streak(self, key: str, role: str, count: int, gaps: tuple[date, ...] = (),
                    codes: Day = ("N", "N")) -> ExpectedCase:
        """A streak of ``count`` counting days that ends on as_of."""
        first = term.YEAR_SCHOOL_DAYS[term.index(self.as_of) - count - len(gaps) + 1]
        return self.unexplained(key, role, first, count, "open", gaps, codes)

    def other(self, key: str, kind: str, role: str, stage: str | None, **kw: Any) -> None:
        self.cases.append(ExpectedCase(key, kind, role, stage, True,
                                       below_compulsory_age=self.below_age.get(key, False), **kw))

    def must_not(self, key: str, kind: str, role: str, why: str, never: bool = True) -> None:
        self.no_case.append(NoCase(key, kind, role, why, never))
