"""The replies stage against a real Dovecot over TLS and a real store (SQLite and PostgreSQL).

A confirmation from the DSL confirms its case; every reply that fails a check is kept for
review with its reason, stored raw, and changes no case.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.cli import cli
from cme_batch.replies import authres, parse, process, tokens
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import snapshot
from tests.mailbox_servers import DovecotMailbox, dovecot, dovecot_server  # noqa: F401
from tests.replies_support import (
    DEPUTY,
    DSL,
    KEY,
    KEY_ENV,
    OFFICE,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
    reply,
    trusted_pass,
)

REF, OTHER_REF = "CME-2025-0007", "CME-2025-0008"
PROCESSED = "CME/processed"  # as configured; Dovecot's hierarchy delimiter is "."
PROCESSED_ON_SERVER = "CME.processed"

REPLIES_SECTION = """
[replies]
mailbox = "imap"
token_keys = [{{ id = "k1", secret = {{ env = "{key_env}" }} }}]
token_lifetime_days = 14
trusted_authserv_ids = ["mx.school.example"]
require_authentication_results = true
ca_file = "{ca}"

[replies.imap]
host = "{host}"
port = {port}
security = "tls"
username = "{user}"
password = {{ env = "CME_TEST_IMAP_PASSWORD" }}
processed_folder = "{processed}"
"""


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def config_path(tmp_path: Path, store_url: str, dovecot: DovecotMailbox,  # noqa: F811
                monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv("CME_TEST_IMAP_PASSWORD", dovecot.password)
    return write_config(tmp_path, store_url, REPLIES_SECTION.format(
        key_env=KEY_ENV, host=dovecot.host, port=dovecot.port, user=dovecot.user, ca=dovecot.ca_file,
        processed=PROCESSED))


@pytest.fixture
def run_stage(config_path: Path, engine: Engine) -> Callable[[], process.RepliesReport]:
    """Run the replies stage as the nightly run would, with the real clock."""
    def run() -> process.RepliesReport:
        app = App(str(config_path), clock=now_utc)
        app._engine = engine
        report = process.read_replies(app)
        assert report is not None
        return report
    return run


def normalised(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n")


def test_a_confirmation_from_the_dsl_confirms_the_case(engine: Engine, config_path: Path,
                                                       dovecot: DovecotMailbox) -> None:  # noqa: F811
    now = now_utc()
    case_id = make_case(engine, REF, now)
    token = issue(engine, make_tokens(), case_id, DSL, now)
    raw = dsl_reply(f"CONFIRM {REF}", token, REF, auth_results=[trusted_pass()])
    message_id = parse.read_message(raw)["Message-ID"]
    dovecot.deliver(raw)

    result = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert result.exit_code == 0, result.output
    assert "1 new, 0 seen before; 1 accepted, 0 kept for review" in result.output
    assert "accepted CONFIRM: 1" in result.output

    with engine.connect() as conn:
        case = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).one()
        events = conn.execute(select(t.case_events).where(t.case_events.c.case_id == case_id)).all()
        stored = conn.execute(select(t.replies)).one()
    assert case.confirmed_by == DSL and case.confirmed_at is not None
    assert case.confirmation_message_id == message_id
    assert case.status == "open"  # confirmation only; the referral stage sends
    assert [(e.kind, e.actor) for e in events] == [("confirmed", DSL)]
    assert events[0].detail["reply_id"] == stored.id and events[0].detail["message_id"] == message_id
    assert stored.outcome == "accepted" and stored.command == "CONFIRM" and stored.case_id == case_id
    assert normalised(stored.raw) == normalised(raw)
    # the mailbox: read and moved out of the inbox
    assert dovecot.messages("INBOX") == []
    [(flags, moved)] = dovecot.messages(PROCESSED_ON_SERVER)
    assert "\\Seen" in flags and normalised(moved) == normalised(raw)

    again = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert again.exit_code == 0 and "0 new, 0 seen before; 0 accepted, 0 kept for review" in again.output


def _other_address(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    return dsl_reply(f"CONFIRM {REF}", token, REF, sender="head@else.example", auth_results=[trusted_pass()]), \
        process.UNKNOWN_SENDER


def _deputy_with_the_dsls_token(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    return dsl_reply(f"CONFIRM {REF}", token, REF, sender=DEPUTY, auth_results=[trusted_pass()]), tokens.OTHER_SENDER


def _office_confirming(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, OFFICE, now)
    return dsl_reply(f"CONFIRM {REF}", token, REF, sender=OFFICE, auth_results=[trusted_pass()]), \
        process.OFFICE_NOT_NOTE


def _token_for_another_case(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), other_id, DSL, now)
    return dsl_reply(f"CONFIRM {REF}", token, OTHER_REF, auth_results=[trusted_pass()]), tokens.OTHER_CASE


def _expired_token(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now - timedelta(days=15))
    return dsl_reply(f"CONFIRM {REF}", token, REF, auth_results=[trusted_pass()]), tokens.EXPIRED


def _token_only_in_the_quoted_part(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    body = f"CONFIRM {REF}\n\nOn Monday cme-batch wrote:\n> {REF}: your reply is needed {tokens.tag(token)}\n"
    return reply(DSL, f"Re: {REF}", body, auth_results=[trusted_pass()]), process.TOKEN_IN_BODY


def _untrusted_authserv_id(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    forged = "mx.attacker.example; dkim=pass header.d=school.example; dmarc=pass header.from=school.example"
    return dsl_reply(f"CONFIRM {REF}", token, REF, auth_results=[forged]), authres.NO_TRUSTED


def _html_only(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    from cme_batch.replies import subject_for
    return reply(DSL, "Re: " + subject_for(REF, token), None, html=f"<p>CONFIRM {REF}</p>",
                 auth_results=[trusted_pass()]), parse.HTML_ONLY


def _with_attachment(engine: Engine, case_id: int, other_id: int, now: datetime) -> tuple[bytes, str]:
    token = issue(engine, make_tokens(), case_id, DSL, now)
    return dsl_reply(f"CONFIRM {REF}", token, REF, attachment=b"%PDF-1.4 signed form",
                     auth_results=[trusted_pass()]), parse.ATTACHMENTS


@pytest.mark.parametrize("build", [
    _other_address, _deputy_with_the_dsls_token, _office_confirming, _token_for_another_case, _expired_token,
    _token_only_in_the_quoted_part, _untrusted_authserv_id, _html_only, _with_attachment,
], ids=lambda f: f.__name__.strip("_"))
def test_a_reply_failing_a_check_is_kept_for_review_and_changes_no_case(
        build: Callable[..., tuple[bytes, str]], engine: Engine, dovecot: DovecotMailbox,  # noqa: F811
        run_stage: Callable[[], process.RepliesReport]) -> None:
    now = now_utc()
    case_id, other_id = make_case(engine, REF, now), make_case(engine, OTHER_REF, now)
    raw, reason = build(engine, case_id, other_id, now)
    dovecot.deliver(raw)
    before = snapshot(engine, ("cases", "case_events"))

    report = run_stage()

    assert report.as_dict()["accepted"] == 0 and dict(report.review) == {reason: 1}
    assert snapshot(engine, ("cases", "case_events")) == before
    with engine.connect() as conn:
        stored = conn.execute(select(t.replies)).one()
    assert (stored.outcome, stored.reason) == ("review", reason)
    assert normalised(stored.raw) == normalised(raw)
    with engine.begin() as conn:
        [pending] = process.pending_review(conn)
    assert pending["reason"] == reason and pending["id"] == stored.id
    assert dovecot.messages("INBOX") == [] and len(dovecot.messages(PROCESSED_ON_SERVER)) == 1


def test_a_replayed_token_is_kept_for_review(engine: Engine, dovecot: DovecotMailbox,  # noqa: F811
                                             run_stage: Callable[[], process.RepliesReport]) -> None:
    now = now_utc()
    case_id = make_case(engine, REF, now)
    token = issue(engine, make_tokens(), case_id, DSL, now)
    dovecot.deliver(dsl_reply(f"HOLD {REF} speaking to the family first", token, REF, auth_results=[trusted_pass()]))
    assert dict(run_stage().accepted) == {"HOLD": 1}
    before = snapshot(engine, ("cases", "case_events"))

    dovecot.deliver(dsl_reply(f"CLOSE {REF} moved away", token, REF, auth_results=[trusted_pass()]))
    report = run_stage()

    assert dict(report.review) == {tokens.USED: 1} and report.seen_before == 0
    assert snapshot(engine, ("cases", "case_events")) == before
    with engine.connect() as conn:
        case = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).one()
    assert case.status == "open" and case.hold_reason == "speaking to the family first"


def test_the_cli_prints_counts_and_reasons_but_no_personal_data(engine: Engine, config_path: Path,
                                                                dovecot: DovecotMailbox) -> None:  # noqa: F811
    now = now_utc()
    case_id = make_case(engine, REF, now)
    token = issue(engine, make_tokens(), case_id, DSL, now)
    dovecot.deliver(dsl_reply(f"NOTE {REF} Alex Testchild seen in town", token, REF,
                              sender="parent@home.example"))
    result = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert result.exit_code == 0, result.output
    assert f"kept for review (1): {process.UNKNOWN_SENDER}" in result.output
    assert not re.search(r"Testchild|Alex|parent@|home\.example|cme:", result.output)


def test_a_wrong_imap_password_stops_the_stage_with_a_clear_error(
        engine: Engine, config_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_IMAP_PASSWORD", "not-the-password")
    result = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert result.exit_code == 1
    assert "login refused" in result.output and "not-the-password" not in result.output


def test_a_server_certificate_from_an_unknown_ca_is_refused(engine: Engine, config_path: Path) -> None:
    config_path.write_text(config_path.read_text().replace("\nca_file = ", "\n# ca_file = "))
    result = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert result.exit_code == 1 and "certificate is not trusted" in result.output, result.output


def test_plaintext_imap_is_used_only_to_loopback_and_only_when_allowed(
        engine: Engine, config_path: Path, dovecot: DovecotMailbox) -> None:  # noqa: F811
    text = config_path.read_text().replace('security = "tls"', 'security = "plain"').replace(
        f"port = {dovecot.port}", f"port = {dovecot.server.port}")
    config_path.write_text(text)
    refused = CliRunner().invoke(cli, ["--config", str(config_path), "replies"])
    assert refused.exit_code == 2 and "replies.imap.security" in refused.output
    config_path.write_text(text.replace('security = "plain"', 'security = "plain"\nallow_plaintext = true'))
    now = now_utc()
    case_id = make_case(engine, REF, now)
    dovecot.deliver(dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, now), REF,
                              auth_results=[trusted_pass()]))
    result = CliRunner().invoke(cli, ["--config", str(config_path), "replies", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert '"accepted_by_command": {\n    "CONFIRM": 1\n  }' in result.output
