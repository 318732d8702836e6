"""Storing batches: idempotent, all or nothing, corrections audited, enrolments not doubled."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from cme_batch.errors import BadInputError
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.store import ingest, migrate, open_store
from cme_batch.store import tables as t
from tests.helpers import snapshot

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


def _school(engine: Engine) -> int:
    with engine.begin() as conn:
        return ingest.ensure_school(conn, "916", "2999", "Test")


def test_applicant_who_starts_is_one_enrolment(engine: Engine) -> None:
    school = _school(engine)
    agreed = date(2025, 9, 8)
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=[
        PupilRecord("P1"), EnrolmentRecord("P1", admission_date=agreed)], replaces=frozenset({"enrolments"})), NOW)
    ingest.apply_batch(engine, school, SourceBatch("mis", "b", records=[
        PupilRecord("P1"), EnrolmentRecord("P1", admission_date=agreed, entry_date=agreed,
                                           leaving_date=date(2025, 11, 3))], replaces=frozenset({"enrolments"})), NOW)
    with engine.connect() as conn:
        rows = conn.execute(select(t.enrolments.c.admission_date, t.enrolments.c.entry_date,
                                   t.enrolments.c.leaving_date)).all()
    assert rows == [(agreed, agreed, date(2025, 11, 3))]


def test_same_batch_twice_changes_nothing_and_a_correction_is_audited(engine: Engine) -> None:
    school = _school(engine)
    batch = [PupilRecord("P1", upn=None), MarksRecord("P1", date(2025, 11, 3), ("N", "N", "/", "\\"))]
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=list(batch)), NOW)
    before = snapshot(engine)
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=list(batch)), NOW)
    assert snapshot(engine) == before
    ingest.apply_batch(engine, school, SourceBatch("mis", "b", records=[
        PupilRecord("P1"), MarksRecord("P1", date(2025, 11, 3), ("I", "", "", ""))]), NOW)
    with engine.connect() as conn:
        change = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.session, t.mark_changes.c.old_code,
                                     t.mark_changes.c.new_code, t.mark_changes.c.ingest_run_id)).one()
    assert change[:4] == (date(2025, 11, 3), "AM", "N", "I") and change.ingest_run_id is not None


def test_a_record_for_an_unknown_pupil_rejects_the_whole_batch(engine: Engine) -> None:
    school = _school(engine)
    before = snapshot(engine)
    with pytest.raises(BadInputError, match="1 record\\(s\\) refer to a pupil"):
        ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=[
            PupilRecord("P1"), MarksRecord("P1", date(2025, 11, 3), ("N",)),
            MarksRecord("GHOST", date(2025, 11, 3), ("N",))]), NOW)
    assert snapshot(engine) == before


def test_long_codes_and_a_run_across_1_august(engine: Engine) -> None:
    school = _school(engine)
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=[
        PupilRecord("P1"), MarksRecord("P1", date(2025, 7, 31), ("C1", "Y3", "#", "#"))]), NOW)
    with engine.connect() as conn:
        strips = dict(conn.execute(select(t.mark_strips.c.academic_year, t.mark_strips.c.marks)).all())
        alphabet = ingest.load_alphabet(conn)
    assert set(strips) == {2024, 2025}
    assert alphabet.decode(strips[2024][-2:]) == ["C1", "Y3"] and strips[2025][:2] == "##"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "legal_surname": st.one_of(st.none(), st.text(max_size=3), st.text(min_size=99, max_size=102)),
    "postcode_like": st.integers(),  # a column the checks do not know: ignored
    "dob": st.one_of(st.none(), st.dates(min_value=date(1890, 1, 1), max_value=date(2210, 1, 1)))}), max_size=6))
def test_checking_a_chunk_at_once_refuses_what_checking_each_row_refuses(rows: list[dict[str, object]]) -> None:
    from cme_batch.errors import BadInputError
    from cme_batch.store.ingest import DATE_COLUMNS, LIMITS, check_rows, check_values
    from cme_batch.store.tables import pupils

    blank = dict.fromkeys([*LIMITS["pupils"], *DATE_COLUMNS["pupils"]])  # every column checked, as the writer gives
    rows = [{**blank, **r} for r in rows]

    def outcome(check: object) -> str | None:
        try:
            check()  # type: ignore[operator]
        except BadInputError as exc:
            return str(exc)
        return None

    one_by_one = next((m for r in rows if (m := outcome(lambda r=r: check_values("f.xml", pupils, r)))), None)
    assert outcome(lambda: check_rows("f.xml", pupils, rows)) == one_by_one


_N = iter(range(10**9))  # a new pupil key for every example


@pytest.fixture(scope="module")
def marks_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, int]]:
    """One SQLite store for every example of the property test below (each uses its own pupils)."""
    eng = open_store(f"sqlite:///{tmp_path_factory.mktemp('marks') / 'store.sqlite'}")
    migrate(eng)
    yield eng, _school(eng)
    eng.dispose()


def _stored(engine: Engine, key: str) -> tuple[dict[int, str], list[tuple[object, ...]]]:
    with engine.connect() as conn:
        pid = conn.execute(select(t.pupil_keys.c.pupil_id).where(t.pupil_keys.c.pupil_key == key)).scalar_one()
        strips = dict(conn.execute(select(t.mark_strips.c.academic_year, t.mark_strips.c.marks).where(
            t.mark_strips.c.pupil_id == pid)).all())
        changes = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.session, t.mark_changes.c.old_code,
                                      t.mark_changes.c.new_code).where(t.mark_changes.c.pupil_id == pid).order_by(
            t.mark_changes.c.id)).all()
    return strips, [tuple(c) for c in changes]


MARK_CHARS = "/\\NLUIM#- " + "\ue000"  # a space and a private-use character are not stored as themselves
STARTS = st.sampled_from([date(2025, 7, 30), date(2025, 7, 31), date(2025, 8, 1), date(2026, 7, 30),
                          date(1900, 7, 31), date(1900, 8, 1), date(2200, 7, 31), date(2199, 12, 30),
                          date(9999, 12, 30), date(1, 1, 1)])


@settings(max_examples=80, deadline=None)
@given(STARTS, st.text(MARK_CHARS, max_size=8), st.text("/\\NL", max_size=8))
def test_a_run_given_as_a_string_is_stored_as_the_same_run_given_code_by_code(
        marks_store: tuple[Engine, int], start: date, codes: str, before: str) -> None:
    """The store's quick way with a marks string (one academic year, codes stored as themselves)
    against the general way (a tuple of codes): the same strips, corrections and refusals."""
    engine, school = marks_store
    n = next(_N)
    outcomes = []
    for key, given_codes in ((f"S{n}", codes), (f"T{n}", tuple(codes))):
        earlier = [MarksRecord(key, start, tuple(before))] if before else []
        try:
            ingest.apply_batch(engine, school, SourceBatch("mis", f"{key}-1", records=[PupilRecord(key), *earlier]),
                               NOW)
            result = ingest.apply_batch(engine, school, SourceBatch(
                "mis", f"{key}-2", records=[PupilRecord(key), MarksRecord(key, start, given_codes)]), NOW)
        except BadInputError as exc:
            outcomes.append(("refused", str(exc).replace(key, "")))
            continue
        outcomes.append(("stored", result.counts, _stored(engine, key)))
    assert outcomes[0] == outcomes[1]


@pytest.mark.parametrize(("upn", "stored_upn", "updated"), [
    ("A123456789012", "A123456789012", 0),  # its own UPN: nothing changes
    (None, "A123456789012", 0),  # no UPN given: the stored one stays
    ("B123456789012", "B123456789012", 1),  # a new UPN: stored, and the pupil counted as changed
])
def test_a_pupil_named_with_no_details_keeps_its_details(engine: Engine, upn: str | None, stored_upn: str,
                                                         updated: int) -> None:
    school = _school(engine)
    full = PupilRecord("K1", upn="A123456789012", legal_surname="Example", dob=date(2018, 5, 1), phones=("01452",))
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=[full]), NOW)
    result = ingest.apply_batch(engine, school, SourceBatch("mis", "b", records=[
        PupilRecord("K1", upn=upn), MarksRecord("K1", date(2025, 11, 3), "/\\")]), NOW)
    with engine.connect() as conn:
        row = conn.execute(select(t.pupils.c.upn, t.pupils.c.legal_surname, t.pupils.c.dob, t.pupils.c.phones)).one()
    assert tuple(row) == (stored_upn, "Example", date(2018, 5, 1), ["01452"])
    assert result.counts.get("pupils_updated", 0) == updated and len(result.pupil_ids) == updated


def test_a_pupil_named_with_no_details_and_another_pupils_upn_is_refused(engine: Engine) -> None:
    school = _school(engine)
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=[
        PupilRecord("K1", upn="A123456789012"), PupilRecord("K2", upn="B123456789012")]), NOW)
    before = snapshot(engine)
    with pytest.raises(BadInputError, match="UPN of another pupil"):
        ingest.apply_batch(engine, school, SourceBatch("mis", "b", records=[PupilRecord("K1", upn="B123456789012")]),
                           NOW)
    assert snapshot(engine) == before


# up to 12 different contacts (a pupil with many is kept apart in the batch's bookkeeping), some given twice
_CONTACTS = st.tuples(st.integers(0, 12), st.lists(st.sampled_from([f"C{i}" for i in range(12)]), max_size=3)).map(
    lambda drawn: [f"C{i}" for i in range(drawn[0])] + drawn[1])
_FLAGS = st.lists(st.tuples(st.sampled_from(["child_protection_plan", "looked_after", "young_carer"]),
                            st.sampled_from([None, date(2025, 9, 1), date(2025, 10, 6)])), max_size=4)
_PUPILS = st.dictionaries(st.sampled_from("ABCD"), st.tuples(_CONTACTS, _FLAGS), max_size=4)


@settings(max_examples=60, deadline=None)
@given(_PUPILS, _PUPILS, st.randoms(use_true_random=False))
def test_a_replacing_batch_leaves_each_of_its_pupils_exactly_the_records_it_gave(
        marks_store: tuple[Engine, int], first: dict[str, tuple[list[str], list[tuple[str, date | None]]]],
        second: dict[str, tuple[list[str], list[tuple[str, date | None]]]], order: random.Random) -> None:
    """Two exports that each replace the contacts and flags they hold, records in any order and
    stored a few at a time: afterwards, each pupil of the second has exactly the ones it gave,
    and a pupil only in the first keeps those the first gave."""
    from unittest.mock import patch

    engine, school = marks_store
    n = next(_N)
    for origin, given_pupils in (("first", first), ("second", second)):
        records: list[object] = []
        for p, (contacts, flags) in given_pupils.items():
            key = f"R{n}{p}"
            records += [PupilRecord(key), *(ContactRecord(key, c) for c in contacts),
                        *(FlagRecord(key, kind, start) for kind, start in flags)]
        order.shuffle(records)
        with patch.object(ingest, "PUPIL_CHUNK", 2), patch.object(ingest, "RECORD_CHUNK", 3):
            ingest.apply_batch(engine, school, SourceBatch("mis", f"{origin}-{n}", records=records,
                                                           replaces=frozenset({"contacts", "flags"})), NOW)
    with engine.connect() as conn:
        keys = dict(conn.execute(select(t.pupil_keys.c.pupil_id, t.pupil_keys.c.pupil_key)).all())
        contacts = conn.execute(select(t.contacts.c.pupil_id, t.contacts.c.contact_key)).all()
        flags = conn.execute(select(t.flags.c.pupil_id, t.flags.c.kind, t.flags.c.start_date)).all()
    for p in set(first) | set(second):
        key = f"R{n}{p}"
        want_contacts, want_flags = second[p] if p in second else first[p]
        assert sorted({c for pid, c in contacts if keys[pid] == key}) == sorted(set(want_contacts)), p
        assert {(k, s) for pid, k, s in flags if keys[pid] == key} == set(want_flags), p


def test_a_days_register_for_many_pupils_laid_by_the_database(engine: Engine) -> None:
    """At least ``SPLICE_FROM`` pupils in a chunk: the register is laid by the database. Sent again it
    changes nothing; a changed mark in it is a correction; a pupil with no strip that year gets one."""
    school = _school(engine)
    keys = [f"P{i}" for i in range(ingest.SPLICE_FROM + 5)]
    monday, tuesday = date(2025, 11, 3), date(2025, 11, 4)
    ingest.apply_batch(engine, school, SourceBatch("mis", "year", records=[
        *(PupilRecord(k) for k in keys), *(MarksRecord(k, monday, "/\\") for k in keys[1:])]), NOW)
    spliced: list[int] = []
    splice = ingest.bulk.splice_texts

    def day(origin: str, first_code: str) -> SourceBatch:
        return SourceBatch("mis", origin, records=[
            *(PupilRecord.named(k, None) for k in keys),
            *(MarksRecord(k, tuesday, (first_code if k == keys[2] else "N") + "\\") for k in keys)])

    with pytest.MonkeyPatch.context() as m:
        m.setattr(ingest.bulk, "splice_texts", lambda *a: spliced.append(splice(*a)) or spliced[-1])
        first = ingest.apply_batch(engine, school, day("tuesday", "N"), NOW)
        after_first = snapshot(engine)["mark_strips"]
        again = ingest.apply_batch(engine, school, day("tuesday again", "N"), NOW)
        assert snapshot(engine)["mark_strips"] == after_first
        fixed = ingest.apply_batch(engine, school, day("tuesday corrected", "/"), NOW)
    assert spliced == [len(keys) - 1, 0, 0]  # the pupil with no strip that year, then every pupil, the other way
    assert first.counts["marks"] == again.counts["marks"] == fixed.counts["marks"] == 2 * len(keys)
    assert "marks_corrected" not in first.counts and "marks_corrected" not in again.counts
    assert fixed.counts["marks_corrected"] == 1
    with engine.connect() as conn:
        strips = dict(conn.execute(select(t.mark_strips.c.pupil_id, t.mark_strips.c.marks)).all())
        ids = dict(conn.execute(select(t.pupil_keys.c.pupil_key, t.pupil_keys.c.pupil_id)).all())
        changes = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.session, t.mark_changes.c.old_code,
                                      t.mark_changes.c.new_code)).all()
    at = ingest.mk.position(monday, "AM")
    assert {k: strips[ids[k]][at:at + 4] for k in keys} == {
        k: ("--" if k == keys[0] else "/\\") + ("/" if k == keys[2] else "N") + "\\" for k in keys}
    assert [tuple(c) for c in changes] == [(tuesday, "AM", "N", "/")]
