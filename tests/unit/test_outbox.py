"""The outbox on a real store (SQLite and PostgreSQL), the maildrop transport, and [mail] settings."""

from __future__ import annotations

import email
import stat
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, func, select

from cme_batch.app import App
from cme_batch.config import load, parse
from cme_batch.errors import BadInputError, ConfigError
from cme_batch.mail import outbox
from cme_batch.mail.maildrop import file_name
from cme_batch.mail.sender import send_run
from cme_batch.store import tables as t

pytest.register_assert_rewrite("tests.mailservers")  # the integration tests load it as a plugin
from tests.mailservers import SENDER, build_message, queue, row, write_mail_config

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.outbox)).scalar_one())


def _raw(engine: Engine, oid: int) -> bytes:
    with engine.connect() as conn:
        return outbox.raw_message(conn, oid)


def test_a_message_exists_only_if_the_callers_transaction_commits(engine: Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        outbox.enqueue(conn, idempotency_key="alert:1", purpose="alert", recipients=["dsl@school.example"],
                       subject="CME alert", message=build_message(), from_address=SENDER)
        raise RuntimeError("the state change that caused it failed")
    assert _count(engine) == 0
    queue(engine, "alert:1")
    assert _count(engine) == 1


def test_the_same_idempotency_key_gives_the_same_message_once(engine: Engine) -> None:
    first = queue(engine, "referral:CME-0001", message=build_message(body="first\n"))
    second = queue(engine, "referral:CME-0001", message=build_message(body="second\n"))
    assert first == second and _count(engine) == 1
    assert b"first" in _raw(engine, first) and b"second" not in _raw(engine, first)


def test_the_message_id_is_stable_and_names_the_senders_domain(engine: Engine) -> None:
    oid = queue(engine, "summary:2025-12-01")
    expected = outbox.message_id_for("summary:2025-12-01", SENDER)
    assert expected == outbox.message_id_for("summary:2025-12-01", "other@school.example")
    assert expected.endswith("@school.example>") and expected != outbox.message_id_for("summary:x", SENDER)
    parsed = email.message_from_bytes(_raw(engine, oid))
    assert row(engine, oid).message_id == parsed["Message-ID"] == expected
    assert parsed["From"] == SENDER and parsed["Date"] is not None
    assert "summary:2025" not in expected, "the key itself is not shown to recipients"


def test_headers_the_caller_set_are_kept(engine: Engine) -> None:
    m = build_message()
    m["Message-ID"] = "<own-id@school.example>"
    m["From"] = "Dee Ess-Ell <dsl@school.example>"
    m["Date"] = "Mon, 01 Dec 2025 06:00:00 +0000"
    oid = queue(engine, "k1", message=m)
    raw = _raw(engine, oid)
    assert row(engine, oid).message_id == "<own-id@school.example>"
    assert raw == m.as_bytes(policy=m.policy.clone(linesep="\r\n")), "nothing added, nothing changed"


def test_bytes_are_kept_exactly_with_smtp_line_ends(engine: Engine) -> None:
    body = b"To: office@school.example\nSubject: plain\n\nline one\nline two\n"
    oid = queue(engine, "k1", message=body)
    raw = _raw(engine, oid)
    assert raw.endswith(body.replace(b"\n", b"\r\n"))
    assert raw.startswith(b"Message-ID: <cme.") and raw.count(b"\r\n\r\n") == 1


def _recipient() -> tuple[Any, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Access to Education Team")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert, key


def test_an_encrypted_smime_message_goes_out_byte_for_byte_and_still_decrypts(app: App, engine: Engine) -> None:
    cert, key = _recipient()
    inner = b"Content-Type: text/plain\r\n\r\nreferral bundle for case CME-0001\r\n"
    der = (pkcs7.PKCS7EnvelopeBuilder().set_data(inner).add_recipient(cert)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    outer = EmailMessage()
    outer["To"] = "missingpupils@gloucestershire.gov.uk"
    outer["Subject"] = "CME referral (encrypted)"
    outer.set_content(der, maintype="application", subtype="pkcs7-mime",
                      params={"smime-type": "enveloped-data", "name": "smime.p7m"},
                      disposition="attachment", filename="smime.p7m")
    body_before = outer.as_bytes(policy=outer.policy.clone(linesep="\r\n"))
    oid = queue(engine, "referral:CME-0001", purpose="referral", to="missingpupils@gloucestershire.gov.uk",
                message=outer)

    report = send_run(app)

    assert [o.result for o in report.outcomes] == ["sent"]
    folder = app.config.mail.maildrop_dir
    assert folder is not None
    written = (folder / file_name(row(engine, oid).message_id)).read_bytes()
    assert written == _raw(engine, oid) and written.endswith(body_before)
    assert pkcs7.pkcs7_decrypt_smime(written, cert, key, []) == inner


def test_the_maildrop_writes_one_private_file_per_message_and_a_resend_replaces_it(app: App, engine: Engine) -> None:
    oid = queue(engine, "k1")
    send_run(app)
    folder = app.config.mail.maildrop_dir
    assert folder is not None
    files = sorted(p.name for p in folder.iterdir())
    assert files == [file_name(row(engine, oid).message_id)]
    assert stat.S_IMODE((folder / files[0]).stat().st_mode) == 0o600
    with engine.begin() as conn:  # as if a run had died after writing the file
        conn.execute(t.outbox.update().values(status="sending"))
    send_run(app)
    assert sorted(p.name for p in folder.iterdir()) == files and row(engine, oid).maybe_duplicate is True


def test_the_maildrop_can_write_the_envelope_for_a_pickup_folder(engine: Engine, store_url: str,
                                                                  tmp_path: Path) -> None:
    from tests.mailservers import mail_app

    a = mail_app(tmp_path, store_url, engine, f'[mail]\nfrom = "{SENDER}"\nmaildrop_dir = "pickup"\n'
                                              "maildrop_envelope = true\n")
    oid = queue(engine, "k1", to="dsl@school.example")
    send_run(a)
    data = (tmp_path / "pickup" / file_name(row(engine, oid).message_id)).read_bytes()
    assert data.startswith(f"X-Sender: {SENDER}\r\nX-Receiver: dsl@school.example\r\n".encode())


def test_recipients_and_key_are_checked(engine: Engine) -> None:
    with pytest.raises(BadInputError, match="recipients"), engine.begin() as conn:
        outbox.enqueue(conn, idempotency_key="k", purpose="alert", recipients=["not an address"],
                       subject="s", message=build_message(), from_address=SENDER)
    with pytest.raises(BadInputError, match="idempotency key"), engine.begin() as conn:
        outbox.enqueue(conn, idempotency_key="x" * 201, purpose="alert", recipients=["a@school.example"],
                       subject="s", message=build_message(), from_address=SENDER)


def test_an_interrupted_send_is_queued_again_as_a_possible_duplicate(engine: Engine) -> None:
    oid = queue(engine, "k1")
    with engine.begin() as conn:
        assert outbox.claim(conn, oid, run_id="dead-run", now=NOW)
    with engine.begin() as conn:
        assert outbox.recover_interrupted(conn, NOW) == [oid]
        assert outbox.recover_interrupted(conn, NOW) == []
    entry = row(engine, oid)
    assert entry.status == "queued" and entry.maybe_duplicate and "may arrive twice" in entry.last_error
    with engine.connect() as conn:
        assert outbox.problems(conn) == [], "reported once it has actually been sent again"


def test_counts_problems_and_reporting(engine: Engine) -> None:
    failed, dup, partial, fine, waiting = (queue(engine, f"k{i}") for i in range(5))
    with engine.begin() as conn:
        outbox.mark_failed(conn, failed, "550 5.1.1 unknown user")
        conn.execute(t.outbox.update().where(t.outbox.c.id == dup).values(maybe_duplicate=True))
        outbox.mark_sent(conn, dup, NOW)
        outbox.mark_sent(conn, partial, NOW, "refused: b@school.example: 550 no such user")
        outbox.mark_sent(conn, fine, NOW)
        outbox.mark_deferred(conn, waiting, "421 busy", NOW + timedelta(minutes=10))
    with engine.begin() as conn:
        assert outbox.counts(conn) == {"queued": 1, "sending": 0, "sent": 3, "failed": 1}
        found = outbox.problems(conn)
        assert [(p.id, p.kind) for p in found] == [(failed, "failed"), (dup, "maybe_duplicate"),
                                                    (partial, "partial")]
        assert "550 5.1.1" in found[0].text and "refused" in found[2].text
        assert outbox.due(conn, NOW) == [] and outbox.due(conn, NOW + timedelta(minutes=10)) == [waiting]
        outbox.mark_reported(conn, [p.id for p in found], NOW)
    with engine.begin() as conn:
        assert outbox.problems(conn, include_reported=False) == []
        assert len(outbox.problems(conn)) == 3
        assert outbox.requeue(conn, failed, NOW) is True and outbox.requeue(conn, fine, NOW) is False
    assert row(engine, failed).status == "queued"


def test_a_message_with_an_unknown_outcome_is_held_reported_and_requeueable(engine: Engine) -> None:
    oid = queue(engine, "k1")
    with engine.begin() as conn:
        assert outbox.claim(conn, oid, run_id="run-a", now=NOW)
        outbox.mark_outcome_unknown(conn, oid, "SMTP x was sent the whole message but gave no answer")
    entry = row(engine, oid)
    assert entry.status == "failed" and entry.maybe_duplicate is True
    with engine.begin() as conn:
        assert outbox.due(conn, NOW + timedelta(days=7), ignore_backoff=True) == [], "no run sends it again"
        [problem] = outbox.problems(conn, include_reported=False)
        assert problem.kind == "unknown" and "gave no answer" in problem.text
        assert f"--requeue {oid}" in problem.text and entry.message_id in problem.text
        assert outbox.requeue(conn, oid, NOW) is True
    assert row(engine, oid).status == "queued" and row(engine, oid).maybe_duplicate is True


# --- [mail] settings -------------------------------------------------------------------------

def _mail(tmp_path: Path, section: str) -> Any:
    return load(write_mail_config(tmp_path, "sqlite://", section)).mail


def _problems(tmp_path: Path, section: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        _mail(tmp_path, section)
    return err.value.problems


def test_every_mail_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-")
    cfg = _mail(tmp_path, """
        [mail]
        transport = "smtp"
        from = "cme@school.example"
        maildrop_dir = "drop"
        maildrop_envelope = true
        ca_file = "ca.pem"
        timeout_seconds = 12
        [mail.smtp]
        host = "smtp.office365.com"
        security = "starttls"
        auth = "xoauth2-microsoft"
        username = "cme@school.example"
        [mail.microsoft]
        tenant_id = "school.example"
        client_id = "0000-1111"
        client_secret = { credential = "m365-secret" }
        [mail.google]
        key = { file = "/etc/cme/google.json" }
        [mail.graph]
        sender = "cme@school.example"
        [mail.retry]
        attempts_per_run = 4
        backoff_seconds = 1.5
        backoff_max_seconds = 30
        next_run_minutes = 15
        next_run_max_minutes = 120
        give_up_hours = 48
        """)
    assert (cfg.transport, cfg.smtp.port, cfg.smtp.auth, cfg.microsoft.tenant_id) == \
        ("smtp", 587, "xoauth2-microsoft", "school.example")
    assert cfg.ca_file == tmp_path / "ca.pem" and cfg.maildrop_dir == tmp_path / "drop" and cfg.maildrop_envelope
    assert cfg.retry.attempts_per_run == 4 and cfg.retry.give_up_hours == 48 and cfg.timeout_seconds == 12
    assert "m365-secret" in repr(cfg.microsoft.client_secret)
    assert cfg.graph.base_url == "https://graph.microsoft.com/v1.0"


def test_mail_settings_problems_are_all_reported(tmp_path: Path) -> None:
    problems = _problems(tmp_path, """
        [mail]
        transport = "smtp"
        from = "cme@school.example"
        [mail.smtp]
        host = "relay.school.example"
        security = "none"
        auth = "password"
        password = "hunter2"
        [mail.graph]
        base_url = "http://127.0.0.1:9/v1.0"
        [mail.retry]
        atempts_per_run = 3
        """)
    text = "\n".join(problems)
    assert "mail.smtp.security" in text and "allow_plaintext" in text
    assert "mail.smtp.password: holds a literal value" in text and "hunter2" not in text
    assert "mail.graph.base_url" in text and "https://" in text
    assert "mail.retry.atempts_per_run: is not a known key" in text


def test_each_transport_asks_for_what_it_needs(tmp_path: Path) -> None:
    graph = "\n".join(_problems(tmp_path, '[mail]\ntransport = "graph"\nfrom = "cme@school.example"\n'))
    assert "mail.microsoft.tenant_id: is missing" in graph and "mail.microsoft.client_secret: is missing" in graph
    google = "\n".join(_problems(tmp_path, '[mail]\ntransport = "smtp"\nfrom = "c@school.example"\n'
                                           '[mail.smtp]\nhost = "smtp.gmail.com"\nauth = "xoauth2-google"\n'))
    assert "mail.google.key: is missing" in google
    assert any(p.startswith("mail.from") for p in _problems(tmp_path, '[mail]\ntransport = "smtp"\n'
                                                                      '[mail.smtp]\nhost = "h.example"\n'))


def test_the_example_configuration_documents_valid_mail_settings() -> None:
    import tomllib

    data = tomllib.loads((ROOT / "config" / "cme-batch.example.toml").read_text(encoding="utf-8"))
    cfg = parse(data, ROOT / "config" / "cme-batch.example.toml").mail
    assert cfg.transport == "maildrop" and cfg.from_address
