"""Several schools run by one trust or LA on one server: what one school's runs do to another's.

A review (tests only) of "One database per school": a trust or a local authority runs cme-batch
for many schools on one server, each school with its own configuration, state directory and
database (its own SQLite file, or its own database on one PostgreSQL server). The refusal of a
shared database itself is checked in ``test_schools_shared_store.py``; these tests look at what
the schools still share when each has its own store: the folder the SQLite files live in, the
trust's sender address and the server's mail pickup folder, and the moment two schools' first
runs meet on one PostgreSQL database.
"""

from __future__ import annotations

import threading
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select, text

from cme_batch import store as store_mod
from cme_batch.app import App
from cme_batch.cli import cli
from cme_batch.runlock import run_lock
from cme_batch.store import open_store
from cme_batch.store import tables as t
from tests.conftest import BASE_CONFIG, FIXED_NOW

SECOND = (BASE_CONFIG.replace('establishment_number = "2999"', 'establishment_number = "3001"')
          .replace("The John Moore Primary School", "Second Academy").replace("school.example", "second.example"))


def school_config(folder: Path, text: str, url: str, extra: str = "") -> str:
    """A school's own configuration file and state directory in ``folder``."""
    (folder / "state").mkdir(parents=True, exist_ok=True)
    path = folder / "cme-batch.toml"
    path.write_text(text.format(url=url) + f'\n[paths]\nstate_dir = "{folder / "state"}"\n' + extra,
                    encoding="utf-8")
    return str(path)


def run(config_path: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", config_path, *args])


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_schools_night_runs_while_another_schools_night_runs_beside_it(tmp_path: Path) -> None:
    """Each school has its own SQLite file, configuration and state directory, as the README asks, but the
    LA keeps all its schools' files in one folder (``/var/lib/cme-batch/school-2999.sqlite``,
    ``.../school-3001.sqlite``). Both timers fire at 05:30 (up to 15 minutes later): the nights overlap."""
    stores = tmp_path / "stores"
    first = school_config(tmp_path / "a", BASE_CONFIG, f"sqlite:///{stores / 'school-2999.sqlite'}")
    second = school_config(tmp_path / "b", SECOND, f"sqlite:///{stores / 'school-3001.sqlite'}")
    for cfg in (first, second):
        assert run(cfg, "init").exit_code == 0
    a_store, b_store = open_store(f"sqlite:///{stores / 'school-2999.sqlite'}"), \
        open_store(f"sqlite:///{stores / 'school-3001.sqlite'}")
    try:
        with run_lock(a_store, tmp_path / "a" / "state"):  # the first school's night, under way
            night = run(second, "nightly", "--as-of", "2025-11-28")

        assert "holds the run lock" not in night.output, night.output
        assert count(b_store, t.stage_runs) > 0  # the second school's night ran its stages
        assert count(b_store, t.outbox) >= 2  # and queued its office summary and DSL digest
    finally:
        a_store.dispose()
        b_store.dispose()


def test_two_schools_mornings_through_one_pickup_folder_all_arrive(tmp_path: Path) -> None:
    """A trust (or an LA) sends every school's mail from its own domain, through the server's one mail
    pickup folder (``transport = "maildrop"``, "for a local mail server's pickup folder"). Each school has
    its own database, configuration and state directory. Both nights run for Friday 28 November."""
    pickup = tmp_path / "pickup"
    mail = (f'maildrop_dir = "{pickup}"\n', 'from = "cme-batch@trust.example"\n')

    def trust_mail(text: str) -> str:
        text = text.replace('maildrop_dir = "maildrop"\n', mail[0])
        return text.replace('from = "cme-batch@school.example"\n', mail[1]) \
            .replace('from = "cme-batch@second.example"\n', mail[1])

    first = school_config(tmp_path / "a", trust_mail(BASE_CONFIG), f"sqlite:///{tmp_path / 'a' / 'cme.sqlite'}")
    second = school_config(tmp_path / "b", trust_mail(SECOND), f"sqlite:///{tmp_path / 'b' / 'cme.sqlite'}")
    for cfg in (first, second):
        assert run(cfg, "init").exit_code == 0
        queued = run(cfg, "summary", "--as-of", "2025-11-28")
        assert queued.exit_code == 0, queued.output
        sent = run(cfg, "send")
        assert sent.exit_code == 0, sent.output

    delivered = [message_from_bytes(p.read_bytes(), policy=default_policy) for p in sorted(pickup.glob("*.eml"))]
    to = sorted(str(m["To"]) for m in delivered)
    for folder in ("a", "b"):  # each school's outbox says its two messages were sent
        outbox = open_store(f"sqlite:///{tmp_path / folder / 'cme.sqlite'}")
        with outbox.connect() as conn:
            assert conn.execute(select(t.outbox.c.status)).scalars().all() == ["sent", "sent"]
        outbox.dispose()
    # each school's office its summary, each school's DSL and deputy their digest: four messages
    assert to == sorted(["office@school.example", "office@second.example",
                         "dsl@school.example, deputy@school.example",
                         "dsl@second.example, deputy@second.example"]), to


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # (SQLite: one writer at a time)
def test_two_schools_first_runs_at_once_on_one_postgresql_database(
        engine: Engine, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LA's technician sets up two schools from one template, forgetting to change ``database.url``
    in the second, and starts both first runs together. One must be refused; here both meet exactly
    between recording their school and committing (the barrier only holds that moment)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    apps = [App(school_config(tmp_path / "a", BASE_CONFIG, store_url), clock=lambda: FIXED_NOW),
            App(school_config(tmp_path / "b", SECOND, store_url), clock=lambda: FIXED_NOW)]
    for a in apps:
        a.engine()  # the store opened and looked at first: no other school yet
    meet = threading.Barrier(2, timeout=3)
    real_refuse = store_mod.refuse_other_schools

    def meet_or_go() -> None:
        """Wait for the other school's run; a store that makes it wait (one school at a time) lets this go on."""
        try:
            meet.wait()
        except threading.BrokenBarrierError:
            pass

    def refuse_once_both_recorded(conn: Any, la: str, estab: str) -> None:
        meet_or_go()  # both schools' transactions have recorded their school; neither has committed
        try:
            real_refuse(conn, la, estab)
        finally:
            meet_or_go()  # both have looked for another school; only now may either commit

    monkeypatch.setattr(store_mod, "refuse_other_schools", refuse_once_both_recorded)
    outcomes: dict[int, str] = {}

    def first_run(i: int) -> None:
        try:
            _ = apps[i].school_id
            outcomes[i] = "accepted"
        except Exception as exc:  # the refusal (BadInputError) or anything else
            outcomes[i] = type(exc).__name__
        finally:
            apps[i].close()

    threads = [threading.Thread(target=first_run, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)

    with engine.connect() as conn:
        schools = conn.execute(select(t.schools.c.establishment_number)).scalars().all()
    assert sorted(outcomes.values()) == ["BadInputError", "accepted"], outcomes
    assert len(schools) == 1, schools


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)  # (SQLite files: the first test)
def test_on_one_postgresql_server_a_schools_night_runs_while_another_schools_night_runs(
        engine: Engine, store_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Each school its own database on the trust's PostgreSQL server (README: ``CREATE DATABASE
    cme_school_3001;``): the run lock (an advisory lock) is the database's own, so the first school's
    night under way does not stop the second school's."""
    base = request.getfixturevalue("_postgres")
    admin = open_store(base)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'CREATE DATABASE "{store_url.rsplit("/", 1)[1]}_3001"'))
    admin.dispose()
    first = school_config(tmp_path / "a", BASE_CONFIG, store_url)
    second = school_config(tmp_path / "b", SECOND, store_url + "_3001")
    for cfg in (first, second):
        assert run(cfg, "init").exit_code == 0
    b_store = open_store(store_url + "_3001")
    try:
        with run_lock(engine, tmp_path / "a" / "state"):  # the first school's night, under way
            night = run(second, "nightly", "--as-of", "2025-11-28")
        assert "holds the run lock" not in night.output, night.output
        assert count(b_store, t.stage_runs) > 0 and count(b_store, t.outbox) >= 2
        assert count(engine, t.outbox) == 0  # nothing of the second school's night in the first's database
    finally:
        b_store.dispose()
