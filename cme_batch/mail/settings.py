"""The [mail] section: how mail leaves the school (filled in by the outbox work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cme_batch.settings import Table


@dataclass(frozen=True)
class MailConfig:
    transport: str = "maildrop"
    from_address: str | None = None
    maildrop_dir: Path | None = None


def parse_mail(t: Table, base: Path) -> MailConfig:
    cfg = MailConfig(
        transport=t.str("transport", "maildrop", choices=("maildrop", "smtp", "graph")) or "maildrop",
        from_address=t.email("from"),
        maildrop_dir=t.path("maildrop_dir", base),
    )
    return cfg
