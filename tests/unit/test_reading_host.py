"""One process reading the large files of one import (``readahead.ReadingHost``): each file
stored as if read here, a file left unread dropped, a dead reader refused."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from cme_batch.app import App
from cme_batch.importer import import_files
from cme_batch.readahead import ReadAheadFailed
from cme_batch.store import open_store
from cme_batch.store import tables as t
from cme_batch.xmlstream import prepare
from tests.cli.test_import_cli import FIX, config
from tests.helpers import snapshot

FILES = ("ctf-25.xml", "sims-pupils.xml", "sims-marks.xml", "ctf-leaver.xml", "ctf-namespace.xml")


def readers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "cme-batch reader"]


@pytest.fixture
def app(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("CME_READ_AHEAD", "1")
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)  # every file is "large"
    monkeypatch.setattr("cme_batch.readahead.CHUNK", 1)  # a message a record: many to drop or take
    monkeypatch.setattr("cme_batch.readahead.BUFFERED", 4)
    found = App(str(config(tmp_path, store_url, engine)))
    yield found
    found.close()


def stored_here(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, *runs: list[str]) -> object:
    """The store after the same imports with every file read in this process."""
    other = tmp_path / "here"
    other.mkdir()
    url = f"sqlite:///{other / 'cme.sqlite'}"
    with monkeypatch.context() as m:
        m.setenv("CME_READ_AHEAD", "0")
        app = App(str(config(other, url, engine)))
        try:
            for names in runs:
                list(import_files(app, [FIX / n for n in names], None))
        finally:
            app.close()
    second = open_store(url)
    try:
        return snapshot(second)
    finally:
        second.dispose()


def test_one_process_reads_every_file_and_the_store_ends_as_if_read_here(
        app: App, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.ctf.source import CtfSource
    from adapters.sims.source import SimsXmlSource

    opened_by = tmp_path / "opened-by"  # the process opening each file writes its id here

    def noting(real: Any) -> Any:
        def parse_file(path: Path, options: dict[str, object]) -> Any:
            with opened_by.open("a") as f:
                f.write(f"{os.getpid()}\n")
            return real(path, options)
        return staticmethod(parse_file)

    for adapter in (CtfSource, SimsXmlSource):
        monkeypatch.setattr(adapter, "parse_file", noting(adapter.parse_file))
    results = [r.status for r in import_files(app, [FIX / n for n in FILES], None)]
    assert results == ["ok"] * len(FILES)
    pids = opened_by.read_text().split()
    assert len(pids) == len(FILES) and len(set(pids)) == 1 and pids[0] != str(os.getpid()), pids
    assert readers() == []  # the reading process has ended with the import
    assert snapshot(engine) == stored_here(tmp_path, engine, monkeypatch, list(FILES))


def test_a_file_already_imported_between_others_is_dropped_unread(
        app: App, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its records were read ahead (a message each here); none is stored, nor taken for the next file's."""
    assert [r.status for r in import_files(app, [FIX / "sims-pupils.xml"], None)] == ["ok"]
    run = ["ctf-25.xml", "sims-pupils.xml", "sims-marks.xml", "sims-pupils.xml", "ctf-leaver.xml"]
    assert [r.status for r in import_files(app, [FIX / n for n in run], None)] == [
        "ok", "skipped", "ok", "skipped", "ok"]
    assert snapshot(engine) == stored_here(tmp_path, engine, monkeypatch, ["sims-pupils.xml"], run)


def test_a_file_changed_is_read_as_the_reading_process_opened_it(app: App, engine: Engine, tmp_path: Path) -> None:
    """The batch stored is the one the reading process opened: its checksum is of what was read,
    so a file rewritten meanwhile is not marked imported under the other content's checksum."""
    first = tmp_path / "a.xml"
    first.write_bytes((FIX / "ctf-25.xml").read_bytes())
    later = tmp_path / "b.xml"
    later.write_bytes((FIX / "ctf-leaver.xml").read_bytes())
    got = import_files(app, [first, later], None)
    assert next(got).status == "ok"
    later.write_bytes((FIX / "ctf-namespace.xml").read_bytes())  # the host has read the first content already
    assert next(got).status == "ok"
    assert list(got) == []
    with engine.connect() as conn:
        sums = dict(conn.execute(select(t.ingest_runs.c.origin, t.ingest_runs.c.checksum)).all())
    assert sums["b.xml"] == prepare(FIX / "ctf-leaver.xml").checksum  # what was read and stored
    assert [r.status for r in import_files(app, [later], None)] == ["ok"], "the content now there is new"


def test_a_reading_process_killed_refuses_the_file_it_was_reading(app: App, engine: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.ctf.source import CtfSource

    real = CtfSource.parse_file

    def slow(path: Path, options: dict[str, object]) -> Any:
        if path.name == "ctf-leaver.xml":
            time.sleep(60)  # still reading it when killed
        return real(path, options)

    monkeypatch.setattr(CtfSource, "parse_file", staticmethod(slow))
    got = import_files(app, [FIX / "ctf-25.xml", FIX / "ctf-leaver.xml"], None)
    assert next(got).status == "ok"
    (host,) = readers()
    assert host.pid is not None
    os.kill(host.pid, signal.SIGKILL)
    host.join(10)
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(t.ingest_runs)).scalar()
    with pytest.raises(ReadAheadFailed, match="ctf-leaver.xml: the process reading the file ended"):
        next(got)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.ingest_runs)).scalar() == before
        assert conn.execute(select(t.ingest_runs.c.origin)).scalars().all() == ["ctf-25.xml"]
    assert readers() == []
