"""What a technician reads when Arbor refuses: which data the app lacks permission for, and that
the credentials are wrong, without the password; and a school with nobody in it yet."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from tests.adapters.arbor_helpers import PASSWORD, ingest_once, stored_cursor, stored_upns
from tests.helpers import snapshot


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"



@pytest.mark.parametrize("entity", ["EducationalInstitutionEnrolment", "StudentGuardianRelationship",
                                    "AttendanceRollCallRecord"])
def test_a_403_names_the_data_the_app_may_not_read(tmp_path: Path, store_url: str, engine: Engine,
                                                  arbor: FakeArbor, entity: str) -> None:
    """Every GraphQL read goes to one path: the error said only 'POST /graphql/query (403)'."""
    before = snapshot(engine)
    arbor.fail("status", f"query {entity}", status=403, times=None)
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "failed"
    assert f"Arbor refused permission for POST /graphql/query ({entity}) (403)" in outcome.detail, outcome.detail
    assert "grant the app access" in outcome.detail
    assert snapshot(engine) == before and stored_cursor(engine) is None


def test_a_wrong_password_names_what_to_fix_and_not_the_password(tmp_path: Path, store_url: str, engine: Engine,
                                                                arbor: FakeArbor) -> None:
    arbor.password = "the-new-password-the-school-set"
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "failed"
    assert "refused the credentials (401): check the username and password" in outcome.detail, outcome.detail
    assert PASSWORD not in outcome.detail and "the-new-password" not in outcome.detail
    assert len(arbor.seen) == 1


def test_an_empty_school_is_stored_as_empty_and_then_followed(tmp_path: Path, store_url: str,
                                                              engine: Engine) -> None:
    """A school set up in Arbor with no pupils yet: a full pull of nothing, a cursor, then changes."""
    from datetime import date

    from cme_batch.model import EnrolmentRecord, PupilRecord

    server = FakeArbor(FakeSchool(), password=PASSWORD).start()
    try:
        first = ingest_once(tmp_path, store_url, engine, server)
        assert first.status == "ok", first.detail
        assert stored_upns(engine) == set()
        assert stored_cursor(engine) == str(server.school.revision)
        server.school.load([PupilRecord("n1", upn="A916299925001", legal_surname="New", legal_forename="Nia",
                                        dob=date(2020, 1, 1)),
                            EnrolmentRecord("n1", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8))])
        server.seen.clear()
        second = ingest_once(tmp_path, store_url, engine, server)
        assert second.status == "ok", second.detail
        assert stored_upns(engine) == {"A916299925001"}
        assert any(s.path.endswith("/changelog") for s in server.seen), "the second night follows the changelog"
    finally:
        server.close()
