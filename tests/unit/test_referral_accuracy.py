"""What the referral tells the LA is only what the school recorded, said once, as of an England date.

Each test reads the referral as the LA's officer does: the JSON document sent in the bundle and
the text of its PDF.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert, select

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.model import FlagRecord
from cme_batch.replies.parse import note_detail
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import Family, bundle_of, pdf_text, seed_case

CLAIM = "attempts to contact failed"
NONE_RECORDED = "no contact attempt is recorded"


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate(engine)
    return engine


@pytest.fixture
def cfg(store: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(store.url)))



def _forget_events(store: Engine, case_id: int, kinds: tuple[str, ...] = ("action", "note")) -> None:
    with store.begin() as conn:
        conn.execute(delete(t.case_events).where(t.case_events.c.case_id == case_id,
                                                 t.case_events.c.kind.in_(kinds)))


def _between(text: str, start: str, end: str) -> str:
    head = text.index(start) + len(start)
    return text[head:text.index(end, head)]


# -- 1. "attempts to contact failed" only when an attempt is recorded ---------------------------

def test_with_no_contact_attempt_recorded_the_referral_does_not_say_attempts_failed(store: Engine,
                                                                                   cfg: Config) -> None:
    case_id = seed_case(store)
    _forget_events(store, case_id)
    bundle = bundle_of(store, cfg, case_id)
    assert bundle.document["actions"] == []
    expected = f"10 or more days of continuous absence without explanation; {NONE_RECORDED}"
    assert bundle.document["case"]["criterion_text"] == expected
    assert json.loads(bundle.json)["case"]["criterion_text"] == expected
    text = pdf_text(bundle.pdf)
    assert CLAIM not in text and CLAIM.encode() not in bundle.json
    assert expected in text


def test_a_search_and_a_note_are_not_contact_attempts(store: Engine, cfg: Config) -> None:
    """Social media searches and a note from a class teacher are recorded, but nobody tried to reach
    the family: the form lists them under actions and does not say attempts to contact failed."""
    case_id = seed_case(store, Family(kind="place_not_taken_up"))
    with store.begin() as conn:
        conn.execute(delete(t.case_events).where(t.case_events.c.case_id == case_id,
                                                 t.case_events.c.kind.in_(("action", "note"))))
        for text in ("social-media: no public posts", "Class teacher has heard nothing from the family"):
            kind, detail = note_detail(text, "dsl@school.example")
            conn.execute(insert(t.case_events).values(case_id=case_id, at=datetime(2025, 11, 25, 12, tzinfo=UTC),
                                                      as_of=date(2025, 11, 25), kind=kind,
                                                      actor="dsl@school.example", detail=detail))
    bundle = bundle_of(store, cfg, case_id)
    assert [a["label"] for a in bundle.document["actions"]] == ["Social media searches", "Note"]
    expected = f"Has not taken up an allocated school place; {NONE_RECORDED}"
    assert bundle.document["case"]["criterion_text"] == expected
    text = pdf_text(bundle.pdf)
    assert CLAIM not in text and expected in text


def test_a_recorded_call_keeps_the_statement_that_attempts_failed(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _forget_events(store, case_id)
    kind, detail = note_detail("first-day-call: no answer on the mother's mobile", "office@school.example")
    with store.begin() as conn:
        conn.execute(insert(t.case_events).values(case_id=case_id, at=datetime(2025, 11, 17, 10, tzinfo=UTC),
                                                  as_of=date(2025, 11, 17), kind=kind,
                                                  actor="office@school.example", detail=detail))
    bundle = bundle_of(store, cfg, case_id)
    expected = f"10 or more days of continuous absence without explanation; {CLAIM}"
    assert bundle.document["case"]["criterion_text"] == expected
    assert expected in pdf_text(bundle.pdf)


def test_the_update_document_makes_no_claim_either(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store, Family(referred=True))
    _forget_events(store, case_id)
    doc = bundle_of(store, cfg, case_id, kind="update").document
    assert doc["case"]["criterion_text"] == f"10 or more days of continuous absence without explanation; " \
                                            f"{NONE_RECORDED}"


# -- 2. "Also recorded" lists only what no other box shows --------------------------------------

def test_also_recorded_does_not_repeat_the_child_protection_plan(store: Engine, cfg: Config) -> None:
    flags = [FlagRecord("P1", "child_protection_plan", date(2025, 5, 1), detail="Neglect, since May 2025"),
             FlagRecord("P1", "sen_support", date(2024, 9, 1)),
             FlagRecord("P1", "highly_mobile", date(2023, 9, 1), detail="Armed forces family")]
    bundle = bundle_of(store, cfg, seed_case(store, Family(flags=flags)))
    text = pdf_text(bundle.pdf)
    also = _between(text, "Also recorded", "Alerts raised")
    assert "Child protection plan" not in also
    assert "SEN support" not in also  # the SEN or EHCP box says it
    assert "Highly mobile family (armed forces, Gypsy, Roma, Traveller) (Armed forces family)" in also
    # the plan's detail is not lost: the plan's own box carries it
    assert "Child protection plan Yes (Neglect, since May 2025)" in text
    assert text.count("Neglect, since May 2025") == 1
    assert "SEN or EHCP SEN support" in text


def test_also_recorded_keeps_what_no_box_shows(store: Engine, cfg: Config) -> None:
    flags = [FlagRecord("P1", "looked_after", date(2024, 1, 1)), FlagRecord("P1", "young_carer", date(2024, 1, 1)),
             FlagRecord("P1", "ehcp", date(2024, 9, 1)),
             FlagRecord("P1", "sen_support", date(2023, 9, 1), detail="Speech and language")]
    text = pdf_text(bundle_of(store, cfg, seed_case(store, Family(flags=flags))).pdf)
    also = _between(text, "Also recorded", "Alerts raised")
    # the SEN box shows the plan; SEN support appears nowhere else, so it stays
    assert also.strip() == "SEN support (Speech and language)"
    assert "Looked after Yes" in text and "Young carer Yes" in text
    assert "SEN or EHCP Education, health and care plan" in text


def test_also_recorded_says_nothing_else_when_every_flag_has_its_own_box(store: Engine, cfg: Config) -> None:
    only_boxed = [FlagRecord("P1", "child_protection_plan", date(2025, 5, 1))]
    text = pdf_text(bundle_of(store, cfg, seed_case(store, Family(flags=only_boxed))).pdf)
    assert _between(text, "Also recorded", "Alerts raised").strip() == "nothing else"


# -- 3. the fallback evaluation date is the school's date -----------------------------------------

def test_a_case_with_no_events_is_dated_by_englands_calendar_not_utcs(store: Engine, cfg: Config) -> None:
    """23:30 UTC on 14 April 2026 is 00:30 on 15 April in England (BST)."""
    case_id = seed_case(store)
    _forget_events(store, case_id, ("opened", "action", "note", "stage"))
    with store.connect() as conn:
        assert conn.execute(select(t.detect_runs.c.id)).first() is None
    bundle = bundle_of(store, cfg, case_id, now=datetime(2026, 4, 14, 23, 30, tzinfo=UTC))
    assert bundle.document["case"]["evaluated_on"] == "2026-04-15"
    assert "Facts as of 15 Apr 2026" in pdf_text(bundle.pdf)


def test_in_winter_the_school_date_is_the_utc_date(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _forget_events(store, case_id, ("opened", "action", "note", "stage"))
    bundle = bundle_of(store, cfg, case_id, now=datetime(2025, 12, 1, 23, 30, tzinfo=UTC))
    assert bundle.document["case"]["evaluated_on"] == "2025-12-01"


# -- 4. a referral confirmed before the 10th day says how many days it is ---------------------------

@pytest.mark.parametrize(("days", "gaps", "early"), [(8, [], True), (9, [], True), (9, ["2025-11-20"], False),
                                                     (10, [], False)])
def test_a_referral_confirmed_before_the_tenth_day_does_not_say_ten_or_more(
        store: Engine, cfg: Config, days: int, gaps: list[str], early: bool) -> None:
    """The policy refers "no later than the 10th day": a DSL may confirm on the 8th. The case's text
    then gives the days so far (days with no register mark counted, as the due date counts them)."""
    case_id = seed_case(store)
    with store.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(school_days=days, register_gaps=gaps))
    bundle = bundle_of(store, cfg, case_id)
    text = bundle.document["case"]["criterion_text"]
    if early:
        assert text.startswith(f"Continuous absence without explanation, {days} school day(s) so far: referred "
                               "before the 10th day, as the school's policy asks;")
        assert "10 or more days" not in text and "10 or more days" not in _between(pdf_text(bundle.pdf), "Case", "Episode")
    else:
        assert text.startswith("10 or more days of continuous absence without explanation;")
    assert text in pdf_text(bundle.pdf)


# -- 5. who acted, as a person the LA can call, not a mailbox -------------------------------------

def test_the_actions_log_names_the_member_of_staff_and_role(store: Engine, cfg: Config) -> None:
    case_id = seed_case(store)
    _forget_events(store, case_id)
    with store.begin() as conn:
        for actor, text in (("OFFICE@school.example", "first-day-call: no answer"),
                            ("dsl@school.example", "home-visit: nobody at home"),
                            ("someone@elsewhere.example", "other-agencies: health visitor knows nothing")):
            kind, detail = note_detail(text, actor)
            conn.execute(insert(t.case_events).values(case_id=case_id, at=datetime(2025, 11, 17, 10, tzinfo=UTC),
                                                      as_of=date(2025, 11, 17), kind=kind, actor=actor, detail=detail))
    bundle = bundle_of(store, cfg, case_id)
    assert [a["who"] for a in bundle.document["actions"]] == [
        "Attendance Officer (School office)", "Dee Ess-Ell (Designated Safeguarding Lead)",
        "someone@elsewhere.example"]
    text = pdf_text(bundle.pdf)
    assert "Attendance Officer (School office)" in text and "Dee Ess-Ell (Designated Safeguarding Lead)" in text
