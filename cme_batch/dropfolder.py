"""The drop folder a file adapter reads: which files are ready, which are stale, where they go.

An MIS (SIMS on its own Windows server, or any MIS exporting CTFs) writes export files into a
folder this server can read. Each file is written under a temporary name and renamed when
complete, so files with temporary names are ignored. Files are grouped by the name before
their timestamp (``pupils-20251201T0200.xml`` is group ``pupils``): in each group only the
newest file is read, and older ones are archived unread, because each export is a complete
picture. A group whose newest file (read or not) is missing or older than ``max_age_hours``
is an error after the ready files have been read: silence from the MIS must never look like
a quiet night.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cme_batch.config import SourceConfig
from cme_batch.errors import RetriableError
from cme_batch.model import SourceBatch
from cme_batch.settings import Table
from cme_batch.xmlstream import Prepared, XmlRefused, prepare

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
    def __init__(self, settings: DropSettings, source: str) -> None:
        self.s, self.source = settings, source

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
        """
        if not self.s.drop_dir.is_dir():
            raise ExportMissing(f"source {self.source}: the drop folder {self.s.drop_dir} does not exist")
        newest: dict[str, Path] = {}
        older: list[Path] = []
        for p in sorted(self._files(self.s.drop_dir), key=_mtime_then_name):
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
        for p in self._files(self.s.drop_dir) + self._files(self.s.archive_dir):
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

    def archive(self, path: Path) -> Path:
        """Move a processed file into the archive folder (never overwriting an earlier one)."""
        self.s.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target = self.s.archive_dir / path.name
        i = 1
        while target.exists():
            target = self.s.archive_dir / f"{path.stem}.{i}{path.suffix}"
            i += 1
        try:
            os.replace(path, target)
        except OSError:
            shutil.move(str(path), str(target))
        return target


def _mtime_then_name(p: Path) -> tuple[float, str]:
    return (p.stat().st_mtime, p.name)


def file_batches(folder: DropFolder, ctx: Any, read: Callable[..., SourceBatch], options: dict[str, Any],
                 order: tuple[str, ...] = ()) -> Iterator[SourceBatch]:
    """The batches of a file adapter's configured source: the newest file of each group not yet
    imported (``read(path, options, prep=...)`` builds each), then the freshness check.

    Superseded and already-imported files go straight to the archive. ``options`` is shared
    by the files of this run (a ``seen`` map lets the reader warn about one pupil in two files).
    """
    files, older = folder.ready(order)
    for p in older:
        folder.archive(p)
    opts = {**(getattr(ctx, "options", None) or {}), **options, "seen": {}}
    for path in files:
        try:
            prep: Prepared | None = prepare(path)
        except XmlRefused:
            prep = None  # the reader reports the refusal with the file's name
        if prep is not None and prep.checksum in ctx.state.imported_checksums:
            folder.archive(path)
            continue
        yield read(path, opts, prep=prep)
    folder.check_fresh(ctx.now)


def _hours(now: datetime, mtime: float) -> float:
    return (now - datetime.fromtimestamp(mtime, UTC)).total_seconds() / 3600
