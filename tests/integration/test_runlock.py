"""One run at a time: a second nightly started while one runs exits 0, says so, and does nothing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select

from cme_batch.errors import LockHeld
from cme_batch.runlock import run_lock
from cme_batch.store import tables as t
from tests.conftest import write_config


def _nightly(cfg: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), "--config", str(cfg), "nightly", "--as-of", "2025-12-01"],
                          capture_output=True, text=True, timeout=120, env={**os.environ})


def _stage_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.stage_runs)).scalar_one())


def test_second_run_exits_0_and_does_nothing(engine: Engine, store_url: str, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, store_url)
    with run_lock(engine, tmp_path / "state"):
        blocked = _nightly(cfg)
    assert blocked.returncode == 0, blocked.stderr
    assert "another cme-batch run holds the run lock" in blocked.stdout
    assert _stage_rows(engine) == 0
    free = _nightly(cfg)
    assert "another cme-batch run" not in free.stdout
    assert _stage_rows(engine) > 0


def test_the_sqlite_lock_is_private_refuses_a_second_holder_and_is_released(tmp_path: Path) -> None:
    db = tmp_path / "state" / "cme.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    with run_lock(engine, tmp_path / "elsewhere"):
        lock_file = db.parent / "cme.run.lock"  # named after the store (cme.sqlite)
        assert stat.S_IMODE(lock_file.stat().st_mode) == 0o600
        with pytest.raises(LockHeld, match=f"holds the run lock \\({lock_file}\\)"), run_lock(engine, tmp_path):
            pass
        with run_lock(engine, tmp_path, "send"):  # another lock's name is another lock
            pass
    with run_lock(engine, tmp_path):  # released, also after a failed attempt
        pass
    engine.dispose()
