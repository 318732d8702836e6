"""Two processes at once: a person's command by hand while the systemd timer's night runs.

Each test starts the second copy while the first is inside its stage, on SQLite and on
PostgreSQL, and checks what a person would notice: which emails arrive, and how often.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch.store import tables as t

pytest.register_assert_rewrite("tests.mailservers")  # it is also loaded as a plugin, below
from tests.mailservers import (  # noqa: E402
    PASSWORD_ENV,
    SMTP_PASSWORD,
    SMTP_USER,
    queue,
    row,
    smtp_toml,
    write_mail_config,
)

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers (reply_app, maildir: tests/integration/conftest.py)
pytestmark = pytest.mark.server
ROOT = Path(__file__).resolve().parents[2]


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, PASSWORD_ENV: SMTP_PASSWORD, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", "from cme_batch.cli import main; main()",
                             "--config", str(config), *args],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until(what: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _stage_outcome(engine: Engine, stage: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(t.stage_runs.c.outcome).where(t.stage_runs.c.stage == stage)).scalar()


def test_the_nights_send_waits_for_a_send_run_by_hand_then_sends_the_summary(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    server.data_gate = threading.Event()  # the person's send stalls in its DATA until we let it go
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki).replace(
        "timeout_seconds = 5", "timeout_seconds = 60"))
    earlier = queue(engine, "k-earlier")
    by_hand = _start(config, "send")
    _until(lambda: server.data_calls == 1)
    night = _start(config, "nightly", "--as-of", "2025-12-01")
    _until(lambda: _stage_outcome(engine, "send") is not None)  # the night has reached its send stage
    time.sleep(0.5)
    server.data_gate.set()
    hand_out, hand_err = by_hand.communicate(timeout=60)
    out, err = night.communicate(timeout=120)

    assert by_hand.returncode == 0, hand_out + hand_err
    assert night.returncode == 0, out + err[-3000:]
    assert _stage_outcome(engine, "send") == "ok"
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.message_id, t.outbox.c.status)).all()
    assert sorted(k for k, _, _ in rows) == ["digest:2025-12-01", "k-earlier", "summary:2025-12-01"]
    assert sorted(server.message_ids()) == sorted(m for _, m, _ in rows)  # each arrived, once
    assert {s for _, _, s in rows} == {"sent"} and row(engine, earlier).attempts == 1


def _both_at_once(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, run: Callable[[], object]) -> None:
    """Run ``run`` in two threads, each waiting after ``module.name`` (a read) until the other has read too.

    That is the moment two processes started together reach: both have read the store, neither has
    written. Where the code keeps the second out until the first is done, the first waits a second
    for a partner that cannot come, and goes on alone.
    """
    barrier = threading.Barrier(2, timeout=1)
    real = getattr(module, name)

    def read_then_wait(*args: Any, **kw: Any) -> Any:
        got = real(*args, **kw)
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return got

    monkeypatch.setattr(module, name, read_then_wait)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors


def test_two_summary_runs_at_once_queue_one_summary_one_digest_and_one_request_each(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from cme_batch import detect
    from cme_batch.app import App
    from cme_batch.demo.generator import generate
    from cme_batch.mail import outbox
    from cme_batch.model import SourceBatch
    from cme_batch.morning import queue as morning_queue
    from cme_batch.store import ingest
    from tests.conftest import FIXED_NOW, write_config
    from tests.replies_support import KEY, KEY_ENV

    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = write_config(tmp_path, store_url, f"""
[replies]
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
""")
    app = App(str(cfg), clock=lambda: FIXED_NOW)
    app._engine = engine
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=generate(2025, 80).records),
                       FIXED_NOW)
    as_of = date(2025, 11, 28)
    detect.run_detect(app, as_of)
    failed = queue(engine, "an-earlier-message", purpose="update")  # a problem the digest must report, once
    with engine.begin() as conn:
        outbox.mark_failed(conn, failed, "550 5.1.1 no such user")

    _both_at_once(monkeypatch, morning_queue, "gather", lambda: morning_queue.queue_morning_mail(app, as_of))

    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.purpose, t.outbox.c.recipients, t.outbox.c.case_id)).all()
    purposes = [p for p, _, _ in rows]
    assert purposes.count("summary") == 1 and purposes.count("digest") == 1  # no "update 1" repeating it
    requests = [(tuple(r), c) for p, r, c in rows if p == "confirm_request"]
    assert requests and len(requests) == len(set(requests))  # one request per case to each of the DSLs


def test_a_night_killed_with_sigkill_leaves_no_lock_behind(engine: Engine, store_url: str, tmp_path: Path) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path, store_url)
    env = {**os.environ, "CME_TEST_SLOW_STAGE_SECONDS": "30", "PYTHONPATH": str(ROOT)}
    night = subprocess.Popen([sys.executable, "-c", "from cme_batch.cli import main; main()", "--config",
                              str(config), "nightly", "--as-of", "2025-12-01"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until(lambda: _stage_outcome(engine, "ingest") == "running")  # inside the run lock
    blocked = _start(config, "nightly", "--as-of", "2025-12-01")
    out, _ = blocked.communicate(timeout=60)
    assert blocked.returncode == 0 and "holds the run lock" in out
    night.kill()  # SIGKILL: no finally, no unlock
    night.wait(timeout=30)

    again = _start(config, "nightly", "--as-of", "2025-12-01")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out + err[-3000:]
    assert "holds the run lock" not in out and "summary    ok" in out
    with engine.connect() as conn:
        keys = conn.execute(select(t.outbox.c.idempotency_key, t.outbox.c.status)).all()
    assert sorted(keys) == [("digest:2025-12-01", "sent"), ("summary:2025-12-01", "sent")]


def test_two_replies_runs_at_once_act_on_each_command_once(
        engine: Engine, reply_app: Callable[..., Any], maildir: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    from cme_batch.replies import process
    from tests.conftest import FIXED_NOW
    from tests.replies_support import DEPUTY, DSL, dsl_reply, issue, make_case, make_tokens

    app = reply_app(FIXED_NOW + timedelta(hours=2))
    ref = "CME-2025-0031"
    case_id = make_case(engine, ref, FIXED_NOW)
    toks = make_tokens()
    dsl_token, deputy_token = (issue(engine, toks, case_id, who, FIXED_NOW) for who in (DSL, DEPUTY))
    for raw in (dsl_reply(f"CONFIRM {ref}", dsl_token, ref),
                dsl_reply(f"CONFIRM {ref}", deputy_token, ref, sender=DEPUTY),
                dsl_reply(f"CONFIRM {ref}", dsl_token, ref)):  # the DSL's mail client sent it twice
        maildir.add(raw)

    _both_at_once(monkeypatch, process, "decide", lambda: process.read_replies(app))

    with engine.connect() as conn:
        kinds = conn.execute(select(t.case_events.c.kind).where(t.case_events.c.case_id == case_id)).scalars().all()
        outcomes = sorted(conn.execute(select(t.replies.c.outcome)).scalars())
    assert kinds == ["confirmed"]
    assert outcomes == ["accepted", "review", "review"]  # each reply stored once
    assert not list(maildir.iterkeys()) or all("S" in maildir.get_message(k).get_flags() for k in maildir.iterkeys())


def test_an_import_by_hand_during_detect_leaves_the_store_as_detect_then_import_would(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """Detect reads the registers, an import commits a correction and a new absentee, detect writes."""
    from cme_batch import detect
    from cme_batch.app import App
    from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SourceBatch
    from cme_batch.store.ingest import apply_batch
    from tests.conftest import FIXED_NOW, write_config

    app = App(str(write_config(tmp_path, store_url)), clock=lambda: FIXED_NOW)
    app._engine = engine
    day = date(2025, 11, 28)

    def ingest(*records: Any) -> None:
        apply_batch(engine, app.school_id, SourceBatch("test", "test", records=list(records)), FIXED_NOW)

    ingest(PupilRecord("1", upn="T000000000001", dob=date(2016, 5, 1)),
           PupilRecord("2", upn="T000000000002", dob=date(2016, 6, 1)),
           MarksRecord("1", date(2025, 11, 27), ("/", "/")), MarksRecord("1", day, ("N", "N")),
           MarksRecord("2", date(2025, 11, 27), ("/", "/")), MarksRecord("2", day, ("/", "/")))
    late_import = [MarksRecord("1", day, ("I", "I")), MarksRecord("2", day, ("N", "N")),
                   FlagRecord("1", "child_protection_plan", start=date(2025, 1, 1))]
    read, imported = threading.Event(), threading.Event()
    real = detect.evaluate_conn

    def evaluate_then_let_the_import_in(*args: Any, **kw: Any) -> Any:
        got = real(*args, **kw)
        read.set()
        assert imported.wait(30)
        return got

    def importer() -> None:
        assert read.wait(30)
        ingest(*late_import)
        imported.set()

    detect.evaluate_conn = evaluate_then_let_the_import_in  # type: ignore[assignment]
    try:
        th = threading.Thread(target=importer)
        th.start()
        detect.run_detect(app, day)
        th.join(30)
    finally:
        detect.evaluate_conn = real  # type: ignore[assignment]

    def cases() -> list[tuple[Any, ...]]:
        with engine.connect() as conn:
            return [(r.pupil_id, r.status, r.stage, r.closed_reason, r.alerts) for r in conn.execute(
                select(t.cases).order_by(t.cases.c.id))]

    # detect, then the import: the case from the registers detect read, without the flag it did not
    assert cases() == [(1, "open", "first_day_call", None, [])]
    detect.run_detect(app, day)  # and the next detect brings the import in
    assert cases() == [(1, "closed", "first_day_call", "explained", []), (2, "open", "first_day_call", None, [])]


def test_send_killed_while_the_server_holds_its_answer_is_resent_once_and_reported(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    from tests.mailservers import problems

    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    server.data_gate = threading.Event()
    config = write_mail_config(tmp_path, store_url, smtp_toml(server.port, mail_pki).replace(
        "timeout_seconds = 5", "timeout_seconds = 60"))
    first, second = queue(engine, "k-first"), queue(engine, "k-second")
    killed = _start(config, "send")
    _until(lambda: server.data_calls == 1)  # the whole first message is with the server, unanswered
    killed.kill()
    killed.communicate(timeout=30)
    server.data_gate.set()  # this stand-in drops a message whose client went away; a real server may keep it
    assert row(engine, first).status == "sending" and row(engine, second).status == "queued"

    again = _start(config, "send")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, out + err
    assert "may arrive twice" in out
    ids = server.message_ids()
    assert set(ids) == {row(engine, first).message_id, row(engine, second).message_id}  # neither lost
    assert ids.count(row(engine, second).message_id) == 1  # the untouched one sent once
    assert (row(engine, first).status, row(engine, first).maybe_duplicate) == ("sent", True)
    assert (row(engine, second).status, row(engine, second).maybe_duplicate) == ("sent", False)
    assert [(p.id, p.kind) for p in problems(engine)] == [(first, "maybe_duplicate")]


def test_two_detect_runs_at_once_open_each_case_once_and_both_succeed(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A `detect` by hand while the night's detect runs: the second waits, then finds nothing to do."""
    from collections import Counter

    from cme_batch import detect
    from cme_batch.app import App
    from cme_batch.demo.generator import generate
    from cme_batch.model import SourceBatch
    from cme_batch.store import ingest
    from tests.conftest import FIXED_NOW, write_config

    app = App(str(write_config(tmp_path, store_url)), clock=lambda: FIXED_NOW)
    app._engine = engine
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=generate(2025, 80).records),
                       FIXED_NOW)
    as_of = date(2025, 11, 28)

    _both_at_once(monkeypatch, detect, "_case_states", lambda: detect.run_detect(app, as_of))

    with engine.connect() as conn:
        events = conn.execute(select(t.case_events.c.case_id, t.case_events.c.kind, t.case_events.c.stage)).all()
        cases = conn.execute(select(t.cases.c.pupil_id, t.cases.c.kind)).all()
    assert cases and len(cases) == len(set(cases)), "one case per pupil and kind"
    twice = [e for e, n in Counter(tuple(e) for e in events).items() if n > 1]
    assert [e for e in events if e.kind == "opened"] and twice == [], f"events written twice: {twice}"


def test_two_imports_at_once_of_new_pupils_both_succeed_with_one_pupil_each(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """`import` by hand while the night ingests the same new pupils: the second waits, then finds them."""
    from cme_batch.app import App
    from cme_batch.importer import import_files
    from cme_batch.store import ingest
    from tests.conftest import FIXED_NOW, write_config

    app = App(str(write_config(tmp_path, store_url)), clock=lambda: FIXED_NOW)
    app._engine = engine
    fixture = ROOT / "tests" / "adapters" / "fixtures" / "ctf-25.xml"

    _both_at_once(monkeypatch, ingest._Writer, "look_up", lambda: list(import_files(app, [fixture], "ctf")))

    with engine.connect() as conn:
        keys = conn.execute(select(t.pupil_keys.c.pupil_key)).scalars().all()
        pupils = conn.execute(select(t.pupils.c.id)).scalars().all()
    assert sorted(keys) == ["A123456789012", "P234567890123"] and len(pupils) == 2, "each new pupil stored once"
