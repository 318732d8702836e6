"""The graph transport against a fake Entra ID + Graph server over HTTPS on 127.0.0.1."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from sqlalchemy import Engine

from cme_batch.errors import FatalError
from cme_batch.mail import outbox
from cme_batch.mail.sender import send_run

pytest.register_assert_rewrite("tests.mailservers")  # it is also loaded as a plugin, below
from tests.mailservers import Clock, mail_app, queue, row

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers, fake_cloud
pytestmark = pytest.mark.server
MAILBOX = "cme-batch@school.example"


def graph_toml(fake_cloud: Any, *, backoff_max: float = 5.0, timeout: float = 5.0) -> str:
    return f"""
[mail]
transport = "graph"
from = "{MAILBOX}"
ca_file = "{fake_cloud.pki.ca_file}"
timeout_seconds = {timeout}

[mail.microsoft]
tenant_id = "school-tenant"
client_id = "{fake_cloud.client_id}"
client_secret = {{ env = "CME_TEST_CLIENT_SECRET" }}
authority_url = "{fake_cloud.base}"

[mail.graph]
base_url = "{fake_cloud.base}/v1.0"

[mail.retry]
attempts_per_run = 3
backoff_seconds = 0.01
backoff_max_seconds = {backoff_max}
"""


def _send_requests(fake_cloud: Any) -> list[Any]:
    return [r for r in fake_cloud.requests if r.path.endswith("/sendMail")]


def test_sendmail_gets_the_exact_mime_under_an_app_token(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any) -> None:
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud))
    oid = queue(engine, "summary:2025-12-01")

    report = send_run(app)

    assert [o.result for o in report.outcomes] == ["sent"] and "request-id req-1" in report.outcomes[0].detail
    with engine.connect() as conn:
        stored = outbox.raw_message(conn, oid)
    assert fake_cloud.sent == [(MAILBOX, stored)]
    [req] = _send_requests(fake_cloud)
    assert req.path == f"/v1.0/users/{MAILBOX}/sendMail" and req.headers["Content-Type"] == "text/plain"
    assert base64.b64decode(req.body) == stored
    [token_req] = [r for r in fake_cloud.requests if r.path == "/school-tenant/oauth2/v2.0/token"]
    form = {k: v[0] for k, v in parse_qs(token_req.body.decode()).items()}
    assert form["grant_type"] == "client_credentials" and form["scope"] == "https://graph.microsoft.com/.default"
    assert row(engine, oid).status == "sent"


def test_429_is_retried_after_the_time_graph_asks_for(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any) -> None:
    fake_cloud.graph_script = [(429, {"Retry-After": "1"}, {"error": {"code": "ApplicationThrottled",
                                                                 "message": "Too many requests"}})]
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud))
    oid = queue(engine, "k1")

    send_run(app)

    first, second = _send_requests(fake_cloud)
    assert second.at - first.at >= 1.0, "waited as long as Retry-After said"
    assert len(fake_cloud.sent) == 1
    assert row(engine, oid).status == "sent" and row(engine, oid).attempts == 2


def test_a_long_retry_after_leaves_the_message_for_a_later_run(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any) -> None:
    fake_cloud.graph_script = [(503, {"Retry-After": "120"}, {"error": {"code": "ServiceUnavailable", "message": ""}})]
    clock = Clock()
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud, backoff_max=2), clock)
    oid = queue(engine, "k1", now=clock())

    report = send_run(app)

    assert [o.result for o in report.outcomes] == ["deferred"] and len(_send_requests(fake_cloud)) == 1
    entry = row(engine, oid)
    assert entry.status == "queued" and "HTTP 503" in entry.last_error
    assert entry.next_attempt_at == clock() + timedelta(minutes=10)  # the longer of backoff and Retry-After
    clock.advance(minutes=10)
    send_run(app)
    assert row(engine, oid).status == "sent" and len(fake_cloud.sent) == 1


def test_a_message_graph_rejects_is_failed_and_kept(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any) -> None:
    fake_cloud.graph_script = [(400, {}, {"error": {"code": "ErrorMimeContentInvalid", "message": "bad MIME"}})]
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud))
    oid, other = queue(engine, "k1"), queue(engine, "k2")
    send_run(app)
    assert row(engine, oid).status == "failed" and "ErrorMimeContentInvalid" in row(engine, oid).last_error
    assert row(engine, other).status == "sent"


def test_a_refused_client_secret_stops_the_run(
        engine: Engine, store_url: str, tmp_path: Path, fake_cloud: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_CLIENT_SECRET", "stale-secret")
    app = mail_app(tmp_path, store_url, engine, graph_toml(fake_cloud))
    oid = queue(engine, "k1")
    report = send_run(app)
    assert isinstance(report.fatal, FatalError) and "invalid_client" in str(report.fatal)
    assert "stale-secret" not in str(report.fatal)
    assert _send_requests(fake_cloud) == [] and row(engine, oid).status == "queued"
