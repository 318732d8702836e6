"""The systemd units pass systemd-analyze verify, and the service is well hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.servers import need_tool

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("cme-batch.service", "cme-batch.timer", "cme-batch-failure@.service")
INSTALLED = "/opt/cme-batch/venv/bin/cme-batch"


def _units(tmp_path: Path) -> Path:
    """The units as installed, with ExecStart pointing at this checkout's console script."""
    exe = str(Path(sys.executable).with_name("cme-batch"))
    for name in UNITS:
        text = (ROOT / "systemd" / name).read_text()
        (tmp_path / name).write_text(text.replace(INSTALLED, exe))
    return tmp_path


def test_units_verify_cleanly(tmp_path: Path) -> None:
    tool = need_tool("systemd-analyze", "systemd")
    d = _units(tmp_path)
    shutil.copy(d / "cme-batch-failure@.service", d / "cme-batch-failure@cme-batch.service.service")
    for name in ("cme-batch.service", "cme-batch.timer", "cme-batch-failure@cme-batch.service.service"):
        result = subprocess.run([tool, "verify", "--man=no", str(d / name)], capture_output=True, text=True,
                                cwd=d)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr


def test_service_exposure_is_under_2(tmp_path: Path) -> None:
    tool = need_tool("systemd-analyze", "systemd")
    d = _units(tmp_path)
    result = subprocess.run([tool, "security", "--offline=true", str(d / "cme-batch.service")],
                            capture_output=True, text=True)
    match = re.search(r"Overall exposure level for cme-batch.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) < 2.0


def test_timer_is_persistent_with_a_random_delay() -> None:
    timer = (ROOT / "systemd" / "cme-batch.timer").read_text()
    assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    service = (ROOT / "systemd" / "cme-batch.service").read_text()
    for setting in ("Type=oneshot", "LoadCredential=", "StateDirectory=", "OnFailure=", "UMask=0077",
                    "MemoryMax=", "SystemCallFilter=@system-service", "ProtectSystem=strict"):
        assert setting in service, setting
