"""How each adapter learns of a leaver, and what happens to a child who disappears from a source.

A child who leaves is at risk when cme-batch never learns of the leaving, or learns it without
the destination: no "destination unknown" case can open. Each test builds the school through
the adapter's own writer or the fake Arbor, stores it in a real store, runs ``detect`` and looks
at what a user would see: the ``destination_unknown`` case, or the child still on roll.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from adapters.ctf.writer import write_ctf
from adapters.sims.writer import write_reports
from cme_batch.app import App
from cme_batch.detect import run_detect
from cme_batch.importer import import_files, ingest_sources
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, Record, SchoolInfo
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import arbor_app, ingest_ok

LEFT = date(2025, 11, 20)  # a Thursday
AS_OF = date(2025, 11, 28)  # the Friday after
P4_UPN = "D916299925004"
US = SchoolInfo("916", "2999", "The John Moore Primary School")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def du_cases(engine: Engine) -> list[tuple[str | None, str, str | None]]:
    """Each destination_unknown case as (the pupil's UPN, status, closed reason)."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.pupils.c.upn, t.cases.c.status, t.cases.c.closed_reason)
                            .join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id)
                            .where(t.cases.c.kind == "destination_unknown").order_by(t.cases.c.id)).all()
    return [tuple(r) for r in rows]


def stored_enrolments(engine: Engine, upn: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.enrolments.c.entry_date, t.enrolments.c.leaving_date, t.enrolments.c.destination)
                            .join(t.pupils, t.pupils.c.id == t.enrolments.c.pupil_id)
                            .where(t.pupils.c.upn == upn).order_by(t.enrolments.c.entry_date)).all()
    return [tuple(r) for r in rows]


# -- Arbor ---------------------------------------------------------------------------------------------
def p4_leaves(school: FakeSchool, leaving: date = LEFT, destination: str | None = None) -> None:
    school.load([EnrolmentRecord("p4", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8),
                                 leaving_date=leaving, leaving_reason="Moved away", destination=destination)])




def test_arbor_leaver_without_destination_opens_a_case_on_a_full_pull(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    p4_leaves(arbor.school)
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)
    run_detect(app, AS_OF)
    assert du_cases(engine) == [(P4_UPN, "open", None)]


@pytest.mark.parametrize("leaving", [LEFT, date(2025, 11, 3)], ids=["recorded-same-week", "dated-back"])
def test_arbor_leaving_recorded_between_pulls_reaches_the_store_on_a_changes_only_night(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor, leaving: date) -> None:
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)  # full
    run_detect(app, date(2025, 11, 27))
    assert du_cases(engine) == []
    p4_leaves(arbor.school, leaving)
    arbor.seen.clear()
    ingest_ok(app)  # changes only
    assert all(any(a.endswith("id_in") for a in s.args) for s in arbor.requests_for("Student")), "changes only"
    run_detect(app, AS_OF)
    assert du_cases(engine) == [(P4_UPN, "open", None)]
    p4_leaves(arbor.school, leaving, "Abbey Primary")  # the destination is recorded a week later
    ingest_ok(app)
    run_detect(app, date(2025, 12, 1))
    assert du_cases(engine) == [(P4_UPN, "closed", "destination_known")]


class OnlyCurrentStudents:
    """Arbor's Student rows as if its list held current students only (a leaving date in the
    future, or none), as one integrator describes "current" (arbor_wonde.md 2.3): UNCONFIRMED
    for Arbor's GraphQL ``Student``. The leavers' other rows (enrolments...) are still served."""

    def __init__(self) -> None:
        self.left: set[int] = set()

    def __call__(self, entity: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["id"] not in self.left] if entity == "Student" else rows


def test_arbor_leaver_whom_the_student_list_no_longer_holds_still_opens_a_case(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """If Arbor lists only current students, a leaver's Student row goes the night the leaving is
    entered while the enrolment (with its leaving date) is still served: the leaving must be stored."""
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)
    arbor.mangle = hidden = OnlyCurrentStudents()
    p4_leaves(arbor.school)
    hidden.left.add(arbor.school.student("p4"))
    ingest_ok(app)
    run_detect(app, AS_OF)
    assert stored_enrolments(engine, P4_UPN) == [(date(2025, 9, 8), LEFT, None)]
    assert du_cases(engine) == [(P4_UPN, "open", None)]


def test_arbor_leaver_never_listed_is_stored_without_names_and_opens_a_case(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """The first pull of a school whose recent leaver Arbor no longer lists: the leaving (and the
    child's marks) are stored under the Arbor id and UPN, and the pull is not refused."""
    arbor.mangle = hidden = OnlyCurrentStudents()
    p4_leaves(arbor.school)
    hidden.left.add(arbor.school.student("p4"))
    app = arbor_app(tmp_path, store_url, engine, arbor)
    (outcome,) = ingest_sources(app)
    assert outcome.status == "ok", outcome.detail
    run_detect(app, AS_OF)
    assert stored_enrolments(engine, P4_UPN) == [(date(2025, 9, 8), LEFT, None)]
    with engine.connect() as conn:
        assert conn.execute(select(t.pupils.c.legal_surname).where(t.pupils.c.upn == P4_UPN)).scalar() is None
    assert du_cases(engine) == [(P4_UPN, "open", None)]


def test_arbor_destination_of_an_earlier_leaving_is_not_the_destination_of_this_one(
        tmp_path: Path, store_url: str, engine: Engine, arbor: FakeArbor) -> None:
    """p4 left once before (to Abbey Primary), came back, and has now left again with no destination
    recorded: Abbey Primary is where the child went in 2024, not where it is now."""
    school = arbor.school
    sid = school.student("p4")
    school._upsert("EducationalInstitutionEnrolment", ("p4", date(2023, 9, 4)), {
        "student": {"entityType": "Student", "id": sid}, "entryDate": date(2023, 9, 4),
        "leavingDate": date(2024, 7, 19), "unenrolmentReason": {"code": "OTHER", "unenrolmentReason": "Moved away"}})
    school._upsert("StudentDestination", "p4", {
        "student": {"entityType": "Student", "id": sid}, "startDate": date(2024, 9, 3),
        "studentDestinationType": {"code": "SCHOOL", "label": "Another school"},
        "linkedRecord": {"displayName": "Abbey Primary"}})
    p4_leaves(school)
    app = arbor_app(tmp_path, store_url, engine, arbor)
    ingest_ok(app)
    run_detect(app, AS_OF)
    assert stored_enrolments(engine, P4_UPN) == [(date(2023, 9, 4), date(2024, 7, 19), "Abbey Primary"),
                                                 (date(2025, 9, 8), LEFT, None)]
    assert du_cases(engine) == [(P4_UPN, "open", None)]


# -- CTF -----------------------------------------------------------------------------------------------
CHILD = PupilRecord("c1", upn="E916299925005", legal_surname="Eve", legal_forename="Elsie", dob=date(2018, 4, 1),
                    sex="F", year_group="2")
STAYS = PupilRecord("c2", upn="F916299925006", legal_surname="Fox", legal_forename="Finn", dob=date(2018, 6, 1),
                    sex="M", year_group="2")


def _ctf_import(app: App, *paths: Path) -> None:
    assert [o.status for o in import_files(app, list(paths), "ctf")] == ["ok"] * len(paths)


def _on_roll(key: str, leaving: date | None = None) -> EnrolmentRecord:
    return EnrolmentRecord(key, entry_date=date(2022, 9, 5), leaving_date=leaving,
                           leaving_reason="Moved away" if leaving else None)


def _upn(key: str) -> str:
    return {"c1": CHILD.upn, "c2": STAYS.upn}[key] or ""


def _by_upn(records: list[Record]) -> list[Record]:
    """Records keyed by UPN, as a CTF keys them."""
    out: list[Record] = []
    for r in records:
        key = _upn(r.pupil_key)  # type: ignore[union-attr]
        out.append(type(r)(**{**r.__dict__, "pupil_key": key}))
    return out


def write(path: Path, records: list[Record], **options: Any) -> Path:
    return write_ctf(path, _by_upn(records), US, **options)


def test_ctf_leaver_in_our_own_export_opens_a_case(app: App, tmp_path: Path) -> None:
    _ctf_import(app, write(tmp_path / "a.xml", [CHILD, STAYS, _on_roll("c1", LEFT), _on_roll("c2")]))
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == [(CHILD.upn, "open", None)]


@pytest.mark.parametrize(("dest", "expected"), [
    (SchoolInfo("916", "3000", "Abbey Primary"), []),
    (SchoolInfo("MMM", "MMMM", None), [(CHILD.upn, "open", None)]),
    (SchoolInfo("XXX", "XXXX", None), [(CHILD.upn, "open", None)]),
], ids=["to-a-school", "MMM", "XXX"])
def test_ctf_leavers_file_gives_its_destination_school(app: App, tmp_path: Path, dest: SchoolInfo,
                                                      expected: list[Any]) -> None:
    _ctf_import(app, write(tmp_path / "a.xml", [CHILD, _on_roll("c1", LEFT)], dest=dest))
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == expected


def test_ctf_pupil_missing_from_todays_full_file_stays_on_roll(app: App, tmp_path: Path) -> None:
    _ctf_import(app, write(tmp_path / "a.xml", [CHILD, STAYS, _on_roll("c1"), _on_roll("c2")]))
    _ctf_import(app, write(tmp_path / "b.xml", [STAYS, _on_roll("c2")]))
    run_detect(app, AS_OF)
    assert stored_enrolments(app.engine(), CHILD.upn or "") == [(date(2022, 9, 5), None, None)]
    assert du_cases(app.engine()) == []


def test_ctf_partial_file_with_a_leaving_stores_it(app: App, tmp_path: Path) -> None:
    _ctf_import(app, write(tmp_path / "a.xml", [CHILD, _on_roll("c1")]))
    _ctf_import(app, write(tmp_path / "b.xml", [CHILD, _on_roll("c1", LEFT)], qualifier="partial"))
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == [(CHILD.upn, "open", None)]


def test_ctf_full_file_without_school_history_keeps_a_stored_leaving(app: App, tmp_path: Path) -> None:
    """A full CTF whose pupil has no SchoolHistory at all (the MIS's export left it out) says
    nothing about the enrolment: the stored leaving, and its open case, stay."""
    _ctf_import(app, write(tmp_path / "a.xml", [CHILD, _on_roll("c1", LEFT)]))
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == [(CHILD.upn, "open", None)]
    marks = MarksRecord("c1", date(2025, 9, 2), "//" * 3)
    _ctf_import(app, write(tmp_path / "b.xml", [CHILD, marks]))
    run_detect(app, date(2025, 12, 1))
    assert du_cases(app.engine()) == [(CHILD.upn, "open", None)]
    assert stored_enrolments(app.engine(), CHILD.upn or "") == [(date(2022, 9, 5), LEFT, None)]


# -- SIMS ----------------------------------------------------------------------------------------------
KID = PupilRecord("1004", upn=P4_UPN, legal_surname="Dunn", legal_forename="Dev", dob=date(2019, 1, 2), sex="M",
                  year_group="1", reg_group="1A")


def sims(app: App, folder: Path, stamp: str, records: list[Record]) -> None:
    paths = write_reports(folder / stamp, records, stamp=stamp)
    order = [paths[k] for k in ("pupils", "admissions", "leavers", "marks")]
    statuses = [o.status for o in import_files(app, order, "sims-xml")]
    assert set(statuses) <= {"ok", "skipped"}, statuses  # (a report with no rows, or one already read: skipped)


def _kid(leaving: date | None = None, destination: str | None = None) -> EnrolmentRecord:
    return EnrolmentRecord("1004", admission_date=date(2025, 9, 8), entry_date=date(2025, 9, 8),
                           leaving_date=leaving, leaving_reason="Moved away" if leaving else None,
                           destination=destination)


def test_sims_leaver_whose_destination_is_added_later_closes_the_case(app: App, tmp_path: Path) -> None:
    sims(app, tmp_path, "20251128T020000", [KID, _kid(LEFT)])
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == [(P4_UPN, "open", None)]
    sims(app, tmp_path, "20251201T020000", [KID, _kid(LEFT, "Abbey Primary")])
    run_detect(app, date(2025, 12, 1))
    assert du_cases(app.engine()) == [(P4_UPN, "closed", "destination_known")]


def test_sims_planned_leaving_opens_its_case_once_the_day_has_passed(app: App, tmp_path: Path) -> None:
    planned = date(2025, 12, 5)
    sims(app, tmp_path, "20251128T020000", [KID, _kid(planned)])
    run_detect(app, AS_OF)
    assert du_cases(app.engine()) == []
    run_detect(app, date(2025, 12, 8))
    assert du_cases(app.engine()) == [(P4_UPN, "open", None)]


def test_sims_cancelled_leaving_row_gone_from_the_report(app: App, tmp_path: Path) -> None:
    """The leaving is undone in SIMS: the leavers report no longer has the row and the admissions
    report lists the child on roll again."""
    planned = date(2025, 12, 5)
    sims(app, tmp_path, "20251128T020000", [KID, _kid(planned)])
    sims(app, tmp_path, "20251201T020000", [KID, _kid()])
    run_detect(app, date(2025, 12, 8))
    assert stored_enrolments(app.engine(), P4_UPN) == [(date(2025, 9, 8), None, None)]
    assert du_cases(app.engine()) == []
