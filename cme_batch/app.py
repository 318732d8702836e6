"""The application context shared by CLI commands: configuration, store, school, clock, logger.

Built lazily so ``--help`` works without a config file. Only the CLI and ``nightly`` build it.
Every command builds one, so this module imports nothing heavy itself: the configuration, the
logger and the store (SQLAlchemy) are imported when first used, and ``--help`` needs none.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cme_batch.config import Config


#: The school's time zone: the school is in England, whatever zone the server's clock is set to.
SCHOOL_TIME_ZONE = "Europe/London"


def utcnow() -> datetime:
    return datetime.now(UTC)


def in_school_time(moment: datetime) -> datetime:
    """A moment as the school's clocks show it (GMT or BST), whatever the server's zone."""
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(SCHOOL_TIME_ZONE))


#: Container allocations between the garbage collector's passes over the youngest objects.
#: Python's default (700) suits small programs. An import or ``detect`` allocates millions of
#: short-lived containers (parsed elements, records, rows) that reference counting frees at
#: once; with the default, the collector took a fifth of an LA import (1.4 s of 7.2 s for two
#: files, 20 passes over every object). Cycles are still collected, only later.
GC_THRESHOLD = 100_000


def collect_less_often() -> None:
    """Raise the collector's first threshold to ``GC_THRESHOLD`` (never lower it)."""
    first, *rest = gc.get_threshold()
    if first < GC_THRESHOLD:
        gc.set_threshold(GC_THRESHOLD, *rest)


def new_run_id() -> str:
    """The id that ties one run's log lines together (``log.bind_run``)."""
    return uuid.uuid4().hex[:12]


@dataclass
class App:
    config_path: str | None
    clock: Callable[[], datetime] = utcnow
    _config: Config | None = None
    _engine: Engine | None = None
    _school_id: int | None = None
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self) -> None:
        collect_less_often()  # every command's process does its work through an App

    @property
    def config(self) -> Config:
        if self._config is None:
            from cme_batch import config as config_mod
            from cme_batch import log

            self._config = config_mod.load(self.config_path)
            log.configure(self._config.logging.level, self._config.logging.format)
            log.bind_run(self.run_id)
        return self._config

    def engine(self, *, for_init: bool = False) -> Engine:
        if self._engine is None:
            from cme_batch import logfilter
            from cme_batch.store import open_store, require_current, require_one_school

            secret = self.config.database_password
            eng = open_store(self.config.database_url, create=for_init,
                             password=secret.reveal() if secret is not None else None)
            school = self.config.school
            try:  # before the log filter reads every pupil's identity: another school's too
                require_one_school(eng, school.la_number, school.establishment_number)
                if not for_init:
                    require_current(eng)
            except Exception:
                eng.dispose()
                raise
            if not for_init:
                logfilter.install(eng)
            self._engine = eng
        return self._engine

    def close(self) -> None:
        """Close the store's connections (a SQLite store folds its write-ahead log back into the file)."""
        if self._engine is not None:
            from cme_batch.store import checkpoint

            checkpoint.wait()  # (an import's write-ahead log being copied into the file)
            self._engine.dispose()

    def init_store(self) -> list[str]:
        from cme_batch import logfilter
        from cme_batch.store import migrate

        eng = self.engine(for_init=True)
        applied = migrate(eng)
        logfilter.install(eng)  # the same process may go on to import and detect (the demo does)
        self._school_id = None
        return applied

    @property
    def school_id(self) -> int:
        if self._school_id is None:
            from cme_batch.store import ingest, lock_schools, refuse_other_schools

            s = self.config.school
            with self.engine().begin() as conn:
                lock_schools(conn)
                school_id = ingest.ensure_school(conn, s.la_number, s.establishment_number, s.name)
                # again in the transaction that may record the school: another configuration may have
                # recorded its own school since this process opened the store (one store, one school)
                refuse_other_schools(conn, s.la_number, s.establishment_number)
            self._school_id = school_id
        return self._school_id

    def now(self) -> datetime:
        return self.clock()

    def default_as_of(self) -> date:
        """The last school day before today: the last day whose registers are complete.

        On a Monday that is the Friday before; after a half term, the last day before it. Without
        a calendar that says otherwise, yesterday. "Today" is the school's date in England, not
        the server's: on a server kept in UTC, a run at 00:30 BST is still the evening before in
        UTC, and would otherwise skip the day that has just ended.

        School days are the configuration's and, as ``detect`` counts them, the weekdays it makes
        none on which the registers show the school open (a moved INSET day: the morning after it
        evaluates it, or its absences wait a day and a one-day absence gets no first-day call).
        The registers are read only when such a weekday lies after the configuration's last school
        day (``detect.registers_open_days``). A day the registers show closed does not move the date
        back: evaluating it changes nothing, and an earlier date than the last run's is refused.
        """
        from cme_batch.schoolcal import build

        yesterday = in_school_time(self.now()).date() - timedelta(days=1)
        days = build(self.config.calendar, yesterday - timedelta(days=60), yesterday).days
        found = days[-1] if days else yesterday
        if found < yesterday:
            from cme_batch.detect import registers_open_days

            opened = registers_open_days(self, found + timedelta(days=1), yesterday)
            found = opened[-1] if opened else found
        return found

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def log(self, **kw: Any) -> Any:
        from cme_batch import log

        return log.get("cme_batch").bind(**kw)
