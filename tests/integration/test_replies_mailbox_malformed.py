"""A broken message in the reply mailbox is kept for review and never stops the replies after it.

Replies arrive in a real Maildir and are read by the replies stage into a real store (SQLite and
PostgreSQL: PostgreSQL refuses a NUL character in text, SQLite does not).
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.replies import parse as p
from cme_batch.replies import pending_review, process
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW
from tests.replies_support import (
    DSL,
    case_row,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
)

REF = "CME-2025-0041"


@pytest.fixture
def app(reply_app: Callable[..., App]) -> App:
    return reply_app(FIXED_NOW)


def deliver_oldest_first(maildir: stdlib_mailbox.Maildir, *messages: bytes) -> None:
    """Deliver the messages so the stage reads them in this order (it reads new/ oldest first)."""
    for age, raw in zip(range(len(messages), 0, -1), messages, strict=True):
        key = maildir.add(raw)
        path = Path(maildir._path) / "new" / key
        os.utime(path, (path.stat().st_atime, path.stat().st_mtime - 60 * age))


def not_a_reply(from_: bytes, message_id: bytes) -> bytes:
    """A message that is no reply of the DSL's (a newsletter, a bounce), with the given headers."""
    return (b"From: " + from_ + b"\r\nTo: cme-bot@school.example\r\nSubject: Spring newsletter\r\n"
            b"Message-ID: " + message_id + b"\r\n\r\nOur spring newsletter.\r\n")


@pytest.mark.parametrize("broken", [
    not_a_reply(b"news@else.example", b"<broken\x00@else.example>"),
    not_a_reply(b"news@else.example", b"=?utf-8?b?AA==?="),  # an encoded word that decodes to NUL
    not_a_reply(b"<=?utf-8?b?ZHNsAEBzY2hvb2wuZXhhbXBsZQ==?=>", b"<n1@else.example>"),  # dsl<NUL>@school...
], ids=["raw-nul-message-id", "encoded-nul-message-id", "encoded-nul-sender"])
def test_a_message_with_a_nul_in_a_header_is_kept_and_the_next_reply_is_acted_on(
        broken: bytes, app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    case_id = make_case(engine, REF, FIXED_NOW)
    token = issue(engine, make_tokens(), case_id, DSL, FIXED_NOW)
    deliver_oldest_first(maildir, broken, dsl_reply(f"CONFIRM {REF}", token, REF))

    report = process.read_replies(app)

    assert report is not None and report.stored == 2
    assert dict(report.accepted) == {"CONFIRM": 1} and dict(report.review) == {process.UNKNOWN_SENDER: 1}
    assert case_row(engine, case_id).confirmed_by == DSL
    with engine.begin() as conn:
        [kept] = pending_review(conn)
        first = conn.execute(select(t.replies.c.raw).order_by(t.replies.c.id)).scalars().first()
    assert kept["reason"] == process.UNKNOWN_SENDER and first == broken  # stored exactly as received
    assert not list((Path(maildir._path) / "new").iterdir())  # both marked done

    again = process.read_replies(app)
    assert again is not None and again.stored == 0 and again.seen_before == 0


def test_a_huge_message_is_kept_unread_in_bounded_memory_and_the_next_reply_is_acted_on(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """Anyone can mail the reply mailbox. Parsing a message takes the email package some eight times
    its size: one of 100 MB took the night past its 1 GB memory cap, at the same message every night
    (never stored, so read again), so no referral, summary or email ever went again."""
    import base64
    import tracemalloc

    case_id = make_case(engine, REF, FIXED_NOW)
    token = issue(engine, make_tokens(), case_id, DSL, FIXED_NOW)
    big = (b"From: stranger@else.example\r\nSubject: holiday photos\r\nMessage-ID: <big@else.example>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
           b"Content-Type: text/plain\r\n\r\nPhotos attached.\r\n--B\r\nContent-Type: image/jpeg\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(os.urandom(9 << 20)) + b"--B--\r\n")
    deliver_oldest_first(maildir, big, dsl_reply(f"CONFIRM {REF}", token, REF))

    tracemalloc.start()
    try:
        report = process.read_replies(app)
        with engine.begin() as conn:
            kept = pending_review(conn)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert report is not None and report.stored == 2 and dict(report.accepted) == {"CONFIRM": 1}
    assert [(k["reason"], k["sender"], k["message_id"], k["subject"]) for k in kept] == [
        (p.TOO_LARGE, "stranger@else.example", "<big@else.example>", "holiday photos")]
    assert peak < 4 * len(big), f"{peak / len(big):.1f} times the message's size"
    with engine.connect() as conn:
        stored = conn.execute(select(t.replies.c.raw).where(t.replies.c.message_id == "<big@else.example>")).scalar()
    assert stored == big  # kept whole, for the audit trail
