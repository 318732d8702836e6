"""Data-quality problems in what the MIS sends, and whether the office is told (sixteenth session's review).

Each test writes the school's SIMS CommandReporter exports with the adapter's own writer, imports
them through the importer (as ``cme-batch import`` and the night's ingest do), runs ``detect`` and
the summary stage night by night, and reads what a user reads: the cases, the office summary and
the DSL digest. The office summary is the office's only view of a night run by the timer: a
warning that reaches only the import's result or the store's run records is one nobody reads.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.sims.writer import write_enrolments, write_marks, write_pupils
from cme_batch import detect, upn
from cme_batch.app import App
from cme_batch.importer import import_files
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, Warning_
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app, weekdays

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)

ON_ROLL_SINCE = date(2021, 9, 6)
#: two school weeks of the autumn term 2025 (the base configuration's), the second of absence
WEEK_1 = weekdays(date(2025, 11, 10), date(2025, 11, 14))
WEEK_2_3 = weekdays(date(2025, 11, 17), date(2025, 11, 28))


@pytest.fixture
def sapp(tmp_path: Path, store_url: str, engine: Engine) -> App:
    """The test school, its clock moved by each export and night."""
    return clocked_app(write_config(tmp_path, store_url), engine, datetime(2025, 11, 1, 19, tzinfo=UTC))


def pupil(key: str, reg: str = "4B", dob: date = date(2016, 5, 1), upn_: str | None = None) -> PupilRecord:
    return PupilRecord(key, upn=upn_, legal_surname=f"Zedfam{key}", legal_forename=f"Quinby{key}", dob=dob,
                       year_group="4", reg_group=reg)


def pair(code: str) -> tuple[str, str]:
    return (code, "\\" if code == "/" else code)


def export(app: App, folder: Path, on: date, pupils: list[PupilRecord], enrolments: list[EnrolmentRecord],
           marks: Iterable[MarksRecord]) -> list[Warning_]:
    """The evening export of ``on`` (pupils, admissions, marks), imported at 19:00; the import's warnings."""
    app.clock_box["now"] = datetime.combine(on, time(19), UTC)  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    by_key = {p.pupil_key: p for p in pupils}
    paths = [write_pupils(folder / "pupils-1.xml", pupils, {}, {}),
             write_enrolments(folder / "admissions-1.xml", by_key, enrolments),
             write_marks(folder / "marks-1.xml", by_key, list(marks))]
    return [w for r in import_files(app, paths, "sims-xml") for w in r.warnings]


def night(app: App, as_of: date) -> detect.DetectReport:
    """The night after ``as_of``: detect, then the morning emails, at 05:30 the next day."""
    app.clock_box["now"] = datetime.combine(as_of + timedelta(days=1), time(5, 30), UTC)  # type: ignore[attr-defined]
    report = detect.run_detect(app, as_of)
    queue_morning_mail(app, as_of)
    return report


def mails(engine: Engine, purpose: str) -> list[str]:
    """The plain text of every message queued for ``purpose``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == purpose).order_by(t.outbox.c.id)).all()
    out = []
    for (mime,) in rows:
        body = email.message_from_bytes(bytes(mime), policy=email.policy.default).get_body(("plain",))
        assert body is not None
        out.append(body.get_content().replace("\r\n", "\n"))
    return out


def cases(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(t.cases).order_by(t.cases.c.id)).mappings()]


def section(text: str, title: str) -> str:
    head = f"{title}\n{'-' * len(title)}\n"
    return text.split(head, 1)[1].split("\n\n", 1)[0] if head in text else ""


def two_pupils_nightly(app: App, tmp_path: Path, enrolment_2: EnrolmentRecord, code_2: str,
                       pupil_2: PupilRecord | None = None) -> detect.DetectReport:
    """Pupil 1 (4B) present throughout; pupil 2 (5C) present in week 1, then ``code_2`` in every
    session for ten school days; each school day exported and evaluated as the timer would."""
    pupils = [pupil("1"), pupil_2 or pupil("2", reg="5C")]
    enrolments = [EnrolmentRecord("1", None, ON_ROLL_SINCE), enrolment_2]
    days = [*WEEK_1, *WEEK_2_3]
    report = None
    for i, day in enumerate(days):
        done = days[:i + 1]
        marks = [*(MarksRecord("1", d, pair("/")) for d in done),
                 *(MarksRecord("2", d, pair(code_2 if d in WEEK_2_3 else "/")) for d in done)]
        export(app, tmp_path / f"night-{i}", day, pupils, enrolments, marks)
        report = night(app, day)
    assert report is not None
    return report


# -- a bad UPN check letter ---------------------------------------------------------------------
def test_a_bad_upn_check_letter_is_told_to_the_office(sapp: App, engine: Engine, tmp_path: Path) -> None:
    """A pupil whose UPN's check letter does not match the rest (a digit mistyped in SIMS). DOMAIN.md 1:
    "Validate the check letter; a bad UPN is a data-quality warning". The import warns (right), but
    the night is run by the timer: the office reads only the morning summary, which must say that a
    UPN needs correcting and where (class or record), never the UPN itself. It says nothing."""
    good = upn.make("916299925001")
    bad = ("A" if good[0] != "A" else "B") + good[1:]
    warnings = export(sapp, tmp_path / "x", WEEK_1[-1], [pupil("1", upn_=bad), pupil("2", reg="5C")],
                      [EnrolmentRecord("1", None, ON_ROLL_SINCE), EnrolmentRecord("2", None, ON_ROLL_SINCE)],
                      [MarksRecord(k, d, pair("/")) for k in "12" for d in WEEK_1])
    assert any(w.code == "bad_upn" for w in warnings)  # the import knows
    night(sapp, WEEK_1[-1])
    [summary] = mails(engine, "summary")
    [digest] = mails(engine, "digest")
    assert bad not in summary and bad not in digest
    assert "check letter" in summary, "the office summary says nothing of the bad UPN"


# -- marks on a weekend -------------------------------------------------------------------------
def test_marks_dated_on_a_weekend_are_told_to_the_office(sapp: App, engine: Engine, tmp_path: Path) -> None:
    """A child's N marks dated on Saturday 22 November (a date typed wrong in the MIS; weekends are never
    school days, DOMAIN.md 3). The import warns "2 mark(s) fall on days the school is not open", but
    the morning summary, which the office reads, says nothing: nobody corrects the date, and the
    absence the marks record counts nowhere."""
    days = [*WEEK_1, *WEEK_2_3]
    marks = [*(MarksRecord(k, d, pair("/")) for k in "12" for d in days),
             MarksRecord("2", date(2025, 11, 22), ("N", "N"))]
    warnings = export(sapp, tmp_path / "x", days[-1], [pupil("1"), pupil("2", reg="5C")],
                      [EnrolmentRecord("1", None, ON_ROLL_SINCE), EnrolmentRecord("2", None, ON_ROLL_SINCE)], marks)
    assert [w.message for w in warnings if w.code == "mark_outside_calendar"] == [
        "2 mark(s) fall on days the school is not open (weekends, closures or outside term)"]
    night(sapp, days[-1])
    [summary] = mails(engine, "summary")
    assert cases(engine) == []
    told = [line for line in summary.splitlines()
            if "mark" in line and ("not open" in line or "weekend" in line or "22 Nov" in line)]
    assert told, "the office summary says nothing of the marks dated on a weekend"


# -- an unknown code (a lower-case n) -------------------------------------------------------------
def test_the_unknown_code_warning_says_which_class_and_when(sapp: App, engine: Engine, tmp_path: Path) -> None:
    """Class 5C's register records a child as `n` (lower case) in every session for ten school days
    (DOMAIN.md 2: a code is case-sensitive, `n` is not `N`: unknown, treated as neutral **and** warned
    about). So no case opens (by the rule) and the warning is all there is of ten days of absence:
    the office must be able to act on it, which for a register means knowing where (the class) and
    when (the dates), as the "no register mark" warning says them. It says "unknown attendance code
    'n' in 20 session(s) of 1 pupil(s) ... map it under [codes] local or subcodes": a configuration
    key, no class, no date."""
    report = two_pupils_nightly(sapp, tmp_path, EnrolmentRecord("2", None, ON_ROLL_SINCE), "n")
    assert cases(engine) == []  # treated as neutral: as the rules say
    [warning] = [w for w in report.warnings if "unknown attendance code 'n'" in w]
    summary = mails(engine, "summary")[-1]
    assert warning in summary  # it reaches the office
    assert "5C" in warning and "Nov 2025" in warning, warning


# -- an admission dated in the future -------------------------------------------------------------
@pytest.mark.xfail(strict=True, reason="a pupil whose admission (Admission Date) is dated ahead of the registers "
                                       "that mark him is off roll for detect: ten days of N, no case, no warning")
def test_marks_before_a_future_admission_date_are_not_lost_unsaid(sapp: App, engine: Engine, tmp_path: Path) -> None:
    """A child put on roll on Mon 10 November 2025 (Agreed Start Date right), whose Admission Date
    was typed a year out (10 November 2026). The registers mark him: present for a week, then N every
    session for ten school days. README: "the MIS registers only its pupils" (the reason a leaver
    still marked is watched as on roll). Expected: the absence opens a case (first-day call ...
    referral due on the 10th day), or at least both morning emails warn, with the class, that a pupil
    has register marks before the admission date. Now: no case, no line in any email, for as long
    as the typo stays."""
    report = two_pupils_nightly(sapp, tmp_path, EnrolmentRecord("2", date(2025, 11, 10), date(2026, 11, 10)), "N")
    summary = mails(engine, "summary")[-1]
    opened = [c for c in cases(engine) if c["kind"] == "unexplained_absence"]
    warned = [w for w in report.warnings if "5C" in w]
    assert opened or warned, "ten school days of N for a child the registers mark, and the office is told nothing"
    assert "Zedfam2" in summary or any(w in summary for w in warned)


# -- a date of birth that makes a Year 4 child 2 years old ----------------------------------------
@pytest.mark.xfail(strict=True, reason="a date of birth that cannot be a Year 4 pupil's (aged 2) is neither refused "
                                       "nor warned: the DSL is told 'below compulsory school age', nobody to fix it")
def test_a_date_of_birth_that_does_not_fit_the_year_group_is_warned(sapp: App, engine: Engine,
                                                                    tmp_path: Path) -> None:
    """A Year 4 child (class 5C here) whose date of birth was typed 2023 for 2016: two years old. The
    absence case opens (DOMAIN.md 5: cases open for younger children too), and the DSL's digest says
    "no: below compulsory school age", as the referral to the LA would (DOMAIN.md 6 carries the
    compulsory-school-age status). Nothing asks anyone to correct the date of birth: a data-quality
    warning (count and class, never the date) belongs in the morning emails, as for a bad UPN."""
    report = two_pupils_nightly(sapp, tmp_path, EnrolmentRecord("2", None, ON_ROLL_SINCE), "N",
                                pupil_2=pupil("2", reg="5C", dob=date(2023, 5, 1)))
    [case] = cases(engine)
    assert (case["kind"], case["stage"]) == ("unexplained_absence", "referral_due")
    digest = mails(engine, "digest")[-1]
    assert "no: below compulsory school age" in section(digest, "Vulnerability of pupils with open cases")
    assert "2023" not in digest
    assert any("date of birth" in w and "5C" in w for w in report.warnings), report.warnings


# -- kept: a leaving date before the admission it ends ------------------------------------------
def test_a_leaving_dated_before_the_admission_still_lets_the_absence_open_its_case(
        sapp: App, engine: Engine, tmp_path: Path) -> None:
    """A child admitted on Mon 10 November 2025 whose planned leaving was typed 17 July 2025 (the
    year before, so before the admission; no destination). SIMS marks the child present, then N for
    ten school days. The leaving is neither refused nor named as before the admission, but the
    registers after it keep the child watched as on roll: the absence case opens on its first day
    and reaches "referral due" on the 10th, and the morning emails carry the warning with the class
    and what to correct in the MIS (never the child's name)."""
    report = two_pupils_nightly(sapp, tmp_path, EnrolmentRecord("2", None, date(2025, 11, 10),
                                                                leaving_date=date(2025, 7, 17)), "N")
    [absence] = [c for c in cases(engine) if c["kind"] == "unexplained_absence"]
    assert (absence["status"], absence["stage"], absence["episode_start"], absence["referral_due"]) == (
        "open", "referral_due", WEEK_2_3[0], WEEK_2_3[-1])
    [warning] = [w for w in report.warnings if "still have register marks after their leaving" in w]
    assert "5C" in warning and "correct it there" in warning and "Zedfam" not in warning
    assert warning in mails(engine, "summary")[-1]
