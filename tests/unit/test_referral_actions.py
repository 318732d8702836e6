"""Actions a DSL records by replying NOTE reach the referral's actions and its checklist."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, insert

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.referral.content import build_document
from cme_batch.replies.parse import note_detail
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import NOW, seed_case


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(engine.url)))


def test_actions_noted_by_reply_tick_the_checklist_under_the_forms_labels(engine: Engine, cfg: Config) -> None:
    case_id = seed_case(engine)
    by = "dsl@school.example"
    with engine.begin() as conn:  # only what the DSL's replies recorded, stored as replies.process stores it
        conn.execute(delete(t.case_events).where(t.case_events.c.case_id == case_id,
                                                 t.case_events.c.kind.in_(("action", "note"))))
        for text in ("contacts-tried: father and grandmother rung twice", "social-media: no public posts"):
            kind, detail = note_detail(text, by)
            conn.execute(insert(t.case_events).values(case_id=case_id, at=datetime(2025, 11, 25, 12, tzinfo=UTC),
                                                      kind=kind, actor=by, detail=detail))
    with engine.connect() as conn:
        doc = build_document(conn, case_id, cfg, NOW)
    assert [(a["label"], a["outcome"]) for a in doc["actions"]] == [
        ("Every emergency contact tried", "father and grandmother rung twice"),
        ("Social media searches", "no public posts")]
    ticked = {c["label"]: c["dates"] for c in doc["checklist"]}
    assert ticked["Every emergency contact tried"] == ["2025-11-25"]
    assert ticked["Social media searches"] == ["2025-11-25"]
