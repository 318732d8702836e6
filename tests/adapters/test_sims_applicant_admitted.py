"""An applicant SIMS knew by person id, then admitted with an admission number, is one pupil.

Until a child is admitted, SIMS gives no admission number: the admissions report lists the
applicant by person id (key ``id:<person id>``). Once admitted, the same child's rows carry the
Adno and, with the person id still in the report, the store follows the child from one key to
the other. Two pupils instead would leave the applicant's place looking "not taken up" (a CME
case, and a referral, for a child in class every day), and a reception intake without UPNs
would raise one for every child.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from cme_batch.app import App
from cme_batch.detect import run_detect
from cme_batch.importer import import_files
from cme_batch.store import tables as t

HEAD = '<?xml version="1.0" encoding="iso-8859-1" standalone="yes"?>\n<SuperStarReport>\n'
CHILD = {"Person_x0020_ID": "9001", "Legal_x0020_Surname": "Newkid", "Legal_x0020_Forename": "Ada",
         "Year_x0020_Group": "Reception", "Date_x0020_of_x0020_Birth": "2021-05-01T00:00:00",
         "Agreed_x0020_Start_x0020_Date": "2025-09-03T00:00:00"}


def report(path: Path, *records: dict[str, str]) -> Path:
    body = "".join("  <Record>" + "".join(f"<{k}>{v}</{k}>" for k, v in r.items()) + "</Record>\n" for r in records)
    path.write_text(HEAD + body + "</SuperStarReport>\n", encoding="latin-1")
    return path


def present_every_day(path: Path, adno: str, first: date, last: date) -> Path:
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return report(path, *({"Adno": adno, "Date": f"{d}T00:00:00", "Session": s, "Mark": m}
                          for d in days if d.weekday() < 5 for s, m in (("AM", "/"), ("PM", "\\"))))


def test_an_admitted_applicant_is_the_same_pupil_and_no_place_not_taken_up(app: App, tmp_path: Path) -> None:
    applicant = report(tmp_path / "admissions-1.xml", {**CHILD, "Application_x0020_Status": "Accepted"})
    assert [o.status for o in import_files(app, [applicant], "sims-xml")] == ["ok"]
    admitted = report(tmp_path / "admissions-2.xml", {"Adno": "001300", **CHILD, "Application_x0020_Status": "Admitted",
                                                      "Admission_x0020_Date": "2025-09-03T00:00:00"})
    marks = present_every_day(tmp_path / "marks-2.xml", "001300", date(2025, 9, 3), date(2025, 10, 3))
    assert [o.status for o in import_files(app, [admitted, marks], "sims-xml")] == ["ok", "ok"]
    run_detect(app, date(2025, 10, 3))
    with app.engine().connect() as conn:
        keys = conn.execute(select(t.pupil_keys.c.pupil_key, t.pupil_keys.c.pupil_id)).all()
        enrolments = conn.execute(select(t.enrolments.c.admission_date, t.enrolments.c.entry_date)).all()
        cases = conn.execute(select(t.cases.c.kind)).scalars().all()
    assert len({pid for _, pid in keys}) == 1 and {k for k, _ in keys} == {"id:9001", "1300"}
    assert [tuple(e) for e in enrolments] == [(date(2025, 9, 3), date(2025, 9, 3))], "one admission, one enrolment"
    assert cases == [], "a child in class every day has taken up the place"
