"""``cme-batch demo --dir D``: a fresh folder becomes a loaded demo store, and a re-run starts clean."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select

from cme_batch.cli import cli
from cme_batch.config import load
from cme_batch.store import tables as t


def run_demo(out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["demo", "--dir", str(out), "--pupils", "80", *extra])


def counts(db: Path) -> dict[str, int]:
    eng = create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(t.metadata.tables[name])).scalar_one()
                    for name in ("pupils", "mark_strips", "contacts", "enrolments", "flags", "mark_changes")}
    finally:
        eng.dispose()


def test_demo_builds_a_store_with_pupils_and_marks_and_says_where(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out)
    # 1 means a later pipeline stage reported a failure; the demo still ran to the end and says so.
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        assert "failed" in result.output
    db = out / "state" / "cme-batch.sqlite"
    assert str(db) in result.output and str(out / "mail") in result.output
    n = counts(db)
    assert n["pupils"] == 80 and n["mark_strips"] == 80 and n["enrolments"] == 80
    assert n["contacts"] >= 80 and n["flags"] > 0
    assert n["mark_changes"] == 4  # the newer export corrected two days of N into I
    cfg = load(out / "cme-batch.toml")
    assert cfg.school.name == "The John Moore Primary School"
    assert cfg.state_dir == (out / "state").resolve()
    expected = json.loads((out / "expected-cases.json").read_text())
    assert expected["as_of"] == "2025-12-19" and len(expected["cases"]) >= 20
    # Once the detect stage exists, the demo compares its cases with the planted ones.
    if "Planted cases found as expected" in result.output:
        n = len(expected["cases"])
        assert f"Planted cases found as expected: {n} of {n}\n" in result.output, result.output


def test_a_rerun_starts_clean(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert run_demo(out, "--no-replay").exit_code in (0, 1)
    again = run_demo(out, "--seed", "9", "--no-replay")
    assert again.exit_code in (0, 1), again.output
    assert "Removing the previous demo's" in again.output
    assert counts(out / "state" / "cme-batch.sqlite")["pupils"] == 80
    if "Planted cases found as expected" in again.output:  # only the cases open on the last day
        assert re.search(r"found as expected: (\d+) of \1\n", again.output), again.output


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = run_demo(tmp_path)
    assert result.exit_code == 2
    assert "was not made by 'cme-batch demo'" in result.output
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "cme-batch.toml").exists()


def test_through_the_arbor_stand_in_the_ingest_stage_loads_the_school(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, "--source", "arbor", "--no-replay")
    assert result.exit_code in (0, 1), result.output
    assert "Pulled the school from the Arbor stand-in" in result.output
    assert "[sources.arbor]" in (out / "cme-batch.toml").read_text(encoding="utf-8")
    n = counts(out / "state" / "cme-batch.sqlite")
    assert n["pupils"] == 80 and n["mark_strips"] >= 79
    if "Planted cases found as expected" in result.output:
        assert re.search(r"found as expected: (\d+) of \1\n", result.output), result.output


def test_sources_not_built_yet_are_refused_clearly(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "demo", "--source", "files")
    assert result.exit_code == 2
    assert "use --source direct" in result.output
