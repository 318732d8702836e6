"""What the referral says, read from a real store (SQLite and PostgreSQL), checked against its schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import Engine, insert, select, update

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.model import EnrolmentRecord, PupilRecord, SourceBatch
from cme_batch.referral.attendance import compulsory_school_age, compulsory_school_age_from
from cme_batch.referral.content import build_document
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.referral_support import HOME, NOW, Family, seed_case

SCHEMA = json.loads((Path(__file__).parents[2] / "cme_batch/referral/referral.schema.json").read_text())


def _validate(doc: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(engine.url)))


def _doc(engine: Engine, cfg: Config, case_id: int, kind: str = "referral") -> dict[str, object]:
    with engine.connect() as conn:
        return build_document(conn, case_id, cfg, NOW, kind)


def test_the_referral_carries_every_part_and_validates(engine: Engine, cfg: Config) -> None:
    doc = _doc(engine, cfg, seed_case(engine))
    _validate(doc)
    json.dumps(doc)  # plain JSON data, nothing else
    child, case = doc["child"], doc["case"]
    assert (child["legal_forename"], child["upn"], child["date_of_birth"]) == ("Amelia", "A916299925001",
                                                                               "2017-03-14")
    assert child["compulsory_school_age"] == {"status": "of_compulsory_school_age", "from": "2022-03-31"}
    assert doc["school"]["dsl"] == {"name": "Dee Ess-Ell", "phone": "01684 000002", "email": "dsl@school.example"}
    assert (case["criterion"], case["episode_start"], case["last_attended"], case["school_days_missed"]) == (
        "continuous_absence", "2025-11-17", "2025-11-14", 10)
    assert [c["relationship"] for c in doc["contacts"]] == ["Mother", "Father", "Grandmother"]
    assert doc["lives_with"] == ["Ms Joanna Marsh"]
    assert doc["vulnerability"]["sen"] == "sen_support" and not doc["vulnerability"]["child_protection_plan"]
    assert doc["confirmation"] == {"confirmed": True, "by": "dsl@school.example", "name": "Dee Ess-Ell",
                                   "role": "Designated Safeguarding Lead", "at": "2025-11-28T08:12:00+00:00",
                                   "message_id": "<reply-8841@school.example>"}


def test_attendance_this_year_counts_possible_attended_and_absent_sessions(engine: Engine, cfg: Config) -> None:
    att = _doc(engine, cfg, seed_case(engine))["attendance"]
    # 58 school days from 2 Sep to 28 Nov (closures as '#', half term unmarked) = 116 sessions, less one gap;
    # 47 full days present; one day 'I'; ten days 'N' less the gap.
    assert att == {"academic_year": "2025/26", "from": "2025-09-02", "to": "2025-11-28", "possible_sessions": 115,
                   "attended_sessions": 94, "authorised_absence_sessions": 2,
                   "unauthorised_absence_sessions": 19, "attendance_percent": 81.7}


def test_evidence_is_every_session_of_the_episode_including_the_register_gap(engine: Engine, cfg: Config) -> None:
    evidence = _doc(engine, cfg, seed_case(engine))["evidence"]
    assert len(evidence) == 20
    assert {(e["date"], e["session"], e["code"]) for e in evidence if e["code"] != "N"} == {
        ("2025-11-20", "PM", "-")}
    assert evidence[0] == {"date": "2025-11-17", "session": "AM", "code": "N"}


def test_actions_come_from_action_and_note_events_with_their_outcomes(engine: Engine, cfg: Config) -> None:
    doc = _doc(engine, cfg, seed_case(engine))
    assert [(a["date"], a["action"]) for a in doc["actions"]] == [
        ("2025-11-17", "first_day_call"), ("2025-11-18", "emergency_contacts"), ("2025-11-21", "home_visit"),
        ("2025-11-24", "social_media_search"), ("2025-11-25", "note")]
    visit = doc["actions"][2]
    assert visit["who"] == "DSL and family support worker" and "Neighbour" in visit["outcome"]
    assert {c["action"]: c["dates"] for c in doc["checklist"]}["other_agencies"] == []


def test_siblings_are_pupils_on_roll_sharing_a_contact_or_the_address(engine: Engine, cfg: Config) -> None:
    fam = Family()
    left = PupilRecord("P9-left", upn="A916299925009", legal_surname="Marsh-Ellery", legal_forename="Ruby",
                       dob=date(2015, 1, 5), year_group="5", address=HOME)
    stranger = PupilRecord("P8-other", upn="A916299925008", legal_surname="Unrelated", legal_forename="Sam",
                           dob=date(2017, 5, 5), year_group="3")
    case_id = seed_case(engine, fam)
    with engine.connect() as conn:
        school_id = conn.execute(select(t.schools.c.id)).scalar_one()
    apply_batch(engine, school_id, SourceBatch("test", "more", records=[
        left, stranger, EnrolmentRecord("P9-left", date(2019, 9, 1), date(2019, 9, 1), leaving_date=date(2025, 7, 22))
    ]), NOW)
    sibs = _doc(engine, cfg, case_id)["siblings"]
    assert sibs == [{"name": "Oliver Marsh-Ellery", "preferred_name": None, "date_of_birth": "2019-06-02",
                     "year_group": "1", "link": ["address", "contact"], "open_cases": []}]


def test_a_case_with_no_contacts_or_siblings_is_still_a_valid_referral(engine: Engine, cfg: Config) -> None:
    doc = _doc(engine, cfg, seed_case(engine, Family(contacts=[], siblings=[], flags=[])))
    _validate(doc)
    assert doc["contacts"] == [] and doc["siblings"] == [] and doc["lives_with"] == []
    assert doc["vulnerability"]["flags"] == [] and doc["vulnerability"]["sen"] == "none"


def test_a_child_below_compulsory_school_age_is_stated(engine: Engine, cfg: Config) -> None:
    young = replace(Family().child, dob=date(2021, 2, 1), year_group="R")
    doc = _doc(engine, cfg, seed_case(engine, Family(child=young)))
    assert doc["child"]["compulsory_school_age"] == {"status": "below_compulsory_school_age", "from": "2026-03-31"}


@pytest.mark.parametrize(("dob", "start"), [
    (date(2020, 9, 1), date(2025, 12, 31)),   # fifth birthday 1 Sep: next prescribed day is 31 Dec
    (date(2020, 12, 31), date(2025, 12, 31)),  # on the prescribed day itself
    (date(2021, 1, 1), date(2026, 3, 31)),
    (date(2020, 4, 1), date(2025, 8, 31)),
    (date(2020, 3, 31), date(2025, 3, 31)),
    (date(2020, 2, 29), date(2025, 3, 31)),    # a leap-day birthday falls on 1 March
])
def test_compulsory_school_age_starts_on_the_next_prescribed_day(dob: date, start: date) -> None:
    assert compulsory_school_age_from(dob) == start
    assert compulsory_school_age(dob, start)["status"] == "of_compulsory_school_age"


def test_no_date_of_birth_means_unknown_school_age() -> None:
    assert compulsory_school_age(None, date(2025, 1, 1)) == {"status": "unknown", "from": None}


def test_an_update_needs_a_referral_and_reports_a_destination(engine: Engine, cfg: Config) -> None:
    case_id = seed_case(engine)
    with pytest.raises(BadInputError, match="never referred"):
        _doc(engine, cfg, case_id, "update")
    case_id = seed_case(engine, Family(kind="destination_unknown", referred=True))
    with engine.begin() as conn:
        pupil_id = conn.execute(select(t.cases.c.pupil_id).where(t.cases.c.id == case_id)).scalar_one()
        conn.execute(insert(t.enrolments).values(
            pupil_id=pupil_id, source="test", admission_date=date(2022, 9, 1), entry_date=date(2022, 9, 1),
            leaving_date=date(2025, 11, 14), destination="Example Academy, Swindon", withdrawn=False, updated_at=NOW))
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(
            status="closed", closed_on=date(2025, 11, 30), closed_reason="destination_known"))
    doc = _doc(engine, cfg, case_id, "update")
    _validate(doc)
    assert doc["update"]["reason"] == "destination_known"
    assert doc["update"]["destination"] == "Example Academy, Swindon"
    assert doc["case"]["criterion"] == "destination_unknown"
