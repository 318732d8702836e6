"""``CtfSource``: the ``ctf`` adapter, for ``import`` and for a configured drop folder.

Configuration (``[sources.NAME]`` with ``adapter = "ctf"``)::

    drop_dir = "drop/ctf"         # where the MIS writes its CTF exports
    archive_dir = "drop/ctf/archive"   # optional; default: drop_dir/archive
    max_age_hours = 26            # the newest CTF must be younger than this (0: no check, e.g. for
                                  # a folder of incoming CTFs that arrive when pupils join)
    school = "916/2999"           # optional: LA/establishment whose enrolments and marks are kept
                                  # (default: each file's SourceSchool)
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from adapters.ctf.parser import read_file
from cme_batch.config import SourceConfig
from cme_batch.dropfolder import DropFolder, DropSettings, file_batches, parse_settings
from cme_batch.errors import ConfigError
from cme_batch.model import SourceBatch
from cme_batch.settings import Problems, Table
from cme_batch.sources import SourceContext


class _School:
    def __init__(self, la: str, estab: str) -> None:
        self.la_number, self.establishment_number = la, estab


class CtfSource:
    """DfE Common Transfer Files (root ``CTfile``), any recent version, with or without namespace."""

    format_name = "ctf"
    root_elements = ("CTfile",)

    def __init__(self, name: str, drop: DropSettings, school: _School | None) -> None:
        self.name = name
        # Every CTF is read: one may be the school's whole roll, another one incoming child, and
        # the DfE name (<from LAESTAB>_CTF_<to LAESTAB>_<seq>) puts every child from one school
        # in one name group; nothing in a file says it holds every pupil another file holds.
        self.drop = DropFolder(drop, name, supersede=False)
        self.school = school

    @classmethod
    def parse_file(cls, path: Path, options: dict[str, object]) -> SourceBatch:
        """Read one CTF given by hand (``cme-batch import``)."""
        return read_file(path, options, source=cls.format_name)

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> CtfSource:
        problems = Problems()
        t = Table(cfg.settings, f"sources.{cfg.name}", problems)
        drop = parse_settings(t, cfg)
        school_raw = t.str("school", pattern=r"\d{3}/\d{4}", right='LA/establishment, e.g. "916/2999"')
        t.unknown_keys()
        if problems.items:
            raise ConfigError(problems.items)
        school = _School(*school_raw.split("/")) if school_raw else None
        return cls(cfg.name, drop, school)

    def batches(self, ctx: SourceContext) -> Iterator[SourceBatch]:
        """One batch per CTF not yet imported, oldest first; then the age check."""
        options: dict[str, object] = {"school": self.school} if self.school else {}
        return file_batches(self.drop, ctx, partial(read_file, source=self.name), options)

    def committed(self, batch: SourceBatch) -> None:
        self.drop.committed(batch)

    def set_aside(self, batch: SourceBatch) -> str | None:
        """A CTF the store refused goes out of the way of the ones after it (which are each read):
        where it now waits, or None if there is no file to move."""
        if batch.path is None or not batch.path.exists():
            return None
        return str(self.drop.set_aside(batch.path))

    def set_aside_files(self) -> tuple[str, list[str]]:
        """Where refused CTFs wait, and their names, oldest first."""
        return str(self.drop.refused_dir), self.drop.set_aside_files()



