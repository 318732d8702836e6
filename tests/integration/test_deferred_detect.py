"""The night's ``detect`` when its ingest failed and no register of the evaluation date is stored:
the day is left to be evaluated, day by day, the first night the registers come in (as the days a
server was off are), so that a child absent while the exports failed, and back before they came in,
still has a case (``tests/integration/test_sources_review15.py``). The limits of that rule are here.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cme_batch import nightly
from cme_batch.app import App
from cme_batch.store import tables as t
from tests.integration.test_sources_review15 import (
    ABSENT,
    FRI,
    MON,
    NEXT_MON,
    SIMS,
    THU,
    TUE,
    WED,
    Clock,
    SimsExports,
    cases,
    mail,
    night,
    school_app,
    stage,
)
from tests.integration.test_sources_review15 import sims as sims  # noqa: F401 (the fixture)
from tests.integration.test_sources_review15 import store_url as store_url  # noqa: F401 (the fixture)
from tests.replies_support import KEY, KEY_ENV


def last_evaluated(engine: Engine) -> date | None:
    with engine.connect() as conn:
        return conn.execute(select(func.max(t.detect_runs.c.as_of))).scalar()


def test_a_monday_whose_export_is_old_but_holds_fridays_registers_is_evaluated(
        sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """The task exports on weekday evenings only: on Monday morning Friday's export is 58 hours old,
    past ``max_age_hours`` (26), and the ingest fails; but Friday's registers are stored, so Friday
    is evaluated that morning as any other day: a child absent on Friday is on Monday's lists."""
    app, clock, exports = sims
    for day in (TUE, WED, THU):
        exports.day(day)
    exports.export(THU)
    assert not night(app, clock, FRI).failed
    exports.day(FRI, absent=(ABSENT,))
    exports.export(FRI)
    report = night(app, clock, NEXT_MON)
    assert stage(report, "ingest")[0] == "failed", "58 hours: the export is older than allowed"
    assert not stage(report, "detect")[1].startswith(f"as of {FRI}: not evaluated"), stage(report, "detect")
    assert last_evaluated(engine) == FRI
    assert [(c.kind, c.episode_start, c.school_days) for c in cases(engine)] == [("unexplained_absence", FRI, 1)]


def test_days_without_registers_are_evaluated_anyway_once_the_catch_up_would_lose_them(
        sims: tuple[App, Clock, SimsExports], engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing arrives from Tuesday evening on. Wednesday's and Thursday's nights leave their day to
    be caught up; once waiting longer would put days beyond what the catch-up evaluates
    (``MAX_CATCH_UP_DAYS``, 3 here), the night evaluates the days missed, in turn, on what is stored:
    a source broken for good never stops the watching."""
    monkeypatch.setattr(nightly, "MAX_CATCH_UP_DAYS", 3)
    app, clock, _exports = sims
    for morning, as_of in ((WED, TUE), (THU, WED)):
        report = night(app, clock, morning)
        assert stage(report, "ingest")[0] == "failed"
        assert stage(report, "detect")[1].startswith(f"as of {as_of}: not evaluated"), stage(report, "detect")
    assert last_evaluated(engine) == date(2025, 11, 10)  # Monday, evaluated on Tuesday's night
    report = night(app, clock, FRI)
    assert "2 missed school day(s) evaluated first" in stage(report, "detect")[1], stage(report, "detect")
    assert last_evaluated(engine) == THU


def test_exports_with_no_register_of_the_day_fail_the_night_in_red_and_the_day_waits_for_them(
        sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """The exports arrive, but not one register of Tuesday is in them (the marks export stuck, or
    the registers not taken): the night fails with a red DATA NOT CURRENT banner saying so, not the
    grey note on missing registers, and Tuesday is left for the night its registers come in. They
    do on Wednesday evening, Amelia absent on Tuesday: Thursday's night evaluates Tuesday, then
    Wednesday, and her case opens from Tuesday."""
    app, clock, exports = sims
    exports.export(TUE)  # Monday's registers and nothing of Tuesday
    report = night(app, clock, WED)
    assert stage(report, "ingest")[0] == "failed" and "no register of Tue 11 Nov 2025" in stage(report, "ingest")[1]
    assert last_evaluated(engine) == date(2025, 11, 10)
    subject, body = mail(engine, "summary")
    assert "DATA NOT CURRENT" in subject and "no register of Tue 11 Nov 2025 is stored" in body, body
    exports.day(TUE, absent=(ABSENT,))
    exports.day(WED, absent=(ABSENT,))
    exports.export(WED)
    report = night(app, clock, THU)
    assert not report.failed, report.stages
    assert last_evaluated(engine) == WED
    assert [(c.kind, c.episode_start, c.school_days) for c in cases(engine)] == [("unexplained_absence", TUE, 2)]


def test_a_stores_first_night_is_evaluated_whatever_came_in(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A new school's first night, its MIS task not yet writing: with no run before it, nothing
    would ever catch its day up, so it is evaluated on what is stored (nothing), as before."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock = school_app(tmp_path, store_url, engine, SIMS)
    (tmp_path / "drop").mkdir()
    report = night(app, clock, TUE)
    assert stage(report, "ingest")[0] == "failed"
    assert last_evaluated(engine) == MON


def test_no_register_of_the_day_is_said_of_the_source_that_brings_registers(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A school with its SIMS reports and a folder of incoming children's CTFs (empty tonight, never
    a register): when no register of the day comes in, the banner names SIMS, not the CTF folder."""
    monkeypatch.setenv(KEY_ENV, KEY)
    incoming = '\n[sources.incoming]\nadapter = "ctf"\ndrop_dir = "incoming"\nmax_age_hours = 0\n'
    app, clock = school_app(tmp_path, store_url, engine, SIMS + incoming)
    (tmp_path / "incoming").mkdir()
    exports = SimsExports(tmp_path / "drop")
    exports.export(MON)
    assert not night(app, clock, TUE).failed
    exports.export(TUE)  # Monday's registers again, nothing of Tuesday
    report = night(app, clock, WED)
    assert stage(report, "ingest")[0] == "failed"
    (banner,) = [line for line in mail(engine, "summary")[1].splitlines() if "DATA NOT CURRENT:" in line]
    assert "source 'sims'" in banner and "no register of Tue 11 Nov 2025" in banner, banner
