"""Reading replies through Microsoft Graph (app-only: Mail.ReadWrite on the one reply mailbox).

Messages are listed with immutable ids (so an id survives a move between folders), fetched as
full MIME through ``/$value`` (headers such as Authentication-Results included), then marked
read and, when a processed folder is configured, moved there. Every request has a timeout;
429 and 5xx answers and network failures are ``RetriableError``, a refused token or missing
permission is ``FatalError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from cme_batch.errors import FatalError, RetriableError
from cme_batch.mail.oauth import request_error
from cme_batch.replies_settings import GraphSettings

PAGE = 50


class GraphMailbox:
    """One mail folder of one mailbox, read through Graph with a bearer token from ``token``."""

    def __init__(self, settings: GraphSettings, token: Callable[[], str], session: requests.Session) -> None:
        self.s = settings
        self.name = f"graph:{settings.mailbox}/{settings.folder}"
        self._token = token
        self._http = session  # verifies certificates and times out on every request (mail.oauth.http_session)
        self._user = f"{settings.base_url}/users/{quote(settings.mailbox, safe='@')}"
        self._processed_id: str | None = None

    def _request(self, method: str, url: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token()}", "Prefer": 'IdType="ImmutableId"'}
        try:
            r = self._http.request(method, url, headers=headers, **kw)
        except requests.RequestException as exc:
            raise request_error(f"Graph {method} {self.s.base_url}", exc) from exc
        if r.status_code in (401, 403):
            raise FatalError(f"Graph refused access to mailbox {self.s.mailbox} ({r.status_code}): check the app's "
                             "Mail.ReadWrite permission and its scope")
        if r.status_code == 429 or r.status_code >= 500:
            raise RetriableError(f"Graph {method} answered {r.status_code}; try again later")
        if r.status_code >= 400:
            raise FatalError(f"Graph {method} answered {r.status_code}: {_error_code(r)}")
        return r

    def waiting(self) -> list[str]:
        url: str | None = (f"{self._user}/mailFolders/{quote(self.s.folder, safe='')}/messages"
                           f"?$select=id,receivedDateTime&$orderby=receivedDateTime&$top={PAGE}")
        ids: list[str] = []
        while url:
            body = self._request("GET", url).json()
            ids.extend(str(m["id"]) for m in body.get("value", []))
            url = body.get("@odata.nextLink")
        return ids

    def fetch(self, uid: str) -> bytes:
        return self._request("GET", f"{self._message(uid)}/$value").content

    def done(self, uid: str) -> None:
        self._request("PATCH", self._message(uid), json={"isRead": True})
        if self.s.processed_folder:
            self._request("POST", f"{self._message(uid)}/move", json={"destinationId": self._processed()})

    def close(self) -> None:
        self._http.close()

    def _message(self, uid: str) -> str:
        return f"{self._user}/messages/{quote(uid, safe='')}"

    def _processed(self) -> str:
        """The processed folder's id: found by display name at the top level, or created there."""
        if self._processed_id is None:
            name = self.s.processed_folder or ""
            found = self._request("GET", f"{self._user}/mailFolders",
                                  params={"$filter": f"displayName eq '{name.replace(chr(39), chr(39) * 2)}'"}
                                  ).json().get("value", [])
            if found:
                self._processed_id = str(found[0]["id"])
            else:
                made = self._request("POST", f"{self._user}/mailFolders", json={"displayName": name}).json()
                self._processed_id = str(made["id"])
        return self._processed_id


def _error_code(r: requests.Response) -> str:
    try:
        return str(r.json().get("error", {}).get("code", "unknown"))
    except ValueError:
        return "unknown"
