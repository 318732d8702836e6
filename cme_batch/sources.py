"""The Source protocol that every MIS adapter implements, and how adapters are found.

An adapter is a class registered in the entry-point group ``cme_batch.sources`` under the
name that ``adapter = "..."`` uses in a ``[sources.NAME]`` table. The core never imports an
adapter module by name: it asks the entry points, so a third party can ship its own.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cme_batch.config import SourceConfig
from cme_batch.errors import BadInputError
from cme_batch.model import SourceBatch

GROUP = "cme_batch.sources"


@dataclass(frozen=True)
class SourceState:
    """What the store remembers about a source between runs."""

    cursor: str | None = None  # e.g. the last Arbor changelog revision stored
    imported_checksums: frozenset[str] = frozenset()
    last_success_at: datetime | None = None
    #: The checksum of the latest file stored of each report (a file name's group): a source whose
    #: files are each the whole of a report skips only a file the same as its report's latest.
    latest_of_reports: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceContext:
    """What a source is given for one run: the clock, what the store remembers, and shared options
    (``codes``: the configuration's CodesConfig; ``calendar``: its CalendarConfig; ``school``)."""

    now: datetime
    state: SourceState = field(default_factory=SourceState)
    options: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Source(Protocol):
    """A configured source of MIS data.

    ``batches`` yields one ``SourceBatch`` per unit that must be stored all or nothing (one
    export file, one API pull). Its ``records`` may be a generator: the store consumes it in
    one transaction, and an adapter that finds bad records raises ``ImportRejected`` once it
    has seen them all. After the store has committed a batch it calls ``committed(batch)`` (a
    file adapter then moves the file to its archive folder). ``check`` raises an error when
    the source is stale or missing (silence from the MIS must never look like a quiet night).
    """

    name: str

    def batches(self, ctx: SourceContext) -> Iterator[SourceBatch]: ...

    def committed(self, batch: SourceBatch) -> None: ...


class SourceFactory(Protocol):
    """What an entry point names: usually the adapter class itself."""

    def from_config(self, cfg: SourceConfig) -> Source: ...


class FileFormat(Protocol):
    """A file format that ``cme-batch import FILE`` can read (SIMS XML, CTF...)."""

    format_name: str
    root_elements: tuple[str, ...]

    def parse_file(self, path: Path, options: dict[str, object]) -> SourceBatch: ...


def available_adapters() -> dict[str, object]:
    """Every adapter registered under the entry-point group, by name (loaded lazily)."""
    return dict(_registered(tuple(sys.path)))


@functools.lru_cache(maxsize=4)
def _registered(path: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """The group's entry points as found on the import path ``path``: looked up once per process
    and path (reading every installed package's metadata takes a few milliseconds, and an import
    of ten files asked for its adapter ten times)."""
    return tuple((ep.name, ep) for ep in entry_points(group=GROUP))


def load_factory(adapter: str) -> SourceFactory:
    eps = available_adapters()
    ep = eps.get(adapter)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none installed"
        raise BadInputError(f"no source adapter named {adapter!r} (installed: {known})")
    try:
        factory = ep.load()  # type: ignore[attr-defined]
    except Exception as exc:  # an adapter package that fails to import is a broken install
        raise BadInputError(f"source adapter {adapter!r} failed to load: {exc.__class__.__name__}: {exc}") from exc
    return factory  # type: ignore[no-any-return]


def build_source(cfg: SourceConfig) -> Source:
    return load_factory(cfg.adapter).from_config(cfg)
