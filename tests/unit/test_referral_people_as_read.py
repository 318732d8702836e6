"""Who the LA's officer reads about besides the child: parents and carers, and siblings on roll."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import jsonschema
import pypdf
import pytest
from sqlalchemy import Engine, select

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.model import ContactRecord, PupilRecord, SourceBatch
from cme_batch.referral.bundle import build_bundle
from cme_batch.referral.content import build_document
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.referral_support import NOW, Family, seed_case

SCHEMA = json.loads((Path(__file__).parents[2] / "cme_batch/referral/referral.schema.json").read_text())


def _validate(doc: dict[str, object]) -> None:
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)


def _pdf_text(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


@pytest.fixture
def cfg(engine: Engine, tmp_path: Path) -> Config:
    return config_mod.load(write_config(tmp_path, str(engine.url)))


def _doc(engine: Engine, cfg: Config, case_id: int) -> dict[str, object]:
    with engine.connect() as conn:
        return build_document(conn, case_id, cfg, NOW)


def test_a_childminder_or_social_worker_shared_with_another_family_makes_no_sibling(engine: Engine,
                                                                                   cfg: Config) -> None:
    """A childminder (or a social worker, a grandmother) is an emergency contact of children of other
    families; without parental responsibility for either child, sharing them makes no sibling, and the
    other child's name and date of birth have no place in this child's referral."""
    minder = ContactRecord("P1", "C300", 4, "Mrs", "Keeper", "Gill", "Childminder", False, False,
                           ("07700 900300",), ("gill.minder@example.invalid",))
    fam = Family()
    fam.contacts.append(minder)
    case_id = seed_case(engine, fam)
    other = PupilRecord("P7-other", upn="A916299925007", legal_surname="Otherfamily", legal_forename="Noah",
                        dob=date(2018, 2, 2), year_group="2")
    with engine.connect() as conn:
        school_id = conn.execute(select(t.schools.c.id)).scalar_one()
    apply_batch(engine, school_id, SourceBatch("test", "other-family", records=[
        other, replace(minder, pupil_key="P7-other", priority=2),
        ContactRecord("P7-other", "C700", 1, "Mr", "Otherfamily", "Ben", "Father", True, True, ("07700 900700",)),
    ]), NOW)
    doc = _doc(engine, cfg, case_id)
    names = [s["name"] for s in doc["siblings"]]  # type: ignore[attr-defined]
    assert names == ["Oliver Marsh-Ellery"]
    assert "Childminder" in [c["relationship"] for c in doc["contacts"]]  # type: ignore[attr-defined]


def test_an_afternoon_with_no_register_mark_is_shown_as_such_in_the_evidence(engine: Engine, cfg: Config) -> None:
    """A day with the morning marked N and no afternoon register still counts (DOMAIN 4), so it is no
    register gap; the evidence left its afternoon out, and the form showed an empty box."""
    case_id = seed_case(engine)
    with engine.begin() as conn:  # as the engine stores it: 20 November counts, it is no gap
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(register_gaps=[]))
    evidence = _doc(engine, cfg, case_id)["evidence"]
    day = [(e["session"], e["code"]) for e in evidence if e["date"] == "2025-11-20"]  # type: ignore[index]
    assert day == [("AM", "N"), ("PM", "-")]
    assert len(evidence) == 20  # type: ignore[arg-type]
    assert not any(e["date"] == "2025-11-22" for e in evidence)  # type: ignore[index]  # a Saturday


def test_a_referral_the_deputy_confirmed_says_the_deputy_confirmed_it(engine: Engine, cfg: Config) -> None:
    """The deputy DSL may reply CONFIRM; the covering note and the form said the DSL had."""
    case_id = seed_case(engine)
    with engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(confirmed_by="Deputy@School.example"))
        bundle = build_bundle(conn, case_id, cfg, NOW)
    _validate(bundle.document)
    confirmation = bundle.document["confirmation"]
    assert (confirmation["name"], confirmation["role"]) == (cfg.staff.deputy_dsl.name,  # type: ignore[union-attr]
                                                            "Deputy Designated Safeguarding Lead")
    assert "confirmed by our Deputy Designated Safeguarding Lead on 28 Nov 2025" in bundle.note
    text = _pdf_text(bundle.pdf)
    assert f"{cfg.staff.deputy_dsl.name} (Deputy Designated Safeguarding Lead)" in text  # type: ignore[union-attr]

    with engine.begin() as conn:  # the DSL's own CONFIRM still reads as before
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(confirmed_by="dsl@school.example"))
        note = build_bundle(conn, case_id, cfg, NOW).note
    assert "confirmed by our Designated Safeguarding Lead on 28 Nov 2025" in note


def test_the_form_counts_the_school_days_with_no_register_beside_the_days_missed(engine: Engine,
                                                                                cfg: Config) -> None:
    """Nine days marked N and one with no register: the case is due on its 10th school day, and the form
    said only "School days missed 9" under the ticked "10 or more school days" box."""
    case_id = seed_case(engine)
    with engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(school_days=9))
        bundle = build_bundle(conn, case_id, cfg, NOW)
    assert bundle.document["case"]["school_days_missed"] == 9  # the count of `cases`, as the JSON contract has it
    text = " ".join(_pdf_text(bundle.pdf).split())
    assert "School days missed 9, plus 1 school day(s) with no register mark (listed below)" in text


def test_the_covering_note_of_an_update_calls_its_form_an_update(engine: Engine, cfg: Config) -> None:
    """The note sent with an update listed its PDF as "the referral form", as if the child were referred again."""
    case_id = seed_case(engine, Family(referred=True))
    with engine.begin() as conn:
        conn.execute(t.cases.update().where(t.cases.c.id == case_id).values(
            status="closed", closed_on=date(2025, 12, 1), closed_reason="returned"))
        bundle = build_bundle(conn, case_id, cfg, NOW, "update")
    assert bundle.document["update"]["reason"] == "returned"
    assert f"- {bundle.ref}-update.pdf: the update form (what has changed and when)" in bundle.note
    assert "the referral form" not in bundle.note
