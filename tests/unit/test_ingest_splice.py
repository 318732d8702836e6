"""The database's splice of a day's register (``_Writer._splice_registers``) stores exactly what the
store would without it.

Each test stores the same batches into two fresh stores on the same database engine (SQLite, and
PostgreSQL through ``store_url``): once as the code stands (the splice taken for chunks of at least
``SPLICE_FROM`` short runs) and once with the splice turned off (``SPLICE_FROM`` out of reach), and
compares everything: every row of the data tables and of ``ingest_runs`` *with* their timestamps
(each batch stored at its own time, so an ``updated_at`` set or left wrongly shows; it is what
``detect._laid_since_leaving`` reads), each batch's counts, and each refusal's class and message.
A spy on ``bulk.splice_texts`` checks that the splice was taken (and what it changed), so that no
test compares the general path with itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.store import bulk, ingest, migrate, open_store
from tests.helpers import DATA_TABLES, snapshot

T0 = datetime(2025, 11, 1, 6, 0, tzinfo=UTC)  # the stored year
T1 = datetime(2025, 11, 5, 6, 0, tzinfo=UTC)  # the day's register
T2 = datetime(2025, 11, 6, 6, 0, tzinfo=UTC)  # the register sent again, or corrected
MON, TUE, WED = date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)
OFF = 10**9  # SPLICE_FROM out of reach: the splice never taken


@pytest.fixture
def twin(store_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two migrated, empty stores on the engine of ``store_url``: (the one spliced into, the general one)."""
    if store_url.startswith("sqlite"):
        other = f"sqlite:///{tmp_path / 'general.sqlite'}"
    else:
        base = request.getfixturevalue("_postgres")
        name = f"g{uuid.uuid4().hex[:16]}"
        admin = open_store(base)
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        other = base.rsplit("/", 1)[0] + "/" + name
    engines = (open_store(store_url), open_store(other))
    for engine in engines:
        migrate(engine)
    yield engines
    for engine in engines:
        engine.dispose()


def _store(engine: Engine, batches: list[tuple[datetime, SourceBatch]], splice: bool,
           record_chunk: int | None = None, splice_from: int | None = None
           ) -> tuple[list[Any], dict[str, Any], list[int]]:
    """Store ``batches`` in order: (each batch's counts or refusal, every row with timestamps, what each
    splice changed)."""
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test")
    outcomes: list[Any] = []
    spliced: list[int] = []
    real = bulk.splice_texts

    def spy(*args: Any) -> int:
        spliced.append(real(*args))
        return spliced[-1]

    with pytest.MonkeyPatch.context() as m:
        m.setattr(bulk, "splice_texts", spy)
        if not splice:
            m.setattr(ingest, "SPLICE_FROM", OFF)
        elif splice_from is not None:
            m.setattr(ingest, "SPLICE_FROM", splice_from)
        if record_chunk is not None:
            m.setattr(ingest, "RECORD_CHUNK", record_chunk)
        for now, batch in batches:
            try:
                result = ingest.apply_batch(engine, school, batch, now)
                outcomes.append(("ok", dict(result.counts)))
            except Exception as exc:  # noqa: BLE001 - the class is compared: a refusal must stay a refusal
                outcomes.append((exc.__class__.__name__, str(exc)))
    return outcomes, snapshot(engine, (*DATA_TABLES, "ingest_runs"), ignore=()), spliced


def _both(twin: tuple[Engine, Engine], batches: list[tuple[datetime, SourceBatch]],
          record_chunk: int | None = None, splice_from: int | None = None
          ) -> tuple[list[Any], dict[str, Any], list[int]]:
    spliced_store = _store(twin[0], batches, True, record_chunk, splice_from)
    general_store = _store(twin[1], batches, False, record_chunk)
    assert general_store[2] == []  # the general store never spliced
    assert spliced_store[0] == general_store[0]  # the same counts, the same refusals
    for table in general_store[1]:
        assert spliced_store[1][table] == general_store[1][table], table
    return spliced_store


def _pupils(keys: list[str]) -> list[PupilRecord]:
    return [PupilRecord(k, legal_surname=f"S{k}", dob=date(2017, 3, 1)) for k in keys]


KEYS = [f"P{i:02d}" for i in range(60)]


def _year() -> SourceBatch:
    """The stored year (T0): each pupil's strips, set up for the day below."""
    marks = [MarksRecord(k, MON, "/\\") for k in KEYS[:30]]  # 0-29: Monday only, Tuesday free
    marks += [MarksRecord(k, TUE, "N\\") for k in KEYS[30:32]]  # 30-31: Tuesday as the day gives it
    marks += [MarksRecord(KEYS[32], TUE, "/\\"), MarksRecord(KEYS[33], TUE, ("N", "")),  # a correction; half
              MarksRecord(KEYS[34], date(2025, 3, 3), "/\\"),  # 34: a strip of last year only; 35: none
              MarksRecord(KEYS[36], MON, ("C1", "C1")),  # 36: a multi-character code's symbol before the day
              MarksRecord(KEYS[37], TUE, ("C1", "\\")),  # 37: ... and in the day's place (a correction)
              MarksRecord(KEYS[38], MON, "/\\"), MarksRecord(KEYS[39], MON, "/\\"),
              MarksRecord(KEYS[40], MON, "/\\"), MarksRecord(KEYS[41], TUE, "/\\"),
              MarksRecord(KEYS[42], date(2025, 10, 1), "/\\"), MarksRecord(KEYS[43], date(2025, 10, 1), "/\\"),
              MarksRecord(KEYS[44], MON, "/\\"), MarksRecord(KEYS[45], MON, "/\\"),
              MarksRecord(KEYS[46], MON, "/\\"), MarksRecord(KEYS[47], MON, "/\\"),
              MarksRecord(KEYS[48], MON, "/\\"),
              MarksRecord(KEYS[49], date(2025, 12, 1), ("Y1", "J1"))]  # 49: symbols after the day
    marks += [MarksRecord(k, MON, "/\\") for k in [*KEYS[50:], "Q0"]]  # Q0: no-mark given where none is
    return SourceBatch("mis", "year", records=[*_pupils([*KEYS, "Q0"]), *marks])


def _day(origin: str, tuesday: str = "N\\") -> SourceBatch:
    """A day's register (and a few other runs) for every stored pupil, two new pupils, in two chunks of
    60 records: the records giving corrections the general way come before those the splice hands back."""
    first: list[MarksRecord] = [
        MarksRecord(KEYS[41], TUE, "--"),  # all no-mark over marks: corrections, never spliced
        *(MarksRecord(k, TUE, tuesday) for k in KEYS[:30]),
        MarksRecord(KEYS[30], TUE, "N\\"), MarksRecord(KEYS[31], TUE, "N\\"),  # already in place
        MarksRecord(KEYS[32], TUE, "N\\"),  # over "/\\": a correction, handed back
        MarksRecord(KEYS[33], TUE, "N\\"),  # over "N-": handed back, no correction
        MarksRecord(KEYS[34], TUE, "N\\"), MarksRecord(KEYS[35], TUE, "N\\"),  # no strip this year
        MarksRecord(KEYS[36], TUE, "N\\"),  # spliced after a private-use symbol
        MarksRecord(KEYS[37], TUE, "/\\"),  # over C1: a correction, handed back
        MarksRecord(KEYS[38], TUE, "/\\"), MarksRecord(KEYS[38], WED, "N\\"),  # named twice in the chunk
        MarksRecord(KEYS[39], TUE, "-\\"), MarksRecord(KEYS[40], TUE, "N-"),  # no-mark inside a run
        MarksRecord(KEYS[42], MON, "/\\" * 5),  # a week: SPLICE_MOST sessions
        MarksRecord(KEYS[43], MON, "/\\" * 5 + "/"),  # one more: the general way
        MarksRecord(KEYS[44], date(2026, 7, 31), "/\\"),  # the year's last day: spliced to the strip's end
        MarksRecord(KEYS[45], date(2026, 7, 31), "/\\N\\"),  # across 1 August: the general way
        MarksRecord(KEYS[46], date(2025, 8, 1), "#\\"),  # the year's first session
        MarksRecord(KEYS[47], TUE, ("N", "\\")),  # codes as a tuple: the general way
        MarksRecord(KEYS[48], TUE, "N "),  # not plain: the general way
        MarksRecord(KEYS[49], TUE, "N\\"),  # spliced before private-use symbols
        MarksRecord("NEW1", TUE, "N\\"),  # a pupil the batch adds: the general way
        MarksRecord("Q0", TUE, "--"),  # no-mark over no-mark: nothing changes, not even updated_at
    ]
    first += [MarksRecord(k, date(2025, 11, 7), "/\\") for k in KEYS[50:50 + 60 - len(first)]]
    second: list[MarksRecord] = [
        *(MarksRecord(k, WED, "/\\") for k in KEYS[50:]),
        *(MarksRecord(k, WED, "/\\") for k in KEYS[1:30]),
        MarksRecord(KEYS[0], TUE, "L\\"),  # named in the first chunk too: a correction across chunks
        MarksRecord("NEW1", WED, "/\\"),  # the new pupil's strip written by the first chunk: spliced
        MarksRecord("NEW2", WED, "/\\"),
    ]
    second += [MarksRecord(k, date(2025, 11, 6), "/\\") for k in KEYS[32:32 + 60 - len(second)]]
    assert len(first) == len(second) == 60
    return SourceBatch("mis", origin, records=[
        *(PupilRecord.named(k, None) for k in [*KEYS, "Q0"]), *_pupils(["NEW1", "NEW2"]), *first, *second])


def test_a_day_spliced_stores_what_the_general_path_stores(twin: tuple[Engine, Engine]) -> None:
    """Runs filled, already in place, corrected, with no strip, after and before private-use symbols,
    with no-mark inside, a week, the year's ends, named twice, new pupils, across chunks; then the
    register sent again (nothing changes, not even a strip's ``updated_at``) and corrected."""
    outcomes, snap, spliced = _both(twin, [(T0, _year()), (T1, _day("tuesday")), (T2, _day("tuesday again")),
                                           (T2 + timedelta(hours=1), _day("tuesday corrected", "/\\"))],
                                    record_chunk=60, splice_from=20)
    assert [o[0] for o in outcomes] == ["ok"] * 4
    assert len(spliced) == 6  # two chunks of each day (the year's pupils are new: never spliced)
    assert spliced[0] > 0 and spliced[1] > 0  # the day spliced in both chunks ...
    assert spliced[2] == 0 == spliced[3]  # ... sent again: nothing to splice, every run in place
    assert outcomes[1][1]["marks_corrected"] > 0 and outcomes[3][1]["marks_corrected"] > 0
    stamps = {row[0]: row[3] for row in snap["mark_strips"]}  # (pupil id, year, marks, updated_at)
    year_stamp, day_stamp = stamps[31], stamps[1]  # pupil 30 (id 31): its day already in place
    assert year_stamp != day_stamp and stamps[61] == year_stamp  # Q0 (id 61): only no-mark given


def test_corrections_are_numbered_in_the_registers_order(twin: tuple[Engine, Engine]) -> None:
    """A correction the splice hands back (a short run over another mark) and one the general way
    finds (codes as a tuple) get their ``mark_changes`` ids in the order of the register, as without
    the splice: the items handed back must not be moved behind the chunk's other items."""
    keys = KEYS[:55]
    year = SourceBatch("mis", "year", records=[*_pupils(keys), *(MarksRecord(k, TUE, "/\\") for k in keys[:2]),
                                               *(MarksRecord(k, MON, "/\\") for k in keys[2:])])
    day = SourceBatch("mis", "tuesday", records=[
        *(PupilRecord.named(k, None) for k in keys),
        MarksRecord(keys[0], TUE, "N\\"),  # short, over "/\\": handed back by the splice
        MarksRecord(keys[1], TUE, ("L", "\\")),  # a tuple: the general way
        *(MarksRecord(k, TUE, "/\\") for k in keys[2:])])
    outcomes, snap, spliced = _both(twin, [(T0, year), (T1, day)])
    assert spliced[-1] == len(keys) - 2
    assert [row[1] for row in snap["mark_changes"]] == [1, 2]  # pupil ids: keys[0]'s correction first


def test_a_register_dated_before_the_stores_years_is_refused_as_without_the_splice(
        twin: tuple[Engine, Engine]) -> None:
    """A mark dated in January to July of year 1 (a typing error in the MIS: academic year 0) among
    a day's register for many pupils is refused with the store's message (``BadInputError``, the file
    rejected and named), not a ``ValueError`` from working out its place in a strip."""
    keys = KEYS[:55]
    year = SourceBatch("mis", "year", records=[*_pupils(keys), *(MarksRecord(k, MON, "/\\") for k in keys)])
    day = SourceBatch("mis", "tuesday", records=[
        *(PupilRecord.named(k, None) for k in keys),
        *(MarksRecord(k, TUE, "/\\") for k in keys[1:]), MarksRecord(keys[0], date(1, 1, 1), "/\\")])
    outcomes, _snap, _spliced = _both(twin, [(T0, year), (T1, day)])
    assert outcomes[1][0] == "BadInputError" and "outside the years 1900-2199" in outcomes[1][1]


@pytest.mark.parametrize("wrong", ["a pupil neither in the file nor in the store, in a later chunk",
                                   "a run past the store's years, in the spliced chunk"])
def test_an_error_after_a_spliced_chunk_stores_nothing(twin: tuple[Engine, Engine], wrong: str) -> None:
    """All or nothing: a day's register laid by the database, then a refusal, in a later chunk or later
    in the same chunk (the general way, after the splice): no strip keeps the spliced marks, nor a
    changed ``updated_at``."""
    keys = KEYS[:55]
    year = SourceBatch("mis", "year", records=[*_pupils(keys), *(MarksRecord(k, MON, "/\\") for k in keys)])
    late = wrong.endswith("later chunk")
    bad = MarksRecord("NOBODY", TUE, "/\\") if late else MarksRecord(keys[0], date(9999, 12, 30), "/\\")
    day = SourceBatch("mis", "tuesday", records=[
        *(PupilRecord.named(k, None) for k in keys), *(MarksRecord(k, TUE, "N\\") for k in keys[1:]),
        *([MarksRecord(keys[0], TUE, "N\\")] if late else []), bad])
    _outcomes, before, _spliced = _both(twin, [(T0, year)])
    outcomes, snap, spliced = _both(twin, [(T1, day)], record_chunk=len(keys))
    assert spliced == [len(keys) - (0 if late else 1)]  # the register was spliced, and then undone
    assert outcomes[0][0] == "BadInputError"
    assert ("refer to a pupil" if late else "outside the years 1900-2199") in outcomes[0][1]
    assert snap == before  # as the year left it, timestamps and all


def test_a_register_complete_for_its_window_is_stored_as_without_the_splice(twin: tuple[Engine, Engine]) -> None:
    """A batch that is each pupil's whole register for the day (``marks_complete``): a session it gives
    no mark is cleared (``clear_omitted``), which needs every mark it gave noted (``note_given``), so
    the day's runs must not be laid behind the general way's back."""
    keys = KEYS[:55]
    year = SourceBatch("mis", "year", records=[*_pupils(keys), *(MarksRecord(k, MON, "/\\") for k in keys),
                                               MarksRecord(keys[0], TUE, "/\\")])
    day = SourceBatch("mis", "tuesday", records=[
        *(PupilRecord.named(k, None) for k in keys), *(MarksRecord(k, TUE, "N\\") for k in keys[1:])],
        marks_complete={k: (TUE, TUE) for k in keys})  # keys[0]'s Tuesday deleted in the MIS
    outcomes, snap, spliced = _both(twin, [(T0, year), (T1, day)])
    assert outcomes[1] == ("ok", {"marks": 2 * (len(keys) - 1), "marks_corrected": 2, "marks_cleared": 2})
