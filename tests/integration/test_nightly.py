"""The nightly run as the systemd timer starts it: stale sources, failing stages, concurrent runs."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from cme_batch.store import tables as t
from tests.conftest import write_config

EXE = str(Path(sys.executable).with_name("cme-batch"))


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ})


def _mail(tmp_path: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted((tmp_path / "maildrop").glob("*.eml"))]


def test_a_silent_mis_fails_the_night_but_the_summary_still_goes_with_a_red_banner(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    (tmp_path / "drop").mkdir()
    cfg = write_config(tmp_path, store_url, '\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop"\n')
    night = _cli(cfg, "nightly", "--as-of", "2025-12-01")
    assert night.returncode == 1, night.stdout + night.stderr
    lines = {line.split()[0]: line.split()[1] for line in night.stdout.splitlines() if line.strip()}
    assert lines["ingest"] == "failed"
    assert all(lines[s] == "ok" for s in ("detect", "replies", "referrals", "summary", "send")), night.stdout
    summary = next(m for m in _mail(tmp_path) if str(m["Subject"]).startswith("CME summary"))
    assert "DATA NOT CURRENT" in str(summary["Subject"])
    body = summary.get_body(("plain",)).get_content()
    assert "DATA NOT CURRENT: source 'sims'" in body
    status = _cli(cfg, "status", "--format", "json")
    assert '"stale": true' in status.stdout and '"outcome": "failed"' in status.stdout


def test_two_nightly_runs_started_together_one_runs_the_other_says_so(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    cfg = write_config(tmp_path, store_url)
    assert _cli(cfg, "init").returncode == 0
    env = {**os.environ, "CME_TEST_SLOW_STAGE_SECONDS": "3"}  # keeps the first run inside its lock a while
    first = subprocess.Popen([EXE, "--config", str(cfg), "nightly", "--as-of", "2025-12-01"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first run is inside the lock, doing a stage
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(t.stage_runs)).scalar_one():
                break
        time.sleep(0.05)
    second = _cli(cfg, "nightly", "--as-of", "2025-12-01")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert second.returncode == 0 and "holds the run lock" in second.stdout and "nothing done" in second.stdout
    with engine.connect() as conn:
        runs = conn.execute(select(t.stage_runs.c.run_id).distinct()).scalars().all()
        keys = conn.execute(select(t.outbox.c.idempotency_key)).scalars().all()
    assert len(runs) == 1 and len(keys) == len(set(keys)) == 2  # one summary, one digest


def test_a_night_with_nothing_to_refer_or_read_imports_no_pdf_crypto_http_or_migration_library(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """Start-up time (issue 9): those libraries are imported by the stages that need them, when they do."""
    cfg = write_config(tmp_path, store_url)
    probe = ("import atexit, sys\n"
             "heavy = ('alembic', 'fpdf', 'fontTools', 'cryptography', 'requests', 'msal', 'filelock')\n"
             "atexit.register(lambda: print('imported', sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
             "from cme_batch.cli import main\n"
             f"sys.argv = ['cme-batch', '--config', {str(cfg)!r}, 'nightly', '--as-of', '2025-12-01']\n"
             "main()\n")
    night = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                           env={**os.environ})
    assert night.returncode == 0, night.stdout + night.stderr
    assert "referrals  ok" in night.stdout and "no reply mailbox configured" in night.stdout
    assert night.stdout.splitlines()[-1] == "imported []"


def test_a_week_the_server_was_off_is_caught_up_so_a_short_episode_in_it_is_not_lost(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """A child absent Monday to Wednesday and back on Thursday, all while the server was off."""
    from datetime import UTC, date, datetime

    from cme_batch.app import App
    from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
    from cme_batch.nightly import run_nightly
    from cme_batch.store.ingest import apply_batch

    app = App(str(write_config(tmp_path, store_url)), clock=lambda: datetime(2025, 11, 22, 5, 30, tzinfo=UTC))
    app._engine = engine
    records: list[object] = [PupilRecord(k, upn=f"T{k:0>12}", dob=date(2016, 5, 1)) for k in ("1", "2")]
    for day in range(10, 22):
        if date(2025, 11, day).weekday() < 5:
            absent = day in (17, 18, 19)
            records += [MarksRecord("1", date(2025, 11, day), ("N", "N") if absent else ("/", "\\")),
                        MarksRecord("2", date(2025, 11, day), ("/", "\\"))]
    apply_batch(engine, app.school_id, SourceBatch("test", "test", records=records), app.now())  # type: ignore[arg-type]
    assert not run_nightly(app, date(2025, 11, 14)).failed  # Friday's night; then the server is off a week
    report = run_nightly(app, date(2025, 11, 21))
    with engine.connect() as conn:
        cases = conn.execute(select(t.cases.c.kind, t.cases.c.status, t.cases.c.closed_reason,
                                    t.cases.c.school_days, t.cases.c.episode_start)).all()
        evaluated = conn.execute(select(t.detect_runs.c.as_of).order_by(t.detect_runs.c.id)).scalars().all()
    assert cases == [("unexplained_absence", "closed", "returned", 3, date(2025, 11, 17))]
    detect = next(s for s in report.stages if s.name == "detect")
    assert detect.outcome == "ok" and "4 missed school day(s) evaluated first (2025-11-17..2025-11-20)" in detect.detail
    assert evaluated == [date(2025, 11, d) for d in (14, 17, 18, 19, 20, 21)]
