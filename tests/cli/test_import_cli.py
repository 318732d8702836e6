"""``cme-batch import FILE``: format detection, all-or-nothing, and what the user is told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from cme_batch.cli import cli
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import snapshot

FIX = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.output


def config(tmp_path: Path, store_url: str, engine: Engine) -> Path:
    path = write_config(tmp_path, store_url, '\n[codes]\nsubcodes = { "I01" = "I" }\n')
    code, out = invoke(path, "init")
    assert code == 0, out
    return path


def test_import_detects_the_format_and_reports_counts_and_warnings(tmp_path: Path, store_url: str,
                                                                   engine: Engine) -> None:
    cfg = config(tmp_path, store_url, engine)
    code, out = invoke(cfg, "import", str(FIX / "ctf-25.xml"))
    assert code == 0, out
    assert "imported (" in out and "pupils_added 2" in out and "marks 36" in out
    code, out = invoke(cfg, "import", str(FIX / "sims-pupils.xml"))
    assert code == 0 and "contacts_added 2" in out
    code, out = invoke(cfg, "import", str(FIX / "sims-marks.xml"))
    assert code == 0 and "3 warning(s)" in out, out
    assert "'@'" in out and "I01" not in out, "the configured sub-code is mapped, the local '@' warned"
    assert "B234567890123" not in out
    code, out = invoke(cfg, "import", str(FIX / "ctf-25.xml"))
    assert code == 0 and "already imported" in out


def test_rejected_file_exits_2_names_the_record_and_changes_nothing(tmp_path: Path, store_url: str,
                                                                    engine: Engine) -> None:
    cfg = config(tmp_path, store_url, engine)
    assert invoke(cfg, "import", str(FIX / "ctf-25.xml"))[0] == 0
    before = snapshot(engine)
    code, out = invoke(cfg, "import", str(FIX / "ctf-bad-records.xml"))
    assert code == 2
    assert "ctf-bad-records.xml: rejected, nothing imported (3 problem(s))" in out
    assert "record 2, field AttendanceMarks" in out and "Nobody" not in out
    for name in ("ctf-truncated.xml", "billion-laughs.xml", "sims-error.xml"):
        code, out = invoke(cfg, "import", str(FIX / name))
        assert code == 2 and "rejected" in out, (name, out)
    code, out = invoke(cfg, "import", "--format", "sims-xml", str(FIX / "ctf-25.xml"))
    assert code == 2 and "expected <SuperStarReport>" in out
    assert snapshot(engine) == before
    with engine.connect() as conn:
        rejected = conn.execute(select(t.ingest_runs.c.origin).where(t.ingest_runs.c.status == "rejected")).all()
    # every refused file is kept as a rejected ingest run, also those refused while detecting the format
    assert sorted(r.origin for r in rejected) == ["billion-laughs.xml", "ctf-25.xml", "ctf-bad-records.xml",
                                                   "ctf-truncated.xml", "sims-error.xml"]


def test_several_files_in_order_read_ahead_or_not_store_the_same(tmp_path: Path, store_url: str, engine: Engine,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """``import A B C``: each file in turn; with every file read in a second process, the next
    file's reading overlapping this one's storing, the store ends exactly as with none."""
    files = [str(FIX / n) for n in ("ctf-25.xml", "sims-pupils.xml", "sims-marks.xml", "ctf-leaver.xml")]
    cfg = config(tmp_path, store_url, engine)
    monkeypatch.setenv("CME_READ_AHEAD", "0")
    code, out = invoke(cfg, "import", *files)
    assert code == 0, out
    assert [line.split(":")[0] for line in out.splitlines() if ": imported (" in line] == files
    in_process = snapshot(engine)
    other = tmp_path / "other"
    other.mkdir()
    other_url = f"sqlite:///{other / 'cme.sqlite'}"
    cfg2 = config(other, other_url, engine)
    monkeypatch.setenv("CME_READ_AHEAD", "1")
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    code, out2 = invoke(cfg2, "import", *files)
    assert code == 0, out2
    def told(output: str) -> list[str]:  # what the user reads (log lines, JSON on stderr, aside)
        return [line for line in output.splitlines() if not line.startswith("{")]

    assert told(out2) == told(out)
    from cme_batch.store import open_store

    second = open_store(other_url)
    try:
        assert snapshot(second) == in_process
    finally:
        second.dispose()


@pytest.mark.parametrize("read_ahead", ["0", "1"])
def test_a_refused_file_stops_the_files_after_it(tmp_path: Path, store_url: str, engine: Engine,
                                                 monkeypatch: pytest.MonkeyPatch, read_ahead: str) -> None:
    cfg = config(tmp_path, store_url, engine)
    monkeypatch.setenv("CME_READ_AHEAD", read_ahead)
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    for refused in ("ctf-bad-records.xml", "sims-error.xml"):  # refused while read, and before any reading
        code, out = invoke(cfg, "import", str(FIX / "ctf-25.xml"), str(FIX / refused), str(FIX / "ctf-leaver.xml"))
        assert code == 2, out
        assert f"{refused}: rejected, nothing imported" in out
        assert f"not imported (after the file refused): {FIX / 'ctf-leaver.xml'}" in out
    with engine.connect() as conn:
        runs = conn.execute(select(t.ingest_runs.c.origin, t.ingest_runs.c.status).order_by(t.ingest_runs.c.id)).all()
    assert [tuple(r) for r in runs] == [("ctf-25.xml", "ok"), ("ctf-bad-records.xml", "rejected"),
                                        ("sims-error.xml", "rejected")]


def test_each_file_s_reading_process_ends_once_the_file_is_stored(tmp_path: Path, store_url: str, engine: Engine,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Many files in one import hold one reading process's pipe at a time, and no file open, not
    one of each for every file so far."""
    from cme_batch.app import App
    from cme_batch.importer import import_files

    cfg = config(tmp_path, store_url, engine)
    monkeypatch.setenv("CME_READ_AHEAD", "1")
    monkeypatch.setattr("cme_batch.readahead.MIN_BYTES", 0)
    files = [FIX / n for n in ("ctf-25.xml", "sims-pupils.xml", "sims-marks.xml", "ctf-leaver.xml",
                               "ctf-namespace.xml")]
    app = App(str(cfg))
    try:
        open_files = [len(os.listdir("/proc/self/fd")) for _result in import_files(app, files, None)]
    finally:
        app.close()
    assert len(open_files) == len(files)
    assert max(open_files[1:]) <= open_files[0], open_files  # not more for every file stored
