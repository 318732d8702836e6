"""Who a pupil record is: two different children are never merged by a shared UPN.

A UPN matches a record to a stored pupil when the source's key is new to the store (a child
re-admitted under a new key, a CTF describing a pupil the SIMS export already gave). It must not
merge two records the MIS keeps apart (two keys with one UPN in one file), nor a different child
whose UPN was mistyped: either would lay one child's marks and details over the other's.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from unittest.mock import patch

import pytest
from sqlalchemy import Engine, func, select

from cme_batch.errors import BadInputError
from cme_batch.model import ContactRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.helpers import snapshot

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
UPN, OTHER_UPN = "A123456789012", "B123456789012"
ANN = {"legal_surname": "Example", "legal_forename": "Ann", "dob": date(2015, 1, 1)}
BOB = {"legal_surname": "Sample", "legal_forename": "Bob", "dob": date(2016, 2, 2)}
MONDAY = date(2025, 11, 3)


def _school(engine: Engine) -> int:
    with engine.begin() as conn:
        return ingest.ensure_school(conn, "916", "2999", "Test")


def _ann_stored(engine: Engine, school: int) -> None:
    ingest.apply_batch(engine, school, SourceBatch("sims", "pupils-1.xml", records=[
        PupilRecord("K1", upn=UPN, **ANN), MarksRecord("K1", MONDAY, "//")]), NOW)


def _no_personal_data(message: str) -> None:
    for personal in (UPN, OTHER_UPN, "Example", "Ann", "Sample", "Bob", "2015", "2016"):
        assert personal not in message


@pytest.mark.parametrize("ann_first", [True, False])
@pytest.mark.parametrize("chunk", [1, 2000])
def test_two_keys_with_one_upn_in_one_file_are_refused_not_merged(engine: Engine, ann_first: bool,
                                                                   chunk: int) -> None:
    """The stored child (K1) and another record (K2) the MIS gives the same UPN and date of birth
    (one child entered twice), both in tonight's file: before, they were merged, K2's details
    replacing K1's and K2's marks laid over K1's as corrections."""
    school = _school(engine)
    _ann_stored(engine, school)
    before = snapshot(engine)
    ann, bob = PupilRecord("K1", upn=UPN, **ANN), PupilRecord("K2", upn=UPN, **{**BOB, "dob": ANN["dob"]})
    pupils = [ann, bob] if ann_first else [bob, ann]
    with patch.object(ingest, "PUPIL_CHUNK", chunk), pytest.raises(BadInputError) as caught:
        ingest.apply_batch(engine, school, SourceBatch("sims", "pupils-2.xml", records=[
            *pupils, MarksRecord("K1", MONDAY + timedelta(days=1), "//"),
            MarksRecord("K2", MONDAY, "NN")]), NOW)
    message = str(caught.value)
    assert message.startswith("pupils-2.xml: pupil 2 of the file, field UPN:")
    assert "nothing imported" in message
    _no_personal_data(message)
    assert snapshot(engine) == before


def test_two_new_pupils_with_one_upn_in_one_batch_are_refused(engine: Engine) -> None:
    school = _school(engine)
    with pytest.raises(BadInputError, match="pupil 2 of the file, field UPN"):
        ingest.apply_batch(engine, school, SourceBatch("arbor", "arbor.example", records=[
            PupilRecord("S1", upn=UPN, **ANN), PupilRecord("S2", upn=UPN, **BOB),
            MarksRecord("S1", MONDAY, "//"), MarksRecord("S2", MONDAY, "NN")]), NOW)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar() == 0


def test_a_upn_moved_to_another_pupil_within_one_file_is_refused(engine: Engine) -> None:
    """K1's UPN changes and a new key takes K1's old UPN in the same file: not merged into K1."""
    school = _school(engine)
    _ann_stored(engine, school)
    before = snapshot(engine)
    with pytest.raises(BadInputError, match="pupil 2 of the file, field UPN"):
        ingest.apply_batch(engine, school, SourceBatch("sims", "pupils-2.xml", records=[
            PupilRecord("K1", upn=OTHER_UPN, **ANN), PupilRecord("K3", upn=UPN, **BOB),
            MarksRecord("K3", MONDAY, "NN")]), NOW)
    assert snapshot(engine) == before


@pytest.mark.parametrize("source", ["sims", "ctf"])
def test_a_different_child_with_a_stored_upn_is_refused(engine: Engine, source: str) -> None:
    """A new key whose UPN is Ann's but whose date of birth is not: a mistyped UPN. Before, the
    child took over Ann's record: her name and date of birth replaced, her marks "corrected"."""
    school = _school(engine)
    _ann_stored(engine, school)
    before = snapshot(engine)
    with pytest.raises(BadInputError) as caught:
        ingest.apply_batch(engine, school, SourceBatch(source, "tonight.xml", records=[
            PupilRecord("K2" if source == "sims" else UPN, upn=UPN, **BOB),
            MarksRecord("K2" if source == "sims" else UPN, MONDAY, "NN")]), NOW)
    message = str(caught.value)
    assert message.startswith("tonight.xml: pupil 1 of the file, field DOB:") and "nothing imported" in message
    _no_personal_data(message)
    assert snapshot(engine) == before


@pytest.mark.parametrize("source", ["sims", "ctf"])
def test_the_same_child_under_a_new_key_is_the_stored_pupil(engine: Engine, source: str) -> None:
    """A re-admission under a new key, or a CTF for the same child: one pupil, her marks laid on her."""
    school = _school(engine)
    _ann_stored(engine, school)
    key = "K9" if source == "sims" else UPN
    first = ingest.apply_batch(engine, school, SourceBatch(source, "tonight.xml", records=[
        PupilRecord(key, upn=UPN, **ANN), MarksRecord(key, MONDAY.replace(day=4), "/\\"),
        ContactRecord(key, "C1", surname="Parent")]), NOW)
    assert first.status == "ok" and first.counts.get("pupils_added", 0) == 0
    again = snapshot(engine)
    ingest.apply_batch(engine, school, SourceBatch(source, "tonight-again.xml", records=[
        PupilRecord(key, upn=UPN, **ANN), MarksRecord(key, MONDAY.replace(day=4), "/\\"),
        ContactRecord(key, "C1", surname="Parent")]), NOW)
    with engine.connect() as conn:
        pupils = conn.execute(select(t.pupils.c.id, t.pupils.c.dob)).all()
        strips = conn.execute(select(t.mark_strips.c.pupil_id, t.mark_strips.c.marks)).all()
        changes = conn.execute(select(func.count()).select_from(t.mark_changes)).scalar()
    assert len(pupils) == 1 and pupils[0].dob == ANN["dob"]
    assert [(p, m.replace("-", "")) for p, m in strips] == [(pupils[0].id, "///\\")] and changes == 0
    assert {k: v for k, v in snapshot(engine).items() if k != "ingest_runs"} == \
        {k: v for k, v in again.items() if k != "ingest_runs"}
