"""``status`` after a night that was killed part-way: it must not look like a night that ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import Engine, func, select

from cme_batch.store import tables as t
from tests.conftest import write_config

EXE = str(Path(sys.executable).with_name("cme-batch"))


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=300)


def test_a_night_killed_during_ingest_shows_as_not_finished_not_as_the_night_before(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    cfg = write_config(tmp_path, store_url)
    assert _cli(cfg, "nightly", "--as-of", "2025-12-01").returncode == 0  # a good night
    env = {**os.environ, "CME_TEST_SLOW_STAGE_SECONDS": "60"}  # the next night stays in ingest
    killed = subprocess.Popen([EXE, "--config", str(cfg), "nightly", "--as-of", "2025-12-02"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(select(func.count()).select_from(t.stage_runs)).scalar_one() == 7:
                break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)  # the power cut: no failure recorded, no email
    killed.wait(timeout=30)

    table = _cli(cfg, "status")
    assert table.returncode == 0, table.stderr
    assert "NOT FINISHED: ingest has no finish recorded" in table.stdout
    summary_line = next(line for line in table.stdout.splitlines() if line.strip().startswith("summary"))
    assert "not in the last run" in summary_line  # the night before's "ok", labelled as such
    data = json.loads(_cli(cfg, "status", "--format", "json").stdout)
    assert data["last_run"]["state"] == "not finished" and data["last_run"]["not_finished"] == ["ingest"]

    again = _cli(cfg, "nightly", "--as-of", "2025-12-02", "--only", "send")  # a later run, not the whole night
    assert again.returncode == 0, again.stdout + again.stderr
    data = json.loads(_cli(cfg, "status", "--format", "json").stdout)
    ingest = next(s for s in data["stages"] if s["stage"] == "ingest")
    assert ingest["outcome"] == "interrupted" and data["last_run"]["state"] == "ok"
