"""A whole school through Arbor: the 420-pupil demo school with a term of marks, served by the
fake Arbor, pulled in full, then replayed night by night through ``detect``; the newer marks
that arrive mid-term come in by the changelog alone, and the cases found are the planted ones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.app import App
from cme_batch.demo.check import compare, stored_cases
from cme_batch.demo.generator import DemoSchool, generate
from cme_batch.demo.run import NightClock
from cme_batch.importer import ingest_sources
from cme_batch.model import FLAG_KINDS, FlagRecord, MarksRecord, PupilRecord
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import PASSWORD, _toml, settings_for, stored_cursor


@pytest.fixture(scope="module")
def demo() -> DemoSchool:
    return generate(2025)


@pytest.fixture
def arbor(demo: DemoSchool) -> Iterator[FakeArbor]:
    school = FakeSchool()
    school.load(demo.records)
    server = FakeArbor(school, password=PASSWORD).start()
    yield server
    server.close()


def demo_app(tmp_path: Path, store_url: str, engine: Engine, server: FakeArbor, demo: DemoSchool,
             clock: NightClock) -> App:
    settings = settings_for(server, tmp_path, page_size=1000, academic_year_start=None)
    table = "\n".join(f"{k} = {_toml(v)}" for k, v in settings.items())
    path = tmp_path / "cme-batch.toml"
    path.write_text(demo.config_toml("state", "mail") + f'\n[database]\nurl = "{store_url}"\n\n'
                    f'[sources.arbor]\nadapter = "arbor"\n{table}\n', encoding="utf-8")
    app = App(str(path), clock=clock)
    app._engine = engine
    return app


def _cells(records: list[Any]) -> dict[tuple[str, Any, int], str]:
    out = {}
    for r in records:
        if isinstance(r, MarksRecord):
            for i, code in enumerate(r.codes):
                if code:
                    out[(r.pupil_key, r.start + timedelta(days=i // 2), i % 2)] = code
    return out


def corrections_that_differ(demo: DemoSchool) -> int:
    before = _cells(demo.records)
    return sum(1 for k, code in _cells(demo.corrections).items() if before.get(k, code) != code)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_full_pull_then_changes_only_then_detect_finds_the_planted_cases(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor, demo: DemoSchool) -> None:
    from cme_batch.detect import run_detect

    clock = NightClock(demo.as_of)
    app = demo_app(tmp_path, store_url, engine, arbor, demo, clock)

    # night one: a full pull of the whole term
    (first,) = ingest_sources(app)
    assert first.status == "ok", first.detail
    pupils = sum(isinstance(r, PupilRecord) for r in demo.records)
    assert count(engine, t.pupils) == pupils == 420
    readable = {f for f in demo.records if isinstance(f, FlagRecord) and f.kind in FLAG_KINDS}
    assert count(engine, t.flags) == len({(f.pupil_key, f.kind, f.start) for f in readable})
    full_requests = len(arbor.seen)
    cursor = stored_cursor(engine)
    assert cursor == str(arbor.school.revision)

    # replay the term's nights; the newer marks arrive in Arbor before their night
    days = [d for d in demo.school_days if d < demo.as_of]
    for day in days:
        if day == demo.corrections_on:
            arbor.school.load(demo.corrections)
            changed = {c[2] for c in arbor.school.changelog("AttendanceRollCallRecord", int(cursor or 0))}
            assert changed, "the corrections changed nothing in Arbor"
            arbor.seen.clear()
            clock.set(day - timedelta(days=1))
            (second,) = ingest_sources(app)
            assert second.status == "ok", second.detail
            fetched = [s for s in arbor.seen if s.entity == "AttendanceRollCallRecord"]
            assert fetched and all(set(s.args) == {"id_in", "page_size", "page_num"} for s in fetched)
            assert {str(i) for s in fetched for i in s.args["id_in"]} == {str(i) for i in changed}
            assert not [s for s in arbor.seen if s.entity == "Student"], "no pupil changed, none re-read"
            assert len(arbor.seen) < full_requests
            assert stored_cursor(engine) == str(arbor.school.revision) != cursor
            assert count(engine, t.mark_changes) == corrections_that_differ(demo) > 0
        clock.set(day)
        run_detect(app, day)
    clock.set(demo.as_of)
    run_detect(app, demo.as_of)

    # the cases, with Arbor's student ids turned back into the demo's pupil keys
    keys = arbor.school.key_map()
    cases = [{**c, "pupil_key": keys[c["pupil_key"]]} for c in stored_cases(engine, "arbor")]
    result = compare(demo, cases)
    assert result.ok, "\n".join(result.problems)
    assert result.found == len(demo.planted)
