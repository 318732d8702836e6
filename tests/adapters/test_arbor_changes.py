"""A night that follows the changelog must leave the store as a full pull of the same school would.

Each test pulls the small school in full into one store, changes the school in the fake Arbor,
pulls the changes only, then pulls the changed school in full into a second, empty store: what
a user sees in the two stores (pupils, contacts, flags, enrolments, marks, matched by UPN) must
be the same. A change the changelog does not carry to the store shows up as a difference.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.importer import ingest_sources
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, PupilRecord
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import arbor_app

IGNORED = frozenset({"id", "pupil_id", "school_id", "created_at", "updated_at"})


def what_a_user_sees(engine: Engine) -> dict[str, list[Any]]:
    """Every stored pupil detail, contact, flag, enrolment and mark strip, by UPN, without ids or times."""
    out: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        upn = dict(conn.execute(select(t.pupils.c.id, t.pupils.c.upn)).all())
        out["pupils"] = sorted(repr(sorted((k, v) for k, v in r._mapping.items() if k not in IGNORED))
                               for r in conn.execute(select(t.pupils)))
        for table in (t.contacts, t.flags, t.enrolments):
            out[table.name] = sorted(repr((upn[r.pupil_id], sorted((k, v) for k, v in r._mapping.items()
                                                                   if k not in IGNORED)))
                                     for r in conn.execute(select(table)))
        out["marks"] = sorted((upn[r.pupil_id], r.academic_year, r.marks) for r in conn.execute(select(t.mark_strips)))
    return out


def new_store(tmp_path: Path, name: str) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / f'{name}.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    return url, engine



def guardian_renamed(school: FakeSchool) -> None:
    """Cara's father changes his surname: in Arbor that changes his Person, not his Guardian."""
    school.load([ContactRecord("p3", "dad", priority=1, surname="Cole-Smith", forename="Carl", relationship="Father",
                               parental_responsibility=True, phones=("07700 900003",))])


def pupil_leaves(school: FakeSchool) -> None:
    school.load([EnrolmentRecord("p4", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8),
                                 leaving_date=date(2025, 11, 7), leaving_reason="Moved away",
                                 destination="Abbey Primary")])


def protection_plan_ends(school: FakeSchool) -> None:
    school.load([FlagRecord("p1", "child_protection_plan", date(2025, 6, 1), date(2025, 10, 31))])


def looked_after_starts_and_ends(school: FakeSchool) -> None:
    school.load([FlagRecord("p4", "looked_after", date(2025, 10, 1))])
    school.load([FlagRecord("p4", "looked_after", date(2025, 10, 1), date(2025, 11, 14))])


def pupil_moves_year(school: FakeSchool) -> None:
    school.load([PupilRecord("p3", upn="C916299925003", legal_surname="Cole", legal_forename="Cara",
                             dob=date(2016, 7, 8), sex="F", year_group="5")])


def mark_corrected(school: FakeSchool) -> None:
    school.set_mark("p1", date(2025, 9, 4), "AM", "I")


CHANGES: dict[str, Callable[[FakeSchool], None]] = {f.__name__: f for f in (
    guardian_renamed, pupil_leaves, protection_plan_ends, looked_after_starts_and_ends, pupil_moves_year,
    mark_corrected)}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changes_only_night_stores_what_a_full_pull_would(tmp_path: Path, arbor: FakeArbor, change: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nightly").mkdir()
    (tmp_path / "fresh").mkdir()
    url, nightly = new_store(tmp_path, "nightly")
    app = arbor_app(tmp_path / "nightly", url, nightly, arbor)
    assert ingest_sources(app)[0].status == "ok"
    CHANGES[change](arbor.school)
    arbor.seen.clear()
    capsys.readouterr()
    (outcome,) = ingest_sources(app)
    assert outcome.status == "ok", outcome.detail
    assert "full pull instead" not in capsys.readouterr().err
    assert all(any(a.endswith("id_in") for a in s.args) for s in arbor.requests_for("Student")), "changes only"

    url, fresh = new_store(tmp_path, "fresh")
    assert ingest_sources(arbor_app(tmp_path / "fresh", url, fresh, arbor))[0].status == "ok"
    assert what_a_user_sees(nightly) == what_a_user_sees(fresh)


def test_a_guardians_new_surname_reaches_the_store_on_a_changes_only_night(tmp_path: Path,
                                                                           arbor: FakeArbor) -> None:
    url, engine = new_store(tmp_path, "store")
    app = arbor_app(tmp_path, url, engine, arbor)
    assert ingest_sources(app)[0].status == "ok"
    guardian_renamed(arbor.school)
    arbor.seen.clear()
    assert ingest_sources(app)[0].status == "ok"
    with engine.connect() as conn:
        surnames = set(conn.execute(select(t.contacts.c.surname).where(t.contacts.c.forename == "Carl")).scalars())
    assert surnames == {"Cole-Smith"}
    reread = {str(i) for s in arbor.requests_for("Student") for i in s.args.get("id_in", [])}
    assert reread == {str(arbor.school.student("p3"))}  # only the pupil whose guardian it is


def test_a_deleted_roll_call_record_leaves_no_mark_behind(tmp_path: Path, arbor: FakeArbor) -> None:
    (tmp_path / "nightly").mkdir()
    (tmp_path / "fresh").mkdir()
    url, nightly = new_store(tmp_path, "nightly")
    app = arbor_app(tmp_path / "nightly", url, nightly, arbor)
    assert ingest_sources(app)[0].status == "ok"
    arbor.school.delete("AttendanceRollCallRecord", ("p1", date(2025, 9, 2), "AM"))
    assert ingest_sources(app)[0].status == "ok"
    url, fresh = new_store(tmp_path, "fresh")
    assert ingest_sources(arbor_app(tmp_path / "fresh", url, fresh, arbor))[0].status == "ok"
    assert what_a_user_sees(nightly)["marks"] == what_a_user_sees(fresh)["marks"]
    with nightly.connect() as conn:
        changes = conn.execute(select(t.mark_changes.c.day, t.mark_changes.c.session,
                                      t.mark_changes.c.new_code)).all()
    assert [tuple(c) for c in changes] == [(date(2025, 9, 2), "AM", "-")]  # audited as a correction


def test_a_full_pull_that_could_not_place_every_record_clears_nothing(tmp_path: Path, arbor: FakeArbor) -> None:
    """Records of a roll call neither AM nor PM are left out (with a warning): the marks read are
    then not the whole register, and no stored mark may be cleared for want of them."""
    (tmp_path / "nightly").mkdir()
    url, nightly = new_store(tmp_path, "nightly")
    app = arbor_app(tmp_path / "nightly", url, nightly, arbor)
    assert ingest_sources(app)[0].status == "ok"
    before = what_a_user_sees(nightly)["marks"]
    arbor.school._upsert("AttendanceRollCall", "PM", {  # a register type the adapter cannot place
        "name": "Afternoon", "attendanceRegisterType": {"isMorning": False, "isAfternoon": False}})
    arbor.school.delete("AttendanceRollCallRecord", ("p1", date(2025, 9, 2), "AM"))  # forces a full pull
    assert ingest_sources(app)[0].status == "ok"
    assert what_a_user_sees(nightly)["marks"] == before
    with nightly.connect() as conn:
        assert conn.execute(select(t.mark_changes)).all() == []
