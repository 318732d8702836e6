"""Access tokens from Microsoft Entra ID for reading the reply mailbox (msal, client credentials).

The app registration's secret comes from the secret store when a token is first needed;
msal keeps the token in memory for the rest of the run. A refusal (wrong secret, missing
consent) is a ``FatalError`` naming msal's error code, never the secret; a network failure is
a ``RetriableError``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import msal
import requests

from cme_batch.errors import FatalError, RetriableError
from cme_batch.replies_settings import MicrosoftApp

PUBLIC_CLOUD = "login.microsoftonline.com"


class MicrosoftToken:
    """A callable giving a bearer token for one scope, e.g. IMAP in Exchange Online or Graph."""

    IMAP_SCOPE = "https://outlook.office365.com/.default"

    def __init__(self, app: MicrosoftApp, scope: str) -> None:
        self.app = app
        self.scope = scope
        self._client: msal.ConfidentialClientApplication | None = None

    def __repr__(self) -> str:
        return f"MicrosoftToken(client_id={self.app.client_id!r}, scope={self.scope!r})"

    @staticmethod
    def graph_scope(base_url: str) -> str:
        """Graph's app-only scope is its origin plus /.default."""
        u = urlsplit(base_url)
        return f"{u.scheme}://{u.netloc}/.default"

    def _msal(self) -> msal.ConfidentialClientApplication:
        if self._client is None:
            a = self.app
            try:
                self._client = msal.ConfidentialClientApplication(
                    a.client_id, client_credential=a.client_secret.reveal(),
                    authority=f"{a.authority}/{a.tenant_id}",
                    # Only the public cloud is known to msal; asking it about any other host would
                    # send a request to login.microsoftonline.com first.
                    instance_discovery=urlsplit(a.authority).hostname == PUBLIC_CLOUD,
                    verify=str(a.ca_file) if a.ca_file else True, timeout=30)
            except requests.RequestException as exc:
                raise RetriableError(f"Microsoft sign-in at {a.authority}: cannot connect: {type(exc).__name__}") \
                    from exc
            except ValueError as exc:  # msal's way of saying the tenant or authority is unknown
                raise FatalError(f"Microsoft sign-in at {a.authority}: tenant {a.tenant_id!r} not usable: {exc}") \
                    from exc
        return self._client

    def __call__(self) -> str:
        client = self._msal()
        try:
            result = client.acquire_token_for_client(scopes=[self.scope])
        except requests.RequestException as exc:
            raise RetriableError(f"Microsoft sign-in: cannot get a token: {type(exc).__name__}") from exc
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            err = result.get("error", "unknown") if isinstance(result, dict) else "unknown"
            raise FatalError(f"Microsoft sign-in refused app {self.app.client_id} for {self.scope}: {err} "
                             "(check the client secret, the API permission and admin consent)")
        return str(token)
