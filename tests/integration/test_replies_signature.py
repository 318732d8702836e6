"""A DSL whose mail signature has a logo: Outlook, Gmail and Apple Mail send the logo as a picture
inside the reply's HTML, with every reply. Such a reply must still be read; a real attachment
must still be refused. Read from a real Maildir into a real store."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine

from cme_batch.app import App
from tests.conftest import FIXED_NOW
from tests.replies_support import DSL, case_row, deliver_and_run, dsl_reply, issue, make_case, make_tokens

REF = "CME-2025-0031"
LATER = FIXED_NOW + timedelta(hours=1)
LOGO = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def app(reply_app: Callable[..., App]) -> App:
    return reply_app(LATER)


def _outlook_reply(raw: bytes, *, as_attachment: bool = False, cid: bool = True) -> bytes:
    """``raw`` (a plain-text reply) as Outlook sends it from a signature with a logo: plain text and
    HTML alternatives, the HTML with the logo beside it in a multipart/related (``image001.png``)."""
    msg = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_content()
    msg.add_alternative(f"<p>{text.splitlines()[0]}</p><p><img src=\"cid:image001.png@01DC\"></p>", subtype="html")
    html = msg.get_payload()[1]
    assert isinstance(html, EmailMessage)
    html.add_related(LOGO, maintype="image", subtype="png", cid="<image001.png@01DC>" if cid else None,
                     filename="image001.png", disposition="attachment" if as_attachment else "inline")
    if not cid:
        for part in msg.walk():
            if part.get_content_type() == "image/png":
                del part["Content-ID"]
    return msg.as_bytes()


def test_a_reply_signed_with_a_logo_is_acted_on(app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    raw = _outlook_reply(dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, FIXED_NOW), REF))
    report = deliver_and_run(app, maildir, raw)
    assert dict(report.accepted) == {"CONFIRM": 1} and not report.review
    assert case_row(engine, case_id).confirmed_at is not None


@pytest.mark.parametrize("how", ["as an attachment", "with no Content-ID"])
def test_a_picture_not_shown_by_the_html_is_still_an_attachment(app: App, engine: Engine,
                                                                maildir: stdlib_mailbox.Maildir, how: str) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    raw = _outlook_reply(dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, FIXED_NOW), REF),
                         as_attachment=how == "as an attachment", cid=how != "with no Content-ID")
    report = deliver_and_run(app, maildir, raw)
    assert dict(report.review) == {"reply has attachments": 1} and not report.accepted
    assert case_row(engine, case_id).confirmed_at is None
