"""The demo's own check: it says when the engine's cases differ from the planted ones."""

from __future__ import annotations

from datetime import date
from typing import Any

from cme_batch.demo import generate
from cme_batch.demo.check import compare

SCHOOL = generate(5, 80)


def as_stored() -> list[dict[str, Any]]:
    """The planted cases as the store would hold them if the engine got everything right."""
    return [{"pupil_key": c.pupil_key, "kind": c.kind, "status": "open" if c.open_at_as_of else "closed",
             "stage": c.stage, "episode_start": c.streak_start, "school_days": c.school_days,
             "closed_reason": c.closed_reason, "referral_due": c.referral_due,
             "register_gaps": [d.isoformat() for d in c.register_gaps],
             "alerts": [{"kind": a} for a in c.alerts]} for c in SCHOOL.planted]


def la() -> set[tuple[str, date]]:
    return {(r.pupil_key, r.start) for r in SCHOOL.la_returns}


def test_a_perfect_engine_passes() -> None:
    result = compare(SCHOOL, as_stored(), la_returns=la())
    assert result.ok and result.found == len(SCHOOL.planted)


def test_missing_wrong_and_unplanted_cases_are_named() -> None:
    cases = as_stored()
    gone = cases.pop(0)
    gap = next(c for c in cases if c["register_gaps"])
    gap["referral_due"] = date(2026, 1, 6)
    cases.append({**cases[-1], "pupil_key": "ADNO9999", "kind": "unexplained_absence", "status": "open"})
    problems = compare(SCHOOL, cases, la_returns=la() - {next(iter(sorted(la())))}).problems
    assert any(p.startswith("missing:") and gone["pupil_key"] in p for p in problems)
    assert any("register_gap" in p and "expected referral_due 2025-12-19, is 2026-01-06" in p for p in problems)
    assert any("unplanted open case: ADNO9999" in p for p in problems)
    assert any(p.startswith("missing from the LA 10-day return") for p in problems)


def test_a_single_run_is_judged_on_the_cases_open_on_the_last_day() -> None:
    open_only = [c for c in as_stored() if c["status"] == "open"]
    result = compare(SCHOOL, open_only, only_open=True)
    assert result.ok and result.expected == sum(c.open_at_as_of for c in SCHOOL.planted)
