"""How the demo school's records reach the store: directly, or through a stand-in for the school's Arbor.

A loader adds what it needs to the demo configuration, stores the first export, and later the
"newer export" that corrects a mark. ``direct`` writes the generated records as one batch of
source ``demo`` (``store.ingest.apply_batch``). ``arbor`` serves them from the Arbor adapter's
local stand-in server (``adapters.arbor.fake_server.serve_demo``, over HTTPS on loopback) and
lets the ``ingest`` stage pull them, exactly as a school's nightly run would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, Protocol

from cme_batch.app import App
from cme_batch.demo.generator import DemoSchool
from cme_batch.errors import BadInputError, CmeError
from cme_batch.model import Record, SourceBatch
from cme_batch.nightly import run_nightly
from cme_batch.store import ingest

Echo = Callable[[str], None]
SOURCES = ("direct", "files", "arbor")


class Loader(Protocol):
    #: The stages run on each replayed night: a live source is pulled every night, as at a school.
    nightly_stages: tuple[str, ...]

    def config_extra(self) -> str: ...

    def first(self, app: App, day: date) -> None: ...

    def corrections(self, app: App, day: date) -> None: ...

    def close(self) -> None: ...


class DirectLoader:
    """Store the generated records as they are, as source ``demo``."""

    source = "demo"
    nightly_stages: tuple[str, ...] = ("detect",)

    def __init__(self, school: DemoSchool, echo: Echo) -> None:
        self.school, self.echo = school, echo

    def config_extra(self) -> str:
        return ""

    def _store(self, app: App, records: list[Record], label: str, complete: bool) -> None:
        batch = SourceBatch(source=self.source, origin=f"demo generator, {label}", records=records,
                            replaces=frozenset({"contacts", "flags", "enrolments"}) if complete else frozenset())
        result = ingest.apply_batch(app.engine(), app.school_id, batch, app.now())
        counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
        self.echo(f"Loaded the {label} (source {self.source}): {counts}")

    def first(self, app: App, day: date) -> None:
        self._store(app, self.school.records, "first export", complete=True)

    def corrections(self, app: App, day: date) -> None:
        self._store(app, self.school.corrections, f"newer export correcting marks, before the night of {day}",
                    complete=False)

    def close(self) -> None:
        pass


class ArborLoader:
    """Serve the records from the Arbor stand-in; the nightly ``ingest`` stage pulls them.

    The first pull reads the whole year (the adapter reads to 31 July, so marks entered ahead
    arrive too); the corrected marks arrive by an incremental pull before their night, and the
    last night pulls again. Pulling on every replayed night as well would only make it slower.
    """

    nightly_stages: tuple[str, ...] = ("detect",)

    def __init__(self, school: DemoSchool, secrets_dir: Path, echo: Echo) -> None:
        from adapters.arbor.fake_server import serve_demo  # the demo's stand-in for a school's Arbor

        self.school, self.echo = school, echo
        self.server: Any
        self.server, self.table = serve_demo(school.records, secrets_dir)

    def config_extra(self) -> str:
        return self.table

    def _pull(self, app: App, day: date, label: str) -> None:
        stage = run_nightly(app, day, only=("ingest",)).stages[0]
        if stage.outcome != "ok":
            raise CmeError(f"ingest from the Arbor stand-in ({label}) {stage.outcome}: {stage.detail}")
        self.echo(f"Pulled the {label} from the Arbor stand-in: {stage.detail}")

    def first(self, app: App, day: date) -> None:
        self._pull(app, day, "school")

    def corrections(self, app: App, day: date) -> None:
        self.server.school.load(self.school.corrections)
        self._pull(app, day, f"corrected marks, before the night of {day}")

    def close(self) -> None:
        self.server.close()


def check_source(source: str) -> None:
    """Refuse a ``--source`` the demo cannot use (``files`` until the export writers are wired in)."""
    if source == "files":
        raise BadInputError("--source files is not available yet: the demo does not write SIMS/CTF export "
                            "files until the export writers are wired in; use --source direct")
    if source not in SOURCES:
        raise BadInputError(f"--source must be one of {', '.join(SOURCES)}")


def make_loader(source: str, school: DemoSchool, state_dir: Path, echo: Echo) -> Loader:
    """The loader for ``--source``; ``state_dir`` receives the Arbor stand-in's password and CA."""
    check_source(source)
    if source == "arbor":
        return ArborLoader(school, state_dir, echo)
    return DirectLoader(school, echo)
