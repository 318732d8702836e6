"""A batch whose marks are a pupil's whole register in a window (``SourceBatch.marks_complete``):
each stored session there that the batch gives no mark becomes no-mark, audited as a correction;
a batch without such a window only ever lays the marks it gives."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import Engine, select

from cme_batch import marks as mk
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.helpers import snapshot

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
MON, TUE, WED = date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)


def _stored(engine: Engine) -> int:
    """A school with pupils P1 and P2, each marked Monday to Wednesday."""
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test")
    ingest.apply_batch(engine, school, SourceBatch("mis", "first", records=[
        PupilRecord("P1"), PupilRecord("P2"),
        MarksRecord("P1", MON, ("/", "N", "C1", "L", "/", "/")),
        MarksRecord("P2", MON, ("/", "N", "C1", "L", "/", "/"))]), NOW)
    return school


def _marks(engine: Engine, key: str, day: date = MON, sessions: int = 6) -> list[str]:
    with engine.connect() as conn:
        pid = conn.execute(select(t.pupil_keys.c.pupil_id).where(t.pupil_keys.c.pupil_key == key)).scalar_one()
        strip = conn.execute(select(t.mark_strips.c.marks).where(
            t.mark_strips.c.pupil_id == pid, t.mark_strips.c.academic_year == mk.academic_year_of(day))).scalar_one()
        alphabet = ingest.load_alphabet(conn)
    i = mk.position(day, "AM")
    return alphabet.decode(strip[i:i + sessions])


def _changes(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(
            t.pupil_keys.c.pupil_key, t.mark_changes.c.day, t.mark_changes.c.session, t.mark_changes.c.old_code,
            t.mark_changes.c.new_code).join(t.pupil_keys, t.pupil_keys.c.pupil_id == t.mark_changes.c.pupil_id)
            .order_by(t.mark_changes.c.id))]


def test_a_complete_window_clears_each_omitted_session_and_audits_it(engine: Engine) -> None:
    school = _stored(engine)
    result = ingest.apply_batch(engine, school, SourceBatch("mis", "second", records=[
        PupilRecord("P1"), PupilRecord("P2"),
        MarksRecord("P1", MON, ("/", "", "I")),  # Monday PM and all Tuesday: no record any more
        MarksRecord("P2", MON, ("/", "", "I"))],
        marks_complete={"P1": (MON, TUE)}), NOW)
    assert _marks(engine, "P1") == ["/", "-", "I", "-", "/", "/"]  # Wednesday is outside the window: kept
    assert _marks(engine, "P2") == ["/", "N", "I", "L", "/", "/"]  # no window: only what is given is laid
    assert _changes(engine) == [
        ("P1", TUE, "AM", "C1", "I"), ("P2", TUE, "AM", "C1", "I"),
        ("P1", MON, "PM", "N", "-"), ("P1", TUE, "PM", "L", "-")]
    assert result.counts["marks_cleared"] == 2 and result.counts["marks_corrected"] == 4


def test_a_pupil_with_a_window_and_no_marks_at_all_has_its_window_cleared(engine: Engine) -> None:
    school = _stored(engine)
    ingest.apply_batch(engine, school, SourceBatch("mis", "second", records=[PupilRecord("P1")],
                                                   marks_complete={"P1": (TUE, WED), "NOBODY": (MON, WED)}), NOW)
    assert _marks(engine, "P1") == ["/", "N", "-", "-", "-", "-"]
    assert [c[1:] for c in _changes(engine)] == [
        (TUE, "AM", "C1", "-"), (TUE, "PM", "L", "-"), (WED, "AM", "/", "-"), (WED, "PM", "/", "-")]


def test_the_same_complete_batch_twice_changes_nothing_the_second_time(engine: Engine) -> None:
    school = _stored(engine)
    batch = [PupilRecord("P1"), MarksRecord("P1", MON, ("/",))]
    ingest.apply_batch(engine, school, SourceBatch("mis", "a", records=list(batch),
                                                   marks_complete={"P1": (MON, WED)}), NOW)
    before = snapshot(engine)
    result = ingest.apply_batch(engine, school, SourceBatch("mis", "b", records=list(batch),
                                                            marks_complete={"P1": (MON, WED)}), NOW)
    assert "marks_cleared" not in result.counts
    after = snapshot(engine)
    assert after["mark_strips"] == before["mark_strips"] and after["mark_changes"] == before["mark_changes"]


def test_without_a_window_an_omitted_session_keeps_its_mark(engine: Engine) -> None:
    school = _stored(engine)
    ingest.apply_batch(engine, school, SourceBatch("mis", "second", records=[
        PupilRecord("P1"), MarksRecord("P1", MON, ("/", ""))]), NOW)
    assert _marks(engine, "P1") == ["/", "N", "C1", "L", "/", "/"]
    assert _changes(engine) == []


def test_a_window_across_1_august_clears_both_years(engine: Engine) -> None:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test")
    ingest.apply_batch(engine, school, SourceBatch("mis", "first", records=[
        PupilRecord("P1"), MarksRecord("P1", date(2025, 7, 31), ("N", "N", "N", "N"))]), NOW)
    ingest.apply_batch(engine, school, SourceBatch("mis", "second", records=[PupilRecord("P1")],
                                                   marks_complete={"P1": (date(2025, 7, 31), date(2025, 8, 1))}),
                       NOW)
    assert _marks(engine, "P1", date(2025, 7, 31), 2) == ["-", "-"]
    assert _marks(engine, "P1", date(2025, 8, 1), 2) == ["-", "-"]
    assert len(_changes(engine)) == 4
