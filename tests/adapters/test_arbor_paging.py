"""An Arbor that serves fewer rows a page than asked (its maximum page size is UNCONFIRMED):
every row still arrives, once, and the stored revision moves only when all of them are stored."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.client import ArborClient, ClientSettings
from adapters.arbor.fake_server import FakeArbor
from cme_batch.errors import FatalError
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import ingest_once, stored_cursor
from tests.helpers import snapshot

ROLL_CALL_RECORD = "AttendanceRollCallRecord"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """Paging happens before the store is touched, so one backend is enough here."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"



def uncapped_store(tmp_path: Path, server: FakeArbor, page_size: int) -> dict[str, list[tuple[Any, ...]]]:
    """What a server honouring every page size gives, stored in a store of its own."""
    work = tmp_path / "uncapped"
    work.mkdir()
    url = f"sqlite:///{work / 'store.sqlite'}"
    engine = open_store(url)
    try:
        migrate(engine)
        assert ingest_once(work, url, engine, server, page_size=page_size).status == "ok"
        return snapshot(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(("page_size", "cap", "offsets"), [
    (50, 20, "capped"),  # pages counted in the server's own size
    (50, 20, "asked"),  # pages counted in the size asked: the rows between would be skipped
    (3, 2, "capped"),  # many pages of every listing
])
def test_a_server_serving_fewer_rows_a_page_loses_nothing(tmp_path: Path, store_url: str, engine: Engine,
                                                          arbor: FakeArbor, page_size: int, cap: int,
                                                          offsets: str, capsys: pytest.CaptureFixture[str]) -> None:
    expected = uncapped_store(tmp_path, arbor, page_size)
    arbor.max_page_size, arbor.cap_offsets = cap, offsets
    arbor.seen.clear()
    outcome = ingest_once(tmp_path, store_url, engine, arbor, page_size=page_size)
    assert outcome.status == "ok", outcome.detail
    assert snapshot(engine) == expected  # every pupil, contact, flag and mark, none twice
    assert stored_cursor(engine) == str(arbor.school.revision)
    assert any(s.args.get("page_size") == cap for s in arbor.requests_for(ROLL_CALL_RECORD))
    assert "serves fewer rows a page than page_size" in capsys.readouterr().err


def test_changes_beyond_a_capped_page_are_all_read(tmp_path: Path, store_url: str, engine: Engine,
                                                   arbor: FakeArbor) -> None:
    assert ingest_once(tmp_path, store_url, engine, arbor).status == "ok"  # page_size 3
    days = [date(2025, 9, 2), date(2025, 9, 3), date(2025, 9, 4), date(2025, 9, 5), date(2025, 9, 8)]
    for day in days:  # five changed marks: three changelog pages of the server's two
        arbor.school.set_mark("p4", day, "PM", "G")
    arbor.max_page_size = 2
    outcome = ingest_once(tmp_path, store_url, engine, arbor)
    assert outcome.status == "ok", outcome.detail
    assert stored_cursor(engine) == str(arbor.school.revision)
    with engine.connect() as conn:
        strip = conn.execute(select(t.mark_strips.c.marks).join(t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id)
                             .where(t.pupils.c.upn == "D916299925004")).scalar_one()
    assert strip.count("G") == len(days)


def fetch_from(pages: dict[int, list[int]], asked: list[tuple[int, int]]) -> Any:
    def fetch(number: int, size: int) -> list[int]:
        asked.append((number, size))
        return pages.get(number, [])
    return fetch


def client(page_size: int) -> ArborClient:
    return ArborClient(ClientSettings("https://127.0.0.1:9", "app", page_size=page_size), "unused")


def test_a_short_page_is_read_past_at_the_size_served() -> None:
    asked: list[tuple[int, int]] = []
    rows = list(client(5)._pages("Thing", fetch_from({0: [1, 2, 3], 1: [4, 5, 6], 2: [7]}, asked), first=0))
    assert rows == [1, 2, 3, 4, 5, 6, 7]
    assert asked == [(0, 5), (1, 3), (2, 3), (3, 3)]  # ends only at an empty page


def test_a_page_size_that_changes_part_way_is_an_error() -> None:
    pages = {1: [1, 2, 3], 2: [4, 5], 3: [6]}  # after a short page, more rows: some may have been skipped
    with pytest.raises(FatalError, match="changed part-way"):
        list(client(3)._pages("/rest-v2/things/changelog", fetch_from(pages, []), first=1))
