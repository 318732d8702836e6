"""The drop folder a file adapter reads: which files are ready, which are stale, where they go.

An MIS (SIMS on its own Windows server, or any MIS exporting CTFs) writes export files into a
folder this server can read. Each file is written under a temporary name and renamed when
complete, so files with temporary names are ignored. Files are grouped by the name before
their timestamp (``pupils-20251201T0200.xml`` is group ``pupils``). Where each export is a
complete picture (SIMS reports), only the newest file of a group is read and older ones are
archived unread, with a warning on the newest file's import naming them. Where each file may
hold different pupils (CTFs: one per incoming child, all of one school in a group), every
file is read, oldest first (``supersede=False``). A group whose newest file (read or not) is
missing or older than ``max_age_hours`` is an error after the ready files have been read:
silence from the MIS must never look like a quiet night.

The second half holds what both file readers need to judge an export's contents: problems
named by file, record and field (``FileReport``), the values MIS exports write (dates,
Yes/No, year groups), and the checks that only warn (``MarkCheck``: unknown codes, marks on
days the school is closed).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Self, TypeVar

from cme_batch import log
from cme_batch.codes import CODES_2024, LEGACY
from cme_batch.config import SourceConfig
from cme_batch.errors import BadInputError, RetriableError
from cme_batch.model import SourceBatch, Warning_
from cme_batch.readahead import ReadingHost, wanted_path
from cme_batch.settings import Table
from cme_batch.xmlstream import Prepared, XmlRefused, prepare

T = TypeVar("T")
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload", ".download")
_STAMP = re.compile(r"[-_ .]*\d[\d\-_T.:]*$")


class ExportMissing(RetriableError):
    """An expected export is missing or too old: the MIS side has stopped delivering."""


def group_of(name: str) -> str:
    """The report group of an export file name: the stem without its trailing timestamp."""
    stem = name[:-4] if name.lower().endswith(".xml") else name
    return (_STAMP.sub("", stem) or stem).lower()


def is_complete_name(name: str) -> bool:
    """True for a finished export: ``*.xml``, not hidden, not a temporary or lock file."""
    low = name.lower()
    return low.endswith(".xml") and not low.startswith((".", "~")) and not low.endswith(TEMP_SUFFIXES)


@dataclass(frozen=True)
class DropSettings:
    drop_dir: Path
    archive_dir: Path
    max_age_hours: int  # 0: never stale
    groups: tuple[str, ...]  # groups that must be present; () means "at least one file"


def parse_settings(t: Table, cfg: SourceConfig, default_groups: tuple[str, ...] = ()) -> DropSettings:
    """Read the drop-folder keys of a source table (problems go into ``t.problems``)."""
    drop = t.path("drop_dir", cfg.base_dir, required=True, )
    archive = t.path("archive_dir", cfg.base_dir)
    age = t.int("max_age_hours", 26, min=0, max=24 * 60)
    groups = t.str_list("reports") if t.has("reports") else default_groups
    drop = drop or Path(".")
    return DropSettings(drop, archive or drop / "archive", 26 if age is None else age,
                        tuple(g.lower() for g in groups))


class DropFolder:
    """``supersede``: whether the newest file of a name group replaces the older ones (each is a
    complete picture, as a SIMS report is). False for files that may each hold different pupils
    (CTFs of incoming children share a name group: ``<from LAESTAB>_CTF_<to LAESTAB>_<seq>``)."""

    def __init__(self, settings: DropSettings, source: str, supersede: bool = True) -> None:
        self.s, self.source, self.supersede = settings, source, supersede

    def _files(self, folder: Path) -> list[Path]:
        try:
            return [p for p in folder.iterdir() if p.is_file() and is_complete_name(p.name)]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ExportMissing(f"source {self.source}: cannot read folder {folder}: {exc.strerror}") from exc

    def ready(self, order: tuple[str, ...] = ()) -> tuple[list[Path], list[Path]]:
        """(files to read, newest per group; superseded older files to archive unread).

        Files to read come in ``order`` of their groups (unknown groups last), then by name.
        Without ``supersede``, every file is read, oldest first (a later file's picture of a
        pupil is laid over an earlier one's, as if each had been read on its own night).
        """
        if not self.s.drop_dir.is_dir():
            raise ExportMissing(f"source {self.source}: the drop folder {self.s.drop_dir} does not exist")
        found = sorted(self._files(self.s.drop_dir), key=_mtime_then_name)
        if not self.supersede:
            return found, []
        newest: dict[str, Path] = {}
        older: list[Path] = []
        for p in found:
            g = group_of(p.name)
            if g in newest:
                older.append(newest[g])
            newest[g] = p
        rank = {g: i for i, g in enumerate(order)}
        files = sorted(newest.values(), key=lambda p: (rank.get(group_of(p.name), len(rank)), p.name))
        return files, older

    def check_fresh(self, now: datetime) -> None:
        """Raise ExportMissing naming each expected group that is missing or too old."""
        if self.s.max_age_hours == 0:
            return
        latest: dict[str, float] = {}
        for p in self._files(self.s.drop_dir) + self._files(self.s.archive_dir) + self._files(self.refused_dir):
            g = group_of(p.name)
            latest[g] = max(latest.get(g, 0.0), p.stat().st_mtime)
        problems = []
        for g in self.s.groups:
            if g not in latest:
                problems.append(f"no '{g}' export has ever arrived in {self.s.drop_dir}")
            elif (age := _hours(now, latest[g])) > self.s.max_age_hours:
                problems.append(f"the newest '{g}' export is {age:.0f} hours old (limit {self.s.max_age_hours})")
        if not self.s.groups:
            if not latest:
                problems.append(f"no export has ever arrived in {self.s.drop_dir}")
            elif (age := _hours(now, max(latest.values()))) > self.s.max_age_hours:
                problems.append(f"the newest export is {age:.0f} hours old (limit {self.s.max_age_hours})")
        if problems:
            raise ExportMissing(f"source {self.source}: " + "; ".join(problems) +
                                ": check the MIS export task")

    def committed(self, batch: SourceBatch) -> None:
        """After the store committed a batch read from this folder: archive its file."""
        if batch.path is not None and batch.path.exists():
            self.archive(batch.path)

    @property
    def refused_dir(self) -> Path:
        """Where a refused file is set aside (``set_aside``): ``refused`` in the archive folder."""
        return self.s.archive_dir / "refused"

    def set_aside(self, path: Path) -> Path:
        """Move a file the store refused out of the way of the files after it (a folder whose files
        are each read, oldest first: a refused CTF stayed first in line every night, and the
        corrected export after it was never read). It waits in ``refused_dir`` until a person deletes
        it; the morning's summary names it until then (``set_aside_files``)."""
        return self.archive(path, self.refused_dir)

    def set_aside_files(self) -> list[str]:
        """The names of the refused files waiting in ``refused_dir``, oldest first."""
        return [p.name for p in sorted(self._files(self.refused_dir), key=_mtime_then_name)]

    def archive(self, path: Path, folder: Path | None = None) -> Path:
        """Move a processed file into the archive folder, or ``folder`` (never overwriting an earlier one).

        The archive folder usually lies in the drop folder, which the MIS server's share can
        change: one replaced by a link would have processed exports moved wherever it points
        (the state directory, another school's drop folder). The folder is opened without
        following a link, and the file is moved into what was opened.
        """
        what = "archive folder" if folder is None else "folder for refused files"
        folder = folder or self.s.archive_dir
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            why = "is a symbolic link" if exc.errno in (errno.ELOOP, errno.ENOTDIR) and folder.is_symlink() \
                else f"cannot be opened ({exc.strerror})"
            raise BadInputError(f"source {self.source}: the {what} {folder} {why}: nothing is moved into "
                                "it; make it a plain folder") from exc
        try:
            name, i = path.name, 1
            while _exists_in(dir_fd, name):
                name = f"{path.stem}.{i}{path.suffix}"
                i += 1
            try:
                os.replace(path, name, dst_dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                shutil.move(str(path), str(folder / name))  # an archive folder on another file system
        finally:
            os.close(dir_fd)
        return folder / name


    def purge_archive(self, before: datetime, dry_run: bool = False) -> int:
        """Remove archived files last changed before ``before``, except the newest of each name group
        (what ``check_fresh`` reads), and that only in a folder it checks: a folder it never checks
        (``max_age_hours = 0``) is one of incoming children's CTFs, whose file names give each
        sending school a group of its own, and the last CTF from every school a child ever came
        from was kept for good. Return how many (would) go.

        Archived exports are whole pupil records (names, dates of birth, addresses) already in the
        store. Only plain files directly in the archive folder are touched, never the drop folder's
        unread files, and nothing in an archive folder that is a link or is the drop folder itself.
        """
        folder = self.s.archive_dir
        try:
            if folder.resolve() == self.s.drop_dir.resolve():
                return 0
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return 0  # none yet, or a link: nothing of ours to remove
        try:
            files = []
            with os.scandir(dir_fd) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False) and is_complete_name(entry.name):
                        files.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
            newest: dict[str, tuple[float, str]] = {}
            for f in files:
                g = group_of(f[1])
                newest[g] = max(newest.get(g, f), f)
            keep = set() if self.s.max_age_hours == 0 else set(newest.values())
            old = [name for mtime, name in files if (mtime, name) not in keep and mtime < before.timestamp()]
            if not dry_run:
                for name in old:
                    os.unlink(name, dir_fd=dir_fd)
            return len(old)
        finally:
            os.close(dir_fd)


class AtomicText:
    """A text file written under ``NAME.tmp`` and renamed to ``NAME`` only when complete, as an
    MIS export task must write into a drop folder (the writers of test and demo files use it)."""

    def __init__(self, path: Path, encoding: str = "utf-8", newline: str | None = None) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        self.f: IO[str] = self.tmp.open("w", encoding=encoding, errors="xmlcharrefreplace", newline=newline)

    def write(self, text: str) -> None:
        self.f.write(text)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_exc: object) -> None:
        self.f.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _exists_in(dir_fd: int, name: str) -> bool:
    """Whether ``name`` is taken in the folder ``dir_fd`` (a link counts, whatever it points at)."""
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _mtime_then_name(p: Path) -> tuple[float, str]:
    return (p.stat().st_mtime, p.name)


def file_batches(folder: DropFolder, ctx: Any, read: Callable[..., SourceBatch], options: dict[str, Any],
                 order: tuple[str, ...] = ()) -> Iterator[SourceBatch]:
    """The batches of a file adapter's configured source: the files to read (``DropFolder.ready``)
    not yet imported (``read(path, options, prep=...)`` builds each), then the freshness check.

    Superseded and already-imported files go straight to the archive; superseded ones are named
    in a warning on the import of the file that superseded them, and in the log, so no file
    leaves the drop folder unread unseen. ``options`` is shared by the files of this run (a
    ``seen`` map lets the reader warn about one pupil in two files).

    The large files are read by one reading process (``readahead.ReadingHost``, as ``cme-batch
    import`` reads its files), each as soon as it has read the one before, while this process
    stores them: a local authority's ten day files took twice as long read one by one, each in a
    process forked at its turn. Close the generator (``contextlib.closing``) to stop that process
    when the batches are not all taken.
    """
    files, older = folder.ready(order)
    superseded = _superseded_by(files, older)
    for p in older:
        log.get().warning("export superseded, archived unread", source=folder.source, file=p.name,
                          superseded_by=superseded[p.name])
        folder.archive(p)
    unread = _names_by_newest(superseded)
    opts = {**(getattr(ctx, "options", None) or {}), **options, "seen": {}}
    if folder.supersede:  # each file the whole of a report: skipped when the same as its report's latest
        latest = ctx.state.latest_of_reports

        def stored(path: Path, checksum: str | None) -> bool:
            return checksum is not None and latest.get(group_of(path.name)) == checksum
    else:
        def stored(path: Path, checksum: str | None) -> bool:
            return checksum is not None and checksum in ctx.state.imported_checksums
    hosted = [i for i, path in enumerate(files) if wanted_path(path)]
    # The host keeps its ``seen`` map from one file to the next; it is brought back here only for a
    # file read here later (a small one), not with every file: a day file's map is 10,000 pupils.
    large = [(i, _Reader(read, any(j not in hosted for j in range(i + 1, len(files)))), files[i]) for i in hosted]
    with ExitStack() as run:
        host = run.enter_context(closing(ReadingHost(large, opts))) if large else None
        for i, path in enumerate(files):
            with ExitStack() as turn:
                try:
                    if host is not None and i in host.jobs:
                        batch = turn.enter_context(host.reading(i, path.name))  # left unread: the host stops it
                        if stored(path, batch.checksum):
                            folder.archive(path)
                            continue
                        batch.shared = (opts["seen"],) if batch.shared else ()
                    else:
                        prep = _prepared(path)
                        if prep is not None and stored(path, prep.checksum):
                            folder.archive(path)
                            continue
                        batch = read(path, opts, prep=prep)
                        batch.shared = (opts["seen"],)
                except BadInputError as exc:  # refused before its records: refused when they are taken
                    batch = SourceBatch(folder.source, path.name, records=_refusing(exc), path=path)
                if names := unread.get(path.name):
                    batch.warnings.append(Warning_(
                        "superseded_export", f"{len(names)} older export(s) of this report archived unread, as "
                        f"this newer one replaces them: {', '.join(names)}", path.name))
                yield batch
    folder.check_fresh(ctx.now)


def _refusing(exc: BadInputError) -> Iterator[Any]:
    """The records of a file refused as it was opened: the refusal, raised where the store takes
    them (in the file's transaction, as any refusal; a source whose files are each read sets the
    file aside there and goes on)."""
    raise exc
    yield  # (a generator)


def _prepared(path: Path) -> Prepared | None:
    """``prepare(path)``, or None for a file it refuses (the reader then says why, naming the file)."""
    try:
        return prepare(path)
    except XmlRefused:
        return None


class _Reader:
    """A file adapter's ``read`` as the reading host calls an adapter: ``parse_file(path, options)``;
    ``share``: the host's ``seen`` map comes back with the file's last records."""

    def __init__(self, read: Callable[..., SourceBatch], share: bool) -> None:
        self.read, self.share = read, share

    def parse_file(self, path: Path, options: dict[str, Any]) -> SourceBatch:
        batch = self.read(path, options, prep=_prepared(path))
        batch.shared = (options["seen"],) if self.share else ()
        return batch


def _superseded_by(files: list[Path], older: list[Path]) -> dict[str, str]:
    """The name of each superseded file -> the name of the newest file of its group."""
    newest = {group_of(p.name): p.name for p in files}
    return {p.name: newest[group_of(p.name)] for p in older}


def _names_by_newest(superseded: dict[str, str]) -> dict[str, list[str]]:
    """The newest file's name -> the names of the files it superseded, sorted."""
    out: dict[str, list[str]] = {}
    for old, new in sorted(superseded.items()):
        out.setdefault(new, []).append(old)
    return out


def _hours(now: datetime, mtime: float) -> float:
    return (now - datetime.fromtimestamp(mtime, UTC)).total_seconds() / 3600


# -- checking what an export file holds (shared by the file adapters) -----------------------------
#: Every national code, 2024 set and the set before it, plus '#' and '-' (SIMS: no mark recorded).
NATIONAL_CODES = frozenset(CODES_2024) | frozenset(LEGACY)
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class FileReport:
    """Problems and warnings found while reading one file, named by file, record and field.

    Problems make the whole file rejected (raised as ``ImportRejected`` once every record has
    been seen); warnings are kept with the import. ``personal`` fields never have their value
    repeated in a message.
    """

    LIMIT = 1000

    def __init__(self, file: str, personal: frozenset[str] = frozenset()) -> None:
        self.file, self.personal = file, personal
        self.problems: list[str] = []
        self.dropped = 0

    def problem(self, record: int | None, fld: str | None, wrong: str, value: str | None = None) -> None:
        if len(self.problems) >= self.LIMIT:
            self.dropped += 1
            return
        where = f"record {record}" if record is not None else "file"
        if fld:
            where += f", field {fld}"
        shown = "" if value is None else (" (value withheld: personal data)" if fld in self.personal
                                          else f": {value!r}")
        self.problems.append(f"{where}: {wrong}{shown}")

    def convert(self, record: int, fld: str, raw: str | None, parse: Callable[[str], T], wrong: str) -> T | None:
        """``parse(raw)``, or None (and a problem ``fld wrong``) when it raises ValueError."""
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError:
            self.problem(record, fld, wrong, raw)
            return None

    def all_problems(self) -> list[str]:
        extra = [f"... and {self.dropped} more problem(s) not listed"] if self.dropped else []
        return self.problems + extra


def parse_date(v: str) -> date:
    """ISO dates with or without a time (``2025-11-03T00:00:00``), or UK ``03/11/2025``."""
    s = v.strip()
    if len(s) >= 10 and s[4] == "-":
        day = date.fromisoformat(s[:10])
        if len(s) > 10:  # only a time may follow ("2025-11-03junk" or "2025-11-031" is no date)
            if s[10] not in "T ":
                raise ValueError(v)
            datetime.fromisoformat(s[:10] + "T" + s[11:])
        return day
    if len(s) == 10 and s[2] == "/" and s[5] == "/":
        return date(int(s[6:]), int(s[3:5]), int(s[:2]))
    raise ValueError(v)


def parse_bool(v: str) -> bool:
    s = v.strip().lower()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(v)


#: The highest contact priority or order read: a child has a handful of contacts, and a larger
#: number is a damaged value (the store could not hold one of 20 digits).
MAX_ORDER = 9999


def parse_order(v: str) -> int:
    """A contact's priority or order: digits 0-9 only, at most ``MAX_ORDER``. ``str.isdigit``
    alone is not enough: it accepts ``²`` and other digits ``int`` refuses or reads otherwise."""
    s = v.strip()
    if not (s.isascii() and s.isdigit()) or len(s) > len(str(MAX_ORDER)) or int(s) > MAX_ORDER:
        raise ValueError(v)
    return int(s)


def year_group(v: str) -> str:
    """Normalise a year group: ``Year  9`` -> ``9``, ``Reception`` -> ``R``, ``Nursery 1`` -> ``N1``."""
    s = " ".join(v.split())
    low = s.lower()
    if low.startswith("year "):
        return s[5:].strip()
    if low in ("reception", "rec", "yr r", "r"):
        return "R"
    if low.startswith("nursery"):
        return "N" + s[7:].strip()
    if low.startswith("y") and low[1:].isdigit():
        return s[1:]
    return s


class MarkCheck:
    """Maps MIS sub-codes to national codes and counts what deserves a warning: codes neither
    national nor configured, and real marks on days the school cannot be open (weekends, and
    closures or days outside the terms when a calendar is given)."""

    def __init__(self, codes: Any = None, calendar: Any = None) -> None:
        self.subcodes: dict[str, str] = dict(getattr(codes, "subcodes", {}) or {})
        self.known = NATIONAL_CODES | set(getattr(codes, "local", {}) or {})
        self.terms = sorted((t.start, t.end) for t in (getattr(calendar, "terms", ()) or ()))
        self.closures = sorted(set(getattr(calendar, "closures", ()) or ()))
        self.unknown: dict[str, list[int]] = {}
        self.outside = [0, 0]  # count, first record
        self._getters: dict[tuple[date, int], Callable[[str], Iterable[str]] | None] = {}
        self._closed_days: dict[date, bool] = {}
        self._masks: dict[tuple[date, int], int] = {}
        self._known_bytes = bytes(ord(c) for c in self.known if len(c) == 1 and c.isascii())

    def code(self, raw: str, record: int, count: int = 1) -> str:
        code = self.subcodes.get(raw, raw)
        if code not in self.known:
            seen = self.unknown.setdefault(code, [0, record])
            seen[0] += count
        return code

    def _out(self, n: int, record: int) -> None:
        if n:
            if not self.outside[0]:
                self.outside[1] = record
            self.outside[0] += n

    def closed(self, day: date) -> bool:
        """Whether the school cannot be open on ``day`` (each day worked out once: SIMS gives a
        row per session, a CTF a string per pupil over the same days)."""
        shut = self._closed_days.get(day)
        if shut is None:
            shut = self._closed_days[day] = day.weekday() >= 5 or day in self.closures or bool(
                self.terms and not any(a <= day <= b for a, b in self.terms))
        return shut

    def day(self, day: date, code: str, record: int) -> None:
        """One mark (SIMS rows)."""
        if code not in ("-", "#", "") and self.closed(day):
            self._out(1, record)

    def strip(self, start: date, marks: str, record: int) -> None:
        """A whole CTF marks string (two characters a day from ``start``), at C speed.

        An ASCII string (the usual case) is checked as bytes: the known one-character codes are
        deleted in one call (anything left is unknown), and the real marks on closed days are
        counted as the bits of (real-mark bytes AND a mask of the closed sessions).
        """
        data = marks.encode("ascii") if marks.isascii() else None
        if data is None or data.translate(None, self._known_bytes):
            for ch in set(marks):
                if ch not in self.known:
                    self.code(ch, record, marks.count(ch))
        if data is not None:
            mask = self._closed_mask(start, len(marks))
            if mask:
                self._out((int.from_bytes(data.translate(_REAL_BYTES), "big") & mask).bit_count(), record)
            return
        gather = self._closed_sessions(start, len(marks))
        if gather is not None:
            self._out(_real("".join(gather(marks))), record)

    def _closed_mask(self, start: date, sessions: int) -> int:
        """The closed sessions of a marks string from ``start`` as an integer with a 1 in the
        lowest bit of each closed session's byte (big-endian, as ``int.from_bytes`` reads it)."""
        key = (start, sessions)
        mask = self._masks.get(key)
        if mask is None:
            closed = set(self._closed_positions(start, sessions))
            mask = self._masks[key] = int.from_bytes(bytes(i in closed for i in range(sessions)), "big")
        return mask

    def _closed_positions(self, start: date, sessions: int) -> list[int]:
        days = min((sessions + 1) // 2, (date.max - start).days + 1)  # beyond: refused when stored
        return [i for d in range(days) if self.closed(start + timedelta(days=d))
                for i in (2 * d, 2 * d + 1) if i < sessions]

    def _closed_sessions(self, start: date, sessions: int) -> Callable[[str], Iterable[str]] | None:
        """A getter of the characters of a marks string from ``start`` that fall on days the
        school cannot be open (weekends, closures, outside every term); None when there are none."""
        key = (start, sessions)
        if key not in self._getters:
            closed = self._closed_positions(start, sessions)
            getter: Callable[[str], Iterable[str]] | None = None
            if len(closed) == 1:
                getter = itemgetter(slice(closed[0], closed[0] + 1))  # one index would give a bare item
            elif closed:
                getter = itemgetter(*closed)
            self._getters[key] = getter
        return self._getters[key]

    def warnings(self, file: str) -> list[Warning_]:
        out = [Warning_("unknown_code", f"attendance code {code!r} is neither national nor configured: "
                        f"{n} mark(s), kept and treated as neutral", f"{file} record {first}")
               for code, (n, first) in sorted(self.unknown.items())]
        if self.outside[0]:
            out.append(Warning_("mark_outside_calendar", f"{self.outside[0]} mark(s) fall on days the school "
                                "is not open (weekends, closures or outside term)",
                                f"{file} record {self.outside[1]}"))
        return out


#: Byte translation: 1 for a real mark, 0 for '#' (closed) and '-' (no mark).
_REAL_BYTES = bytes(0 if b in b"#-" else 1 for b in range(256))


def _real(s: str) -> int:
    """How many characters of a marks string are real marks (not '#' closed, not '-' no mark)."""
    return len(s) - s.count("#") - s.count("-")


