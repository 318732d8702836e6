"""Reading an export file's records in a second process while this one stores them.

Reading a large export (parsing the XML, checking every field, building the records) costs
about as much as storing what it holds. On a machine with two cores or more, ``read_ahead``
forks a child that reads the batch's records and hands them over in pickled lists through a
pipe, while this process stores the lists it has already received: the two halves of an
import run at once.

Nothing about an import changes but its speed:

- the store is still written by this process only, in the one transaction of the batch;
- a file the child rejects raises the same ``ImportRejected`` here, while the transaction is
  still open, so nothing is stored;
- the warnings the reader collected, and the maps shared between the files of one run (a
  ``seen`` map of pupils), come back with the last list;
- at most ``BUFFERED`` lists wait to be stored (the child waits when they are there), so
  memory stays bounded however large the file;
- if this process dies, the child's next write to the pipe fails and it exits; if the child
  dies, this process raises and its transaction is rolled back.

Used for files of ``MIN_BYTES`` or more on systems with ``fork`` and two cores or more;
anything else is read in this process as before. ``CME_READ_AHEAD=0`` in the environment
turns it off (to compare, or to rule it out when looking into a problem). The large files of
one ``cme-batch import`` are all read by one such process (``ReadingHost``), in turn.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from cme_batch.errors import CmeError
from cme_batch.model import Record, SourceBatch, packed, unpacked
from cme_batch.store import checkpoint

#: Files smaller than this are read in this process (starting a child costs a few milliseconds).
MIN_BYTES = 4 << 20
#: Records per list sent through the pipe.
CHUNK = 1000
#: The size asked for the pipe (Linux allows up to 1 MB unless configured otherwise).
PIPE_BYTES = 1 << 20
#: Lists received and not yet stored, at most (some megabytes: the reader need not wait while a chunk of pupils is stored).
BUFFERED = 64
#: How often a taker waiting for a message looks whether the pipe has ended (only when the end
#: could not be put in the buffer, which was full).
_WAIT = 0.05


class ReadAheadFailed(CmeError):
    """The process reading the file ended without finishing it (killed, out of memory)."""


def wanted(batch: SourceBatch) -> bool:
    """Whether ``batch`` is worth reading in a second process here (and is not read in one already)."""
    return batch.path is not None and not batch.read_elsewhere and wanted_path(batch.path)


def wanted_path(path: Path) -> bool:
    """Whether the file at ``path`` is worth reading in a second process here."""
    if os.environ.get("CME_READ_AHEAD", "1") == "0" or not hasattr(os, "fork"):
        return False
    if (os.cpu_count() or 1) < 2:
        return False
    try:
        return path.stat().st_size >= MIN_BYTES
    except OSError:
        return False  # the reader reports the missing file with its name


@contextmanager
def read_ahead(batch: SourceBatch, force: bool = False) -> Iterator[SourceBatch]:
    """``batch`` with its records read by a child process (when ``wanted`` or ``force``).

    The maps in ``batch.shared`` are updated here once the child has finished. Leaving the
    block stops a child that is still reading. (The files of one ``import`` are read by one
    process, a ``ReadingHost``.)
    """
    if batch.read_elsewhere or not (force or wanted(batch)):
        yield batch
        return
    checkpoint.wait()  # no other thread of this process runs while the child is forked
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)
    _widen(receiver)
    child = ctx.Process(target=_read, args=(batch, sender, receiver), daemon=True, name="cme-batch reader")
    child.start()
    sender.close()
    buffer: queue.Queue[bytes | None] = queue.Queue(BUFFERED)
    finished, stop = threading.Event(), threading.Event()
    pump = threading.Thread(target=_pump, args=(receiver, buffer, finished, stop), name="cme-batch reader pipe",
                            daemon=True)
    pump.start()
    batch.records = _received(batch, buffer, finished)
    try:
        yield batch
    finally:  # also when the records were not all taken (a batch already imported, a failed store)
        stop.set()
        if child.is_alive():
            child.terminate()
        child.join()
        pump.join()  # the pipe is at its end now: the pump stops within its next wait
        receiver.close()


def packed_items(batch: SourceBatch) -> Iterator[Any]:
    """The batch's records as ``packed`` gives them: as its reader makes them so, when it can
    (``SourceBatch.packed_records``, for the records it was made with), else packed a thousand at a
    time."""
    if batch.packed_records is not None and batch.packed_records[0] is batch.records:
        yield from batch.packed_records[1]
        return
    chunk: list[Record] = []
    for rec in batch.records:
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            yield from packed(chunk)
            chunk = []
    yield from packed(chunk)


def _widen(receiver: Any) -> None:
    """Let the pipe hold 1 MB (Linux; 64 KB otherwise): the child then rarely waits while this
    process's storing keeps the thread that empties the pipe from running."""
    try:
        import fcntl  # not on Windows (where no child is forked anyway)

        fcntl.fcntl(receiver.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or more than this system allows: the default size works, a little slower


def _read(batch: SourceBatch, sender: Any, receiver: Any) -> None:
    """The child: read every record and send them on, then what the reader learnt."""
    receiver.close()  # else the pipe would stay open for reading after the storing process died
    try:
        chunk: list[Any] = []
        for item in packed_items(batch):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                sender.send_bytes(pickle.dumps(("records", chunk), pickle.HIGHEST_PROTOCOL))
                chunk = []
        end = ("end", chunk, batch.warnings, batch.replaces, batch.cursor, [dict(m) for m in batch.shared])
        sender.send_bytes(pickle.dumps(end, pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the storing process has gone: nothing to hand over
    except BaseException as exc:  # noqa: BLE001 - every failure is handed over, to be raised there
        try:
            sender.send_bytes(_failure(exc))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the storing process has gone too
    finally:
        sender.close()


def _failure(exc: BaseException) -> bytes:
    """The exception as a message; one that cannot cross (be pickled and rebuilt) becomes a
    plain error with its text."""
    where = "".join(traceback.format_exception(exc))
    try:
        message = pickle.dumps(("error", exc, where), pickle.HIGHEST_PROTOCOL)
        pickle.loads(message)
        return message
    except Exception:  # noqa: BLE001
        return pickle.dumps(("error", ReadAheadFailed(f"{exc.__class__.__name__}: {exc}"), where))


def _pump(receiver: Any, buffer: queue.Queue[bytes | None], finished: threading.Event, stop: threading.Event
          ) -> None:
    """A thread taking the child's messages off the pipe as they come, so the child keeps reading
    while this process stores a whole chunk of pupils. ``stop``: nobody takes them any more.

    Once the pipe has ended (the child finished, or died) it sets ``finished`` and returns at
    once: it never waits for room to say so. A reading's block waits for this thread when it is
    left, before any other reader is forked, so a child is never forked while another thread of
    this process runs (one that might hold a lock the child would inherit, held for ever).
    """
    try:
        while not stop.is_set():
            _hand_over(buffer, receiver.recv_bytes(), stop)
    except (EOFError, OSError):
        pass
    finally:
        finished.set()
        try:
            buffer.put_nowait(None)  # wakes a taker waiting now; when full, the taker finds the end by itself
        except queue.Full:
            pass


def _hand_over(buffer: queue.Queue[bytes | None], message: bytes, stop: threading.Event) -> None:
    """Put ``message`` in ``buffer``, waiting while it is full, unless nobody takes them any more."""
    while not stop.is_set():
        try:
            buffer.put(message, timeout=0.1)
            return
        except queue.Full:
            continue


def _take(buffer: queue.Queue[bytes | None], finished: threading.Event) -> bytes | None:
    """The next message; None once the pipe has ended and every message before its end is taken."""
    while True:
        try:
            return buffer.get(timeout=_WAIT)
        except queue.Empty:
            if finished.is_set() and buffer.empty():  # (messages are put before ``finished`` is set)
                return None


def _received(batch: SourceBatch, buffer: queue.Queue[bytes | None], finished: threading.Event) -> Iterator[Record]:
    def next_message() -> Any:
        raw = _take(buffer, finished)
        if raw is None:
            raise ReadAheadFailed(f"{batch.origin}: the process reading the file ended before the end of the "
                                  "file (killed or out of memory?); nothing imported")
        return pickle.loads(raw)

    return _taken(batch, next_message)


def _taken(batch: SourceBatch, next_message: Callable[[], Any], taken: threading.Event | None = None,
           opened_with: int | None = None) -> Iterator[Record]:
    """The records of ``batch`` from its reader's messages, then what the reader learnt (its
    warnings, ``replaces``, cursor and shared maps); ``taken`` is set once the last message is.

    ``opened_with``: the warnings the batch had when the reader opened it (a reading host's file);
    those this process added since (a superseded export, named by the drop folder) are kept, after
    them, as a reader given the batch would have kept them."""
    while True:
        message = next_message()
        if message[0] == "records":
            yield from unpacked(message[1])
            continue
        if taken is not None:
            taken.set()
        if message[0] != "end":
            _raise(message)
        _kind, rest, warnings, replaces, cursor, maps = message
        if opened_with is None:
            batch.warnings[:] = warnings
        else:
            batch.warnings[:] = [*warnings[:opened_with], *batch.warnings[opened_with:], *warnings[opened_with:]]
        batch.replaces, batch.cursor = replaces, cursor
        for mine, theirs in zip(batch.shared, maps, strict=True):
            mine.update(theirs)
        yield from unpacked(rest)
        return


# -- one reading process for the files of one import -------------------------------------------------
#: Bytes before each message of a reading host: the number of the file it is about (its place in
#: the import), so that messages of a file left unread are dropped without being unpickled.
_TAG = 4


class ReadingHost:
    """One child process reading, in turn, the large files of one ``import`` (``importer.import_files``).

    A child forked for each file started from a copy of this process as it was then, and built
    its reading (libxml2's tree of a day file, the records) in memory it had to fault in afresh:
    for a local authority's ten day files, the children spent about 0.3 s of CPU in the kernel,
    one process reading the same files 0.06 s, reusing its memory from one file to the next. The
    host is forked once, when the first large file's turn comes (this process is small then),
    and reads every file it is given back to back; this process takes each file's records in
    turn, as from ``read_ahead``, with the same guarantees:

    - the store is written by this process only, one transaction per file; a file the host
      cannot read raises the same error here, at that file's turn, while its transaction is open;
    - the host reads its own ``SourceBatch`` of each file (``parse_file``, as this process
      does): a file changed in between is refused (the checksums differ), nothing imported;
    - a file whose records are not all taken (already imported, or the import stopped) is
      cancelled: the host stops reading it, and what it had sent is dropped unread;
    - at most ``BUFFERED`` messages wait to be stored; if the host dies, the file being taken
      raises ``ReadAheadFailed`` and its transaction is rolled back.
    """

    def __init__(self, jobs: Sequence[tuple[int, Any, Path]], options: dict[str, Any]) -> None:
        """Start reading ``jobs`` (each a file's number, the adapter class reading it and its path), in order."""
        self.jobs = frozenset(i for i, _factory, _path in jobs)
        self._dropped: set[int] = set()
        checkpoint.wait()  # no other thread of this process runs while the child is forked
        ctx = multiprocessing.get_context("fork")
        self._receiver, sender = ctx.Pipe(duplex=False)
        orders, self._orders = ctx.Pipe(duplex=False)
        _widen(self._receiver)
        self._child = ctx.Process(target=_host, args=(list(jobs), options, sender, self._receiver, orders, self._orders),
                                  daemon=True, name="cme-batch reader")
        self._child.start()
        sender.close()
        orders.close()
        self._buffer: queue.Queue[bytes | None] = queue.Queue(BUFFERED)
        self._finished, self._stop = threading.Event(), threading.Event()
        self._pump = threading.Thread(target=_pump, args=(self._receiver, self._buffer, self._finished, self._stop),
                                      name="cme-batch reader pipe", daemon=True)
        self._pump.start()

    @contextmanager
    def reading(self, index: int, origin: str) -> Iterator[SourceBatch]:
        """File ``index`` (``origin``: its name), as the host opened it (``parse_file``), its records
        read there. A file the host could not open raises here what ``parse_file`` raised."""
        taken = threading.Event()
        try:
            message = self._message(index, origin)
            if message[0] != "begin":
                taken.set()
                _raise(message)
            batch = SourceBatch(**message[1], read_elsewhere=True)
            batch.records = _taken(batch, partial(self._message, index, batch.origin), taken, len(batch.warnings))
            yield batch
        finally:
            if not taken.is_set():
                self.cancel(index)

    def cancel(self, index: int) -> None:
        """Stop reading file ``index`` (if the host has not finished it) and drop what it sent of it."""
        self._dropped.add(index)
        try:
            self._orders.send(index)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the host has ended: nothing more will come of the file

    def close(self) -> None:
        self._stop.set()
        if self._child.is_alive():
            self._child.terminate()
        self._child.join()
        self._pump.join()
        self._receiver.close()
        self._orders.close()

    def _message(self, index: int, origin: str) -> Any:
        """The host's next message about file ``index``; those about files left unread are dropped."""
        while True:
            raw = _take(self._buffer, self._finished)
            if raw is None:
                raise ReadAheadFailed(f"{origin}: the process reading the file ended before the end of the "
                                      "file (killed or out of memory?); nothing imported")
            about = int.from_bytes(raw[:_TAG], "little")
            if about == index:
                return pickle.loads(raw[_TAG:])
            if about not in self._dropped:  # (the files' turns come in the host's order)
                raise ReadAheadFailed(f"{origin}: the process reading the files sent the records of another "
                                      "file; nothing imported")


def _raise(message: Any) -> None:
    """Raise the exception of an ``error`` message, with where it was raised."""
    _kind, exc, where = message
    exc.add_note(f"raised while reading the file in a second process:\n{where}")
    raise exc


def _host(jobs: list[tuple[int, Any, Path]], options: dict[str, Any], sender: Any, receiver: Any, orders: Any,
          their_orders: Any) -> None:
    """The reading host (a child): read each file in turn, sending its records, then what was learnt."""
    receiver.close()  # else the pipe would stay open for reading after the storing process died
    their_orders.close()
    cancelled: set[int] = set()

    def read_orders() -> None:
        try:
            while orders.poll():
                cancelled.add(orders.recv())
        except (EOFError, OSError):
            pass  # the storing process has stopped giving orders: it is ending

    try:
        for index, factory, path in jobs:
            read_orders()
            if index in cancelled:
                continue
            tag = index.to_bytes(_TAG, "little")
            try:
                batch = factory.parse_file(path, options)
                sender.send_bytes(tag + pickle.dumps(("begin", {
                    "source": batch.source, "origin": batch.origin, "checksum": batch.checksum,
                    "warnings": batch.warnings, "cursor": batch.cursor, "replaces": batch.replaces,
                    "marks_complete": batch.marks_complete, "path": batch.path, "whole_report": batch.whole_report,
                    "shared": tuple(dict(m) for m in batch.shared)}), pickle.HIGHEST_PROTOCOL))
                chunk: list[Any] = []
                for item in packed_items(batch):
                    chunk.append(item)
                    if len(chunk) >= CHUNK:
                        sender.send_bytes(tag + pickle.dumps(("records", chunk), pickle.HIGHEST_PROTOCOL))
                        chunk = []
                        read_orders()
                        if index in cancelled:
                            break
                else:
                    end = ("end", chunk, batch.warnings, batch.replaces, batch.cursor,
                           [dict(m) for m in batch.shared])
                    sender.send_bytes(tag + pickle.dumps(end, pickle.HIGHEST_PROTOCOL))
            except (BrokenPipeError, ConnectionResetError):
                return  # the storing process has gone: nothing to hand over
            except Exception as exc:  # noqa: BLE001 - handed over, to be raised at this file's turn
                sender.send_bytes(tag + _failure(exc))  # the next files are still read (this one may be skipped)
            except BaseException as exc:  # noqa: BLE001 - interrupted: said, then no more reading
                sender.send_bytes(tag + _failure(exc))
                return
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sender.close()
