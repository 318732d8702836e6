"""An adversarial review of the SIMS adapter: inputs a school's SIMS can write that lost a child
(no case, no alert) or mixed one child's record into another's.

Each test writes CommandReporter exports as the scheduled task would (``ReportWriter``: root
``SuperStarReport``, display names escaped as ``_x0020_``, empty fields left out, ISO-8859-1),
imports them with ``cme-batch import`` into a real store, runs ``detect`` where a case is what
a user would see, and looks at what is stored, the case opened, or the refusal's text. No
refusal or warning may hold a pupil's name, UPN or date of birth, and a refused file changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.sims.writer import ReportWriter
from cme_batch.app import App
from cme_batch.detect import run_detect
from cme_batch.errors import ImportRejected
from cme_batch.importer import import_files
from cme_batch.model import Warning_
from cme_batch.store import tables as t
from tests.helpers import snapshot

Row = Mapping[str, str | None]
UPN_A, UPN_B = "A123456789012", "B916299925001"
#: The child of most tests, as the pupils report repeats it on each contact's row.
CHILD: dict[str, str | None] = {"Adno": "001234", "Person ID": "5001", "Legal Surname": "Example",
                                "Legal Forename": "Zoe", "Year Group": "Year  3", "Reg Group": "3B"}
#: Personal data in the rows below, which no message may hold.
SECRETS = (UPN_A, UPN_B, "Example", "Zoe", "2017", "2016", "Other")


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """What these tests store is the same on either backend: one is enough."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def export(path: Path, *rows: Row) -> Path:
    with ReportWriter(path) as w:
        for r in rows:
            w.row(r)
    return path


def imported(app: App, *paths: Path) -> list[list[Warning_]]:
    """Import the files as ``cme-batch import`` does; each one's warnings."""
    results = list(import_files(app, list(paths), "sims-xml"))
    assert [r.status for r in results] == ["ok"] * len(paths)
    return [r.warnings for r in results]


def refused(app: App, path: Path) -> list[str]:
    """Import a file that must be refused, changing nothing; its problems (checked for personal data)."""
    before = snapshot(app.engine())
    with pytest.raises(ImportRejected) as info:
        list(import_files(app, [path], "sims-xml"))
    text = str(info.value)
    assert path.name in text
    for secret in SECRETS:
        assert secret not in text, f"personal data in {text!r}"
    assert snapshot(app.engine()) == before, "a refused file changed the store"
    return info.value.problems


def school_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1) if (first + timedelta(days=i)).weekday() < 5]


def marks(adno: str, days: list[date], am: str, pm: str) -> list[Row]:
    return [{"Adno": adno, "Date": f"{d.isoformat()}T00:00:00", "Session": s, "Mark": m}
            for d in days for s, m in (("AM", am), ("PM", pm))]


def stored_pupils(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t.pupils).order_by(t.pupils.c.id)).mappings()]


def cases(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.cases.c.kind, t.cases.c.status).order_by(t.cases.c.id))]


# -- the pupils report: one row per contact, the pupil's own fields on each ------------------------
def test_pupil_details_given_on_a_later_row_of_the_pupil_are_stored(app: App, tmp_path: Path) -> None:
    """Only the pupil's first row was read for its own details: a UPN, date of birth, address or
    telephone that the first row left empty (CommandReporter leaves an empty field out) and a later
    row gave was lost without a word: the referral and the home visit had no address, the
    compulsory-school-age check no date of birth, and the UPN could not match the child's CTF."""
    path = export(tmp_path / "pupils-1.xml",
                  {**CHILD, "Date of Birth": "2017-05-01T00:00:00", "Telephone": "01684 000111",
                   "Contact ID": "1", "Contact Surname": "Example", "In Care": "No"},
                  {**CHILD, "UPN": UPN_A, "Date of Birth": "01/05/2017", "House Number": "12",
                   "Street": "High Street", "Town": "Tewkesbury", "Postcode": "GL20 5AA",
                   "Telephone": "07700 900222", "Contact ID": "2", "Contact Surname": "Other", "In Care": "No"})
    (warnings,) = imported(app, path)
    (pupil,) = stored_pupils(app.engine())
    assert pupil["upn"] == UPN_A
    assert pupil["dob"] == date(2017, 5, 1), "one date, written two ways"
    assert pupil["address"] == {"lines": ["12 High Street", "Tewkesbury"], "postcode": "GL20 5AA"}
    assert pupil["phones"] == ["01684 000111", "07700 900222"], "each row's number kept"
    assert warnings == []


@pytest.mark.parametrize(("field", "first", "second"), [
    ("UPN", UPN_A, UPN_B),
    ("Date of Birth", "2017-05-01T00:00:00", "2016-02-03T00:00:00"),
    ("Person ID", "5001", "5002"),
])
def test_rows_of_one_adno_that_are_two_children_are_refused(app: App, tmp_path: Path, field: str, first: str,
                                                            second: str) -> None:
    """Two rows with one Adno but two UPNs, dates of birth or SIMS person ids are two children
    (an admission number typed twice) or a damaged report: the second row's identity was never
    read, so the two were stored as one pupil, the other child's parents listed as this child's
    contacts (and given to the LA in its referral) and its child protection plan raised on this
    child."""
    imported(app, export(tmp_path / "pupils-1.xml", {**CHILD, field: first, "Contact ID": "1",
                                                     "Contact Surname": "Example", "Child Protection Plan": "No"}))
    path = export(tmp_path / "pupils-2.xml",
                  {**CHILD, field: first, "Contact ID": "1", "Contact Surname": "Example",
                   "Child Protection Plan": "No"},
                  {**CHILD, field: second, "Contact ID": "2", "Contact Surname": "Other",
                   "Child Protection Plan": "Yes"})
    problems = refused(app, path)
    assert len(problems) == 1 and problems[0].startswith(f"record 2, field {field}: contradicts record 1, "), problems
    assert "Adno 1234" in problems[0] and "(value withheld" not in problems[0]


def test_a_bad_date_of_birth_on_a_later_row_of_the_pupil_is_refused(app: App, tmp_path: Path) -> None:
    """A later row's date of birth was never read, so a date that is no date went unchecked."""
    path = export(tmp_path / "pupils-1.xml",
                  {**CHILD, "Date of Birth": "2017-05-01T00:00:00", "Contact ID": "1", "In Care": "No"},
                  {**CHILD, "Date of Birth": "31/02/2017", "Contact ID": "2", "In Care": "No"})
    assert refused(app, path) == [
        "record 2, field Date of Birth: is not a date (YYYY-MM-DD or DD/MM/YYYY) (value withheld: personal data)"]


def test_pupil_rows_that_disagree_on_a_detail_keep_the_first_and_say_so(app: App, tmp_path: Path) -> None:
    """A detail two rows give differently (an address changed in one sub-report and not the
    other) is not a reason to refuse the file: the first row's is kept, and the office is told
    which field, never its values."""
    path = export(tmp_path / "pupils-1.xml",
                  {**CHILD, "Street": "High Street", "Postcode": "GL20 5AA", "Contact ID": "1", "In Care": "No"},
                  {**CHILD, "Street": "Other Road", "Postcode": "GL20 5AA", "Contact ID": "2", "In Care": "No"})
    (warnings,) = imported(app, path)
    (pupil,) = stored_pupils(app.engine())
    assert pupil["address"] == {"lines": ["High Street"], "postcode": "GL20 5AA"}
    assert [(w.code, w.where, w.pupil_key) for w in warnings] == [("pupil_rows_disagree", "pupils-1.xml record 2",
                                                                   "1234")]
    assert "Street" in warnings[0].message and "record 1" in warnings[0].message
    assert "Other" not in warnings[0].message and "High" not in warnings[0].message


# -- the admissions report: a status that says the child has no place -----------------------------
@pytest.mark.parametrize("status", ["Withdrawal", "Deadline Missed", "Waiting List", "Offer Declined", "Not Offered"])
def test_an_application_that_ended_or_was_never_offered_opens_no_case(app: App, tmp_path: Path, status: str) -> None:
    """SIMS writes a withdrawn application as "Withdrawal" (and has "Deadline Missed" and "Waiting
    List" for a child never offered the place): only "Withdrawn", "Declined", "Refused",
    "Cancelled" and "Rejected" were known, so any of these read as a live offer, and once the
    expected start had passed a "place not taken up" case opened, to be referred to the LA, for a
    child who never had a place here. An accepted place (the second child) still opens one."""
    path = export(tmp_path / "admissions-1.xml",
                  {"Person ID": "9001", "Legal Surname": "Example", "Year Group": "Reception",
                   "Agreed Start Date": "2025-09-03T00:00:00", "Application Status": status},
                  {"Person ID": "9002", "Legal Surname": "Other", "Year Group": "Reception",
                   "Agreed Start Date": "2025-09-03T00:00:00", "Application Status": "Accepted"})
    (warnings,) = imported(app, path)
    run_detect(app, date(2025, 10, 3))
    with app.engine().connect() as conn:
        opened = conn.execute(select(t.pupil_keys.c.pupil_key, t.cases.c.kind).join(
            t.cases, t.cases.c.pupil_id == t.pupil_keys.c.pupil_id)).all()
    assert [tuple(r) for r in opened] == [("id:9002", "place_not_taken_up")]
    assert warnings == []


def test_an_application_status_not_known_is_kept_as_an_offer_with_a_warning(app: App, tmp_path: Path) -> None:
    """A status the adapter does not know was kept as an offer without a word: the school could
    not tell that its own status (say "Provisional") was read as a place."""
    path = export(tmp_path / "admissions-1.xml",
                  {"Person ID": "9001", "Legal Surname": "Example", "Year Group": "Reception",
                   "Agreed Start Date": "2025-09-03T00:00:00", "Application Status": "Provisional"})
    (warnings,) = imported(app, path)
    assert [(w.code, w.where) for w in warnings] == [("unknown_application_status", "admissions-1.xml record 1")]
    assert "'Provisional'" in warnings[0].message and "Example" not in warnings[0].message
    run_detect(app, date(2025, 10, 3))
    assert cases(app.engine()) == [("place_not_taken_up", "open")], "kept as an offer, as before"


# -- the leavers report: a destination written as "not known" in other words ---------------------
@pytest.mark.parametrize("destination", ["N/K", "nk", "CME", "Lost Pupil", "Lost pupils database",
                                         "No forwarding address", "Not applicable", "Not stated."])
def test_a_destination_that_says_it_is_not_known_opens_a_destination_unknown_case(app: App, tmp_path: Path,
                                                                                   destination: str) -> None:
    """A leaver's Destination typed as "N/K", "CME", "Lost pupil" (the DfE's lost pupils database,
    where a CTF without a destination goes) or "No forwarding address" was stored as a destination
    school: no "destination unknown" case, the child who left for nowhere known never referred.
    "Unknown", "Not known" and "N/A" were already read as none; so is "Not applicable" now."""
    path = export(tmp_path / "leavers-1.xml",
                  {**CHILD, "Admission Date": "2022-09-05T00:00:00", "Leaving Date": "2025-11-14T00:00:00",
                   "Reason for Leaving": "Moved away", "Destination": destination},
                  {"Adno": "1300", "Legal Surname": "Other", "Admission Date": "2022-09-05T00:00:00",
                   "Leaving Date": "2025-11-14T00:00:00", "Reason for Leaving": "Transferred",
                   "Destination": "St Peter's Primary"})
    imported(app, path)
    run_detect(app, date(2025, 11, 21))
    with app.engine().connect() as conn:
        opened = conn.execute(select(t.pupil_keys.c.pupil_key, t.cases.c.kind).join(
            t.cases, t.cases.c.pupil_id == t.pupil_keys.c.pupil_id)).all()
    assert [tuple(r) for r in opened] == [("1234", "destination_unknown")], "a known school opens none"


def test_a_leaving_without_its_admission_dates_is_warned_about(app: App, tmp_path: Path) -> None:
    """A leavers report without Admission Date (or the date left out of a row) gave a leaving that
    matches no admission: stored beside the admission the admissions report gave, it left the
    child on roll, and no "destination unknown" case opened, without a word. The leaving is
    still stored (a school's leavers of earlier years, never in the admissions report, open
    their case with it), and the school is told to add the field."""
    imported(app, export(tmp_path / "admissions-1.xml", {**CHILD, "Admission Date": "2025-09-03T00:00:00",
                                                          "Application Status": "Admitted"}))
    (warnings,) = imported(app, export(tmp_path / "leavers-1.xml",
                                       {**CHILD, "Leaving Date": "2025-11-14T00:00:00", "Destination": "Unknown"},
                                       {**CHILD, "Leaving Date": "2025-11-14T00:00:00", "Destination": "Unknown"},
                                       {"Adno": "1300", "Admission Date": "2022-09-05T00:00:00",
                                        "Leaving Date": "2025-11-14T00:00:00"}))
    assert [(w.code, w.where, w.pupil_key) for w in warnings] == [
        ("leaving_without_admission", "leavers-1.xml record 1", "1234")]
    assert "Admission Date" in warnings[0].message and "Example" not in warnings[0].message


# -- the admissions report read after the leavers report, on a night the leavers export failed ------
def _leavings(engine: Engine) -> list[tuple[Any, ...]]:
    e = t.enrolments.c
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(e.admission_date, e.leaving_date, e.leaving_reason,
                                                      e.destination).order_by(e.id))]


def test_an_admissions_report_without_leaving_fields_keeps_the_stored_leaving(app: App, tmp_path: Path) -> None:
    """An admissions report whose columns say nothing of leaving (no Leaving Date, Reason for
    Leaving or Destination in any row) stored its rows as admissions with no leaving: a leaver
    it still lists lost the leaving the leavers report had stored. The leavers report read later
    the same night put it back, but on a night its export failed the child looked on roll again,
    and the open "destination unknown" case closed. Such a report now keeps a stored leaving whose
    date has passed (a planned leaving it lists without one is still taken as cancelled:
    ``test_leavers_review.py``)."""
    admitted = {**CHILD, "Admission Date": "2022-09-05T00:00:00", "Application Status": "Admitted"}
    imported(app, export(tmp_path / "leavers-1.xml", {**CHILD, "Admission Date": "2022-09-05T00:00:00",
                                                        "Leaving Date": "2025-11-14T00:00:00",
                                                        "Reason for Leaving": "Moved away"}))
    run_detect(app, date(2025, 11, 21))
    assert cases(app.engine()) == [("destination_unknown", "open")]
    stored = _leavings(app.engine())
    assert stored == [(None, date(2025, 11, 14), "Moved away", None)]

    imported(app, export(tmp_path / "admissions-2.xml", admitted))  # the leavers export failed that night
    assert _leavings(app.engine()) == stored, "the leaving is kept"
    run_detect(app, date(2025, 11, 24))
    assert cases(app.engine()) == [("destination_unknown", "open")], "the child is still missing"


def test_an_admissions_report_with_leaving_fields_still_clears_a_leaving_undone_in_sims(app: App,
                                                                                       tmp_path: Path) -> None:
    """A report that has a leaving column (some row gives a Leaving Date) speaks of every row's
    leaving: a row without one is an admission not ended (a leaving undone in SIMS), as before."""
    imported(app, export(tmp_path / "leavers-1.xml", {**CHILD, "Admission Date": "2022-09-05T00:00:00",
                                                        "Leaving Date": "2025-11-14T00:00:00",
                                                        "Reason for Leaving": "Moved away"}))
    imported(app, export(tmp_path / "admissions-2.xml",
                         {**CHILD, "Admission Date": "2022-09-05T00:00:00", "Application Status": "Admitted"},
                         {"Adno": "1300", "Legal Surname": "Other", "Admission Date": "2022-09-05T00:00:00",
                          "Application Status": "Admitted", "Leaving Date": "2025-10-10T00:00:00"}))
    leavings = [row[1] for row in _leavings(app.engine())]
    assert leavings == [None, date(2025, 10, 10)]


def test_a_leaving_without_its_admission_dates_ends_the_admission_the_admissions_report_gave(
        app: App, tmp_path: Path) -> None:
    """The leaving above, stored apart from the admission it ends (the store knows an admission
    by its first day), left the child on roll: **no "destination unknown" case** for a child gone
    nobody knows where. It now ends the latest admission begun before it that has no leaving of
    its own, in ``detect`` and on the referral's form; a child with a later admission (back
    since) stays on roll."""
    from cme_batch.referral.content import build_document

    imported(app, export(tmp_path / "admissions-1.xml",
                         {**CHILD, "Admission Date": "2022-09-05T00:00:00", "Application Status": "Admitted"},
                         {"Adno": "1300", "Legal Surname": "Other", "Admission Date": "2022-09-05T00:00:00",
                          "Application Status": "Admitted"},
                         {"Adno": "1300", "Legal Surname": "Other", "Admission Date": "2025-11-17T00:00:00",
                          "Application Status": "Admitted"}))
    imported(app, export(tmp_path / "leavers-1.xml",
                         {**CHILD, "Leaving Date": "2025-11-14T00:00:00", "Reason for Leaving": "Moved away"},
                         {"Adno": "1300", "Leaving Date": "2025-11-14T00:00:00"}))
    run_detect(app, date(2025, 11, 21))
    with app.engine().connect() as conn:
        opened = conn.execute(select(t.pupil_keys.c.pupil_key, t.cases.c.kind, t.cases.c.id).join(
            t.cases, t.cases.c.pupil_id == t.pupil_keys.c.pupil_id).where(
            t.cases.c.kind == "destination_unknown")).all()
        # (no register has been imported here: 1300, not seen since the readmission, is a place not taken up)
        assert [(k, kind) for k, kind, _id in opened] == [("1234", "destination_unknown")], \
            "the child back since (a later admission) is on roll"
        child = build_document(conn, opened[0][2], app.config, app.now())["child"]
    assert (child["entry_date"], child["leaving_date"], child["leaving_reason"]) == \
        ("2022-09-05", "2025-11-14", "Moved away")
