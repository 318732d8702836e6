"""The maildrop folder may be shared (a mail server's pickup folder): nothing cme-batch writes
there may follow a link someone else planted, or a message would be written into their file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import Engine

from cme_batch.mail.maildrop import file_name
from cme_batch.mail.sender import send_run
from tests.mailservers import SENDER, queue, row


def test_a_link_planted_at_the_predictable_temporary_name_is_not_written_through(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    from tests.mailservers import mail_app

    a = mail_app(tmp_path, store_url, engine, f'[mail]\nfrom = "{SENDER}"\nmaildrop_dir = "pickup"\n')
    oid = queue(engine, "k1", to="dsl@school.example")
    pickup = tmp_path / "pickup"
    pickup.mkdir(mode=0o700)
    name = file_name(row(engine, oid).message_id)  # the Message-ID comes from the idempotency key
    trap = tmp_path / "someone-elses-file"
    trap.write_bytes(b"")
    os.chmod(trap, 0o666)
    os.symlink(trap, pickup / f".{name}.tmp")
    send_run(a)
    assert trap.read_bytes() == b"", "the message was written through the planted link"
    written = pickup / name
    assert not written.is_symlink() and written.read_bytes() and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert sorted(p.name for p in pickup.iterdir() if not p.name.startswith(".")) == [name]
