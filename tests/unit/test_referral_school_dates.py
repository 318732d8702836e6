"""The referral dates and times what it shows by England's clocks (Europe/London), not UTC's.

Moments are stored in UTC (SQLite gives them back without a zone). 23:30 UTC on Monday 13 April
2026 is 00:30 BST on Tuesday 14 April at the school and at the LA: a referral queued then was
sent on the 14th. In winter England keeps GMT, which is UTC, so the dates shown do not change.
Each test reads the referral as the LA's officer does: the JSON document, the PDF's text and
the covering note.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, insert, select, update

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.model import MarksRecord, SourceBatch
from cme_batch.referral.pdf import fmt_date
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.referral_support import NOW, Family, bundle_of, pdf_text, seed_case

#: 00:30 BST on Tuesday 14 April 2026, as stored.
SUMMER_NIGHT = datetime(2026, 4, 13, 23, 30, tzinfo=UTC)
#: 23:30 GMT on Monday 1 December 2025: England's date is UTC's.
WINTER_NIGHT = datetime(2025, 12, 1, 23, 30, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate(engine)
    return engine


@pytest.fixture
def cfg(store: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(store.url)))



def _set_case(store: Engine, case_id: int, **values: Any) -> None:
    with store.begin() as conn:
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(**values))


def _child_key(store: Engine, case_id: int) -> tuple[str, int]:
    with store.connect() as conn:
        key, school_id = conn.execute(
            select(t.pupil_keys.c.pupil_key, t.pupils.c.school_id)
            .join(t.cases, t.cases.c.pupil_id == t.pupil_keys.c.pupil_id)
            .join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id).where(t.cases.c.id == case_id)).one()
    return str(key), int(school_id)


def _referred_case(store: Engine, referred_at: datetime, closed_on: date, marks: MarksRecord | None = None,
                   closed_reason: str = "returned") -> int:
    """A referred case, closed on ``closed_on``; ``marks`` (pupil key filled in) are loaded for the child."""
    case_id = seed_case(store, Family(referred=True))
    _set_case(store, case_id, referred_at=referred_at, status="closed", closed_on=closed_on,
              closed_reason=closed_reason)
    if marks is not None:
        key, school_id = _child_key(store, case_id)
        record = MarksRecord(key, marks.start, marks.codes)
        apply_batch(store, school_id, SourceBatch("test", f"marks{case_id}", records=[record]), NOW)
    return case_id


def _only_action_at(store: Engine, case_id: int, at: datetime, detail: dict[str, Any]) -> None:
    """The case's actions log is one home visit recorded at ``at`` with no evaluation date of its own."""
    with store.begin() as conn:
        conn.execute(delete(t.case_events).where(t.case_events.c.case_id == case_id,
                                                 t.case_events.c.kind.in_(("action", "note"))))
        conn.execute(insert(t.case_events).values(case_id=case_id, at=at, as_of=None, kind="action",
                                                  actor="dsl@school.example", detail=detail))


# -- 1. the update's "referred on", and its covering note's "sent on" -----------------------------

def test_an_update_to_a_referral_queued_after_midnight_in_summer_says_the_english_day(
        store: Engine, cfg: Config) -> None:
    case_id = _referred_case(store, SUMMER_NIGHT, date(2026, 4, 16),
                             MarksRecord("", date(2026, 4, 16), ("/", "/")))
    bundle = bundle_of(store, cfg, case_id, datetime(2026, 4, 17, 6, 0, tzinfo=UTC), "update")
    assert bundle.document["update"]["referred_on"] == "2026-04-14"
    assert "Referred on 14 Apr 2026" in pdf_text(bundle.pdf)
    assert "sent on 14 Apr 2026." in bundle.note
    assert bundle.document["update"]["reason"] == "returned"
    assert bundle.document["update"]["last_attended"] == "2026-04-16"


def test_attending_the_day_before_a_referral_queued_after_midnight_is_not_a_return(
        store: Engine, cfg: Config) -> None:
    """Monday's registers were complete when the referral went at 00:30 BST on Tuesday: a day in
    school on Monday came before the referral, so the update does not say the child returned."""
    case_id = _referred_case(store, SUMMER_NIGHT, date(2026, 4, 16),
                             MarksRecord("", date(2026, 4, 13), ("/", "/", "N", "N", "N", "N")),
                             closed_reason="closed_by_dsl")
    bundle = bundle_of(store, cfg, case_id, datetime(2026, 4, 17, 6, 0, tzinfo=UTC), "update")
    assert bundle.document["update"]["reason"] == "closed"
    assert bundle.document["update"]["last_attended"] == "2025-11-14"  # as referred
    assert "The child has returned to school" not in pdf_text(bundle.pdf)


def test_in_winter_the_update_keeps_the_utc_day(store: Engine, cfg: Config) -> None:
    case_id = _referred_case(store, WINTER_NIGHT, date(2025, 12, 3),
                             MarksRecord("", date(2025, 12, 3), ("/", "/")))
    bundle = bundle_of(store, cfg, case_id, datetime(2025, 12, 4, 6, 0, tzinfo=UTC), "update")
    assert bundle.document["update"]["referred_on"] == "2025-12-01"
    assert "Referred on 01 Dec 2025" in pdf_text(bundle.pdf)
    assert "sent on 01 Dec 2025." in bundle.note


# -- 2. an action with no date of its own ----------------------------------------------------------

def test_an_action_recorded_after_midnight_in_summer_is_dated_by_englands_calendar(
        store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _only_action_at(store, case_id, SUMMER_NIGHT, {"action": "home_visit", "outcome": "No reply"})
    bundle = bundle_of(store, cfg, case_id)
    assert [a["date"] for a in bundle.document["actions"]] == ["2026-04-14"]
    ticked = {c["action"]: c["dates"] for c in bundle.document["checklist"]}
    assert ticked["home_visit"] == ["2026-04-14"]
    text = pdf_text(bundle.pdf)
    assert "Home visit 14 Apr 2026" in text  # the checklist
    assert "14 Apr 2026 Home visit" in text  # the actions log
    assert "13 Apr 2026" not in text


def test_an_action_dated_with_a_utc_moment_is_dated_by_englands_calendar(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _only_action_at(store, case_id, datetime(2026, 4, 14, 9, 0, tzinfo=UTC),
                    {"action": "home_visit", "outcome": "No reply", "date": SUMMER_NIGHT.isoformat()})
    bundle = bundle_of(store, cfg, case_id)
    assert [a["date"] for a in bundle.document["actions"]] == ["2026-04-14"]


def test_in_winter_an_action_keeps_the_utc_day(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _only_action_at(store, case_id, WINTER_NIGHT, {"action": "home_visit", "outcome": "No reply"})
    bundle = bundle_of(store, cfg, case_id)
    assert [a["date"] for a in bundle.document["actions"]] == ["2025-12-01"]
    text = pdf_text(bundle.pdf)
    assert "Home visit 01 Dec 2025" in text and "01 Dec 2025 Home visit" in text


# -- 3. the DSL's confirmation, and the form's own date and time ----------------------------------

def test_the_confirmation_time_is_shown_as_englands_clocks_showed_it(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _set_case(store, case_id, confirmed_at=SUMMER_NIGHT)
    bundle = bundle_of(store, cfg, case_id)
    # the JSON keeps the moment itself, with its offset: a machine reads it without guessing the zone
    assert bundle.document["confirmation"]["at"] == "2026-04-13T23:30:00+00:00"
    text = pdf_text(bundle.pdf)
    assert "Confirmed at 14 Apr 2026 00:30 BST" in text
    assert "UTC" not in text
    assert "on 14 Apr 2026 00:30 BST." in bundle.note


def test_the_forms_date_and_footer_are_englands(store: Engine, cfg: Config) -> None:
    bundle = bundle_of(store, cfg, seed_case(store), SUMMER_NIGHT)
    assert bundle.document["generated_at"] == "2026-04-13T23:30:00+00:00"
    text = pdf_text(bundle.pdf)
    assert "Date of this form 14 Apr 2026 00:30 BST" in text
    assert "generated 14 Apr 2026 00:30 BST" in text


def test_in_winter_the_confirmation_and_form_keep_the_utc_date_and_time(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _set_case(store, case_id, confirmed_at=WINTER_NIGHT)
    bundle = bundle_of(store, cfg, case_id, WINTER_NIGHT)
    assert bundle.document["confirmation"]["at"] == "2025-12-01T23:30:00+00:00"
    text = pdf_text(bundle.pdf)
    assert "Confirmed at 01 Dec 2025 23:30" in text
    assert "Date of this form 01 Dec 2025 23:30" in text
    assert "on 01 Dec 2025 23:30" in bundle.note


def test_in_winter_the_zone_is_named_gmt(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _set_case(store, case_id, confirmed_at=WINTER_NIGHT)
    assert "Confirmed at 01 Dec 2025 23:30 GMT" in pdf_text(bundle_of(store, cfg, case_id, WINTER_NIGHT).pdf)


@pytest.mark.parametrize(("value", "shown"), [
    ("2026-04-13T23:30:00+00:00", "14 Apr 2026 00:30 BST"),
    ("2026-04-13T23:30:00", "14 Apr 2026 00:30 BST"),  # no offset: UTC, as the store means it
    ("2026-04-14T00:30:00+01:00", "14 Apr 2026 00:30 BST"),
    ("2026-03-29T00:59:00+00:00", "29 Mar 2026 00:59 GMT"),  # the minute before the clocks go forward
    ("2026-03-29T01:00:00+00:00", "29 Mar 2026 02:00 BST"),
    ("2025-12-01T23:30:00+00:00", "01 Dec 2025 23:30 GMT"),
    ("2026-04-13", "13 Apr 2026"),  # a date is a date: never shifted
    (None, ""),
])
def test_fmt_date_shows_moments_by_englands_clocks(value: str | None, shown: str) -> None:
    assert fmt_date(value) == shown
