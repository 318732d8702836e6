"""The HTTP client for one school's Arbor host: the only code that talks to the network.

It pins every request to the configured host (redirects elsewhere are refused, since the
Basic-auth credentials would go with them), puts a timeout on every request, retries what a
later attempt can fix (connection errors, 429 with its Retry-After, 500/502/503/504, an HTML
maintenance page served as 200) with exponential backoff and jitter, and turns everything else
into a ``FatalError`` that says what a person must do. Paging is checked: a server that
ignores the page asked for is an error, never a silent loop or duplicate rows, and a listing
ends only at an empty page, so a server serving fewer rows a page than asked loses none.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from adapters.arbor import mapping
from cme_batch import log
from cme_batch.errors import FatalError, RetriableError

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_REDIRECTS = 3
MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is waited for this long, then tried again


class ArborBusy(RetriableError):
    """A temporary failure; ``retry_after`` holds the server's Retry-After, in seconds, if it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class ClientSettings:
    base_url: str  # scheme://host[:port], no path
    username: str
    ca_bundle: Path | None = None
    timeout: float = 30.0
    max_retries: int = 5
    backoff: float = 2.0
    max_backoff: float = 120.0
    page_size: int = 500
    user_agent: str = "cme-batch (Arbor adapter)"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ArborClient:
    """Requests to one Arbor host with one app's credentials."""

    def __init__(self, settings: ClientSettings, password: str,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        parts = urlsplit(settings.base_url)
        self._origin = (parts.scheme, parts.netloc.lower())
        self.host = parts.hostname or ""
        self._session = requests.Session()
        self._session.auth = (settings.username, password)
        self._session.headers.update({"Accept": "application/json", "User-Agent": settings.user_agent})
        self._verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
        self._sleep = sleep
        self._log = log.get("cme_batch.arbor").bind(host=self.host)
        self.requests_made = 0
        self.served_page_size: int | None = None  # set when Arbor is seen to serve fewer rows a page than asked

    def __repr__(self) -> str:
        return f"ArborClient({self.settings.base_url!r})"

    def close(self) -> None:
        self._session.close()

    # -- one request, with retries -------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                json_body: Any = None, what: str | None = None) -> Any:
        """The parsed JSON answer to one request, after retrying temporary failures; ``what`` names
        the request in errors (the GraphQL entity: every query goes to one path)."""
        s = self.settings
        retrying = Retrying(
            retry=retry_if_exception_type(RetriableError), stop=stop_after_attempt(s.max_retries + 1),
            wait=self._wait, sleep=self._sleep, before_sleep=self._before_sleep, reraise=True)
        try:
            return retrying(self._once, method, path, params, json_body, what)
        except RetriableError as exc:
            raise RetriableError(f"{exc} (gave up after {s.max_retries + 1} attempt(s); the next run tries "
                                 "again)") from exc

    def _wait(self, state: RetryCallState) -> float:
        s = self.settings  # exponential, capped, plus up to one base delay of jitter
        expo = min(s.max_backoff, s.backoff * 2.0 ** (state.attempt_number - 1)) + random.uniform(0, s.backoff)
        exc = state.outcome.exception() if state.outcome else None
        after: float | None = getattr(exc, "retry_after", None)
        return expo if after is None else max(min(after, MAX_RETRY_AFTER), expo)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        self._log.warning("arbor request failed, will retry", attempt=state.attempt_number,
                          wait_seconds=round(wait, 3), reason=str(exc))

    def _once(self, method: str, path: str, params: Mapping[str, str] | None, json_body: Any,
              what: str | None = None) -> Any:
        url = self._url(path)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(method, url, params, json_body)
            if resp.is_redirect:
                url = self._url(urljoin(url, resp.headers.get("Location", "")))
                params = None  # the Location carries its own query
                continue
            return self._answer(resp, path, what)
        raise FatalError(f"Arbor redirected {path} more than {MAX_REDIRECTS} times")

    def _url(self, path_or_url: str) -> str:
        """An absolute URL on the configured host; anything pointing elsewhere is refused."""
        parts = urlsplit(urljoin(self.settings.base_url + "/", path_or_url))
        if (parts.scheme, parts.netloc.lower()) != self._origin:
            raise FatalError(f"refused to follow a link from Arbor to another host ({parts.scheme}://"
                             f"{parts.hostname}): the credentials would be sent there; check base_url")
        return parts.geturl()

    def _send(self, method: str, url: str, params: Mapping[str, str] | None, json_body: Any) -> requests.Response:
        self.requests_made += 1
        t = self.settings.timeout
        try:
            return self._session.request(method, url, params=params, json=json_body, timeout=(t, t),
                                         allow_redirects=False, verify=self._verify)
        except requests.exceptions.SSLError as exc:
            raise FatalError(f"TLS check failed for {self.host}: the certificate is not trusted "
                             f"({exc.__class__.__name__}); set ca_bundle if the school uses its own CA") from exc
        except requests.exceptions.Timeout as exc:
            raise ArborBusy(f"Arbor at {self.host} did not answer within {t:g} s") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise ArborBusy(f"cannot reach Arbor at {self.host} ({exc.__class__.__name__})") from exc

    def _answer(self, resp: requests.Response, path: str, what: str | None = None) -> Any:
        status, where = resp.status_code, f"{resp.request.method} {path}" + (f" ({what})" if what else "")
        body: Any = None
        if "json" in resp.headers.get("Content-Type", "") or resp.content[:1] in (b"{", b"["):
            try:
                body = resp.json()
            except ValueError:
                body = None
        if status == 200 and isinstance(body, dict) and isinstance(body.get("response"), dict):
            status = int(body["response"].get("code") or status)  # Arbor's envelope overrides the status
        reason = mapping.error_reason(body)
        detail = f": {reason}" if reason else ""
        if status in RETRY_STATUSES:
            raise ArborBusy(f"Arbor answered {status} to {where}{detail}",
                            _retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None)
        if status == 401:
            raise FatalError(f"Arbor at {self.host} refused the credentials (401): check the username and "
                             "password configured for this source")
        if status == 403:
            raise FatalError(f"Arbor refused permission for {where} (403){detail}: ask the school to grant the "
                             "app access to this data in Arbor")
        if status == 404:
            raise FatalError(f"Arbor has no {path} (404): check base_url is the school's Arbor host")
        if status == 400:
            raise FatalError(f"Arbor rejected {where} as malformed (400){detail}: the adapter's request shape "
                             "does not match this Arbor version (see adapters/arbor/mapping.py)")
        if not 200 <= status < 300:
            raise FatalError(f"Arbor answered {status} to {where}{detail}")
        if body is None:
            kind = "an HTML page (maintenance?)" if b"<" in resp.content[:200] else "something that is not JSON"
            raise ArborBusy(f"Arbor answered {where} with {kind} instead of data")
        return body

    # -- GraphQL and REST reads ----------------------------------------------------------------
    def graphql(self, entity: str, args: Mapping[str, Any]) -> list[mapping.Row]:
        """One page of one GraphQL entity."""
        body = self.request("POST", mapping.GRAPHQL_PATH, json_body={"query": mapping.graphql_query(entity, args)},
                            what=entity)
        denied, other = mapping.graphql_errors(body)
        if denied:
            raise FatalError(f"Arbor refused access to {', '.join(denied)}: ask the school to give the app "
                             "permission for these fields in Arbor")
        if other:
            raise FatalError(f"Arbor GraphQL error reading {entity}: {'; '.join(other)}")
        try:
            return mapping.graphql_rows(body, entity)
        except ValueError as exc:
            raise FatalError(f"Arbor GraphQL answer for {entity} is not in the expected shape: {exc}") from exc

    def graphql_all(self, entity: str, filters: Mapping[str, Any] | None = None) -> Iterator[mapping.Row]:
        """Every row of an entity, page by page (page numbers from 0) until an empty page."""
        yield from self._pages(f"{entity} (GraphQL)", lambda n, size: self.graphql(
            entity, {**(filters or {}), **mapping.page_args(size, n)}), first=0)

    def changelog(self, entity: str, from_revision: int) -> Iterator[mapping.Change]:
        """Every change to an entity's REST resource after a revision."""
        path = mapping.changelog_path(entity)

        def page(n: int, size: int) -> list[mapping.Change]:
            body = self.request("GET", path, params=mapping.changelog_params(from_revision, size, n))
            try:
                return mapping.parse_changelog(body)
            except (ValueError, TypeError, AttributeError) as exc:
                raise FatalError(f"Arbor changelog {path} is not in the expected shape: {exc}") from exc

        yield from self._pages(path, page, first=1)

    def head_revision(self) -> int | None:
        """The newest revision now, or None when this Arbor does not say (the endpoint is UNCONFIRMED)."""
        try:
            body = self.request("GET", mapping.HEAD_REVISION_PATH)
            return mapping.parse_head_revision(body)
        except FatalError as exc:
            if "(404)" not in str(exc):
                raise
        except (KeyError, TypeError, ValueError):
            pass
        return None

    def _pages(self, what: str, fetch: Callable[[int, int], list[Any]], first: int) -> Iterator[Any]:
        """Every row of a paged listing: ``fetch(page number, page size)`` until an empty page.

        A short page does not end the listing: Arbor's maximum page size is UNCONFIRMED, and a
        server that serves fewer rows than asked would otherwise end every pull early, and the
        cursor would move past rows never read. A short first page sets the page size to the
        rows served, so the next page starts right after them however the server counts its
        pages; after that, a short page must be followed by an empty one.
        """
        size = self.settings.page_size
        previous: list[Any] | None = None
        n, short = first, False
        while rows := fetch(n, size):
            if len(rows) > size:
                raise FatalError(f"Arbor ignored the page size for {what} ({len(rows)} rows for a page of {size}): "
                                 "cannot page through it safely")
            if rows == previous:
                raise FatalError(f"Arbor returned page {n} of {what} identical to page {n - 1}: it promises more "
                                 "rows but ignores the page asked for, so the rest cannot be reached")
            if short:
                raise FatalError(f"Arbor served a short page {n - 1} of {what}, then more rows: its page size "
                                 "changed part-way, so rows may have been skipped")
            if n == first + 1 and size < self.settings.page_size:
                self._served_fewer(what, size)
            yield from rows
            if len(rows) < size:
                size, short = (len(rows), False) if n == first else (size, True)
            previous, n = rows, n + 1

    def _served_fewer(self, what: str, size: int) -> None:
        """Say once a run that Arbor caps its pages: every listing then costs more requests."""
        if self.served_page_size is None:
            self._log.info("arbor serves fewer rows a page than page_size; reading at its size", listing=what,
                           page_size=self.settings.page_size, served=size)
        self.served_page_size = size
