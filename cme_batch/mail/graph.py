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
A timeout or a lost connection once the whole body has been handed to the HTTP library is
``OutcomeUnknown``: Graph may have taken the message before its 202 was lost. So is a 504:
Microsoft documents it as a gateway that "didn't receive a timely response from the upstream
server" (https://learn.microsoft.com/en-us/graph/errors), i.e. the service handling this
``sendMail`` may have sent it; retrying could deliver it twice.
"""

from __future__ import annotations

import base64
import io
from urllib.parse import quote

import requests

from cme_batch.errors import FatalError
from cme_batch.mail.oauth import GRAPH_SCOPE, MicrosoftToken, TokenSource, http_session, request_error
from cme_batch.mail.settings import MailConfig
from cme_batch.mail.transport import Delivery, OutcomeUnknown, Outgoing, classify_http


class _Body(io.BytesIO):
    """The request body, noting when the HTTP library has taken its last byte to send.

    A requests exception does not say whether the body went out (a reset while writing it and
    one while waiting for the answer look alike). Until the last byte is taken Graph cannot have
    the whole request, so a failure is safe to retry; after it, the outcome is unknown.
    """

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size = len(data)
        self.handed_over = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if chunk and self.tell() >= self.size:
            self.handed_over = True
        return chunk


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
        body = _Body(base64.b64encode(message.raw))
        try:
            resp = self.session.post(
                self.url, data=body, headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"})
        except requests.RequestException as exc:
            if body.handed_over:
                raise OutcomeUnknown(f"{where}: the whole message was sent but no answer came back "
                                     f"({exc.__class__.__name__}); Graph may have accepted it") from exc
            raise request_error(where, exc) from exc
        if resp.status_code == 504:  # the upstream that had the whole message did not answer in time
            raise OutcomeUnknown(f"{where}: HTTP 504 Gateway Timeout after the whole message was sent "
                                 f"({_graph_error(resp) or 'no detail'}); Graph may have accepted it")
        if resp.status_code in (200, 202):
            request_id = resp.headers.get("request-id", "")
            return Delivery(f"accepted by Microsoft Graph ({resp.status_code}"
                            f"{', request-id ' + request_id if request_id else ''})")
        raise classify_http(resp.status_code, _graph_error(resp), resp.headers.get("Retry-After"), where)
