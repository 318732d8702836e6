"""A whole school through Arbor: the 420-pupil demo school with a term of marks, served by the
fake Arbor, pulled in full, then replayed night by night through ``detect``; the newer marks
that arrive mid-term come in by the changelog alone, and the cases found are the planted ones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.app import App
from cme_batch.demo.check import compare
from cme_batch.demo.generator import DemoSchool, generate
from cme_batch.demo.run import NightClock
from cme_batch.importer import ingest_sources
from cme_batch.model import FLAG_KINDS, ContactRecord, FlagRecord, MarksRecord, PupilRecord
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import (
    PASSWORD,
    _toml,
    arbor_app,
    settings_for,
    small_school_server,
    stored_cursor,
)
from tests.helpers import snapshot


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


def cases_by_demo_key(engine: Engine, demo: DemoSchool) -> list[dict[str, Any]]:
    """Every stored case, its pupil named by the demo's key (matched by UPN: Arbor has its own ids)."""
    keys = {r.upn: r.pupil_key for r in demo.records if isinstance(r, PupilRecord)}
    cols = [t.cases.c[n] for n in ("kind", "status", "stage", "episode_start", "school_days", "closed_reason",
                                   "referral_due", "register_gaps", "alerts")]
    with engine.connect() as conn:
        rows = conn.execute(select(t.pupils.c.upn, *cols).join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id))
        return [{"pupil_key": keys.get(r.upn, "?"), **{k: v for k, v in r._mapping.items() if k != "upn"}}
                for r in rows]


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

    result = compare(demo, cases_by_demo_key(engine, demo))
    assert result.ok, "\n".join(result.problems)
    assert result.found == len(demo.planted)


# -- incremental pulls on the small school, on both store backends -----------------------------------
@pytest.fixture
def small() -> Iterator[FakeArbor]:
    server = small_school_server()
    yield server
    server.close()


def contacts_of(engine: Engine, upn: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(t.contacts.c.forename, t.contacts.c.priority, t.contacts.c.phones)
            .join(t.pupils, t.pupils.c.id == t.contacts.c.pupil_id).where(t.pupils.c.upn == upn)
            .order_by(t.contacts.c.priority))]


def test_a_changed_phone_rereads_only_the_pupils_it_concerns(tmp_path: Path, store_url: str, engine: Engine,
                                                             small: FakeArbor) -> None:
    app = arbor_app(tmp_path, store_url, engine, small)
    assert ingest_sources(app)[0].status == "ok"
    # the mother of Amelia and Bertie changes her mobile number
    small.school.load([ContactRecord("p1", "mum", priority=1, title="Mrs", surname="Ashdown", forename="Alice",
                                     relationship="Mother", parental_responsibility=True, lives_with=True,
                                     phones=("07700 900999",), emails=("alice@example.org",))])
    small.seen.clear()
    (outcome,) = ingest_sources(app)
    assert outcome.status == "ok", outcome.detail
    reread = {str(i) for s in small.requests_for("Student") for i in s.args.get("id_in", [])}
    assert reread == {str(small.school.student("p1")), str(small.school.student("p2"))}
    assert contacts_of(engine, "B916299925002") == [("Alice", 1, ["07700 900999"])]
    assert contacts_of(engine, "A916299925001") == [("Alice", 1, ["07700 900999"]), ("Gwen", 2, ["01452 222222"])]
    assert not small.requests_for("AttendanceRollCallRecord"), "no mark changed, none fetched"


def test_a_deletion_makes_the_pull_full_and_says_so(tmp_path: Path, store_url: str, engine: Engine,
                                                    small: FakeArbor, capsys: pytest.CaptureFixture[str]) -> None:
    app = arbor_app(tmp_path, store_url, engine, small)
    assert ingest_sources(app)[0].status == "ok"
    small.school.delete("SenStatusAssignment", ("p3", "sen_support", date(2024, 1, 10)))
    small.seen.clear()
    capsys.readouterr()
    assert ingest_sources(app)[0].status == "ok"
    assert "doing a full pull instead" in capsys.readouterr().err
    assert next(s.args for s in small.requests_for("Student")).keys() == {"page_size", "page_num"}  # all of them
    with engine.connect() as conn:
        kinds = set(conn.execute(select(t.flags.c.kind)).scalars())
    assert "sen_support" not in kinds and "young_carer" in kinds  # the full pull replaced the flags


def test_a_run_stopped_half_way_changes_nothing_and_the_next_resumes(tmp_path: Path, store_url: str,
                                                                     engine: Engine, small: FakeArbor) -> None:
    app = arbor_app(tmp_path, store_url, engine, small)
    assert ingest_sources(app)[0].status == "ok"
    cursor = stored_cursor(engine)
    small.school.set_mark("p4", date(2025, 9, 23), "AM", "N")
    small.school.load([PupilRecord("p3", upn="C916299925003", legal_surname="Cole", legal_forename="Cara",
                                   dob=date(2016, 7, 8), sex="F", year_group="5")])
    before = snapshot(engine)
    # Arbor falls over once the changes have been found, while the changed pupil is being read
    small.fail("status", "query Student", status=503, times=None)
    (failed,) = ingest_sources(app)
    assert failed.status == "failed" and "503" in failed.detail
    assert snapshot(engine) == before and stored_cursor(engine) == cursor
    small.clear_faults()
    small.seen.clear()
    (resumed,) = ingest_sources(app)
    assert resumed.status == "ok", resumed.detail
    assert {s.query["from-revision"][0] for s in small.seen if s.path.endswith("/changelog")} == {cursor}
    with engine.connect() as conn:
        year = conn.execute(select(t.pupils.c.year_group).where(t.pupils.c.upn == "C916299925003")).scalar()
        strip = conn.execute(select(t.mark_strips.c.marks).join(t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id)
                             .where(t.pupils.c.upn == "D916299925004")).scalar_one()
    assert year == "5"
    assert strip[2 * (date(2025, 9, 23) - date(2025, 8, 1)).days] == "N"
    assert stored_cursor(engine) == str(small.school.revision)
