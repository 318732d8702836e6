"""Reading a file's records in a second process (``cme_batch.readahead``): nothing changes but speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from adapters.ctf.parser import read_file
from cme_batch.errors import ImportRejected
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch, Warning_
from cme_batch.readahead import ReadAheadFailed, read_ahead, wanted
from cme_batch.store import ingest
from cme_batch.store import tables as t

FIX = Path(__file__).parents[1] / "adapters" / "fixtures"
NOW = datetime(2025, 12, 1, 7, 0, tzinfo=UTC)


def records_and_warnings(batch: SourceBatch) -> tuple[list[object], list[Warning_], frozenset[str]]:
    return list(batch.records), list(batch.warnings), batch.replaces


@pytest.mark.parametrize("name", ["ctf-25.xml", "ctf-leaver.xml", "ctf-namespace.xml"])
def test_records_warnings_and_shared_maps_are_those_read_here(name: str) -> None:
    here_seen: dict[object, str] = {"X": "earlier.xml"}
    there_seen: dict[object, str] = {"X": "earlier.xml"}
    here = read_file(FIX / name, {"seen": here_seen})
    here.shared = (here_seen,)
    expected = records_and_warnings(here)
    there = read_file(FIX / name, {"seen": there_seen})
    there.shared = (there_seen,)
    with read_ahead(there, force=True) as batch:
        got = records_and_warnings(batch)
    assert got == expected and expected[0]
    assert there_seen == here_seen and len(there_seen) > 1  # the pupils seen, brought back


def test_a_rejected_file_is_rejected_here_with_every_problem(engine: Engine) -> None:
    with pytest.raises(ImportRejected) as here:
        list(read_file(FIX / "ctf-bad-records.xml", {}).records)
    with pytest.raises(ImportRejected) as there, read_ahead(read_file(FIX / "ctf-bad-records.xml", {}),
                                                            force=True) as batch:
        ingest.apply_batch(engine, 1, batch, NOW)
    assert there.value.problems == here.value.problems and there.value.file == here.value.file
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar() == 0
        assert conn.execute(select(t.ingest_runs.c.status)).scalars().all() == []


def _records_then_death() -> Iterator[object]:
    yield PupilRecord("P1")
    yield MarksRecord("P1", date(2025, 11, 3), "NN")
    os.kill(os.getpid(), signal.SIGKILL)  # the reading process dies half-way (as if out of memory)
    yield PupilRecord("P2")


@pytest.mark.parametrize("buffered", [64, 2])  # 2: the buffer is full when the pipe ends, no room to say so
def test_a_reader_that_dies_half_way_stores_nothing(engine: Engine, monkeypatch: pytest.MonkeyPatch,
                                                   buffered: int) -> None:
    monkeypatch.setattr("cme_batch.readahead.CHUNK", 1)
    monkeypatch.setattr("cme_batch.readahead.BUFFERED", buffered)
    batch = SourceBatch("ctf", "big.xml", records=_records_then_death())
    with pytest.raises(ReadAheadFailed, match="big.xml: the process reading the file ended before the end"), \
            read_ahead(batch, force=True) as ahead:
        ingest.apply_batch(engine, 1, ahead, NOW)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar() == 0


class _Unpicklable(Exception):
    def __init__(self, a: str, b: str) -> None:  # pickling rebuilds it with one argument: fails
        super().__init__(f"{a} {b}")


def _records_then_error() -> Iterator[object]:
    yield PupilRecord("P1")
    raise _Unpicklable("reader", "bug")


def test_an_error_that_cannot_cross_is_raised_here_with_its_text() -> None:
    with pytest.raises(ReadAheadFailed, match="_Unpicklable: reader bug"), \
            read_ahead(SourceBatch("ctf", "f.xml", records=_records_then_error()), force=True) as batch:
        list(batch.records)


def test_the_reader_goes_when_the_storing_process_is_killed(tmp_path: Path) -> None:
    """SIGKILL the storing process while its reader waits to hand records over: the reader exits."""
    script = textwrap.dedent("""
        import itertools, sys, time
        from cme_batch.model import PupilRecord, SourceBatch
        from cme_batch.readahead import read_ahead
        endless = (PupilRecord(f"P{i}") for i in itertools.count())
        with read_ahead(SourceBatch("ctf", "f.xml", records=endless), force=True) as batch:
            next(iter(batch.records))
            import multiprocessing
            print(multiprocessing.active_children()[0].pid, flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    assert proc.stdout is not None
    reader = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(reader):
        time.sleep(0.05)
    assert not _running(reader), "the reading process outlived the process it read for"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited (its parent, killed, can no longer reap it)


def test_small_files_and_batches_without_a_file_are_read_here(monkeypatch: pytest.MonkeyPatch) -> None:
    small = read_file(FIX / "ctf-25.xml", {})
    assert not wanted(small) and not wanted(SourceBatch("arbor", "api"))
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    assert wanted(small)
    monkeypatch.setenv("CME_READ_AHEAD", "0")
    assert not wanted(small)


def test_leaving_before_the_last_record_stops_the_reader_and_its_thread() -> None:
    """A batch already imported, or a store that failed half-way: nothing keeps running or holding
    records once the block is left."""
    import itertools
    import multiprocessing
    import threading

    endless = (PupilRecord(f"P{i}") for i in itertools.count())
    with read_ahead(SourceBatch("ctf", "f.xml", records=endless), force=True) as batch:
        taken = iter(batch.records)
        next(taken)
        time.sleep(0.5)  # the reader fills the buffer, and its pump waits to hand over more
    assert not [t for t in threading.enumerate() if t.name == "cme-batch reader pipe"]
    assert multiprocessing.active_children() == []


def test_records_replaced_after_reading_began_are_the_ones_handed_over() -> None:
    """A reader's packed records (``SourceBatch.packed_records``) go to the reading process only
    while ``records`` is still what they were made with: records put in their place (a batch
    wrapped by whoever opened it) are handed over, packed here, not the file's first reading."""
    from cme_batch.model import packed
    from cme_batch.readahead import packed_items

    day = date(2025, 11, 3)
    first = [PupilRecord.named("K1", None), MarksRecord("K1", day, "/\\")]
    batch = SourceBatch("mis", "day.xml", records=first)
    batch.packed_records = (first, iter(packed(first)))
    assert list(packed_items(batch)) == packed(first)

    later = [PupilRecord.named("K2", None), MarksRecord("K2", day, "N\\")]
    batch = SourceBatch("mis", "day.xml", records=first)
    batch.packed_records = (first, iter(packed(first)))
    batch.records = later
    assert list(packed_items(batch)) == packed(later)
