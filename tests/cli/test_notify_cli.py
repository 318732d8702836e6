"""notify-failure tells the office, through the configured transport, with no pupil data, even without a database."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_config


def test_office_is_told_without_a_database(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'never-created.sqlite'}")
    exe = Path(sys.executable).with_name("cme-batch")
    result = subprocess.run([str(exe), "--config", str(cfg), "notify-failure", "--unit", "cme-batch.service"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    files = list((tmp_path / "maildrop").glob("*.eml"))
    assert len(files) == 1
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["To"] == "office@school.example"
    assert "FAILED" in msg["Subject"]
    body = msg.get_content()
    assert "journalctl -u cme-batch.service" in body and "first-day calls" in body
    assert not (tmp_path / "never-created.sqlite").exists()
