"""The mail code checked against Microsoft's own documentation, with the fake Microsoft server
(``tests/microsoft_server.py``) answering as those pages say the real service does.

- Graph ``sendMail`` in MIME form (https://learn.microsoft.com/en-us/graph/api/user-sendmail):
  base64 MIME sent as ``text/plain``, ``202 Accepted`` with an empty body, ``400`` for malformed
  base64; ``413`` over the 4 MB payload limit (https://learn.microsoft.com/en-us/graph/api/user-post-messages).
- Graph status codes (https://learn.microsoft.com/en-us/graph/errors): 429 and 503 mean "repeat
  after a delay"; 504 means a front end gave up waiting for the service that was handling the
  request, so a ``sendMail`` answered 504 may have been sent.
- The token endpoint: for the client-credentials grant Entra ID throttles with ``429`` and
  ``Retry-After: 60`` (https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling),
  and ``server_error`` / ``temporarily_unavailable`` mean "retry the request"
  (https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cme_batch.errors import FatalError
from cme_batch.mail import outbox
from cme_batch.mail.oauth import GRAPH_SCOPE, MicrosoftToken
from cme_batch.mail.sender import send_run
from cme_batch.mail.settings import MicrosoftApp
from cme_batch.mail.transport import TemporarySendError
from cme_batch.settings import SecretRef
from tests.mailservers import Clock, mail_app, queue, row
from tests.microsoft_server import FakeMicrosoft, fake_microsoft

pytestmark = pytest.mark.server
SECRET_ENV = "CME_TEST_MS_DOCS_SECRET"


@pytest.fixture
def ms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMicrosoft]:
    with fake_microsoft(tmp_path / "ms-pki", FakeMicrosoft(mailbox="cme-batch@school.example")) as state:
        monkeypatch.setenv(SECRET_ENV, state.client_secret)
        yield state


def graph_toml(ms: FakeMicrosoft, *, backoff_max: float = 5.0) -> str:
    return f"""
[mail]
transport = "graph"
from = "{ms.mailbox}"
ca_file = "{ms.ca_file}"
timeout_seconds = 5

[mail.microsoft]
tenant_id = "{ms.tenant}"
client_id = "{ms.client_id}"
client_secret = {{ env = "{SECRET_ENV}" }}
authority_url = "{ms.base}"

[mail.graph]
base_url = "{ms.base}/v1.0"

[mail.retry]
attempts_per_run = 3
backoff_seconds = 0.01
backoff_max_seconds = {backoff_max}
"""


def token_source(ms: FakeMicrosoft) -> MicrosoftToken:
    app = MicrosoftApp(tenant_id=ms.tenant, client_id=ms.client_id,
                       client_secret=SecretRef("env", SECRET_ENV, "mail.microsoft.client_secret"),
                       authority_url=ms.base)
    return MicrosoftToken(app, GRAPH_SCOPE, ca_file=ms.ca_file, timeout=5)


# --- what already agreed with the documentation (kept as guards) ------------------------------

def test_sendmail_as_documented_gets_202_with_an_empty_body(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms))
    oid = queue(engine, "docs-1")
    report = send_run(app)
    assert [o.result for o in report.outcomes] == ["sent"], report.summary()
    with engine.connect() as conn:
        assert ms.sent == [outbox.raw_message(conn, oid)]
    assert ms.scopes == [GRAPH_SCOPE]


def test_a_payload_over_the_documented_limit_is_failed_not_retried(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    from tests.mailservers import build_message

    big = build_message(body="x" * (3 * 1024 * 1024 + 10))  # base64 makes it more than 4 MB
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms))
    oid = queue(engine, "docs-big", message=big)
    report = send_run(app)
    assert [o.result for o in report.outcomes] == ["failed"] and "HTTP 413" in report.outcomes[0].detail
    assert row(engine, oid).attempts == 1 and ms.sent == []


# --- mismatches found ------------------------------------------------------------------------

def test_a_throttled_token_request_defers_the_message_instead_of_stopping_the_run(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    """Entra ID answers a throttled client-credentials request 429 with Retry-After: 60. That is
    temporary: the message waits at least a minute and goes later, not a fatal 'refused the app's
    credentials' that stops the whole run."""
    ms.token_script = [(429, {"Retry-After": "60"}, b"")]
    clock = Clock()
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms, backoff_max=2), clock)
    oid = queue(engine, "docs-throttled", now=clock())

    report = send_run(app)

    assert report.fatal is None, report.fatal
    assert [o.result for o in report.outcomes] == ["deferred"]
    entry = row(engine, oid)
    assert entry.status == "queued" and "429" in entry.last_error
    assert (entry.next_attempt_at - clock()).total_seconds() >= 60
    assert ms.sent == []


@pytest.mark.parametrize("status", [500, 503])
def test_a_token_endpoint_server_error_is_temporary(ms: FakeMicrosoft, status: int) -> None:
    """A 5xx from the token endpoint made msal raise its own exception, which nothing caught: the
    send run crashed with the message left 'sending' (resent next time, flagged as a duplicate)."""
    ms.token_script = [(status, {"Content-Type": "application/json"},
                        b'{"error": "temporarily_unavailable", "error_description": "AADSTS90033"}')]
    with pytest.raises(TemporarySendError) as caught:
        token_source(ms).token()
    assert str(status) in str(caught.value)


def test_a_token_endpoint_server_error_leaves_the_message_queued_not_sending(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    ms.token_script = [(503, {}, b"")] * 3
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms))
    oid = queue(engine, "docs-5xx")
    report = send_run(app)
    assert [o.result for o in report.outcomes] == ["deferred"]
    assert row(engine, oid).status == "queued" and not row(engine, oid).maybe_duplicate


def test_a_refused_secret_is_still_fatal(ms: FakeMicrosoft, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "an-expired-secret")
    with pytest.raises(FatalError) as caught:
        token_source(ms).token()
    assert "invalid_client" in str(caught.value) and "an-expired-secret" not in str(caught.value)


def test_a_504_to_sendmail_is_held_not_sent_again(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    """Graph's 504 says a gateway stopped waiting for the service handling the request: the message
    may have gone. Retrying it (as a temporary error) can deliver a referral twice; it must be held
    for a person to check, like a timeout after the whole body was sent."""
    ms.send_script = [(504, {}, {"error": {"code": "UnknownError", "message": ""}}, True)]
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms))
    oid = queue(engine, "docs-504")

    report = send_run(app)

    assert len(ms.sent) == 1, "sent once, not again"
    assert [o.result for o in report.outcomes] == ["failed"]
    entry = row(engine, oid)
    assert entry.status == "failed" and entry.maybe_duplicate and "504" in entry.last_error


def test_503_with_retry_after_is_still_retried(
        engine: Engine, store_url: str, tmp_path: Path, ms: FakeMicrosoft) -> None:
    ms.send_script = [(503, {"Retry-After": "0"}, {"error": {"code": "ServiceUnavailable", "message": ""}}, False)]
    app = mail_app(tmp_path, store_url, engine, graph_toml(ms))
    oid = queue(engine, "docs-503")
    send_run(app)
    assert row(engine, oid).status == "sent" and row(engine, oid).attempts == 2 and len(ms.sent) == 1


def test_the_fake_refuses_what_graph_refuses(ms: FakeMicrosoft) -> None:
    """The stand-in itself: JSON content type or bad base64 is refused, as Graph documents."""
    import requests

    session = requests.Session()
    url = f"{ms.base}/v1.0/users/{ms.mailbox}/sendMail"
    auth = {"Authorization": f"Bearer {ms.access_token}"}
    raw = b"To: a@b.example\r\nSubject: x\r\n\r\nhello\r\n"
    bad = session.post(url, data=b"not base64!", headers={**auth, "Content-Type": "text/plain"},
                       verify=str(ms.ca_file), timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "ErrorMimeContentInvalidBase64String"
    as_json = session.post(url, data=base64.b64encode(raw), headers={**auth, "Content-Type": "application/json"},
                           verify=str(ms.ca_file), timeout=5)
    assert as_json.status_code == 400
    ok = session.post(url, data=base64.b64encode(raw), headers={**auth, "Content-Type": "text/plain"},
                      verify=str(ms.ca_file), timeout=5)
    assert ok.status_code == 202 and ok.content == b"" and ms.sent == [raw]
