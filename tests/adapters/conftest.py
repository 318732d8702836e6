"""Fixtures of the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adapters.arbor.fake_server import FakeArbor
from tests.adapters.arbor_helpers import small_school_server


@pytest.fixture
def arbor() -> Iterator[FakeArbor]:
    """The Arbor stand-in on 127.0.0.1, serving the small school."""
    server = small_school_server()
    yield server
    server.close()
