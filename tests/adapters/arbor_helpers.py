"""Shared pieces of the Arbor adapter tests: a small school, a running fake server, a configured app."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.app import App
from cme_batch.config import SourceConfig
from cme_batch.importer import Outcome, ingest_sources
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    Record,
)
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW, write_config

PASSWORD = "s3cret-test-password"
TERM_START = date(2025, 9, 2)


def school_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1) if (first + timedelta(days=i)).weekday() < 5]


def week_of_marks(pupil_key: str, codes: str) -> MarksRecord:
    """Marks for the school days from TERM_START, two characters (AM, PM) per day."""
    days = school_days(TERM_START, TERM_START + timedelta(days=40))[: len(codes) // 2]
    out: list[str] = []
    for i, day in enumerate(days):
        gap = (day - (days[i - 1] if i else day)).days - 1
        out += [""] * (2 * gap) + [codes[2 * i], codes[2 * i + 1]]
    return MarksRecord(pupil_key, TERM_START, tuple(out))


def small_school() -> list[Record]:
    """Four pupils with what the adapter reads: UPNs, contacts, enrolments, flags, a fortnight of marks."""
    home = Address(("1 Church Lane", "Tewkesbury"), "GL20 5AA")
    recs: list[Record] = [
        PupilRecord("p1", upn="A916299925001", legal_surname="Ashdown", legal_forename="Amelia", dob=date(2018, 3, 4),
                    sex="F", year_group="2", reg_group="2B", address=home, phones=("01684 111111",)),
        PupilRecord("p2", upn="B916299925002", legal_surname="Ashdown", legal_forename="Bertie", dob=date(2020, 5, 6),
                    sex="M", year_group="R", reg_group="RW", address=home),
        PupilRecord("p3", upn="C916299925003", legal_surname="Cole", legal_forename="Cara", dob=date(2016, 7, 8),
                    sex="F", year_group="4", address=Address(("9 Mill Street", "Tewkesbury"), "GL20 5BB"),
                    emails=("cara.home@example.org",)),
        PupilRecord("p4", upn="D916299925004", legal_surname="Dunn", legal_forename="Dev", dob=date(2019, 1, 2),
                    sex="M", year_group="1"),
        ContactRecord("p1", "mum", priority=1, title="Mrs", surname="Ashdown", forename="Alice", relationship="Mother",
                      parental_responsibility=True, lives_with=True, phones=("07700 900001",),
                      emails=("alice@example.org",)),
        ContactRecord("p2", "mum", priority=1, title="Mrs", surname="Ashdown", forename="Alice", relationship="Mother",
                      parental_responsibility=True, lives_with=True, phones=("07700 900001",),
                      emails=("alice@example.org",)),
        ContactRecord("p1", "gran", priority=2, surname="Bell", forename="Gwen", relationship="Grandmother",
                      parental_responsibility=False, phones=("01452 222222",),
                      address=Address(("4 Quay Road", "Gloucester"), "GL1 2AB")),
        ContactRecord("p3", "dad", priority=1, surname="Cole", forename="Carl", relationship="Father",
                      parental_responsibility=True, phones=("07700 900003",)),
        EnrolmentRecord("p1", admission_date=date(2022, 9, 5), entry_date=date(2022, 9, 5)),
        EnrolmentRecord("p2", admission_date=date(2025, 9, 2), entry_date=date(2025, 9, 2)),
        EnrolmentRecord("p3", admission_date=date(2021, 9, 3), entry_date=date(2021, 9, 3),
                        leaving_date=date(2025, 9, 12), leaving_reason="Moved away", destination="St Peter's Primary"),
        EnrolmentRecord("p4", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8)),
        FlagRecord("p1", "child_protection_plan", date(2025, 6, 1)),
        FlagRecord("p3", "sen_support", date(2024, 1, 10)),
        FlagRecord("p3", "young_carer", date(2025, 2, 1), date(2025, 7, 20)),
        FlagRecord("p2", "looked_after", date(2025, 8, 1)),
        week_of_marks("p1", "////NNNNNN//" + "//" * 4 + "NN"),
        week_of_marks("p2", "/\\LLII///#//" + "//" * 5),
        week_of_marks("p3", "//////////-N"),
        week_of_marks("p4", "OO" * 3 + "//" * 5),
    ]
    return recs


def small_school_server(date_format: str = "plain") -> FakeArbor:
    school = FakeSchool()
    school.load(small_school())
    return FakeArbor(school, password=PASSWORD, date_format=date_format).start()


def settings_for(server: FakeArbor, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """Settings of a ``[sources.arbor]`` table pointing at the fake, with quick retries for tests."""
    secret = tmp_path / "arbor-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    out: dict[str, Any] = {"base_url": server.base_url, "username": server.username,
                           "password": {"file": str(secret)}, "ca_bundle": str(server.ca_bundle),
                           "timeout_seconds": 2.0, "max_retries": 3, "backoff_seconds": 0.01,
                           "max_backoff_seconds": 0.05, "page_size": 3, "academic_year_start": "2025-09-01"}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def source_config(server: FakeArbor, tmp_path: Path, name: str = "arbor", **extra: Any) -> SourceConfig:
    return SourceConfig(name, "arbor", settings_for(server, tmp_path, **extra), tmp_path)


def _toml(v: Any) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + " }"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def arbor_app(tmp_path: Path, store_url: str, engine: Engine, server: FakeArbor, **extra: Any) -> App:
    """An App whose configuration has one ``[sources.arbor]`` pointing at the fake server."""
    table = "\n".join(f"{k} = {_toml(v)}" for k, v in settings_for(server, tmp_path, **extra).items())
    path = write_config(tmp_path, store_url, f'\n[sources.arbor]\nadapter = "arbor"\n{table}\n')
    app = App(str(path), clock=lambda: FIXED_NOW)
    app._engine = engine
    return app


def ingest_once(tmp_path: Path, store_url: str, engine: Engine, server: FakeArbor, **extra: Any) -> Outcome:
    """One ingest of the Arbor source against ``server`` (settings as ``settings_for``)."""
    (outcome,) = ingest_sources(arbor_app(tmp_path, store_url, engine, server, **extra))
    return outcome


def stored_cursor(engine: Engine, source: str = "arbor") -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(t.source_state.c.cursor).where(t.source_state.c.source == source)).scalar()


def stored_upns(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(t.pupils.c.upn)).scalars())


def ingest_ok(app: App) -> None:
    """One night's ingest of ``app``'s sources, which must succeed."""
    (outcome,) = ingest_sources(app)
    assert outcome.status == "ok", outcome.detail
