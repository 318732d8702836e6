"""Each way Arbor can fail, as the school sees it through ``ingest``: complete data after retries,
or a clear error with the store and its stored revision exactly as they were."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from adapters.arbor.fake_server import FakeArbor
from cme_batch.importer import Outcome
from tests.adapters.arbor_helpers import PASSWORD, ingest_once, small_school, stored_cursor, stored_upns
from tests.helpers import snapshot

ALL_UPNS = {"A916299925001", "B916299925002", "C916299925003", "D916299925004"}
GRAPHQL = "POST /graphql/query"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """These failures happen before the store is touched, so one backend is enough here."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"



def assert_complete(outcome: Outcome, engine: Engine) -> None:
    assert outcome.status == "ok", outcome.detail
    assert stored_upns(engine) == ALL_UPNS


def assert_refused(outcome: Outcome, engine: Engine, before: Any, *words: str) -> str:
    assert outcome.status == "failed"
    for w in words:
        assert w in outcome.detail, outcome.detail
    assert snapshot(engine) == before
    assert stored_cursor(engine) is None
    for secret in (PASSWORD, "Ashdown", "A916299925001", "2018-03-04"):
        assert secret not in outcome.detail
    return outcome.detail


# -- retried until the data is complete ----------------------------------------------------------
def test_dropped_connections_are_retried(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    drop = arbor.fail("drop", GRAPHQL, times=2, after=3)
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor), engine)
    assert drop.fired == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor,
                                   status: int) -> None:
    fault = arbor.fail("status", "Student", status=status, times=2)
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor), engine)
    assert fault.fired == 2


def test_429_waits_as_long_as_retry_after_says(tmp_path: Path, store_url: str, engine: Engine,
                                              arbor: FakeArbor) -> None:
    arbor.fail("status", "query Guardian", status=429, retry_after="1")
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor), engine)
    refused, retried = arbor.requests_for("Guardian")[:2]
    assert retried.at - refused.at >= 0.95  # the backoff alone is 0.01 s


def test_a_slow_answer_times_out_and_is_retried(tmp_path: Path, store_url: str, engine: Engine,
                                               arbor: FakeArbor) -> None:
    slow = arbor.fail("slow", "Student", seconds=1.0)
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor, timeout_seconds=0.3), engine)
    assert slow.fired == 1 and len(arbor.requests_for("Student")) >= 2


def test_a_passing_maintenance_page_is_retried(tmp_path: Path, store_url: str, engine: Engine,
                                              arbor: FakeArbor) -> None:
    arbor.fail("html", GRAPHQL, after=2)
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor), engine)


# -- a clear error, nothing stored --------------------------------------------------------------------
def test_server_down_for_good_gives_up_clearly(tmp_path: Path, store_url: str, engine: Engine,
                                              arbor: FakeArbor) -> None:
    before = snapshot(engine)
    arbor.fail("status", GRAPHQL, status=503, times=None, after=4)
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, "503", "gave up after 4 attempt")


def test_maintenance_page_is_not_data(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    before = snapshot(engine)
    arbor.fail("html", GRAPHQL, times=None, after=5)
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, "HTML page", "instead of data")


def test_too_slow_for_good_gives_up_clearly(tmp_path: Path, store_url: str, engine: Engine,
                                           arbor: FakeArbor) -> None:
    before = snapshot(engine)
    arbor.fail("slow", "AttendanceRollCallRecord", seconds=0.5, times=None)
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor, timeout_seconds=0.2, max_retries=1), engine, before,
                   "did not answer within 0.2 s")


def test_wrong_password_is_not_retried(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    before = snapshot(engine)
    arbor.password = "rotated-by-the-school"
    detail = assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, "refused the credentials",
                            "401")
    assert len(arbor.seen) == 1, "a refused password must not be tried again"
    assert "rotated" not in detail


def test_a_refused_field_is_named(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    before = snapshot(engine)
    arbor.denied_fields.add("Student.dateOfBirth")
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, "Student.dateOfBirth", "permission")
    assert len(arbor.requests_for("Student")) == 1


@pytest.mark.parametrize(("status", "words"), [
    (400, ("malformed", "400")), (403, ("refused permission", "403")), (404, ("404", "base_url"))])
def test_client_errors_are_not_retried(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor,
                                       status: int, words: tuple[str, ...]) -> None:
    before = snapshot(engine)
    fault = arbor.fail("status", "EducationalInstitutionEnrolment", status=status, times=None)
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, *words)
    assert fault.fired == 1


@pytest.mark.parametrize(("paging", "words"), [
    ("ignore_number", ("identical to page 0", "cannot be reached")), ("ignore_size", ("ignored the page size",))])
def test_paging_that_goes_nowhere_is_an_error(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor,
                                              paging: str, words: tuple[str, ...]) -> None:
    before = snapshot(engine)
    arbor.paging = paging
    assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, *words)


def test_never_follows_a_link_to_another_host(tmp_path: Path, store_url: str, engine: Engine,
                                             arbor: FakeArbor) -> None:
    before = snapshot(engine)
    elsewhere = FakeArbor(arbor.school, tls=False).start()
    try:
        arbor.fail("redirect", "Guardian", location=f"{elsewhere.base_url}/graphql/query")
        assert_refused(ingest_once(tmp_path, store_url, engine, arbor), engine, before, "another host",
                       "credentials would be sent")
        assert elsewhere.seen == []
    finally:
        elsewhere.close()


def test_an_untrusted_certificate_is_refused(tmp_path: Path, store_url: str, engine: Engine,
                                            arbor: FakeArbor) -> None:
    before = snapshot(engine)
    other_ca = FakeArbor(tls=True)  # a server whose CA is not the one the fake Arbor uses
    try:
        assert other_ca.ca_bundle is not None
        assert_refused(ingest_once(tmp_path, store_url, engine, arbor, ca_bundle=str(other_ca.ca_bundle)), engine, before,
                       "TLS check failed", "not trusted")
    finally:
        other_ca.server_close()
    assert arbor.seen == []  # no request (and so no credentials) went over the unverified connection


def test_logs_carry_no_secret_and_no_pupil(tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    arbor.fail("status", GRAPHQL, status=503, times=2)
    arbor.fail("status", "Student", status=429, retry_after="0")
    assert_complete(ingest_once(tmp_path, store_url, engine, arbor), engine)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "will retry" in text and "arbor pull read" in text
    names = {v for r in small_school() for v in (getattr(r, "legal_surname", None), getattr(r, "upn", None),
                                                  getattr(r, "phones", ("",))[:1][0] if getattr(r, "phones", ()) else None)
             if v}
    assert PASSWORD not in text
    assert not [n for n in names if n in text]
    assert date(2018, 3, 4).isoformat() not in text
