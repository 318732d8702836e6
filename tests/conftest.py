"""Shared fixtures.

``store_url`` runs a test once on a SQLite file and once on a real PostgreSQL server (started
once per session by a fixture). ``engine`` is a migrated store at that URL; ``app`` is an
``App`` over a small valid configuration pointing at it.
"""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import Engine, text

from cme_batch.app import App
from cme_batch.store import migrate, open_store
from tests.servers import postgres_server

_counter = itertools.count()

# CI (`HYPOTHESIS_PROFILE=ci`, set by .ci/run) draws the same examples on every run, so that what
# it reports can be reproduced and a submission is judged on the code, not on the draw; anywhere
# else each run draws new examples, which is how the property tests keep finding new inputs.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

FIXED_NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_log_filter() -> Iterator[None]:
    """Each test starts with no log filter. The filter (``cme_batch.logfilter``) lives as long as the
    process and learns the names of every store it is installed on: a command's process runs one
    night, but the test process runs them all, and a pupil called "Pupil" in one test withheld the
    word "pupil" from another test's error message, which that test then failed to find."""
    yield
    from cme_batch import log, logfilter

    if logfilter._active is not None:
        if logfilter._active in log.extra_processors:
            log.extra_processors.remove(logfilter._active)
        logfilter._active = None
        log.reconfigure()

BASE_CONFIG = """
[school]
name = "The John Moore Primary School"
la_number = "916"
establishment_number = "2999"
address = ["Example Road", "Tewkesbury"]
postcode = "GL20 0AA"
phone = "01684 000000"

[[staff.office]]
name = "Attendance Officer"
email = "office@school.example"

[staff.dsl]
name = "Dee Ess-Ell"
email = "dsl@school.example"
phone = "01684 000002"

[staff.deputy_dsl]
name = "Dep Uty"
email = "deputy@school.example"

[database]
url = "{url}"

[calendar]
closures = ["2025-09-01", "2025-11-03"]

[[calendar.terms]]
start = "2025-09-02"
end = "2025-10-24"

[[calendar.terms]]
start = "2025-11-03"
end = "2025-12-19"

[mail]
transport = "maildrop"
from = "cme-batch@school.example"
maildrop_dir = "maildrop"
"""


@pytest.fixture(scope="session")
def _postgres() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.sqlite'}"
        return
    base = request.getfixturevalue("_postgres")
    name = f"t{next(_counter)}_{abs(hash(request.node.nodeid)) % 10**8}"
    admin = open_store(base)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    eng = open_store(store_url)
    migrate(eng)
    yield eng
    eng.dispose()


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "cme-batch.toml"
    path.write_text(BASE_CONFIG.format(url=url) + textwrap.dedent(extra), encoding="utf-8")
    return path


@pytest.fixture
def app(engine: Engine, store_url: str, tmp_path: Path) -> App:
    """An App over a migrated store and a valid config, with the clock fixed at FIXED_NOW."""
    a = App(str(write_config(tmp_path, store_url)), clock=lambda: FIXED_NOW)
    a._engine = engine
    return a
