"""A drop folder's large files read by one process while they are stored (``dropfolder.file_batches``
with ``readahead.ReadingHost``), as ``cme-batch import`` reads its files: the night's ``ingest``
stores exactly what it stored reading each file in turn, says the same of a bad file, and leaves no
reading process behind.

Before, each file of a drop folder was read by a process forked at its turn, and the next file's
reading began only once the file before was stored: a local authority's ten day files took twice as
long through the nightly as through ``cme-batch import``.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cme_batch.app import App
from cme_batch.importer import ingest_sources
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.cli.test_import_cli import FIX
from tests.conftest import write_config
from tests.helpers import snapshot

NOW = datetime(2025, 12, 2, 5, 30, tzinfo=UTC)
DROP = '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "drop"\nmax_age_hours = 0\n'


def readers() -> list[multiprocessing.Process]:
    return [p for p in multiprocessing.active_children() if p.name == "cme-batch reader"]


def school(folder: Path, source: str = DROP) -> App:
    """A school with a drop folder (a CTF one unless ``source`` says), over its own SQLite store."""
    folder.mkdir()
    url = f"sqlite:///{folder / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    engine.dispose()
    (folder / "drop").mkdir()
    return App(str(write_config(folder, url, source)), clock=lambda: NOW)


def drop(app: App, files: list[tuple[str, str]]) -> None:
    """Put fixture files into the drop folder under new names, oldest first (the order they are read)."""
    folder = Path(str(app.config_path)).parent / "drop"
    base = NOW.timestamp() - 3600
    for n, (fixture, name) in enumerate(files):
        shutil.copy(FIX / fixture, folder / name)
        os.utime(folder / name, (base + n, base + n))


def night(app: App, files: list[tuple[str, str]]) -> tuple[str, str]:
    drop(app, files)
    (outcome,) = ingest_sources(app)
    return outcome.status, outcome.detail


def runs(app: App) -> list[tuple[str, str, list[str]]]:
    with app.engine().connect() as conn:
        rows = conn.execute(select(t.ingest_runs.c.origin, t.ingest_runs.c.status, t.ingest_runs.c.warnings)
                            .order_by(t.ingest_runs.c.id)).all()
    return [(origin, status, [w["message"] for w in warnings or []]) for origin, status, warnings in rows]


def left_in_drop(app: App) -> list[str]:
    return sorted(p.name for p in (Path(str(app.config_path)).parent / "drop").iterdir() if p.is_file())


@pytest.fixture
def host_and_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[App, App]:
    """Two schools: the first reads every file in the reading process (all are "large" here), the
    second reads each file in this process (``CME_READ_AHEAD=0``)."""
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    monkeypatch.setattr("cme_batch.readahead.CHUNK", 1)  # a message a record
    monkeypatch.setattr("cme_batch.readahead.BUFFERED", 4)
    apps = school(tmp_path / "host"), school(tmp_path / "here")
    yield apps
    for a in apps:
        a.close()


def both(monkeypatch: pytest.MonkeyPatch, host_and_here: tuple[App, App], *nights: list[tuple[str, str]]
         ) -> list[list[tuple[str, str]]]:
    """The same nights in both schools; what each night's ingest said, for each school."""
    said: list[list[tuple[str, str]]] = [[], []]
    for side, app in enumerate(host_and_here):
        with monkeypatch.context() as m:
            m.setenv("CME_READ_AHEAD", "1" if side == 0 else "0")
            for files in nights:
                said[side].append(night(app, files))
    return said


def test_the_files_are_read_by_one_other_process_and_stored_as_if_read_here(
        host_and_here: tuple[App, App], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import adapters.ctf.source as ctf_source

    opened_by = tmp_path / "opened-by"  # the process opening each file writes its id here
    real = ctf_source.read_file

    def noting(path: Path, options: dict[str, Any], source: str = "ctf", prep: Any = None) -> Any:
        with opened_by.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return real(path, options, source=source, prep=prep)

    monkeypatch.setattr(ctf_source, "read_file", noting)
    files = [("ctf-25.xml", "a.xml"), ("ctf-namespace.xml", "b.xml"), ("ctf-leaver.xml", "c.xml")]
    host_app, here_app = host_and_here
    said = both(monkeypatch, host_and_here, files)
    assert said[0] == said[1] == [("ok", "3 batch(es) stored")]
    readers_pids = opened_by.read_text().split()[:3]
    assert len(set(readers_pids)) == 1 and readers_pids[0] != str(os.getpid()), "one reading process, not this one"
    assert snapshot(host_app.engine()) == snapshot(here_app.engine())
    assert runs(host_app) == runs(here_app)
    # the pupils seen in the earlier files reach the reading of the later ones
    b_warnings = next(w for origin, _status, w in runs(host_app) if origin == "b.xml")
    assert any("also in a.xml" in w for w in b_warnings), b_warnings
    assert left_in_drop(host_app) == [] and readers() == []


def test_a_bad_file_is_set_aside_at_its_turn_as_before_and_no_reader_is_left(
        host_and_here: tuple[App, App], monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused CTF is set aside (``tests/integration/test_refused_set_aside.py``) and the files
    after it read, the same whether the files are read by the reading process or here."""
    files = [("ctf-25.xml", "a.xml"), ("ctf-bad-records.xml", "b.xml"), ("ctf-leaver.xml", "c.xml")]
    host_app, here_app = host_and_here
    said = both(monkeypatch, host_and_here, files)
    (status, detail), = said[0]
    assert status == "failed" and said[0] == [(s, d.replace("/here/", "/host/")) for s, d in said[1]]
    assert "b.xml" in detail and "record" in detail, detail
    assert [(origin, status) for origin, status, _w in runs(host_app)] == [
        ("a.xml", "ok"), ("b.xml", "rejected"), ("c.xml", "ok"), ("ctf", "failed")]
    assert snapshot(host_app.engine()) == snapshot(here_app.engine())
    assert left_in_drop(host_app) == left_in_drop(here_app) == [], "the bad file set aside, the next read"
    assert readers() == []


def test_a_file_dropped_again_is_archived_unread_and_the_new_ones_are_stored(
        host_and_here: tuple[App, App], monkeypatch: pytest.MonkeyPatch) -> None:
    first = [("ctf-25.xml", "a.xml")]
    second = [("ctf-25.xml", "a-again.xml"), ("ctf-leaver.xml", "c.xml")]
    host_app, here_app = host_and_here
    said = both(monkeypatch, host_and_here, first, second)
    assert said[0] == said[1] == [("ok", "1 batch(es) stored"), ("ok", "1 batch(es) stored")]
    assert [origin for origin, _s, _w in runs(host_app)] == ["a.xml", "c.xml"]
    assert snapshot(host_app.engine()) == snapshot(here_app.engine())
    assert left_in_drop(host_app) == [] and readers() == []


def test_a_small_file_read_here_after_a_large_one_still_knows_the_pupils_it_held(
        host_and_here: tuple[App, App], monkeypatch: pytest.MonkeyPatch) -> None:
    """The host brings its ``seen`` map back only for a file read here later: that file is still
    warned about a pupil who was in the large file before it."""
    monkeypatch.setattr("cme_batch.dropfolder.wanted_path", lambda path: path.name != "b.xml")
    files = [("ctf-25.xml", "a.xml"), ("ctf-namespace.xml", "b.xml"), ("ctf-leaver.xml", "c.xml")]
    host_app, here_app = host_and_here
    said = both(monkeypatch, host_and_here, files)
    assert said[0] == said[1] == [("ok", "3 batch(es) stored")]
    b_warnings = next(w for origin, _status, w in runs(host_app) if origin == "b.xml")
    assert any("also in a.xml" in w for w in b_warnings), b_warnings
    assert runs(host_app) == runs(here_app) and snapshot(host_app.engine()) == snapshot(here_app.engine())
    assert readers() == []


def test_a_sims_report_back_to_an_earlier_state_is_stored_again_when_read_by_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIMS export is the whole of its report: the marks back to Monday's bytes after Tuesday's
    correction are stored again (the reading process hands the batch's report over with it)."""
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    sims = '\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop"\nmax_age_hours = 0\n'
    apps = [school(tmp_path / side, sims) for side in ("host", "here")]
    nights = [[("sims-pupils.xml", "pupils-1.xml"), ("sims-marks.xml", "marks-1.xml")],
              [("sims-marks-corrected.xml", "marks-2.xml")], [("sims-marks.xml", "marks-3.xml")]]
    try:
        for app, ahead in zip(apps, ("1", "0"), strict=True):
            with monkeypatch.context() as m:
                m.setenv("CME_READ_AHEAD", ahead)
                assert [night(app, files)[0] for files in nights] == ["ok", "ok", "ok"]
        host_app, here_app = apps
        assert [(origin, status) for origin, status, _w in runs(host_app)] == [
            ("pupils-1.xml", "ok"), ("marks-1.xml", "ok"), ("marks-2.xml", "ok"), ("marks-3.xml", "ok")]
        assert runs(host_app) == runs(here_app) and snapshot(host_app.engine()) == snapshot(here_app.engine())
    finally:
        for app in apps:
            app.close()


def test_a_superseded_export_is_named_on_the_newer_one_read_by_the_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warning naming the older export of a report archived unread, which this process adds to
    the newer one's batch, is kept when the reading process hands over the file's own warnings."""
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    sims = '\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop"\nmax_age_hours = 0\n'
    apps = [school(tmp_path / side, sims) for side in ("host", "here")]
    files = [("sims-pupils.xml", "pupils-1.xml"), ("sims-marks.xml", "marks-1.xml"),
             ("sims-marks-corrected.xml", "marks-2.xml")]
    try:
        for app, ahead in zip(apps, ("1", "0"), strict=True):
            with monkeypatch.context() as m:
                m.setenv("CME_READ_AHEAD", ahead)
                assert night(app, files)[0] == "ok"
        host_app, here_app = apps
        marks = next(w for origin, _status, w in runs(host_app) if origin == "marks-2.xml")
        assert any("archived unread" in w and "marks-1.xml" in w for w in marks), marks
        assert runs(host_app) == runs(here_app)
    finally:
        for app in apps:
            app.close()
