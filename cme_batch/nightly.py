"""The nightly run: the only place that wires the stages together.

    ingest -> detect -> replies -> referrals -> summary -> send

Each stage is recorded in ``stage_runs`` (outcome and duration, for ``status``). A stage that
fails is reported and the others still run on the data there is (a failed ingest must not
stop the morning summary, which must say that the data is stale). The run holds the run lock
throughout, so two runs never overlap; a whole night started while the daytime pass holds it
waits for the pass (``_night_locks``). Nights that never ran (the server was off) are caught up
by the detect stage, which evaluates each missed school day in turn before the night's date;
the other stages run once, for the night's date.

Each stage imports what it uses when it runs, and this module imports the store only when a
run starts: ``cme-batch --help`` imports it for the stage names, and a stage with nothing to
do (no reply mailbox, no confirmed referral) should not pay for a mail client or a PDF writer.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from cme_batch.app import App
from cme_batch.errors import CmeError, brief


@dataclass
class StageResult:
    name: str
    outcome: str  # ok, failed, skipped
    detail: str = ""
    seconds: float = 0.0


@dataclass
class NightlyReport:
    as_of: date
    stages: list[StageResult] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(s.outcome == "failed" for s in self.stages)


class StageFailed(CmeError):
    """A stage ran but could not do all its work (e.g. a source is stale); the others still run."""


def _ingest(app: App, as_of: date) -> str:
    from cme_batch.detect import registers_taken
    from cme_batch.importer import ingest_sources, stale_sources

    outcomes = ingest_sources(app)
    failed = [o for o in outcomes if o.status == "failed"]
    stale = stale_sources(app)
    detail = "; ".join(f"{o.source}: {o.status} ({o.detail})" for o in outcomes) or "no sources configured"
    if failed or stale:
        parts = [f"{o.source} failed ({brief(o.detail)})" for o in failed] + [f"{s} stale" for s in stale if
                                                           s not in {o.source for o in failed}]
        raise StageFailed(", ".join(parts))
    if outcomes and not registers_taken(app, as_of):
        _no_registers(app, as_of, [o.source for o in outcomes])
    return detail


def _no_registers(app: App, as_of: date, sources: list[str]) -> None:
    """Every source read well, and not one register of the evaluation date is stored: say so as a
    failure of those sources (the morning's red banner, the night's exit status), not as the grey note
    on missing registers. A marks export the MIS's task drops unchanged night after night (a file the
    same as the last one stored is not read again) looked like a quiet night while the reports beside
    it changed."""
    from cme_batch.store.ingest import record_source_failure, registers_stored_at

    message = (f"no register of {as_of:%a %d %b %Y} is stored after reading the MIS: its export of the registers "
               "may have stopped (an export the same as the last one stored brings nothing new), or no register "
               "was taken that day")
    with app.engine().connect() as conn:
        # the sources that have brought registers (a CTF folder of incoming children may never have)
        bring = [name for name in sources if registers_stored_at(conn, name) is not None]
    for name in bring or sources:
        record_source_failure(app.engine(), name, name, app.now(), CmeError(message))
    raise StageFailed(message)


def _call(path: str) -> Callable[[App, date], Any]:
    module, fn = path.split(":")
    return getattr(importlib.import_module(module), fn)  # type: ignore[no-any-return]


#: The most missed school days one night catches up (the repeat-missing window's default): a
#: store restored from an old backup must not make one night evaluate a whole year, day by day.
MAX_CATCH_UP_DAYS = 60


def missed_school_days(app: App, as_of: date) -> list[date]:
    """The school days after the last detect run and before ``as_of``: the nights that never ran.

    Streaks are counted from the registers, so a streak still going is right whatever night
    evaluates it; but an episode that began and ended while the server was off (a child absent
    Monday to Wednesday, back on Thursday) would never open a case, reach the DSL's review or the
    LA return, unless each of those days is evaluated in turn.
    """
    from cme_batch.detect import last_run, registers_open_days
    from cme_batch.schoolcal import build

    with app.engine().connect() as conn:
        last = last_run(conn, app.school_id)
    if last is None or last >= as_of - timedelta(days=1):
        return []
    first, end = last + timedelta(days=1), as_of - timedelta(days=1)
    # the configuration's school days and the days the registers show open, as detect counts them
    return sorted({*build(app.config.calendar, first, end).days, *registers_open_days(app, first, end)})


def _detect(app: App, as_of: date) -> str:
    run_detect = _call("cme_batch.detect:run_detect")
    missed = missed_school_days(app, as_of)
    if len(missed) < MAX_CATCH_UP_DAYS - 1 and _registers_not_in(app, as_of):
        return (f"as of {as_of}: not evaluated: the night's ingest failed and no register of that day is "
                "stored; it is evaluated, day by day with any other day missed, the first night the registers "
                "come in")
    skipped = missed[:-MAX_CATCH_UP_DAYS]
    for day in missed[len(skipped):]:
        run_detect(app, day)
    text = str(run_detect(app, as_of))
    if missed:
        text += (f"; {len(missed) - len(skipped)} missed school day(s) evaluated first "
                 f"({missed[len(skipped)]}..{missed[-1]})")
    if skipped:
        text += f"; {len(skipped)} older missed school day(s) not evaluated ({skipped[0]}..{skipped[-1]})"
    return text


def _registers_not_in(app: App, as_of: date) -> bool:
    """Whether this night's ingest failed and not one register mark of ``as_of`` is stored.

    Evaluating such a day would spend it on no registers: a child absent that day (and back before
    the registers came in) would never have a case, where the days a server was off are each
    evaluated once it is on again (``missed_school_days``). So the day is left to be caught up,
    as one of those, by the first night whose registers come in. A night whose ingest failed with
    the day's registers stored (an export older than ``max_age_hours`` on a Monday) is evaluated
    as any other; so is one whose ingest ran well, with or without registers (the warnings of
    ``detect`` say which are missing); and after ``MAX_CATCH_UP_DAYS`` school days ``detect``
    evaluates whatever is stored, so that a source broken for good never stops the watching. So
    does a store's first night: with no run before it, no day is caught up from it.
    """
    from sqlalchemy import select

    from cme_batch.detect import last_run, registers_taken
    from cme_batch.store import tables as t

    with app.engine().connect() as conn:
        outcome = conn.execute(select(t.stage_runs.c.outcome).where(
            t.stage_runs.c.run_id == app.run_id, t.stage_runs.c.stage == "ingest")
            .order_by(t.stage_runs.c.id.desc()).limit(1)).scalar()
        first = last_run(conn, app.school_id) is None
    return outcome == "failed" and not first and not registers_taken(app, as_of)


def _replies(app: App, as_of: date) -> str:
    from cme_batch.replies.process import read_replies

    report = read_replies(app)
    if report is None:
        return "no reply mailbox configured"
    d = report.as_dict()
    by_cmd = ", ".join(f"{k} {v}" for k, v in sorted(d["accepted_by_command"].items()))
    return (f"{d['stored']} new repl(ies): {d['accepted']} accepted{f' ({by_cmd})' if by_cmd else ''}, "
            f"{d['review']} kept for review")


def _referrals(app: App, as_of: date) -> str:
    from cme_batch.dispatch import queue_confirmed_referrals

    return str(queue_confirmed_referrals(app, as_of))


def _summary(app: App, as_of: date) -> str:
    from cme_batch.morning.queue import queue_morning_mail

    return queue_morning_mail(app, as_of)


def _send(app: App, as_of: date) -> str:
    from cme_batch.mail.sender import send_stage

    return send_stage(app, as_of)


STAGES: list[tuple[str, Callable[[App, date], str]]] = [
    ("ingest", _ingest),
    ("detect", _detect),
    ("replies", _replies),
    ("referrals", _referrals),
    ("summary", _summary),
    ("send", _send),
]


def run_stage(app: App, name: str, fn: Callable[[App, date], str], as_of: date) -> StageResult:
    """Run one stage, record it in stage_runs, and turn its errors into an outcome."""
    from sqlalchemy import insert, update

    from cme_batch.store import tables as t

    engine = app.engine()
    log = app.log(stage=name)
    with engine.begin() as conn:
        row_id = conn.execute(insert(t.stage_runs).values(
            run_id=app.run_id, stage=name, started_at=app.now(), outcome="running")).inserted_primary_key[0]  # type: ignore[index]
    start = time.monotonic()
    if name == "ingest" and os.environ.get("CME_TEST_SLOW_STAGE_SECONDS"):  # test-only: hold the lock a while
        time.sleep(float(os.environ["CME_TEST_SLOW_STAGE_SECONDS"]))
    try:
        detail = fn(app, as_of)
        outcome = "ok"
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("cme_batch"):
            raise
        outcome, detail = "skipped", f"not available in this version ({exc.name})"
    except CmeError as exc:
        outcome, detail = "failed", str(exc).splitlines()[0]
    except Exception as exc:  # a bug in one stage must not stop the others
        outcome, detail = "failed", f"internal error {exc.__class__.__name__} (see the log)"
        log.exception("stage crashed")
    secs = time.monotonic() - start
    with engine.begin() as conn:
        conn.execute(update(t.stage_runs).where(t.stage_runs.c.id == row_id).values(
            finished_at=app.now(), outcome=outcome, detail=detail[:2000]))
    log.info("stage finished", outcome=outcome, seconds=round(secs, 3), detail=detail[:200])
    return StageResult(name, outcome, detail, secs)


def _after_ingest(app: App, as_of: date) -> date:
    """The default evaluation date again, once the ingest stage has read the night's registers.

    ``cme-batch nightly`` takes its default date before any stage runs: the registers of a day
    the configuration makes no school day but the school was open on (a moved INSET day) are read
    by this night's ingest, and only then can they make it the last school day. Never earlier
    than the date taken (nor, so, than a run already made for it).
    """
    later = app.default_as_of()
    if later <= as_of:
        return as_of
    app.log(stage="nightly").info("evaluation date moved by the registers read", as_of=later.isoformat(),
                                  taken=as_of.isoformat())
    return later


class NightBlocked(CmeError):
    """A whole night waited the longest it may for a daytime pass still holding the run lock, and did not run."""


@contextmanager
def _night_locks(app: App, *, whole: bool) -> Iterator[None]:
    """The ``run`` lock, which every ``nightly`` holds throughout; a daytime pass holds ``pass`` too.

    Two whole nights never overlap (the second is refused at once, ``LockHeld``), nor does a daytime
    pass (``--only``) with a night or another pass (refused at once). A whole night that finds the
    run lock held by a daytime pass still sending (the timer's catch-up at boot, or ``systemctl
    start`` by hand after a fix, during the school day) waits for it: refused, it would do nothing,
    and that morning's summary and digest would never be queued. If the pass still holds the lock
    after ``STAGE_WAIT_SECONDS``, the night fails (exit 1), so that the failure is reported, rather
    than saying "nothing done".
    """
    from cme_batch.errors import LockHeld
    from cme_batch.runlock import POLL_SECONDS, STAGE_WAIT_SECONDS, is_held, run_lock

    engine, state = app.engine(), app.state_dir
    if not whole:  # ``pass`` waits a moment: a night may be looking at it (``is_held``) just then
        with run_lock(engine, state), run_lock(engine, state, "pass", wait=5.0):
            yield
        return
    with ExitStack() as held:
        try:
            held.enter_context(run_lock(engine, state))
        except LockHeld:
            time.sleep(POLL_SECONDS)  # a pass takes ``run``, then ``pass``: let it take both
            if not is_held(engine, state, "pass"):
                raise  # another whole night: nothing to wait for
            try:
                held.enter_context(run_lock(engine, state, wait=STAGE_WAIT_SECONDS))
            except LockHeld as exc:
                raise NightBlocked(f"the night waited {STAGE_WAIT_SECONDS / 60:g} minutes for a daytime pass "
                                   f"and did not run ({exc}); run it again once the pass has ended") from exc
        yield


def run_nightly(app: App, as_of: date, only: tuple[str, ...] = (), defaulted: bool = False) -> NightlyReport:
    """Run every stage (or those named) under the run lock.

    ``defaulted``: ``as_of`` is the date ``app.default_as_of`` gave (the command line gave no
    ``--as-of``); it is then taken again after the ingest stage (``_after_ingest``), and the stages
    after it, and the report, use that date. A date given on the command line is kept as given."""
    from cme_batch import logfilter

    report = NightlyReport(as_of)
    with _night_locks(app, whole=not only):
        app.log(stage="nightly").info("nightly started", as_of=as_of.isoformat())
        for name, fn in STAGES:
            if only and name not in only:
                continue
            report.stages.append(run_stage(app, name, fn, as_of))
            if name == "ingest" and defaulted:
                as_of = report.as_of = _after_ingest(app, as_of)
        guard = logfilter.active()
        app.log(stage="nightly").info(
            "nightly finished", failed=[s.name for s in report.stages if s.outcome == "failed"],
            log_values_withheld=guard.withheld if guard else 0)
    return report
