"""Faults between the outbox and a real SMTP server: each ends delivered once, or reported failed.

The crash and the concurrent-runs tests run ``cme-batch send`` as separate processes, as the
systemd timer and a person at the terminal would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from cme_batch.app import App
from cme_batch.cli import cli
from cme_batch.mail import outbox
from cme_batch.mail.sender import CRASH_ENV, send_run

pytest.register_assert_rewrite("tests.mailservers")  # it is also loaded as a plugin, below
from tests.mailservers import (
    PASSWORD_ENV,
    SMTP_PASSWORD,
    SMTP_USER,
    Clock,
    SmtpServer,
    mail_app,
    problems,
    queue,
    row,
    smtp_toml,
    write_mail_config,
)

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers, fake_cloud
pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> Any:
    """Make an SMTP server (STARTTLS, password AUTH) and an App sending to it: ``(server, app)``."""
    def make(*, clock: Clock | None = None, start: bool = True, retry: str = "") -> tuple[SmtpServer, App]:
        server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD}, start=start)
        return server, mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, retry=retry), clock)
    return make


def test_server_down_then_up(engine: Engine, served: Any) -> None:
    clock = Clock()
    server, app = served(clock=clock, start=False)
    oid = queue(engine, "k1", now=clock())

    first = send_run(app)
    entry = row(engine, oid)
    assert [o.result for o in first.outcomes] == ["deferred"]
    assert entry.status == "queued" and entry.attempts == 3 and "ConnectionRefusedError" in entry.last_error
    assert entry.next_attempt_at == clock() + timedelta(minutes=10)

    server.start()
    clock.advance(minutes=5)
    assert send_run(app).outcomes == [], "not retried before its backoff is over"
    assert server.received == []

    clock.advance(minutes=6)
    assert [o.result for o in send_run(app).outcomes] == ["sent"]
    assert len(server.received) == 1 and row(engine, oid).status == "sent" and row(engine, oid).attempts == 4
    assert problems(engine) == []


def test_the_wait_between_runs_doubles_and_the_message_fails_after_give_up_hours(
        engine: Engine, served: Any) -> None:
    clock = Clock()
    _, app = served(clock=clock, start=False, retry="give_up_hours = 24\n")
    oid = queue(engine, "k1", now=clock())
    send_run(app)
    clock.advance(minutes=10)
    send_run(app)
    assert row(engine, oid).next_attempt_at == clock() + timedelta(minutes=20)

    clock.advance(hours=24)
    report = send_run(app)
    assert [o.result for o in report.outcomes] == ["failed"]
    entry = row(engine, oid)
    assert entry.status == "failed" and entry.last_error.startswith("gave up after 24 hours")
    assert [(p.id, p.kind) for p in problems(engine)] == [(oid, "failed")]


def test_421_then_success_is_delivered_once_in_the_same_run(engine: Engine, served: Any) -> None:
    server, app = served()
    server.data_faults = ["421 4.3.2 System not accepting network messages"]
    oid = queue(engine, "k1")
    report = send_run(app)
    assert [o.result for o in report.outcomes] == ["sent"]
    assert server.data_calls == 2 and len(server.received) == 1
    entry = row(engine, oid)
    assert entry.status == "sent" and entry.attempts == 2 and entry.last_error is None


def test_a_rejected_recipient_fails_for_good_and_is_reported(engine: Engine, served: Any) -> None:
    server, app = served()
    server.reject_rcpt = {"nobody@school.example"}
    bad, good = queue(engine, "k1", to="nobody@school.example"), queue(engine, "k2")

    report = send_run(app)

    assert {o.id: o.result for o in report.outcomes} == {bad: "failed", good: "sent"}
    assert row(engine, bad).status == "failed" and row(engine, bad).attempts == 1
    assert "550 5.1.1" in row(engine, bad).last_error
    assert send_run(app).outcomes == [], "a failed message is not retried"
    [problem] = problems(engine)
    assert problem.id == bad and problem.kind == "failed" and "550 5.1.1" in problem.text
    assert f"--requeue {bad}" in problem.text


def test_550_to_the_data_fails_the_message(engine: Engine, served: Any) -> None:
    server, app = served()
    server.data_faults = ["550 5.7.1 Message rejected as spam"]
    oid = queue(engine, "k1")
    send_run(app)
    assert row(engine, oid).status == "failed" and server.received == [] and server.data_calls == 1


def test_connection_dropped_after_the_data_is_held_and_reported_not_resent(engine: Engine, served: Any) -> None:
    server, app = served()
    server.data_faults = ["drop"]
    oid = queue(engine, "k1")
    report = send_run(app)
    assert server.data_calls == 1, "the server may have queued it: not sent again"
    assert [o.result for o in report.outcomes] == ["failed"]
    entry = row(engine, oid)
    assert entry.status == "failed" and entry.attempts == 1 and entry.maybe_duplicate is True
    assert [(p.id, p.kind) for p in problems(engine)] == [(oid, "unknown")]


def _json_document(out: str) -> Any:
    """The command's JSON output; log lines (one JSON object per line) may come before it on stdout."""
    start = 0 if out.startswith("{\n") else out.index("\n{\n") + 1
    return json.loads(out[start:])


def _send_process(config: Path, *extra_env: tuple[str, str]) -> subprocess.Popen[str]:
    env = {**os.environ, PASSWORD_ENV: SMTP_PASSWORD, "PYTHONPATH": str(ROOT), **dict(extra_env)}
    return subprocess.Popen([sys.executable, "-c", "from cme_batch.cli import main; main()",
                             "--config", str(config), "send", "--format", "json"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_killed_after_the_server_accepted_resends_with_the_same_message_id(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki))
    oid = queue(engine, "referral:CME-2025-0001", purpose="referral")

    crashed = _send_process(config, (CRASH_ENV, "1"))
    crashed.communicate(timeout=60)
    assert crashed.returncode == 70
    assert len(server.received) == 1 and row(engine, oid).status == "sending"

    again = _send_process(config)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    report = _json_document(out)
    assert report["recovered_maybe_duplicate"] == [oid]

    ids = server.message_ids()
    assert len(ids) == 2 and ids[0] == ids[1] == row(engine, oid).message_id
    entry = row(engine, oid)
    assert entry.status == "sent" and entry.maybe_duplicate is True
    [problem] = problems(engine)
    assert problem.kind == "maybe_duplicate" and "may have arrived twice" in problem.text
    assert entry.message_id in problem.text


def test_two_send_runs_at_the_same_time_send_each_message_once(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    server.data_gate = threading.Event()  # the first run stalls in its first DATA until we let it go
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki).replace(
        "timeout_seconds = 5", "timeout_seconds = 60"))
    ids = [queue(engine, f"k{i}") for i in range(4)]

    first = _send_process(config)
    deadline = time.monotonic() + 30
    while server.data_calls == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.data_calls == 1, "the first run is sending"
    second = _send_process(config)
    _, err2 = second.communicate(timeout=60)
    server.data_gate.set()
    _, err1 = first.communicate(timeout=60)

    assert second.returncode == 0 and "another cme-batch run holds the send lock" in err2
    assert first.returncode == 0, err1
    assert sorted(server.message_ids()) == sorted(row(engine, i).message_id for i in ids)
    assert all(row(engine, i).status == "sent" and row(engine, i).attempts == 1 for i in ids)


def test_the_conditional_claim_lets_only_one_run_take_a_message(engine: Engine) -> None:
    oid = queue(engine, "k1")
    now = Clock()()
    with engine.begin() as conn:
        assert outbox.claim(conn, oid, run_id="run-a", now=now) is True
    with engine.begin() as conn:
        assert outbox.claim(conn, oid, run_id="run-b", now=now) is False
    assert row(engine, oid).status == "sending"


def test_send_and_outbox_commands_show_statuses_and_reasons(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    server.reject_rcpt = {"nobody@school.example"}
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki))
    bad, good = queue(engine, "k1", to="nobody@school.example"), queue(engine, "k2")
    runner = CliRunner()

    sent = runner.invoke(cli, ["--config", str(config), "send"])
    assert sent.exit_code == 1, sent.output
    assert f"sent     #{good} summary" in sent.output and f"failed   #{bad} summary" in sent.output
    assert "outbox: queued 0, sending 0, sent 1, failed 1" in sent.output
    assert "550 5.1.1" in sent.output

    listed = runner.invoke(cli, ["--config", str(config), "outbox", "--format", "json"])
    data = json.loads(listed.output)
    assert data["counts"] == {"queued": 0, "sending": 0, "sent": 1, "failed": 1}
    by_id = {m["id"]: m for m in data["messages"]}
    assert by_id[bad]["status"] == "failed" and "550 5.1.1" in by_id[bad]["last_error"]

    table = runner.invoke(cli, ["--config", str(config), "outbox", "--status", "failed"])
    assert table.exit_code == 0 and "failed" in table.output and f"{good:>5}  sent" not in table.output

    server.reject_rcpt = set()
    requeued = runner.invoke(cli, ["--config", str(config), "outbox", "--requeue", str(bad)])
    assert requeued.exit_code == 0, requeued.output
    again = runner.invoke(cli, ["--config", str(config), "send"])
    assert again.exit_code == 0 and f"sent     #{bad}" in again.output
    assert len(server.received) == 2
    assert runner.invoke(cli, ["--config", str(config), "outbox", "--requeue", str(bad)]).exit_code == 2
