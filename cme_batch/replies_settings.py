"""The [replies] section: the mailbox the DSL's replies arrive in (filled in by the replies work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cme_batch.settings import Table


@dataclass(frozen=True)
class RepliesConfig:
    mailbox: str = "none"


def parse_replies(t: Table, base: Path) -> RepliesConfig:
    return RepliesConfig(mailbox=t.str("mailbox", "none", choices=("none", "imap", "maildir", "graph")) or "none")
