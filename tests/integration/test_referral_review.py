"""An adversarial review of what the LA's Access to Education Team receives (DOMAIN.md 6 and 5).

Cases are loaded through the real store (``tests.referral_support.seed_case``) and the referral or
update is read as the LA would read it: the JSON document the bundle carries (and its PDF's text),
and the messages queued for the LA by the nightly ``referrals`` stage.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import NOW, Family, bundle_of, pdf_text, seed_case

D = date.fromisoformat


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(engine.url)))


def _pupil_id(engine: Engine, upn: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(t.pupils.c.id).where(t.pupils.c.upn == upn)
                                .order_by(t.pupils.c.id.desc())).scalars().first())


def _evaluated_on(engine: Engine, case_id: int, day: date) -> None:
    """The engine re-evaluated the case on ``day`` (the last detect run before a holiday)."""
    with engine.begin() as conn:
        conn.execute(insert(t.case_events).values(
            case_id=case_id, at=datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=5),
            as_of=day, kind="stage", actor="system", detail={"stage": "referral_due"}, evidence=[]))


def _leaves(engine: Engine, pupil_id: int, on: date) -> None:
    with engine.begin() as conn:
        conn.execute(insert(t.enrolments).values(
            pupil_id=pupil_id, source="test", admission_date=D("2023-09-01"), entry_date=D("2023-09-01"),
            leaving_date=on, leaving_reason="Moved away", withdrawn=False, updated_at=NOW))


# -- siblings -------------------------------------------------------------------------------

def test_a_sibling_who_left_in_the_holiday_is_not_listed_as_a_sibling_on_roll(engine: Engine, cfg: Config) -> None:
    """The night's evaluation date stays on the last day of term through the Christmas holiday. A
    sibling taken off roll on 22 December (a holiday day that has come when the referral is built on
    23 December) was listed as a sibling on roll: the LA would take them to be at school, seen daily."""
    case_id = seed_case(engine)
    _evaluated_on(engine, case_id, D("2025-12-19"))
    _leaves(engine, _pupil_id(engine, "A916299925002"), D("2025-12-22"))
    doc = bundle_of(engine, cfg, case_id, datetime(2025, 12, 23, 6, 0, tzinfo=UTC)).document
    assert doc["case"]["evaluated_on"] == "2025-12-19"
    assert [s["name"] for s in doc["siblings"]] == []


def test_a_sibling_leaving_after_the_holiday_is_still_on_roll(engine: Engine, cfg: Config) -> None:
    """A leaving dated on the first day of next term has not passed in the holiday."""
    case_id = seed_case(engine)
    _evaluated_on(engine, case_id, D("2025-12-19"))
    _leaves(engine, _pupil_id(engine, "A916299925002"), D("2026-01-05"))
    doc = bundle_of(engine, cfg, case_id, datetime(2025, 12, 23, 6, 0, tzinfo=UTC)).document
    assert [s["name"] for s in doc["siblings"]] == ["Oliver Marsh-Ellery"]


# -- updates --------------------------------------------------------------------------------

def _closed_as_left(engine: Engine, case_id: int, destination: str | None) -> None:
    """The referred child is taken off roll on 5 December; the engine closes the case as ``left``."""
    pid = _pupil_id(engine, "A916299925001")
    with engine.begin() as conn:
        conn.execute(update(t.enrolments).where(t.enrolments.c.pupil_id == pid).values(
            leaving_date=D("2025-12-05"), leaving_reason="Moved away", destination=destination))
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(
            status="closed", closed_on=D("2025-12-05"), closed_reason="left"))
        conn.execute(insert(t.case_events).values(
            case_id=case_id, at=datetime(2025, 12, 5, 23, 0, tzinfo=UTC), as_of=D("2025-12-05"), kind="closed",
            actor="system", detail={"reason": "left"}, evidence=[]))


def test_an_update_for_a_referred_child_who_left_for_a_known_school_says_the_destination_is_known(
        engine: Engine, cfg: Config) -> None:
    """A child referred for unexplained absence is taken off roll with the new school recorded: the
    update said only "The school has closed the case"."""
    case_id = seed_case(engine, Family(referred=True))
    _closed_as_left(engine, case_id, "Tewkesbury Academy, Gloucestershire")
    bundle = bundle_of(engine, cfg, case_id, datetime(2025, 12, 6, 5, 0, tzinfo=UTC), kind="update")
    u = bundle.document["update"]
    assert (u["reason"], u["destination"], u["leaving_date"]) == (
        "destination_known", "Tewkesbury Academy, Gloucestershire", "2025-12-05")
    assert "The destination is now known" in pdf_text(bundle.pdf)


def test_an_update_for_a_referred_child_who_left_with_no_destination_says_the_child_is_still_missing(
        engine: Engine, cfg: Config) -> None:
    """A child referred for unexplained absence is taken off roll with no destination (the case closes
    as "left", and a "destination unknown" case of its own opens). The update's form said only "The
    school has closed the case": the LA could read the child as accounted for."""
    case_id = seed_case(engine, Family(referred=True))
    _closed_as_left(engine, case_id, None)
    bundle = bundle_of(engine, cfg, case_id, datetime(2025, 12, 6, 5, 0, tzinfo=UTC), kind="update")
    u = bundle.document["update"]
    assert (u["reason"], u["closed_reason"], u["destination"]) == ("closed", "left", None)
    text = " ".join(pdf_text(bundle.pdf).split())
    assert "NO DESTINATION KNOWN: the child is still missing" in text
    assert "The school has closed the case" not in text


def test_an_update_for_a_referred_case_a_place_not_taken_up_took_over_says_the_child_is_still_missing(
        engine: Engine, cfg: Config) -> None:
    """A referred child admitted again (or first) and not come: the place not taken up becomes the
    child's case and this one closes as superseded (a "destination unknown" case closed as "no longer
    applies" before, the fifteenth session). The update said "The school has closed the case": the LA
    could read the child as accounted for."""
    case_id = seed_case(engine, Family(referred=True))
    with engine.begin() as conn:
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(
            status="closed", closed_on=D("2025-12-05"), closed_reason="superseded"))
        conn.execute(insert(t.case_events).values(
            case_id=case_id, at=datetime(2025, 12, 5, 23, 0, tzinfo=UTC), as_of=D("2025-12-05"), kind="closed",
            actor="system", detail={"reason": "superseded"}, evidence=[]))
    bundle = bundle_of(engine, cfg, case_id, datetime(2025, 12, 6, 5, 0, tzinfo=UTC), kind="update")
    assert (bundle.document["update"]["reason"], bundle.document["update"]["closed_reason"]) == ("closed", "superseded")
    text = " ".join(pdf_text(bundle.pdf).split())
    assert "STILL MISSING" in text and "a place not taken up" in text
    assert "The school has closed the case" not in text
