"""``SimsXmlSource``: the ``sims-xml`` adapter, for ``import`` and for a configured drop folder.

Configuration (``[sources.NAME]`` with ``adapter = "sims-xml"``)::

    drop_dir = "drop/sims"        # where the SIMS server's scheduled task writes its files
    archive_dir = "drop/sims/archive"   # optional; default: drop_dir/archive
    max_age_hours = 26            # the newest export of each report must be younger (0: no check)
    reports = ["pupils", "admissions", "leavers", "marks"]   # the reports expected every night
    fields = { legal_surname = "Surname (Legal)" }   # canonical key = the school's display name
    flag_fields = { "Domestic Abuse" = "domestic_abuse" }  # extra Yes/No fields raising a flag
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

from adapters.sims.fields import FIELDS, KINDS, FieldMap
from adapters.sims.parser import read_file
from cme_batch.config import SourceConfig
from cme_batch.dropfolder import DropFolder, DropSettings, file_batches, parse_settings
from cme_batch.errors import ConfigError
from cme_batch.model import FLAG_KINDS, SourceBatch
from cme_batch.settings import Problems, Table
from cme_batch.sources import SourceContext


class SimsXmlSource:
    """SIMS CommandReporter XML exports (root ``SuperStarReport``, one ``Record`` per row)."""

    format_name = "sims-xml"
    root_elements = ("SuperStarReport",)

    def __init__(self, name: str, drop: DropSettings, fields: dict[str, str], flag_fields: dict[str, str]) -> None:
        self.name = name
        self.drop = DropFolder(drop, name)
        self.fields_map = FieldMap(fields, flag_fields)

    @classmethod
    def parse_file(cls, path: Path, options: dict[str, object]) -> SourceBatch:
        """Read one export file given by hand (``cme-batch import``)."""
        return read_file(path, options, source=cls.format_name)

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> SimsXmlSource:
        problems = Problems()
        t = Table(cfg.settings, f"sources.{cfg.name}", problems)
        drop = parse_settings(t, cfg, KINDS)
        for g in drop.groups:
            if g not in KINDS:
                problems.add(t.key("reports"), f"names {g!r}", "report names from " + ", ".join(KINDS))
        fields = t.str_map("fields")
        for k in fields:
            if k not in FIELDS:
                problems.add(f"{t.key('fields')}.{k}", "is not a field cme-batch reads",
                             "a key from adapters/sims/README.md, e.g. legal_surname")
        flag_fields = t.str_map("flag_fields")
        for n, kind in flag_fields.items():
            if kind not in FLAG_KINDS:
                problems.add(f"{t.key('flag_fields')}.{n}", f"is {kind!r}", "one of " + ", ".join(sorted(FLAG_KINDS)))
        t.unknown_keys()
        if problems.items:
            raise ConfigError(problems.items)
        return cls(cfg.name, drop, fields, flag_fields)

    def batches(self, ctx: SourceContext) -> Iterator[SourceBatch]:
        """One batch per newest report file not yet imported; then complain about silence."""
        return file_batches(self.drop, ctx, partial(read_file, source=self.name),
                            {"fields_map": self.fields_map}, KINDS)

    def committed(self, batch: SourceBatch) -> None:
        self.drop.committed(batch)
