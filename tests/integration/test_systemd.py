"""The systemd units pass systemd-analyze verify, and the service is well hardened."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import need_tool

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("cme-batch.service", "cme-batch.timer", "cme-batch-failure@.service", "cme-batch-day.service",
         "cme-batch-day.timer")
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
    for name in ("cme-batch.service", "cme-batch.timer", "cme-batch-failure@cme-batch.service.service",
                 "cme-batch-day.service", "cme-batch-day.timer"):
        result = subprocess.run([tool, "verify", "--man=no", str(d / name)], capture_output=True, text=True,
                                cwd=d)
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", ["cme-batch.service", "cme-batch-day.service"])
def test_service_exposure_is_under_2(tmp_path: Path, unit: str) -> None:
    tool = need_tool("systemd-analyze", "systemd")
    d = _units(tmp_path)
    result = subprocess.run([tool, "security", "--offline=true", str(d / unit)], capture_output=True, text=True)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:] + result.stderr
    assert float(match.group(1)) < 2.0


def test_timer_is_persistent_with_a_random_delay() -> None:
    timer = (ROOT / "systemd" / "cme-batch.timer").read_text()
    assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    service = (ROOT / "systemd" / "cme-batch.service").read_text()
    for setting in ("Type=oneshot", "LoadCredential=", "StateDirectory=", "OnFailure=", "UMask=0077",
                    "MemoryMax=", "SystemCallFilter=@system-service", "ProtectSystem=strict"):
        assert setting in service, setting


def test_the_daytime_pass_runs_only_the_replies_referrals_and_send_stages_in_school_hours() -> None:
    """The DSL's CONFIRM acted on within the hour; the night's import, detect and summary not repeated."""
    service = (ROOT / "systemd" / "cme-batch-day.service").read_text()
    night = (ROOT / "systemd" / "cme-batch.service").read_text()
    (exec_line,) = [line for line in service.splitlines() if line.startswith("ExecStart=")]
    assert exec_line.endswith("nightly --only replies --only referrals --only send")
    hardening = [line for line in night.splitlines() if "=" in line and not line.startswith(
        ("#", "Description=", "ExecStart=", "OnFailure=", "TimeoutStartSec=", "Documentation="))]
    assert [line for line in hardening if line not in service.splitlines()] == []  # the night's sandbox, all of it
    timer = (ROOT / "systemd" / "cme-batch-day.timer").read_text()
    assert "OnCalendar=Mon..Fri *-*-* 08..17:00:00 Europe/London" in timer and "Unit=cme-batch-day.service" in timer
