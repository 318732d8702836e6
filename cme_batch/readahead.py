"""Reading a large export file in a second process while this one stores it.

Reading an export (parsing XML, building records) and storing it (the writer's SQL) each take
about half of an import, and each is plain Python, so one process keeps one core busy. For a
large file, ``read_ahead`` forks a reader process that walks the batch's records and sends them
over a pipe in chunks, while this process stores them: the two halves overlap on two cores.

Nothing about the import changes. The records arrive in the same order, inside the same one
transaction; a file the reader rejects raises the same ``ImportRejected`` here (so nothing is
stored); warnings, ``replaces`` and the cursor the reader sets on the batch, and the ``shared``
map the readers of one run keep (one pupil in two files), come back with the last chunk. The
pipe holds only a few chunks, so memory stays flat whatever the file's size. If this process
stops reading (an error while storing, a signal), the reader is ended; if the reader dies, the
import fails with a clear error and stores nothing.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Iterable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from cme_batch.errors import CmeError
from cme_batch.model import Record, SourceBatch

#: Files smaller than this are read in this process: a fork would cost more than it saves.
MIN_BYTES = 2 << 20
#: Records sent at a time.
CHUNK = 1000
#: Set to "0" to read every file in this process (e.g. to profile the reader).
ENV = "CME_READ_AHEAD"


def worth_it(batch: SourceBatch) -> bool:
    if os.environ.get(ENV, "1") == "0" or "fork" not in multiprocessing.get_all_start_methods():
        return False
    try:
        return batch.path is not None and batch.path.stat().st_size >= MIN_BYTES
    except OSError:
        return False


def read_ahead(batch: SourceBatch, shared: dict[Any, Any] | None = None) -> SourceBatch:
    """The same batch, its records read by a forked process when the file is large enough."""
    if worth_it(batch):
        batch.records = _records(batch.records, batch, shared)
    return batch


def _reader(records: Iterable[Record], batch: SourceBatch, shared: dict[Any, Any] | None, out: Connection) -> None:
    """The forked process: send the records in chunks, then what the reading left on the batch."""
    try:
        chunk: list[Record] = []
        for rec in records:
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                out.send(("records", chunk))
                chunk = []
        out.send(("records", chunk))
        out.send(("end", batch.warnings, batch.replaces, batch.cursor, shared))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the storing process
        try:
            pickle.dumps(exc)
            out.send(("error", exc))
        except Exception:  # an exception that cannot cross the pipe: its type and text do
            out.send(("error", CmeError(f"reading {batch.origin} failed: {type(exc).__name__}: {exc}")))
    finally:
        out.close()


def _records(records: Iterable[Record], batch: SourceBatch, shared: dict[Any, Any] | None) -> Iterator[Record]:
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_reader, args=(records, batch, shared, send), name=f"cme-batch reader {batch.origin}",
                        daemon=True)
    child.start()
    send.close()
    try:
        while True:
            try:
                message = receive.recv()
            except EOFError:
                child.join()
                raise CmeError(f"reading {batch.origin} failed: the reader process ended unexpectedly "
                               f"(exit code {child.exitcode}); nothing was imported") from None
            kind = message[0]
            if kind == "records":
                yield from message[1]
            elif kind == "end":
                _, warnings, replaces, cursor, theirs = message
                batch.warnings[:] = warnings
                batch.replaces, batch.cursor = replaces, cursor
                if shared is not None and theirs is not None:
                    shared.update(theirs)
                return
            else:
                raise message[1]
    finally:
        receive.close()
        if child.is_alive():
            child.terminate()
        child.join()
