"""Runs that overlap, as they do on a school's server: the night's run and the hourly daytime pass
(``nightly --only replies --only referrals --only send``), each a real process on a real store
(SQLite and PostgreSQL), with an SMTP stand-in on 127.0.0.1 that can hold its answer to DATA.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch.store import tables as t

pytest.register_assert_rewrite("tests.mailservers")
from tests.mailservers import (  # noqa: E402
    PASSWORD_ENV,
    SMTP_PASSWORD,
    SMTP_USER,
    queue,
    smtp_toml,
    write_mail_config,
)

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers
pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[2]
DAYTIME_PASS = ("nightly", "--only", "replies", "--only", "referrals", "--only", "send")


def _start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {**os.environ, PASSWORD_ENV: SMTP_PASSWORD, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-c", "from cme_batch.cli import main; main()",
                             "--config", str(config), *args],
                            env=full, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until(what: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _outbox(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return sorted((k, s) for k, s in conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.status)))


def test_the_night_started_while_a_daytime_pass_sends_waits_for_it_and_sends_the_summary(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    """The night's timer fires (a catch-up at boot, or the technician's ``systemctl start`` after a
    fix) while the hourly daytime pass is still sending. Before: the night found the run lock taken,
    said "nothing done" and exited 0: no ingest, no detect, and that morning's summary and digest
    were never queued (the next night queues the next day's). Now the night waits for the pass."""
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    server.data_gate = threading.Event()  # the daytime pass stalls in DATA until we let it go
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki).replace(
        "timeout_seconds = 5", "timeout_seconds = 60"))
    queue(engine, "k-daytime")  # something for the daytime pass to send
    daytime = _start(config, *DAYTIME_PASS)
    _until(lambda: server.data_calls == 1)  # the pass is inside the run lock, sending
    night = _start(config, "nightly", "--as-of", "2025-12-01")
    time.sleep(1.5)  # the night has started and met the pass's lock
    server.data_gate.set()
    day_out, day_err = daytime.communicate(timeout=60)
    out, err = night.communicate(timeout=120)

    assert daytime.returncode == 0, day_out + day_err[-3000:]
    assert "nothing done" not in out, out
    assert night.returncode == 0, out + err[-3000:]
    assert _outbox(engine) == [("digest:2025-12-01", "sent"), ("k-daytime", "sent"),
                               ("summary:2025-12-01", "sent")]
    assert len(server.message_ids()) == len(set(server.message_ids())) == 3  # each arrived once


def test_a_daytime_pass_during_the_night_and_a_second_night_are_still_refused(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    """What the wait must not change: a second night, or a daytime pass, started while the night
    runs says the lock is held, exits 0 and does nothing; the night's mail goes once."""
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki))
    night = _start(config, "nightly", "--as-of", "2025-12-01", env={"CME_TEST_SLOW_STAGE_SECONDS": "4"})

    def ingest_running() -> bool:
        with engine.connect() as conn:
            return conn.execute(select(t.stage_runs.c.outcome).where(
                t.stage_runs.c.stage == "ingest")).scalar() == "running"

    _until(ingest_running)
    second = _start(config, "nightly", "--as-of", "2025-12-01")
    daytime = _start(config, *DAYTIME_PASS)
    for p in (second, daytime):
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0 and "holds the run lock" in out and "nothing done" in out, out + err[-2000:]
    out, err = night.communicate(timeout=120)
    assert night.returncode == 0, out + err[-3000:]
    assert _outbox(engine) == [("digest:2025-12-01", "sent"), ("summary:2025-12-01", "sent")]
    assert len(server.message_ids()) == 2


def test_a_night_that_waited_in_vain_for_a_daytime_pass_fails_rather_than_doing_nothing_quietly(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that holds the run lock past the night's wait: the night fails (exit 1: the failure unit
    tells the office), naming what to do; it does not report "nothing done" as if all were well."""
    from datetime import date

    from cme_batch import runlock
    from cme_batch.nightly import NightBlocked, run_nightly
    from cme_batch.runlock import run_lock

    monkeypatch.setattr(runlock, "STAGE_WAIT_SECONDS", 0.3)
    engine, state = app.engine(), app.state_dir
    with run_lock(engine, state), run_lock(engine, state, "pass"):  # as a daytime pass holds them
        with pytest.raises(NightBlocked, match="run it again"):
            run_nightly(app, date(2025, 12, 1))
    with app.engine().connect() as conn:
        assert conn.execute(select(t.stage_runs.c.id)).first() is None  # no stage ran


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # advisory locks are PostgreSQL's
def test_a_night_whose_advisory_lock_connection_is_dropped_still_finishes_its_night(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    """PostgreSQL ends the idle session that holds the night's advisory lock (``idle_session_timeout``,
    a firewall dropping an idle connection, ``pg_terminate_backend``). Before: every stage ran and
    the mail went, then releasing the lock on the dead connection raised: **the night crashed with
    an internal error** (exit 1, the failure notice sent, no report). Now the release notes that
    the lock was already gone and the night ends as it ran."""
    from sqlalchemy import text

    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki))
    night = _start(config, "nightly", "--as-of", "2025-12-01", env={"CME_TEST_SLOW_STAGE_SECONDS": "3"})

    def lock_holders() -> list[int]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"))
                        .scalars())

    _until(lambda: len(lock_holders()) >= 2)  # the night and run locks are held
    with engine.connect() as conn:
        for pid in lock_holders():
            conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    out, err = night.communicate(timeout=120)
    assert night.returncode == 0, out + err[-3000:]
    assert "summary    ok" in out and "send       ok" in out, out
    assert _outbox(engine) == [("digest:2025-12-01", "sent"), ("summary:2025-12-01", "sent")]
