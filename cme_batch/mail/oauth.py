"""OAuth 2 access tokens for sending mail, without a person at the keyboard.

- Microsoft 365: the client-credentials grant of an Entra ID app, through ``msal`` (which caches
  the token until it nearly expires). Needed because Exchange Online switches password SMTP
  AUTH off by default at the end of December 2026; also used for Microsoft Graph.
- Google Workspace: a service account with domain-wide delegation signs a JWT (RS256) naming
  the mailbox, and swaps it at Google's token endpoint for a token with scope
  ``https://mail.google.com/``.

Every endpoint is configurable (``authority_url``, ``token_url``) so tests can use a server on
127.0.0.1, but must be https, verified against the system CAs or ``mail.ca_file``. Failures are
translated: network trouble is temporary, a refused credential is fatal. Secrets are read
only here, when a token is needed, and never logged or put in an error message.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cme_batch.errors import BadInputError, CmeError, FatalError
from cme_batch.mail.settings import MICROSOFT_AUTHORITY, GoogleAccount, MicrosoftApp
from cme_batch.mail.transport import TemporarySendError, parse_retry_after

OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
_TEMPORARY_OAUTH_ERRORS = {"temporarily_unavailable", "server_error"}


class TokenSource(Protocol):
    """Gives a current access token, fetching a new one when needed."""

    def token(self) -> str:
        ...


def xoauth2(user: str, token: str) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Microsoft and Google define it."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def http_session(ca_file: Path | None, timeout: float) -> requests.Session:
    """A requests session that always verifies certificates (against ``ca_file`` when given) and
    always times out. Passing ``verify`` on every request matters: a session-wide setting would be
    overridden by a REQUESTS_CA_BUNDLE in the environment."""
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, verify=str(ca_file) if ca_file else True, timeout=timeout)
    return session


def request_error(where: str, exc: requests.RequestException) -> CmeError:
    """A requests failure from which nothing can have been delivered (a token request, or a Graph
    request whose body was not all handed over): network trouble is safe to retry. A failure
    after a whole ``sendMail`` body went out is ``OutcomeUnknown`` instead (``mail.graph``)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return FatalError(f"{where}: the server's certificate could not be verified ({exc.__class__.__name__}); "
                          "set mail.ca_file if it uses a private CA")
    return TemporarySendError(f"{where}: {exc.__class__.__name__} (temporary)")


class _NotedSession:
    """The HTTP client msal is given: it notes the status and Retry-After of the last answer.

    msal hands back a token endpoint's error body but not its HTTP status, and raises its own
    ``MsalServiceError`` (not a requests exception) for a 5xx. Entra ID throttles the
    client-credentials grant with ``429`` and ``Retry-After: 60``
    (https://learn.microsoft.com/en-us/entra/msal/dotnet/advanced/client-and-server-throttling),
    whatever the body says; the status is what tells a throttled request from a refused one.
    msal itself replays a throttled answer from its cache until the Retry-After is over, without
    calling this client: the last noted answer is then that same one, which is what is wanted.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self.last: tuple[int, str | None] | None = None

    def _note(self, resp: requests.Response) -> requests.Response:
        self.last = (resp.status_code, resp.headers.get("Retry-After"))
        return resp

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._note(self.session.post(*args, **kwargs))

    def get(self, *args: Any, **kwargs: Any) -> requests.Response:
        return self._note(self.session.get(*args, **kwargs))

    def close(self) -> None:
        self.session.close()


def _busy(last: tuple[int, str | None] | None) -> tuple[bool, float | None]:
    """Whether the last answer was a throttle (429) or a server error (5xx), and its Retry-After."""
    if last is None or not (last[0] == 429 or last[0] >= 500):
        return False, None
    return True, parse_retry_after(last[1])


class MicrosoftToken:
    """Client-credentials tokens for one Entra ID app and one scope."""

    def __init__(self, app: MicrosoftApp, scope: str, *, ca_file: Path | None, timeout: float) -> None:
        self.app_cfg = app
        self.scope = scope
        self.session = http_session(ca_file, timeout)
        self._http = _NotedSession(self.session)
        self._client: Any = None
        self._lock = threading.Lock()

    def _msal(self) -> Any:
        import msal

        if self._client is None:
            a = self.app_cfg
            assert a.client_secret is not None, "checked when the configuration was loaded"
            self._client = msal.ConfidentialClientApplication(
                a.client_id, client_credential=a.client_secret.reveal(),
                authority=f"{a.authority_url}/{a.tenant_id}",
                # the default authority is known to msal; another one (a national cloud, a test
                # server) must not be checked against Microsoft's instance-discovery service
                instance_discovery=None if a.authority_url == MICROSOFT_AUTHORITY else False,
                http_client=self._http)
        return self._client

    def token(self) -> str:
        from msal.exceptions import MsalServiceError

        where = "Microsoft token endpoint"
        with self._lock:
            try:
                result = self._msal().acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as exc:
                raise request_error(where, exc) from exc
            except MsalServiceError as exc:  # msal raises this for a 5xx (token endpoint or discovery)
                busy, wait = _busy(self._http.last)
                status = self._http.last[0] if self._http.last else "5xx"
                raise TemporarySendError(f"{where}: HTTP {status} (temporary)", retry_after=wait if busy else None) \
                    from exc
            except ValueError as exc:  # msal: discovery answered 4xx, or an answer was not JSON
                busy, wait = _busy(self._http.last)
                if busy:  # a throttled or failing endpoint whose body is not an OAuth error
                    raise TemporarySendError(f"{where}: HTTP {self._http.last[0]} (temporary)",  # type: ignore[index]
                                             retry_after=wait) from exc
                raise FatalError(f"{where}: tenant {self.app_cfg.tenant_id!r} not found or not usable "
                                 f"({str(exc).splitlines()[0][:200]})") from exc
            last = self._http.last
        if "access_token" in result:
            return str(result["access_token"])
        err = str(result.get("error", "unknown_error"))
        desc = str(result.get("error_description", "")).splitlines()[0][:200] if result.get(
            "error_description") else ""
        busy, wait = _busy(last)
        if busy or err in _TEMPORARY_OAUTH_ERRORS:
            said = f"HTTP {last[0]}, {err}" if busy and last else err
            raise TemporarySendError(f"{where}: {said} (temporary)", retry_after=wait)
        raise FatalError(f"{where} refused the app's credentials: {err}{': ' + desc if desc else ''}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_jwt(claims: dict[str, Any], private_key_pem: str) -> str:
    """A compact JWT signed with RS256 (what Google's service-account token exchange expects)."""
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise BadInputError("mail.google.key: the service account key is not an RSA key")
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{body}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{body}.{_b64url(signature)}"


class GoogleToken:
    """Tokens for one Workspace mailbox from a service account with domain-wide delegation."""

    def __init__(self, account: GoogleAccount, user: str, *, ca_file: Path | None, timeout: float) -> None:
        self.account = account
        self.user = user
        self.session = http_session(ca_file, timeout)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def _key(self) -> dict[str, str]:
        assert self.account.key is not None, "checked when the configuration was loaded"
        try:
            key = json.loads(self.account.key.reveal())
            return {"client_email": str(key["client_email"]), "private_key": str(key["private_key"])}
        except (ValueError, KeyError, TypeError):
            raise BadInputError(f"{self.account.key.key}: not a Google service account JSON key "
                                "(needs client_email and private_key)") from None

    def token(self) -> str:
        with self._lock:
            if self._token and time.time() < self._expires - 60:
                return self._token
            key = self._key()
            now = int(time.time())
            assertion = signed_jwt({"iss": key["client_email"], "sub": self.user, "scope": GOOGLE_MAIL_SCOPE,
                                    "aud": self.account.token_url, "iat": now, "exp": now + 3600},
                                   key["private_key"])
            where = "Google token endpoint"
            try:
                resp = self.session.post(self.account.token_url, data={
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})
            except requests.RequestException as exc:
                raise request_error(where, exc) from exc
            try:
                body = resp.json()
            except ValueError:
                body = {}
            if resp.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
                self._token = str(body["access_token"])
                self._expires = time.time() + float(body.get("expires_in", 3600))
                return self._token
            err = str(body.get("error", f"HTTP {resp.status_code}")) if isinstance(body, dict) else "?"
            if resp.status_code == 429 or resp.status_code >= 500 or err in _TEMPORARY_OAUTH_ERRORS:
                raise TemporarySendError(f"{where}: {err} (temporary)")
            raise FatalError(f"{where} refused the service account for {self.user}: {err} (check domain-wide "
                             "delegation of scope https://mail.google.com/)")
