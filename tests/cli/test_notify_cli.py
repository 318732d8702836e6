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


def test_the_failure_is_timed_as_the_school_s_clocks_show(tmp_path: Path) -> None:
    """05:40 BST is 04:40 UTC: the office reads the school's time, not the server's UTC."""
    from datetime import UTC, datetime

    from cme_batch.app import App
    from cme_batch.cli_notify import failure_message

    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")
    app = App(str(cfg), clock=lambda: datetime(2025, 10, 14, 4, 40, tzinfo=UTC))
    body = failure_message(app, "cme-batch.service").get_content()
    assert "failed at 05:40 on 14 Oct 2025." in body, body
