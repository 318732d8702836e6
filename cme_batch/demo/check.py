"""Compare the cases the engine opened for the demo school with the cases the demo planted.

Used by ``cme-batch demo`` to say, in one line per difference, whether the engine found every
planted case and opened nothing else. Stored pupils are matched to the demo's by UPN, so the
check works whichever source loaded them; they are named only by their demo key
(``ADNO0042``) and the story they belong to, never by name or UPN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from cme_batch.demo.generator import DemoSchool
from cme_batch.demo.plants import ExpectedCase
from cme_batch.model import PupilRecord
from cme_batch.store import tables as t


@dataclass
class CheckResult:
    found: int = 0
    expected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.found == self.expected


def _keys_by_upn(school: DemoSchool) -> dict[str, str]:
    return {r.upn: r.pupil_key for r in school.records if isinstance(r, PupilRecord) and r.upn}


def stored_cases(engine: Engine, school: DemoSchool) -> list[dict[str, Any]]:
    """Every stored case, with the demo key of its pupil (``?`` for a pupil the demo does not know)."""
    keys = _keys_by_upn(school)
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.pupils.c.upn, t.cases.c.kind, t.cases.c.status, t.cases.c.stage,
                   t.cases.c.episode_start, t.cases.c.school_days, t.cases.c.closed_reason,
                   t.cases.c.referral_due, t.cases.c.register_gaps, t.cases.c.alerts)
            .join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id)).mappings().all()
    return [{"pupil_key": keys.get(r["upn"], "?"), **{k: v for k, v in r.items() if k != "upn"}} for r in rows]


def stored_la_returns(engine: Engine, school: DemoSchool) -> set[tuple[str, date]]:
    """(demo key, episode start) of every pupil listed for the LA 10-day return."""
    keys = _keys_by_upn(school)
    with engine.connect() as conn:
        rows = conn.execute(select(t.pupils.c.upn, t.la_returns.c.episode_start)
                            .join(t.pupils, t.pupils.c.id == t.la_returns.c.pupil_id)).all()
    return {(keys.get(u, "?"), d) for u, d in rows}


def _same_episode(case: dict[str, Any], start: date | None) -> bool:
    return start is None or case["episode_start"] in (None, start)


def differences(want: ExpectedCase, case: dict[str, Any]) -> list[str]:
    """What differs between a planted case and the stored one (fields the plant leaves None are not checked)."""
    status = "open" if want.open_at_as_of else "closed"
    got = {
        "status": case["status"], "stage": case["stage"], "school_days": case["school_days"],
        "closed_reason": case["closed_reason"], "referral_due": case["referral_due"],
        "register_gaps": tuple(date.fromisoformat(d) for d in case["register_gaps"] or ()),
        "alerts": tuple(sorted(a.get("kind", "") if isinstance(a, dict) else str(a) for a in case["alerts"] or ())),
    }
    expected = {"status": status, "stage": want.stage, "school_days": want.school_days,
                "closed_reason": want.closed_reason, "referral_due": want.referral_due,
                "register_gaps": want.register_gaps, "alerts": tuple(sorted(want.alerts))}
    return [f"expected {name} {value}, is {got[name]}" for name, value in expected.items()
            if value is not None and got[name] != value]


def compare(school: DemoSchool, cases: list[dict[str, Any]], only_open: bool = False,
            la_returns: set[tuple[str, date]] | None = None) -> CheckResult:
    """Every planted case present as planted, nothing unplanted open, the LA return as planted.

    ``only_open``: the engine ran for ``as_of`` alone, so only the cases open then can be there.
    """
    planted = [c for c in school.planted if c.open_at_as_of or not only_open]
    result = CheckResult(expected=len(planted))
    for want in planted:
        label = f"{want.role} ({want.pupil_key}, {want.kind})"
        match = [c for c in cases if c["pupil_key"] == want.pupil_key and c["kind"] == want.kind
                 and _same_episode(c, want.streak_start)]
        if not match:
            result.problems.append(f"missing: {label}")
            continue
        wrong = differences(want, match[0])
        result.problems += [f"{label}: {w}" for w in wrong]
        result.found += not wrong
    planted_open = {(c.pupil_key, c.kind) for c in school.planted if c.open_at_as_of}
    for case in cases:
        if case["status"] == "open" and (case["pupil_key"], case["kind"]) not in planted_open:
            result.problems.append(f"unplanted open case: {case['pupil_key']} {case['kind']}")
    for no in school.no_case:
        if any(c["pupil_key"] == no.pupil_key and c["kind"] == no.kind
               and ((no.never and not only_open) or c["status"] == "open")
               for c in cases):
            result.problems.append(f"should have no {no.kind} case: {no.role} ({no.pupil_key}): {no.why}")
    if la_returns is not None:
        listed = {(r.pupil_key, r.start) for r in school.la_returns if r.open_at_as_of or not only_open}
        result.problems += [f"missing from the LA 10-day return: {k} from {d}" for k, d in sorted(listed - la_returns)]
        result.problems += [f"unplanted in the LA 10-day return: {k} from {d}" for k, d in sorted(la_returns - listed)]
    return result
