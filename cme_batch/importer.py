"""The ingest stage: files given by hand (``import``) and configured sources (``ingest``).

Formats are found through the adapters' entry points, never imported by name: a file's
root element picks the adapter whose ``root_elements`` name it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse
from sqlalchemy import select

from cme_batch import logfilter
from cme_batch.app import App
from cme_batch.config import SourceConfig
from cme_batch.errors import BadInputError, CmeError, ImportRejected, brief
from cme_batch.model import SourceBatch
from cme_batch.readahead import ReadingHost, read_ahead, wanted_path
from cme_batch.sources import SourceContext, SourceState, available_adapters, build_source, load_factory
from cme_batch.store import checkpoint
from cme_batch.store import ingest as store_ingest
from cme_batch.store import tables as t


@dataclass
class Outcome:
    source: str
    status: str  # ok, skipped, failed, nothing
    detail: str = ""


def root_element(path: Path) -> str:
    """The local name of a file's root element, refusing DTDs and entities before reading further."""
    try:
        with path.open("rb") as source:  # closed here: the parser's iterator, left half-way, would keep it open
            for _event, elem in iterparse(source, events=("start",), forbid_dtd=True):
                return str(elem.tag).rsplit("}", 1)[-1]
    except DefusedXmlException as exc:
        raise ImportRejected(str(path), [f"refused: the file declares a DTD or entities ({exc.__class__.__name__})"])
    except Exception as exc:
        raise ImportRejected(str(path), [f"not well-formed XML: {exc}"]) from exc
    raise ImportRejected(str(path), ["the file has no root element"])


def file_format(path: Path, fmt: str | None) -> Any:
    """The adapter class that reads this file (it implements ``FileFormat``)."""
    if fmt:
        return load_factory(fmt)
    root = root_element(path)
    for name in available_adapters():
        try:
            factory = load_factory(name)
        except BadInputError:  # a broken third-party adapter must not stop files it does not read
            continue
        if root in getattr(factory, "root_elements", ()):
            return factory
    raise ImportRejected(str(path), [f"unknown file format: root element <{root}>; use --format sims-xml or ctf"])


def import_file(app: App, path: Path, fmt: str | None, options: dict[str, object] | None = None
                ) -> store_ingest.IngestResult:
    """Import one file, all or nothing (see ``import_files``)."""
    (result,) = import_files(app, [path], fmt, options)
    return result


@dataclass
class _Opened:
    """A file whose reading has begun: its source name and batch, or why it cannot be read;
    ``reading`` ends its reading process (once the file is stored, or when the import stops)."""

    source: str
    reading: ExitStack
    batch: SourceBatch | None = None
    error: BadInputError | None = None


def import_files(app: App, paths: Sequence[Path], fmt: str | None, options: dict[str, object] | None = None
                 ) -> Iterator[store_ingest.IngestResult]:
    """Import files in order, each all or nothing in its own transaction; yields each result.

    A rejected file raises (``BadInputError``) after its rejection is recorded, and the files
    after it are not imported. The large files are read in a second process, one for all of them
    (``readahead.ReadingHost``), which reads each file as soon as it has read the one before,
    while this process stores them: neither waits for the other between files.
    """
    engine = app.engine()
    opts = {**shared_options(app), **(options or {})}
    opened: dict[int, _Opened] = {}
    formats: dict[int, Any] = {}  # a file's number -> the adapter class reading it
    host: list[ReadingHost] = []  # the process reading the large files, once started
    with ExitStack() as readers:
        readers.enter_context(_import_lock(app))

        def format_of(i: int) -> Any:
            if i not in formats:
                formats[i] = file_format(paths[i], fmt)
            return formats[i]

        def hosted(i: int) -> ReadingHost | None:
            """The reading host, if it reads file ``i``: started at the first large file's turn, with
            every large file from there on (a file no adapter reads is left to its turn's error)."""
            if not host:
                if not wanted_path(paths[i]):
                    return None
                jobs = []
                for j in range(i, len(paths)):
                    if wanted_path(paths[j]):
                        try:
                            jobs.append((j, format_of(j), paths[j]))
                        except (BadInputError, OSError):
                            continue  # left to its turn, which says what is wrong
                host.append(readers.enter_context(closing(ReadingHost(jobs, opts))))
            return host[0] if i in host[0].jobs else None

        def open_file(i: int) -> None:
            if i >= len(paths) or i in opened:
                return
            got = opened[i] = _Opened(fmt or "file", readers.enter_context(ExitStack()))
            try:
                factory = format_of(i)
                got.source = str(fmt or getattr(factory, "format_name", "file"))
                reader = hosted(i)
                if reader is not None:  # opened and read by the host
                    got.batch = got.reading.enter_context(reader.reading(i, paths[i].name))
                else:  # read here (a small file)
                    got.batch = factory.parse_file(paths[i], opts)
            except BadInputError as exc:  # raised when this file's turn comes, not while another is stored
                got.error = exc

        for i, path in enumerate(paths):
            open_file(i)
            got = opened.pop(i)
            log = app.log(stage="import", source=got.source)
            try:
                if got.error is not None:
                    raise got.error
                assert got.batch is not None
                now = app.now()
                result = store_ingest.apply_batch(engine, app.school_id, got.batch, now)
                logfilter.install(engine, pupil_ids=result.pupil_ids)  # the pupils just stored are guarded in the log
            except BadInputError as exc:
                store_ingest.record_source_failure(engine, got.source, path.name, app.now(), exc, status="rejected")
                log.warning("import rejected", file=path.name,
                            problems=len(exc.problems) if isinstance(exc, ImportRejected) else 1)
                raise
            finally:
                got.reading.close()  # this file's reading process is done with: not kept to the end of the run
            log.info("import done", file=path.name, status=result.status, counts=result.counts,
                     warnings=len(result.warnings))
            yield result


def shared_options(app: App) -> dict[str, Any]:
    """What every reader is told about the school: its local codes, its calendar, who it is."""
    cfg = app.config
    return {"codes": cfg.codes, "calendar": cfg.calendar, "school": cfg.school}


def source_state(app: App, name: str) -> SourceState:
    with app.engine().connect() as conn:
        row = conn.execute(select(t.source_state).where(t.source_state.c.source == name)).first()
        sums = conn.execute(select(t.ingest_runs.c.checksum).where(
            t.ingest_runs.c.source == name, t.ingest_runs.c.status == "ok",
            t.ingest_runs.c.checksum.is_not(None))).scalars().all()
        latest = store_ingest.latest_of_reports(conn, name)
    return SourceState(cursor=row.cursor if row else None, imported_checksums=frozenset(sums),
                       latest_of_reports=latest,
                       last_success_at=row.last_success_at if row else None)


def ingest_sources(app: App, only: Iterable[str] = ()) -> list[Outcome]:
    """Read each configured source; a failing source is recorded and the others still run."""
    wanted = set(only)
    unknown = wanted - {s.name for s in app.config.sources}
    if unknown:
        raise BadInputError(f"no configured source named {', '.join(sorted(unknown))}")
    with _import_lock(app):
        outcomes = [_ingest_one(app, scfg, wanted) for scfg in app.config.sources]
    return [o for o in outcomes if o is not None]


@contextmanager
def _import_lock(app: App) -> Iterator[None]:
    """The ``import`` lock, waited for: one import or ingest writes pupils at a time.

    Two at once (a file imported by hand while the night ingests) both looked the same new
    pupils up before either had stored them; on PostgreSQL the second then failed on the
    store's unique keys. The second now reads the store once the first has committed.

    Once the import is done, a SQLite store's write-ahead log is copied into the database file
    on a thread (its commits ran no checkpoint: ``store/checkpoint.py``), while what follows runs.
    """
    from cme_batch.runlock import STAGE_WAIT_SECONDS, run_lock

    try:
        with run_lock(app.engine(), app.state_dir, "import", wait=STAGE_WAIT_SECONDS):
            yield
    finally:
        checkpoint.in_background(app.engine())


def _ingest_one(app: App, scfg: SourceConfig, wanted: set[str]) -> Outcome | None:
    """One configured source's batches, each stored in its own transaction; None when not wanted."""
    if wanted and scfg.name not in wanted:
        return None
    log = app.log(stage="ingest", source=scfg.name)
    stored = 0
    try:
        source = build_source(scfg)
        ctx = SourceContext(now=app.now(), state=source_state(app, scfg.name), options=shared_options(app))
        batches = source.batches(ctx)
        refused: list[str] = []  # files set aside tonight, as the morning says them
        try:
            for batch in batches:
                now = app.now()
                try:
                    with read_ahead(batch):
                        result = store_ingest.apply_batch(app.engine(), app.school_id, batch, now)
                except BadInputError as exc:
                    said = _set_aside(app, scfg.name, source, batch, exc, now)
                    if said is None:
                        raise
                    refused.append(said)
                    continue
                source.committed(batch)
                logfilter.install(app.engine(), pupil_ids=result.pupil_ids)
                stored += result.status == "ok"
                log.info("batch stored", origin=batch.origin, status=result.status, counts=result.counts)
        except CmeError as exc:
            if refused:  # the files refused before it are said too
                raise CmeError("; ".join([*refused, str(exc)])) from exc
            raise
        finally:
            _close(batches)  # a drop folder's reading process stops here if a batch failed
        if refused:  # after the files stored since: the morning says what was refused tonight
            raise BadInputError("; ".join(refused))
        if not stored:  # read well with nothing new (a folder of incoming CTFs, empty most nights): read all the same
            with app.engine().begin() as conn:
                store_ingest.record_source_success(conn, scfg.name, app.now(), None)
        return Outcome(scfg.name, "ok", f"{stored} batch(es) stored")
    except CmeError as exc:
        store_ingest.record_source_failure(app.engine(), scfg.name, scfg.name, app.now(), exc)
        log.error("source failed", error=brief(str(exc)))
        return Outcome(scfg.name, "failed", str(exc))


def _set_aside(app: App, name: str, source: Any, batch: SourceBatch, exc: BadInputError, now: Any) -> str | None:
    """A file the store refused, of a source whose files are each read (a CTF drop folder), moved
    out of the way of the files after it (``set_aside``); what the morning says of it. None where
    it stays first in line and the source stops for the night: another source's file, or one
    refused as a whole for the first time (perhaps still being written)."""
    set_aside = getattr(source, "set_aside", None)
    if set_aside is None or batch.path is None or not batch.path.is_file():
        return None
    digest = _digest(batch.path)
    settled = _record_level(exc) or _refused_before(app, name, batch.origin, digest)
    store_ingest.record_source_failure(app.engine(), name, batch.origin, now, exc, checksum=digest, status="rejected")
    if not settled:
        return None
    moved = set_aside(batch)
    app.log(stage="ingest", source=name).error("file refused and set aside", file=batch.origin, moved_to=moved,
                                               error=brief(str(exc)))
    return f"{brief(str(exc))} (set aside in {Path(moved).parent}: the files after it were read)"


def _record_level(exc: BadInputError) -> bool:
    """Whether a refusal names records only (bad values), not the file itself (not well-formed,
    unreadable: perhaps a file the MIS is still writing under its final name)."""
    return isinstance(exc, ImportRejected) and bool(exc.problems) and all(
        p.startswith("record ") for p in exc.problems)


def _digest(path: Path) -> str:
    """The SHA-256 of a refused file's bytes, kept with its refusal."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refused_before(app: App, source: str, origin: str, digest: str) -> bool:
    """Whether the same file, byte for byte, was refused on an earlier night: a file refused as a
    whole (not well-formed) is set aside only then, for one the MIS was still writing is whole by
    the next night and read."""
    r = t.ingest_runs.c
    with app.engine().connect() as conn:
        return conn.execute(select(r.id).where(r.source == source, r.origin == origin, r.status == "rejected",
                                               r.checksum == digest).limit(1)).first() is not None


def _close(batches: Any) -> None:
    """Close a source's batches if they are a generator (its reading process, if any, ends)."""
    close = getattr(batches, "close", None)
    if close is not None:
        close()


def stale_sources(app: App) -> list[str]:
    """Configured sources with no successful ingest within ``thresholds.stale_hours`` (or never)."""
    limit = app.config.thresholds.stale_hours * 3600
    now = app.now()
    stale = []
    with app.engine().connect() as conn:
        seen = {r.source: r.last_success_at for r in conn.execute(select(t.source_state)).all()}
    for s in app.config.sources:
        last = seen.get(s.name)
        if last is not None and last.tzinfo is None:  # SQLite gives back naive UTC
            last = last.replace(tzinfo=UTC)
        if last is None or (now - last).total_seconds() > limit:
            stale.append(s.name)
    return stale
