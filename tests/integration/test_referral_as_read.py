"""The referral and the update as the LA's officer reads them, from cases the engine opened itself.

The demo school is loaded into a real store and ``detect`` runs night by night as the nightly
run does; the document (JSON) and the PDF's text are then read for what an officer would see.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.demo.generator import generate
from cme_batch.model import SourceBatch
from cme_batch.referral.bundle import build_bundle
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config

NOW = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)


@pytest.fixture
def school_app(tmp_path: Path, store_url: str, engine: Engine) -> App:
    """The demo school (80 pupils) in a real store, with the clock at ``NOW``."""
    app = App(str(write_config(tmp_path, store_url)), clock=lambda: NOW)
    app._engine = engine
    school = generate(2025, 80)
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=school.records), NOW)
    return app


def _case_id(engine: Engine, kind: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(t.cases.c.id).where(t.cases.c.kind == kind, t.cases.c.status == "open")
                                .order_by(t.cases.c.id)).scalars().first())


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def test_a_leavers_referral_states_the_facts_as_of_the_last_night_checked(school_app: App, engine: Engine) -> None:
    """A leaver's destination stays unknown night after night, which writes no event: the referral
    confirmed weeks later said its facts (school age, siblings on roll, flags) were as of the day
    the child left."""
    detect.run_detect(school_app, date(2025, 11, 21))
    detect.run_detect(school_app, date(2025, 12, 19))
    case_id = _case_id(engine, "destination_unknown")
    with engine.connect() as conn:
        bundle = build_bundle(conn, case_id, school_app.config, NOW)
    assert bundle.document["case"]["evaluated_on"] == "2025-12-19"
    assert bundle.document["child"]["leaving_date"] == "2025-11-21"
    assert "Facts as of 19 Dec 2025" in _pdf_text(bundle.pdf)
