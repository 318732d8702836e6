"""The ``graph`` transport: Microsoft Graph ``sendMail`` with the whole MIME message.

``POST {base_url}/users/{sender}/sendMail`` with the stored bytes base64-encoded as a
``text/plain`` body, under an app-only token (``Mail.Send`` application permission, best
limited to the one mailbox with RBAC for Applications). Sending the MIME itself, rather than
Graph's JSON message, keeps the Message-ID and an S/MIME body exactly as the outbox holds
them. Graph answers 202 when it has taken the message.

Graph delivers to the To, Cc and Bcc headers of the message, not to a separate envelope: the
outbox's recipients must appear there (they do for every message cme-batch builds).

Throttling (429) and server errors (5xx) are temporary; their Retry-After is passed on so
the sender waits at least that long. 401/403/404 mean the app or mailbox is misconfigured.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import requests

from cme_batch.errors import FatalError
from cme_batch.mail.oauth import GRAPH_SCOPE, MicrosoftToken, TokenSource, http_session, request_error
from cme_batch.mail.settings import MailConfig
from cme_batch.mail.transport import Delivery, Outgoing, classify_http


def _graph_error(resp: requests.Response) -> str:
    """Graph's own error code and message, shortened (they never carry the message content)."""
    try:
        err = resp.json().get("error", {})
        return f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")[:300]
    except (ValueError, AttributeError):
        return resp.reason or ""


class GraphTransport:
    name = "graph"

    def __init__(self, cfg: MailConfig, tokens: TokenSource | None = None,
                 session: requests.Session | None = None) -> None:
        sender = cfg.graph.sender or cfg.from_address
        if not sender:
            raise FatalError("mail.graph.sender (or mail.from) must name the mailbox that sends")
        self.sender = sender
        self.url = f"{cfg.graph.base_url}/users/{quote(sender, safe='@')}/sendMail"
        self.tokens = tokens or MicrosoftToken(cfg.microsoft, GRAPH_SCOPE, ca_file=cfg.ca_file,
                                               timeout=cfg.timeout_seconds)
        self.session = session or http_session(cfg.ca_file, cfg.timeout_seconds)

    def send(self, message: Outgoing) -> Delivery:
        where = f"Graph sendMail as {self.sender}"
        token = self.tokens.token()
        try:
            resp = self.session.post(
                self.url, data=base64.b64encode(message.raw),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
        except requests.RequestException as exc:
            raise request_error(where, exc) from exc
        if resp.status_code in (200, 202):
            request_id = resp.headers.get("request-id", "")
            return Delivery(f"accepted by Microsoft Graph ({resp.status_code}"
                            f"{', request-id ' + request_id if request_id else ''})")
        raise classify_http(resp.status_code, _graph_error(resp), resp.headers.get("Retry-After"), where)
