"""The ``maildrop`` transport: each message becomes one ``.eml`` file in a folder.

For the demo (open the files in a mail client) and for a local mail server's pickup folder.
The file name comes from the Message-ID, so sending a message again replaces its file instead
of adding a second one. Each file is written under a hidden temporary name and renamed into
place, so a pickup service never sees half a message; files are readable by the owner only.
With ``maildrop_envelope`` the envelope is written first as ``X-Sender:``/``X-Receiver:`` lines,
the convention of IIS and Exchange pickup folders, for recipients not named in the headers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from pathlib import Path

from cme_batch.errors import FatalError
from cme_batch.mail.settings import MailConfig
from cme_batch.mail.transport import Delivery, Outgoing, TemporarySendError


def file_name(message_id: str) -> str:
    """A safe, stable file name for a Message-ID."""
    return re.sub(r"[^A-Za-z0-9._@-]", "_", message_id.strip("<> ")) + ".eml"


class MaildropTransport:
    name = "maildrop"

    def __init__(self, cfg: MailConfig) -> None:
        if cfg.maildrop_dir is None:
            raise FatalError("mail.maildrop_dir is not set: the maildrop transport has nowhere to write")
        self.directory: Path = cfg.maildrop_dir
        self.envelope = cfg.maildrop_envelope

    def send(self, message: Outgoing) -> Delivery:
        target = self.directory / file_name(message.message_id)
        data = message.raw
        if self.envelope:
            lines = [f"X-Sender: {message.sender}"] + [f"X-Receiver: {r}" for r in message.recipients]
            data = "".join(f"{line}\r\n" for line in lines).encode("ascii") + data
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # a new file under an unpredictable name (O_EXCL, mode 0600): a pickup folder may be
            # writable by others, and a link planted at a name known in advance would be followed
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.directory)
            try:
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except PermissionError as exc:
            raise FatalError(f"maildrop: cannot write to {self.directory}: {exc.strerror}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EAGAIN):
                raise TemporarySendError(f"maildrop: cannot write {target.name}: {exc.strerror}") from exc
            raise FatalError(f"maildrop: cannot write to {self.directory}: {exc.strerror}") from exc
        return Delivery(f"written to {target}")
