"""A Maildir also read by a mail client or an IMAP server: replies it moved to cur/ are still read."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from cme_batch.app import App
from tests.conftest import FIXED_NOW
from tests.replies_support import (
    DSL,
    case_row,
    deliver_and_run,
    dsl_reply,
    issue,
    make_case,
    make_tokens,
)

REF = "CME-2025-0041"


def test_a_reply_a_mail_client_moved_to_cur_is_still_acted_on_once(
        tmp_path: Path, engine: Engine, maildir: stdlib_mailbox.Maildir, reply_app: Callable[..., App]) -> None:
    app = reply_app(FIXED_NOW + timedelta(hours=2))
    case_id = make_case(engine, REF, FIXED_NOW)
    key = maildir.add(dsl_reply(f"CONFIRM {REF}", issue(engine, make_tokens(), case_id, DSL, FIXED_NOW), REF))
    new = tmp_path / "replies" / "new" / key
    new.rename(tmp_path / "replies" / "cur" / f"{key}:2,")  # as Dovecot does when a client opens the folder
    report = deliver_and_run(app, maildir)
    assert dict(report.accepted) == {"CONFIRM": 1}
    assert case_row(engine, case_id).confirmed_at is not None
    assert [p.name for p in (tmp_path / "replies" / "cur").iterdir()] == [f"{key}:2,S"]  # read now
    again = deliver_and_run(app, maildir)
    assert again.stored == 0 and again.seen_before == 0


def test_a_message_another_replies_run_flags_first_is_not_an_error(
        tmp_path: Path, maildir: stdlib_mailbox.Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replies runs at once (the hourly one and the night's): one flags a message Seen between the
    other's listing it and renaming it. Before, the second run failed with FileNotFoundError."""
    from cme_batch.replies.mailbox import MaildirMailbox

    key = maildir.add(b"Subject: x\n\nhello\n")
    ours, theirs = MaildirMailbox(tmp_path / "replies"), MaildirMailbox(tmp_path / "replies")
    assert ours.waiting() == [key]
    real_rename = Path.rename

    def theirs_first(self: Path, target: Any) -> Any:  # the other run renames it a moment before us
        monkeypatch.setattr(Path, "rename", real_rename)
        theirs.done(key)
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", theirs_first)
    ours.done(key)  # must not raise
    assert [p.name for p in (tmp_path / "replies" / "cur").iterdir()] == [f"{key}:2,S"]
    assert ours.waiting() == []

    # listed, then moved before its date was read: left for the run that moved it
    late = maildir.add(b"Subject: y\n\nhello\n")
    real_stat = Path.stat

    def gone(self: Path, *a: Any, **kw: Any) -> Any:
        if self.name == late:
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_stat(self, *a, **kw)

    monkeypatch.setattr(Path, "stat", gone)
    assert ours.waiting() == []


def test_a_message_renamed_between_finding_and_opening_it_is_still_read(tmp_path: Path) -> None:
    """Two replies runs at once (the hourly one beside the night's): one flags a message Seen (new/
    to cur/) just as the other opens it by the name it had found. The second read it again under
    its new name; it used to fail ("cannot read message"), found by the full suite under load."""
    from cme_batch.replies.mailbox import MaildirMailbox

    folder = tmp_path / "md"
    md = stdlib_mailbox.Maildir(str(folder), create=True)
    key = md.add(b"Subject: CONFIRM CME-2025-0041\r\n\r\nCONFIRM\r\n")
    mb = MaildirMailbox(folder)
    assert mb.waiting() == [key]
    stale = f"new/{key}"
    (folder / "new" / key).rename(folder / "cur" / f"{key}:2,S")  # the other run flagged it
    real, calls = mb._md._lookup, []

    def found_before_the_rename(k: str) -> str:
        calls.append(k)
        return stale if len(calls) == 1 else real(k)

    mb._md._lookup = found_before_the_rename  # type: ignore[method-assign]
    assert b"CONFIRM CME-2025-0041" in mb.fetch(key) and len(calls) == 2
