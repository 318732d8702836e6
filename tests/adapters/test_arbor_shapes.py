"""An Arbor answer not in the shape the adapter reads (a field missing, a null where an object
must be, a value of another type) refuses the whole pull: the error names the entity, the
Arbor id and the field, never the value, and the store and the stored revision stay as they
were. Before, some such answers were stored as they came (a priority "first", a surname 5), some
were dropped without a word (an enrolment with no student), and some stopped the whole ingest
with a Python error (``isLegalGuardian: "yes"``, a year group given as a string)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from adapters.arbor import mapping
from adapters.arbor.fake_server import FakeArbor
from cme_batch.model import PupilRecord
from tests.adapters.arbor_helpers import PASSWORD, ingest_once, stored_cursor
from tests.helpers import snapshot

Mangle = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Nothing reaches the store in these tests, so one backend is enough."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"



def first_row(entity: str, path: str, value: Any = None, *, drop: bool = False) -> Mangle:
    """Change one field of the first row of every page of ``entity``."""
    def mangle(e: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if e != entity or not rows:
            return rows
        rows = copy.deepcopy(rows)
        *up, last = path.split(".")
        target = rows[0]
        for part in up:
            target = target[part]
        if drop:
            target.pop(last, None)
        else:
            target[last] = value
        return rows
    return mangle


CASES = [
    # (what Arbor sent, the change, words the error must hold)
    ("a student with no id", first_row("Student", "id", drop=True), ("Student (row 1", "field id is missing")),
    ("a student whose id is null", first_row("Student", "id"), ("field id is null",)),
    ("a surname as a number", first_row("Student", "legalLastName", 5), ("field legalLastName holds a number",)),
    ("a year group as a string", first_row("Student", "displayAcademicLevel", "Year 3"),
     ("field displayAcademicLevel holds a string, expected an object",)),
    ("student tags as one string", first_row("Student", "userTags", "Traveller"),
     ("field userTags holds a string, expected a list of strings",)),
    ("a date of birth as a number", first_row("Student", "dateOfBirth", 20180304),
     ("field dateOfBirth: a date is a number",)),
    ("an enrolment with no student", first_row("EducationalInstitutionEnrolment", "student"),
     ("EducationalInstitutionEnrolment ", "field student is null")),
    ("a relationship with no guardian", first_row("StudentGuardianRelationship", "guardian"),
     ("StudentGuardianRelationship ", "field guardian is null")),
    ("parental responsibility as 'yes'", first_row("StudentGuardianRelationship", "isLegalGuardian", "yes"),
     ("field isLegalGuardian holds a string, expected true or false",)),
    ("a contact priority as a word", first_row("StudentGuardianRelationship", "emergencyContactPriority", "first"),
     ("field emergencyContactPriority holds a string, expected a whole number",)),
    ("a UPN as a number", first_row("UkDfe_UpnAssignment", "upn", 916299925001), ("field upn holds a number",)),
    ("a child protection assignment with no status", first_row("ChildProtectionStatusAssignment",
                                                               "childProtectionStatus"),
     ("ChildProtectionStatusAssignment ", "field childProtectionStatus is null")),
    ("a revision that is not a number", first_row("Guardian", "revisionId", "r12"),
     ("Guardian ", "field revisionId holds a string")),
    ("a guardian's surname as a list", first_row("Guardian", "person.legalLastName", ["Ashdown"]),
     ("field person.legalLastName holds a list",)),
    ("a mark type with no id", first_row("AttendanceMark", "id", drop=True), ("AttendanceMark (row 1",)),
    ("a morning flag as 1", first_row("AttendanceRollCall", "attendanceRegisterType.isMorning", 1),
     ("field attendanceRegisterType.isMorning holds a number",)),
]


@pytest.mark.parametrize(("mangle", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_answer_in_another_shape_refuses_the_pull_naming_record_and_field(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor, mangle: Mangle,
        words: tuple[str, ...]) -> None:
    before = snapshot(engine)
    arbor.mangle = mangle
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "failed"
    assert "not in the shape the adapter expects" in outcome.detail, outcome.detail
    for w in words:
        assert w in outcome.detail, outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) is None
    for secret in (PASSWORD, "Ashdown", "A916299925001", "2018-03-04", "20180304", "Year 3", "Traveller"):
        assert secret not in outcome.detail


def test_a_changelog_entry_naming_no_object_refuses_the_changes_only_pull(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    assert ingest_once(tmp_path, store_url, engine, arbor).status == "ok"
    cursor = stored_cursor(engine)
    arbor.school.load([PupilRecord("p3", upn="C916299925003", legal_surname="Cole", legal_forename="Cara",
                                   dob=date(2016, 7, 8), sex="F", year_group="5")])  # Cara moves up a year
    before = snapshot(engine)
    arbor.mangle = lambda e, rows: [{**r, "changedObject": {"entityType": "Student"}} for r in rows] \
        if e == "changelog students" else rows
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "failed"
    assert "/rest-v2/students/changelog" in outcome.detail and "changedObject.href" in outcome.detail, outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) == cursor


def _selected(selection: str) -> set[str]:
    """The dotted paths of a GraphQL selection: ``a b { c d }`` -> a, b, b.c, b.d."""
    out: set[str] = set()
    stack: list[str] = []
    last = ""
    for token in re.findall(r"[A-Za-z_][A-Za-z_0-9]*|[{}]", selection):
        if token == "{":
            stack.append(last)
        elif token == "}":
            stack.pop()
        else:
            last = f"{stack[-1]}.{token}" if stack else token  # (the stack holds whole paths)
            out.add(last)
    return out


def test_every_field_read_has_a_checked_type() -> None:
    for entity, selection in mapping.SELECTIONS.items():
        fields = set(mapping.FIELDS[entity])
        # an object read only for its id is checked as a "ref": its id needs no entry of its own
        wanted = {p for p in _selected(selection) if not (p.endswith(".id") and mapping.FIELDS[entity].get(
            p.rsplit(".", 1)[0], "").startswith("ref"))}
        assert wanted == fields, (entity, sorted(wanted ^ fields))
