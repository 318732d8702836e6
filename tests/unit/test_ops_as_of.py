"""The default evaluation date is the school's last school day before today, in England's time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cme_batch.app import App, in_school_time
from tests.conftest import write_config


@pytest.fixture
def server_in_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A server whose clock and zone are UTC, as many Linux servers are set up."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(("now", "expected"), [
    # 00:30 BST on Tuesday 21 October 2025 is 23:30 UTC on the Monday: Monday's registers are complete
    (datetime(2025, 10, 20, 23, 30, tzinfo=UTC), date(2025, 10, 20)),
    # 05:30 BST on Monday 20 October: the Friday before
    (datetime(2025, 10, 20, 4, 30, tzinfo=UTC), date(2025, 10, 17)),
    # 00:30 GMT on Tuesday 25 November (winter: England's time is UTC)
    (datetime(2025, 11, 25, 0, 30, tzinfo=UTC), date(2025, 11, 24)),
    # 23:30 GMT on Monday 24 November: still Monday in England, so the Friday before
    (datetime(2025, 11, 24, 23, 30, tzinfo=UTC), date(2025, 11, 21)),
])
def test_the_default_as_of_is_yesterday_in_england_on_a_server_kept_in_utc(
        server_in_utc: None, tmp_path: Path, now: datetime, expected: date) -> None:
    app = App(str(write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")), clock=lambda: now)
    assert app.default_as_of() == expected


def test_times_shown_and_dates_recorded_are_england_s_on_a_server_kept_in_utc(server_in_utc: None) -> None:
    """A DSL's CLOSE at 00:30 BST is recorded on that day; outbox times are shown as the school's clocks."""
    from cme_batch.cli_mail import _when

    late = datetime(2025, 10, 20, 23, 30, tzinfo=UTC)
    assert in_school_time(late).date() == date(2025, 10, 21)
    assert _when(late) == "2025-10-21 00:30"
    assert _when(datetime(2025, 11, 24, 23, 30, tzinfo=UTC)) == "2025-11-24 23:30"  # GMT: England is on UTC
