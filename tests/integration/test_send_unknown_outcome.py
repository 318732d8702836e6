"""An answer lost after the whole message was handed over: held and reported, never resent by itself.

When the SMTP server's 250 to the data, or Graph's 202 to ``sendMail``, comes after the client's
timeout (or the connection goes at that point), the server may already have queued the message.
Sending it again at once delivered it twice, recorded as an ordinary "sent", with nobody told. Now
the message is held (``failed``, ``maybe_duplicate``), no later run sends it, the next digest asks a
person to check, and only ``outbox --requeue`` sends it again. A failure before the data went is
still retried as before.
"""

from __future__ import annotations

import email
import email.policy
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.cli import cli
from cme_batch.mail import outbox
from cme_batch.mail.sender import Drainer, send_run
from cme_batch.mail.smtp import SmtpTransport
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.store import tables as t

pytest.register_assert_rewrite("tests.mailservers")  # it is also loaded as a plugin, below
from tests.integration.test_graph import graph_toml
from tests.mailservers import (
    SMTP_PASSWORD,
    SMTP_USER,
    Clock,
    SmtpServer,
    mail_app,
    problems,
    queue,
    row,
    smtp_toml,
)
from tests.servers import free_port

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers, fake_cloud
pytestmark = pytest.mark.server
REFERRAL = "referral:CME-2025-0001"


class _Log:
    """Keeps the sender's log lines as (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **kw: self.lines.append((level, event, kw))


@pytest.fixture
def served(engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> Any:
    """An SMTP server and an App sending to it with a 1-second timeout: ``(server, app)``."""
    def make(clock: Clock) -> tuple[SmtpServer, App]:
        server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
        toml = smtp_toml(server.port, mail_pki).replace("timeout_seconds = 5", "timeout_seconds = 1")
        return server, mail_app(tmp_path, store_url, engine, toml, clock)
    return make


def _assert_held(engine: Engine, oid: int) -> None:
    """Held for a person: failed, flagged, and reported as 'may or may not have arrived' with what to do."""
    entry = row(engine, oid)
    assert entry.status == "failed" and entry.maybe_duplicate is True and entry.attempts == 1
    [problem] = problems(engine)
    assert problem.id == oid and problem.kind == "unknown"
    assert "may or may not have arrived" in problem.text and "It was not sent again" in problem.text
    assert entry.message_id in problem.text and f"cme-batch outbox --requeue {oid}" in problem.text


def test_an_smtp_250_that_comes_after_the_timeout_is_held_reported_and_not_resent(
        engine: Engine, served: Any) -> None:
    clock = Clock()
    server, app = served(clock)
    server.data_faults = ["late"]
    oid = queue(engine, REFERRAL, purpose="referral", now=clock())
    log = _Log()

    report = Drainer(engine, app.config.mail, SmtpTransport(app.config.mail), clock=clock, run_id="r1",
                     log=log).run()

    assert len(server.received) == 1 and server.data_calls == 1, "one copy: not sent again in the run"
    [outcome] = report.outcomes
    assert outcome.result == "failed" and "held, not sent again" in outcome.detail
    _assert_held(engine, oid)
    assert "was sent the whole message but gave no answer" in row(engine, oid).last_error
    events = [(level, event) for level, event, _ in log.lines]
    assert events == [("error", "message outcome unknown: held, not sent again")], "no 'temporary failure'"
    assert "before" not in log.lines[0][2]["error"], "the log does not claim the server never took it"

    listed = CliRunner().invoke(cli, ["--config", str(app.config_path), "outbox", "--status", "failed"])
    assert "may or may not have arrived (held, not sent again)" in listed.output, listed.output
    assert "arrived twice" not in listed.output

    clock.advance(days=1)
    assert send_run(app).outcomes == [] and server.data_calls == 1, "no later run sends it either"


def test_the_digest_asks_the_dsl_to_check_a_held_message(engine: Engine, served: Any) -> None:
    clock = Clock()
    server, app = served(clock)
    server.data_faults = ["late"]
    oid = queue(engine, REFERRAL, purpose="referral", now=clock())
    send_run(app)

    queue_morning_mail(app, date(2025, 12, 19))

    with engine.connect() as conn:
        mime = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "digest")).scalar_one()
    body = email.message_from_bytes(bytes(mime), policy=email.policy.default).get_body(("plain",))
    assert body is not None
    text = " ".join(body.get_content().split())
    assert f"#{oid} referral" in text and "may or may not have arrived" in text
    assert f"cme-batch outbox --requeue {oid}" in text


def test_a_held_message_requeued_by_a_person_is_sent_once_more_and_flagged(engine: Engine, served: Any) -> None:
    clock = Clock()
    server, app = served(clock)
    server.data_faults = ["drop"]  # the connection goes after the data: the server never said
    oid = queue(engine, REFERRAL, purpose="referral", now=clock())
    send_run(app)
    _assert_held(engine, oid)
    assert server.data_calls == 1 and server.received == []

    with engine.begin() as conn:  # the LA says it never came
        assert outbox.requeue(conn, oid, clock())
    [outcome] = send_run(app).outcomes

    assert outcome.result == "sent" and len(server.received) == 1
    entry = row(engine, oid)
    assert entry.status == "sent" and entry.maybe_duplicate is True
    [problem] = problems(engine)
    assert problem.kind == "maybe_duplicate" and "may have arrived twice" in problem.text


def test_a_connection_lost_before_the_data_is_still_retried_and_sent_once(engine: Engine, served: Any) -> None:
    clock = Clock()
    server, app = served(clock)
    server.rcpt_faults = ["drop"]
    oid = queue(engine, "k1", now=clock())

    [outcome] = send_run(app).outcomes

    assert outcome.result == "sent" and len(server.received) == 1 and server.data_calls == 1
    entry = row(engine, oid)
    assert entry.status == "sent" and entry.attempts == 2 and entry.maybe_duplicate is False
    assert problems(engine) == []


@pytest.mark.parametrize("lost", ["late", "drop"])
def test_a_graph_202_lost_after_the_body_is_held_reported_and_not_resent(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any, lost: str) -> None:
    fake_cloud.graph_lost = [lost]
    clock = Clock()
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud, timeout=1), clock)
    oid = queue(engine, REFERRAL, purpose="referral", now=clock())

    [outcome] = send_run(app).outcomes

    assert len(fake_cloud.sent) == 1, "Graph has one copy: the POST was not repeated"
    assert outcome.result == "failed" and "Graph may have accepted it" in outcome.detail
    _assert_held(engine, oid)
    clock.advance(days=1)
    assert send_run(app).outcomes == [] and len(fake_cloud.sent) == 1


def test_graph_unreachable_before_the_body_is_still_deferred_for_a_retry(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any) -> None:
    toml = graph_toml(fake_cloud, timeout=1).replace(f'base_url = "{fake_cloud.base}/v1.0"',
                                                     f'base_url = "https://127.0.0.1:{free_port()}/v1.0"')
    app = mail_app(tmp_path, store_url, engine, toml)
    oid = queue(engine, "k1")

    [outcome] = send_run(app).outcomes

    assert outcome.result == "deferred"
    entry = row(engine, oid)
    assert entry.status == "queued" and entry.attempts == 3 and entry.maybe_duplicate is False
    assert problems(engine) == []
