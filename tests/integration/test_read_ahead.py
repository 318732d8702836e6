"""Large files are read by a forked process while this one stores them (``cme_batch.readahead``).

The read-ahead must be invisible: the same rows, the same warnings, the same refusals, and
nothing stored when the reader fails or dies. The threshold is lowered so the small fixtures
go through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cme_batch import readahead
from cme_batch.cli import cli
from cme_batch.errors import CmeError
from cme_batch.model import MarksRecord, PupilRecord, Record, SourceBatch, Warning_
from cme_batch.store import open_store
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.helpers import snapshot

FIX = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"
FILES = ("ctf-25.xml", "sims-pupils.xml", "sims-admissions.xml", "sims-marks.xml")


def _store(tmp_path: Path, store_url: str, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    path = write_config(folder, store_url, '\n[codes]\nsubcodes = { "I01" = "I" }\n')
    result = CliRunner().invoke(cli, ["--config", str(path), "init"])
    assert result.exit_code == 0, result.output
    return path


def _import_all(config: Path, files: tuple[str, ...]) -> list[str]:
    outputs = []
    for name in files:
        result = CliRunner().invoke(cli, ["--config", str(config), "import", str(FIX / name)])
        said = [line for line in result.output.splitlines() if not line.startswith("{")]  # not the log lines
        outputs.append(f"{result.exit_code} " + "\n".join(said))
    return outputs


def test_files_read_ahead_are_stored_exactly_as_files_read_in_process(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = {name: f"sqlite:///{tmp_path / (name + '.sqlite')}" for name in ("plain", "ahead")}
    monkeypatch.setenv(readahead.ENV, "0")
    said_plain = _import_all(_store(tmp_path, urls["plain"], "plain"), FILES)
    monkeypatch.setenv(readahead.ENV, "1")
    monkeypatch.setattr(readahead, "MIN_BYTES", 0)
    said_ahead = _import_all(_store(tmp_path, urls["ahead"], "ahead"), FILES)
    assert said_ahead == said_plain
    assert all(s.startswith("0 ") for s in said_ahead), said_ahead
    assert "3 warning(s)" in said_ahead[-1], "the warnings found by the reader come back"
    engines = {name: open_store(url) for name, url in urls.items()}
    try:
        assert snapshot(engines["ahead"]) == snapshot(engines["plain"])
    finally:
        for e in engines.values():
            e.dispose()


def test_a_file_refused_by_the_reader_process_is_refused_the_same_and_stores_nothing(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "MIN_BYTES", 0)
    config = _store(tmp_path, store_url, "refused")
    assert _import_all(config, ("ctf-25.xml",))[0].startswith("0 ")
    before = snapshot(engine)
    said = _import_all(config, ("ctf-bad-records.xml",))[0]
    assert said.startswith("2 ")
    assert "ctf-bad-records.xml: rejected, nothing imported (3 problem(s))" in said
    assert "record 2, field AttendanceMarks" in said
    assert snapshot(engine) == before


def _dies_after_one(path: Path) -> Iterator[Record]:
    yield PupilRecord(pupil_key="K1", upn=None, legal_surname="Reader")
    yield MarksRecord("K1", date(2025, 9, 8), ("/", "\\"))
    os._exit(3)  # the reader process, never the test's: the records are read in the fork


def test_a_reader_process_that_dies_fails_the_import_and_stores_nothing(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "MIN_BYTES", 0)
    config = _store(tmp_path, store_url, "dies")
    from cme_batch.app import App
    app = App(str(config))
    before = snapshot(engine)
    path = FIX / "ctf-25.xml"
    batch = readahead.read_ahead(SourceBatch(source="test", origin="dying.xml", records=_dies_after_one(path),
                                             path=path))
    with pytest.raises(CmeError, match=r"reading dying.xml failed: the reader process ended unexpectedly "
                                       r"\(exit code 3\); nothing was imported"):
        apply_batch(app.engine(), app.school_id, batch, datetime(2025, 9, 9, tzinfo=UTC))
    assert snapshot(engine) == before


def test_what_the_reader_leaves_on_the_batch_and_the_shared_map_comes_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readahead, "MIN_BYTES", 0)
    shared: dict[str, str] = {"earlier": "a.xml"}
    batch = SourceBatch(source="test", origin="b.xml", path=FIX / "ctf-25.xml",
                        warnings=[Warning_("encoding", "read as UTF-8", "b.xml")])

    def records() -> Iterator[Record]:
        for i in range(2500):  # more than one chunk
            yield PupilRecord(pupil_key=f"K{i}")
        shared["K1"] = "b.xml"  # done in the reader process
        batch.warnings.append(Warning_("duplicate_pupil", "also in a.xml", "b.xml record 2"))
        batch.replaces = frozenset({"contacts"})
        batch.cursor = "r42"

    batch.records = records()
    batch = readahead.read_ahead(batch, shared)
    got = list(batch.records)
    assert [r.pupil_key for r in got] == [f"K{i}" for i in range(2500)]  # type: ignore[union-attr]
    assert shared == {"earlier": "a.xml", "K1": "b.xml"}
    assert [w.code for w in batch.warnings] == ["encoding", "duplicate_pupil"]
    assert batch.replaces == frozenset({"contacts"}) and batch.cursor == "r42"


def test_small_files_are_read_in_this_process(tmp_path: Path) -> None:
    small = tmp_path / "small.xml"
    small.write_text("<CTfile/>")
    records: list[Record] = []
    batch = SourceBatch(source="test", origin="small.xml", path=small, records=records)
    assert readahead.read_ahead(batch).records is records
