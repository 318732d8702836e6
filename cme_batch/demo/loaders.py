"""How the demo school's records reach the store: directly, or through a stand-in for the school's Arbor.

A loader adds what it needs to the demo configuration, stores the first export, and later the
"newer export" that corrects a mark. ``files`` (the default) writes them as the SIMS
CommandReporter exports a school's scheduled task produces and lets the ``ingest`` stage import
them. ``direct`` writes the generated records as one batch of source ``demo``
(``store.ingest.apply_batch``). ``arbor`` serves them from the Arbor adapter's
local stand-in server (``adapters.arbor.fake_server.serve_demo``, over HTTPS on loopback) and
lets the ``ingest`` stage pull them, exactly as a school's nightly run would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

from cme_batch.app import App
from cme_batch.demo.generator import DemoSchool
from cme_batch.errors import BadInputError, CmeError
from cme_batch.model import MarksRecord, Record, SourceBatch
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

    def last_night(self, app: App, day: date) -> None: ...

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

    def last_night(self, app: App, day: date) -> None:
        pass

    def close(self) -> None:
        pass


class FilesLoader:
    """Write the school as SIMS CommandReporter exports into a drop folder; ``ingest`` imports them.

    The four reports a school's scheduled task writes (pupils with contacts and flags,
    admissions, leavers, session marks) go into ``drop/sims``; the configured ``sims`` source
    reads them exactly as on a school server, and archives each file it has stored. The newer
    export that corrects marks is a marks file holding only the corrected sessions; before the
    last night the "nightly" marks export of that day arrives, so the source is fresh.
    """

    nightly_stages: tuple[str, ...] = ("detect",)

    def __init__(self, school: DemoSchool, out: Path, echo: Echo) -> None:
        self.school, self.echo = school, echo
        self.drop = out / "drop" / "sims"

    def config_extra(self) -> str:
        return ('\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop/sims"\n'
                "max_age_hours = 0   # the demo's clock is in 2025: file ages mean nothing here\n")

    def _ingest(self, app: App, day: date, label: str) -> None:
        stage = run_nightly(app, day, only=("ingest",)).stages[0]
        if stage.outcome != "ok":
            raise CmeError(f"ingest of the SIMS export files ({label}) {stage.outcome}: {stage.detail}")
        self.echo(f"Imported the {label} from {self.drop}: {stage.detail}")

    def _pupils(self) -> dict[str, Any]:
        from cme_batch.model import PupilRecord

        return {r.pupil_key: r for r in self.school.records if isinstance(r, PupilRecord)}

    def first(self, app: App, day: date) -> None:
        from adapters.sims.writer import write_reports

        self.drop.mkdir(parents=True, exist_ok=True)
        write_reports(self.drop, self.school.records, stamp=f"{day - timedelta(days=1):%Y%m%d}T020000")
        self._ingest(app, day, "SIMS exports (pupils, admissions, leavers, marks)")

    def corrections(self, app: App, day: date) -> None:
        from adapters.sims.writer import write_marks

        marks = [r for r in self.school.corrections if isinstance(r, MarksRecord)]
        write_marks(self.drop / f"marks-{day - timedelta(days=1):%Y%m%d}T020000.xml", self._pupils(), marks)
        self._ingest(app, day, f"newer marks export correcting marks, before the night of {day}")

    def last_night(self, app: App, day: date) -> None:
        from adapters.sims.writer import write_marks

        marks = [MarksRecord(r.pupil_key, day, r.codes[2 * (day - r.start).days:2 * (day - r.start).days + 2])
                 for r in self.school.records if isinstance(r, MarksRecord) and r.start <= day
                 and 2 * (day - r.start).days + 1 < len(r.codes)]
        write_marks(self.drop / f"marks-{day:%Y%m%d}T180000.xml", self._pupils(), marks)
        self.echo(f"The SIMS server's scheduled task wrote the marks export of {day} into {self.drop}")

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

    def last_night(self, app: App, day: date) -> None:
        pass

    def close(self) -> None:
        self.server.close()


def check_source(source: str) -> None:
    """Refuse a ``--source`` the demo cannot use."""
    if source not in SOURCES:
        raise BadInputError(f"--source must be one of {', '.join(SOURCES)}")


def make_loader(source: str, school: DemoSchool, state_dir: Path, echo: Echo) -> Loader:
    """The loader for ``--source``; ``state_dir`` receives the Arbor stand-in's password and CA."""
    check_source(source)
    if source == "arbor":
        return ArborLoader(school, state_dir, echo)
    if source == "files":
        return FilesLoader(school, state_dir.parent, echo)
    return DirectLoader(school, echo)
