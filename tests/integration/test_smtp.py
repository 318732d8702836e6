"""The smtp transport against a real SMTP server (aiosmtpd on 127.0.0.1): TLS, AUTH, and refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cme_batch.config import load
from cme_batch.errors import ConfigError, FatalError
from cme_batch.mail import outbox
from cme_batch.mail.sender import send_run
from cme_batch.mail.smtp import SmtpTransport

pytest.register_assert_rewrite("tests.mailservers")  # it is also loaded as a plugin, below
from tests.mailservers import (
    SENDER,
    SMTP_PASSWORD,
    SMTP_USER,
    mail_app,
    queue,
    row,
    smtp_toml,
    write_mail_config,
)

pytest_plugins = ("tests.mailservers",)  # mail_pki, smtp_servers, fake_cloud
pytestmark = pytest.mark.server


def _stored(engine: Engine, outbox_id: int) -> bytes:
    with engine.connect() as conn:
        return outbox.raw_message(conn, outbox_id)


def test_starttls_and_password_login_deliver_the_stored_bytes_once(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, tls="starttls", users={SMTP_USER: SMTP_PASSWORD})
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki))
    oid = queue(engine, "summary:2025-12-01")

    report = send_run(app)

    assert [o.result for o in report.outcomes] == ["sent"]
    assert len(server.received) == 1
    got = server.received[0]
    assert got.tls is True and got.login == SMTP_USER
    assert got.mail_from == SENDER and got.rcpt_tos == ["office@school.example"]
    assert got.content.rstrip(b"\r\n") == _stored(engine, oid).rstrip(b"\r\n")
    entry = row(engine, oid)
    assert entry.status == "sent" and entry.attempts == 1 and entry.sent_at is not None
    assert server.message_ids() == [entry.message_id]
    # a second run sends nothing more
    assert send_run(app).outcomes == [] and len(server.received) == 1


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is TLS from the start
def test_implicit_tls(engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, tls="implicit", users={SMTP_USER: SMTP_PASSWORD})
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, security="tls"))
    oid = queue(engine, "k1")
    send_run(app)
    assert row(engine, oid).status == "sent"
    assert [r.tls for r in server.received] == [True]


def test_xoauth2_with_a_microsoft_365_token_from_msal(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any, fake_cloud: Any) -> None:
    server = smtp_servers(mail_pki, token_check=lambda user, token: user == SMTP_USER and
                          fake_cloud.issued.get(token) == "https://outlook.office365.com/.default")
    ms = (f'[mail.microsoft]\ntenant_id = "school-tenant"\nclient_id = "{fake_cloud.client_id}"\n'
          f'client_secret = {{ env = "CME_TEST_CLIENT_SECRET" }}\nauthority_url = "{fake_cloud.base}"\n')
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, auth="xoauth2-microsoft") + ms)
    first, second = queue(engine, "k1"), queue(engine, "k2")

    send_run(app)

    assert row(engine, first).status == "sent" and row(engine, second).status == "sent"
    assert [(r.tls, r.login) for r in server.received] == [(True, SMTP_USER), (True, SMTP_USER)]
    tokens = [r for r in fake_cloud.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 1, "msal reuses the token it already has"
    form = tokens[0].body.decode()
    assert "grant_type=client_credentials" in form and "outlook.office365.com%2F.default" in form


def test_xoauth2_with_a_google_service_account_token(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any, fake_cloud: Any) -> None:
    server = smtp_servers(mail_pki, token_check=lambda user, token: fake_cloud.issued.get(token) == user == SMTP_USER)
    google = f'[mail.google]\nkey = {{ file = "{fake_cloud.google_key_file}" }}\ntoken_url = "{fake_cloud.base}/google/token"\n'
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, auth="xoauth2-google") + google)
    oid = queue(engine, "k1")
    send_run(app)
    assert row(engine, oid).status == "sent"
    assert [r.login for r in server.received] == [SMTP_USER]


def test_a_refused_password_stops_the_run_and_keeps_the_message_queued(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    monkeypatch.setenv("CME_TEST_SMTP_PASSWORD", "wrong password")
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki))
    first, second = queue(engine, "k1"), queue(engine, "k2")

    report = send_run(app)

    assert isinstance(report.fatal, FatalError) and "refused the login" in str(report.fatal)
    assert "wrong password" not in str(report.fatal)
    assert server.received == []
    assert row(engine, first).status == "queued" and "refused the login" in row(engine, first).last_error
    assert row(engine, second).status == "queued" and row(engine, second).attempts == 0


def test_a_rejected_microsoft_client_secret_stops_the_run(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any, fake_cloud: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = smtp_servers(mail_pki, token_check=lambda user, token: True)
    monkeypatch.setenv("CME_TEST_CLIENT_SECRET", "not-the-secret")
    ms = (f'[mail.microsoft]\ntenant_id = "t"\nclient_id = "{fake_cloud.client_id}"\n'
          f'client_secret = {{ env = "CME_TEST_CLIENT_SECRET" }}\nauthority_url = "{fake_cloud.base}"\n')
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, auth="xoauth2-microsoft") + ms)
    oid = queue(engine, "k1")
    report = send_run(app)
    assert "invalid_client" in str(report.fatal) and "not-the-secret" not in str(report.fatal)
    assert row(engine, oid).status == "queued" and server.received == []


def test_a_certificate_that_does_not_verify_is_refused(
        engine: Engine, store_url: str, tmp_path: Path, mail_pki: Any, smtp_servers: Any) -> None:
    server = smtp_servers(mail_pki, users={SMTP_USER: SMTP_PASSWORD})
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, None))  # no ca_file: test CA unknown
    oid = queue(engine, "k1")
    report = send_run(app)
    assert isinstance(report.fatal, FatalError) and "certificate could not be verified" in str(report.fatal)
    assert server.received == [] and row(engine, oid).status == "queued"


def test_a_server_without_starttls_is_not_sent_to_in_clear(
        engine: Engine, store_url: str, tmp_path: Path, smtp_servers: Any, mail_pki: Any) -> None:
    server = smtp_servers(None, tls="none")
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, mail_pki, auth="none"))
    oid = queue(engine, "k1")
    report = send_run(app)
    assert "does not offer STARTTLS" in str(report.fatal)
    assert server.received == [] and row(engine, oid).status == "queued"


def test_plain_smtp_is_allowed_to_localhost(
        engine: Engine, store_url: str, tmp_path: Path, smtp_servers: Any) -> None:
    server = smtp_servers(None, tls="none")
    app = mail_app(tmp_path, store_url, engine, smtp_toml(server.port, None, security="none", auth="none"))
    oid = queue(engine, "k1")
    send_run(app)
    assert row(engine, oid).status == "sent" and [r.tls for r in server.received] == [False]


def test_plain_smtp_to_another_host_is_refused_unless_allowed(tmp_path: Path) -> None:
    remote = smtp_toml(25, None, security="none", auth="none").replace('"127.0.0.1"', '"mail.school.example"')
    with pytest.raises(ConfigError) as err:
        load(write_mail_config(tmp_path, "sqlite://", remote))
    assert any("mail.smtp.security" in p and "allow_plaintext" in p for p in err.value.problems)

    allowed = remote.replace('security = "none"', 'security = "none"\nallow_plaintext = true')
    cfg = load(write_mail_config(tmp_path, "sqlite://", allowed)).mail
    assert cfg.smtp.allow_plaintext is True
    # the transport checks again, whoever built the configuration
    from dataclasses import replace

    with pytest.raises(FatalError, match="refusing plain SMTP to mail.school.example"):
        SmtpTransport(replace(cfg, smtp=replace(cfg.smtp, allow_plaintext=False)))
