"""``cme-batch import FILE``: format detection, all-or-nothing, and what the user is told."""

from __future__ import annotations

from pathlib import Path

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
