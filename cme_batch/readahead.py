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
turns it off (to compare, or to rule it out when looking into a problem).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
#: How long the pipe's thread is waited for before the next file's reader is forked (see ``_alone``).
JOIN_SECONDS = 5.0
#: How often a taker waiting for a message looks whether the pipe has ended (only when the end
#: could not be put in the buffer, which was full).
_WAIT = 0.05


class ReadAheadFailed(CmeError):
    """The process reading the file ended without finishing it (killed, out of memory)."""


def wanted(batch: SourceBatch) -> bool:
    """Whether ``batch`` is worth reading in a second process here."""
    if os.environ.get("CME_READ_AHEAD", "1") == "0" or not hasattr(os, "fork"):
        return False
    if (os.cpu_count() or 1) < 2 or batch.path is None:
        return False
    try:
        return batch.path.stat().st_size >= MIN_BYTES
    except OSError:
        return False  # the reader reports the missing file with its name


@contextmanager
def read_ahead(batch: SourceBatch, force: bool = False, then: Callable[[], None] | None = None
               ) -> Iterator[SourceBatch]:
    """``batch`` with its records read by a child process (when ``wanted`` or ``force``).

    The maps in ``batch.shared`` are updated here once the child has finished. ``then`` is
    called (in this thread, while the records are being taken) as soon as the child has
    finished reading: the next file's reading can start while this one's last records are
    stored. Leaving the block stops a child that is still reading.
    """
    if not (force or wanted(batch)):
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
    batch.records = _received(batch, buffer, finished, then, pump)
    try:
        yield batch
    finally:  # also when the records were not all taken (a batch already imported, a failed store)
        stop.set()
        if child.is_alive():
            child.terminate()
        child.join()
        pump.join()  # the pipe is at its end now: the pump stops within its next wait
        receiver.close()


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
        chunk: list[Record] = []
        for rec in batch.records:
            chunk.append(rec)
            if len(chunk) >= CHUNK:
                sender.send_bytes(pickle.dumps(("records", packed(chunk)), pickle.HIGHEST_PROTOCOL))
                chunk = []
        end = ("end", packed(chunk), batch.warnings, batch.replaces, batch.cursor, [dict(m) for m in batch.shared])
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
    once: it never waits for room to say so. The next file's reader is forked only after this
    thread has ended, so a child is never forked while another thread of this process runs
    (one that might hold a lock the child would inherit, held for ever).
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


def _received(batch: SourceBatch, buffer: queue.Queue[bytes | None], finished: threading.Event,
              then: Callable[[], None] | None, pump: threading.Thread) -> Iterator[Record]:
    while True:
        if then is not None and finished.is_set() and not batch.shared:  # the next file's reading may begin
            start_next: Callable[[], None] = then  # (with shared maps: once they are brought back, below)
            then = None
            _alone(pump)
            start_next()
        raw = _take(buffer, finished)
        if raw is None:
            raise ReadAheadFailed(f"{batch.origin}: the process reading the file ended before the end of the "
                                  "file (killed or out of memory?); nothing imported")
        message = pickle.loads(raw)
        kind = message[0]
        if kind == "records":
            yield from unpacked(message[1])
        elif kind == "end":
            _kind, rest, warnings, replaces, cursor, maps = message
            batch.warnings[:] = warnings
            batch.replaces, batch.cursor = replaces, cursor
            for mine, theirs in zip(batch.shared, maps, strict=True):
                mine.update(theirs)
            if then is not None:
                _alone(pump)
                then()
            yield from unpacked(rest)
            return
        else:
            _kind, exc, where = message
            exc.add_note(f"raised while reading the file in a second process:\n{where}")
            raise exc


def _alone(pump: threading.Thread) -> None:
    """Wait for the thread emptying the pipe to end (the child has sent its last message and is
    closing the pipe), so that the next child is forked from this thread alone. A child that
    does not close its end within ``JOIN_SECONDS`` is not waited for any longer: the next
    file's reading then begins with the thread still there (a risk of a stuck child, not an error)."""
    pump.join(JOIN_SECONDS)
