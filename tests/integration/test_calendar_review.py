"""An adversarial review of the school calendar and the repeat window's edges, on a real store.

The registers are written as the school's SIMS scheduled task writes them and imported through
the importer (``cme-batch import``'s own path), then ``detect`` runs as the nightly runs it and
``streaks --as-of`` as a user runs it. What is checked is what a user sees: a case opened, its
school days and referral due date, the streak's days, and the warnings of the morning emails and of `status`.

Each test is a child who was missed before: an absence on a day the configuration wrongly makes
no school day (a moved INSET day, a forgotten half of a term, a bank holiday the school opened on
in exchange for another day), and a July leaver or July admission seen by a school that came to
cme-batch in September with only this year's terms and none of last year's registers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, select

from adapters.sims.writer import write_enrolments, write_marks, write_pupils
from cme_batch import detect
from cme_batch.cli import cli
from cme_batch.importer import import_files
from cme_batch.model import EnrolmentRecord, MarksRecord
from cme_batch.store import tables as t
from tests.conftest import BASE_CONFIG
from tests.helpers import clocked_app, weekdays, year4_pupil

D = date.fromisoformat
AUTUMN_2025 = """
[[calendar.terms]]
start = "2025-09-02"
end = "2025-10-24"

[[calendar.terms]]
start = "2025-11-03"
end = "2025-12-19"
"""
ADMITTED = D("2021-09-06")


class School:
    """One school's store, configured with ``calendar`` (TOML: [calendar] and its terms), and its SIMS drop."""

    def __init__(self, engine: Engine, store_url: str, tmp_path: Path, calendar: str) -> None:
        text = BASE_CONFIG.format(url=store_url)
        head, rest = text.split("[calendar]", 1)
        path = tmp_path / "cme-batch.toml"
        path.write_text(head + calendar + "\n" + rest[rest.index("[mail]"):], encoding="utf-8")
        self.app = clocked_app(path, engine, datetime(2025, 9, 1, 19, tzinfo=UTC))
        self.folder = tmp_path / "sims"
        self.n = 0
        self.pupils = {k: year4_pupil(k) for k in "12345678"}

    def export(self, on: date, enrolments: Iterable[EnrolmentRecord], marks: Mapping[str, Mapping[date, str]]) -> None:
        """The evening export of ``on``: the pupils with marks or an admission given, those admissions
        and leavers, and the marks (``{pupil: {day: "NN"}}``, one character a session), imported at once."""
        self.app.clock_box["now"] = datetime(on.year, on.month, on.day, 19, tzinfo=UTC)  # type: ignore[attr-defined]
        self.n += 1
        folder = self.folder / str(self.n)
        folder.mkdir(parents=True)
        enrolments = list(enrolments)
        records = [MarksRecord(k, d, (pair[0], pair[1])) for k, days in marks.items() for d, pair in days.items()]
        keys = {*marks, *(e.pupil_key for e in enrolments)}
        paths = [write_pupils(folder / "pupils-1.xml", [p for k, p in self.pupils.items() if k in keys], {}, {}),
                 write_enrolments(folder / "admissions-1.xml", self.pupils, [e for e in enrolments if not e.leaving_date]),
                 write_enrolments(folder / "leavers-1.xml", self.pupils, [e for e in enrolments if e.leaving_date]),
                 write_marks(folder / "marks-1.xml", self.pupils, records)]
        list(import_files(self.app, paths, "sims-xml"))

    def night(self, as_of: date) -> detect.DetectReport:
        self.app.clock_box["now"] = datetime(as_of.year, as_of.month, as_of.day, 19, tzinfo=UTC) + timedelta(  # type: ignore[attr-defined]
            hours=10)
        return detect.run_detect(self.app, as_of)

    def cases(self) -> list[dict[str, Any]]:
        with self.app.engine().connect() as conn:
            rows = conn.execute(select(t.cases, t.pupil_keys.c.pupil_key).join(
                t.pupil_keys, t.pupil_keys.c.pupil_id == t.cases.c.pupil_id).order_by(t.cases.c.id)).mappings()
            return [dict(r) for r in rows]

    def streaks(self, as_of: date) -> list[dict[str, Any]]:
        """``cme-batch streaks --as-of DATE --format json``, as a user runs it."""
        result = CliRunner().invoke(cli, ["--config", str(self.app.config_path), "streaks", "--as-of",
                                          as_of.isoformat(), "--format", "json"])
        assert result.exit_code == 0, result.output
        rows: list[dict[str, Any]] = json.loads(result.stdout)
        return rows


def _everyone(days: Iterable[date], absent: str = "", absent_on: Iterable[date] = (),
              code: str = "NN") -> dict[str, dict[date, str]]:
    """Pupils 1-4 present on ``days``; pupil ``absent`` marked ``code`` on ``absent_on``."""
    off = set(absent_on)
    return {k: {d: code if k == absent and d in off else "/\\" for d in days} for k in "1234"}


def _opened_on_registers(warnings: list[str]) -> list[str]:
    return [w for w in warnings if "the registers show the school open on" in w]


# -- a day the configuration makes no school day, on which the school was open --------------------------
def test_an_absence_on_a_moved_inset_day_opens_its_case(engine: Engine, store_url: str, tmp_path: Path) -> None:
    """The INSET day planned for Monday 3 November (calendar.closures) moved to Friday 24 October;
    the configuration was not changed. The school was open on the 3rd, every pupil marked, one
    child N; on the 24th everyone is '#'.

    Before: the 3rd was no school day whatever the registers said: **the child's absence was never
    counted**, no case, no first-day call, and no warning (the 24th, all '#', was found closed)."""
    school = School(engine, store_url, tmp_path, '[calendar]\nclosures = ["2025-09-01", "2025-11-03"]\n'
                    + AUTUMN_2025)
    october = weekdays(D("2025-10-20"), D("2025-10-24"))
    marks = _everyone(october)
    for k in marks:
        marks[k][D("2025-10-24")] = "##"
    school.export(D("2025-10-24"), [], marks)
    assert school.cases() == [] and not _opened_on_registers(school.night(D("2025-10-24")).warnings)

    school.export(D("2025-11-03"), [], _everyone([D("2025-11-03")], "4", [D("2025-11-03")]))
    report = school.night(D("2025-11-03"))
    [case] = school.cases()
    assert (case["pupil_key"], case["kind"], case["episode_start"], case["school_days"], case["stage"]) == (
        "4", "unexplained_absence", D("2025-11-03"), 1, "first_day_call")
    [warning] = _opened_on_registers(report.warnings)
    assert "Mon 03 Nov 2025 (a closure in calendar.closures)" in warning
    assert "count as school days" in warning and "[calendar]" in warning
    assert "Surname" not in warning and "Forename" not in warning

    # the technician sees it too, without the office's mail
    status = CliRunner().invoke(cli, ["--config", str(school.app.config_path), "status"])
    assert status.exit_code == 0, status.output
    assert "Warnings of the last detect run (as of 2025-11-03):" in status.stdout
    assert "the registers show the school open on 1 day(s)" in status.stdout

    school.export(D("2025-11-04"), [], _everyone([D("2025-11-04")]))
    school.night(D("2025-11-04"))
    [case] = school.cases()
    assert (case["status"], case["closed_reason"]) == ("closed", "returned")


def test_a_forgotten_half_of_the_spring_term_still_counts_the_absence(engine: Engine, store_url: str,
                                                                      tmp_path: Path) -> None:
    """Terms typed as half terms, the second half of the spring term (23 Feb - 27 Mar 2026) left
    out. The school is open and the MIS sends every register; one child is N from 23 February.

    Before: every day of those five weeks was "holiday": **no case, no streak, and no warning at
    all** (the summer term is configured, so the evaluation date was never "after the last term")."""
    school = School(engine, store_url, tmp_path, """[calendar]
[[calendar.terms]]
start = "2026-01-05"
end = "2026-02-13"

[[calendar.terms]]
start = "2026-04-13"
end = "2026-07-17"
""")
    spring1 = weekdays(D("2026-02-02"), D("2026-02-13"))
    spring2 = weekdays(D("2026-02-23"), D("2026-03-06"))
    school.export(D("2026-03-06"), [], _everyone(spring1 + spring2, "4", spring2))
    # the nightly's evaluation date stays on the last configured school day: the warning says why
    report = school.night(D("2026-02-13"))
    [warning] = _opened_on_registers(report.warnings)
    assert "Mon 23 Feb 2026 to Fri 06 Mar 2026 (outside every term in calendar.terms)" in warning
    # evaluated as of a day the school was open (detect --as-of, streaks --as-of)
    report = school.night(D("2026-03-06"))
    [case] = school.cases()
    assert (case["pupil_key"], case["episode_start"], case["school_days"], case["stage"], case["referral_due"]) == (
        "4", D("2026-02-23"), 10, "referral_due", D("2026-03-06"))
    [row] = school.streaks(D("2026-03-04"))
    assert (row["unexplained_start"], row["unexplained_days"], row["register_gaps"]) == ("2026-02-23", 8, [])


def test_a_bank_holiday_the_school_opened_on_counts_and_the_day_given_instead_does_not(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """The school opened on the May Day bank holiday (Mon 4 May 2026) and closed on Fri 8 May
    instead (everyone '#'), without ``not_holidays``/``closures`` in the configuration. A child is
    N from 4 May to 15 May.

    Before: 4 May was a bank holiday whatever the registers said: the streak began on the 5th,
    **the first-day call and every step came a school day late**, and the referral's 10th day was
    put a day later than the child's 10th day of absence."""
    school = School(engine, store_url, tmp_path, """[calendar]
[[calendar.terms]]
start = "2026-04-13"
end = "2026-05-22"
""")
    days = weekdays(D("2026-04-27"), D("2026-05-15"))
    marks = _everyone(days, "4", [d for d in days if d >= D("2026-05-04")])
    for k in marks:
        marks[k][D("2026-05-08")] = "##"
    school.export(D("2026-05-15"), [], marks)
    school.night(D("2026-05-04"))
    [case] = school.cases()
    assert (case["episode_start"], case["school_days"], case["stage"]) == (D("2026-05-04"), 1, "first_day_call")
    report = school.night(D("2026-05-15"))
    [case] = school.cases()
    # 4-7 and 11-15 May (8 May closed by the registers): 9 school days, the 10th is Monday 18 May
    assert (case["school_days"], case["stage"], case["referral_due"]) == (9, "referral_prepare", D("2026-05-18"))
    [warning] = _opened_on_registers(report.warnings)
    assert "Mon 04 May 2026 (a bank holiday)" in warning and "08 May" not in warning


# -- a school that came to cme-batch in September: last year's leavers and admissions ----------------------
def test_a_july_leaver_and_a_july_place_are_looked_at_by_a_school_new_in_september(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """A school installs cme-batch in September 2025 with this year's terms only; its first
    export carries a leaver of 18 July (no destination), one of the holiday (22 July, whereabouts
    unknown), an admission agreed for 7 July who is on roll but was never seen, and a leaver of
    April 2025 (no destination, long outside the 60 school days). No registers of 2024/25.

    Before: the window stopped at 1 August, because the calendar knew no earlier school day:
    **neither July leaver nor the July place was ever looked at** (no case, nothing in any
    warning), however long the children were missing."""
    school = School(engine, store_url, tmp_path, '[calendar]\nclosures = ["2025-09-01"]\n' + AUTUMN_2025)
    enrolments = [EnrolmentRecord("5", None, ADMITTED, leaving_date=D("2025-07-18")),
                  EnrolmentRecord("6", None, ADMITTED, leaving_date=D("2025-07-22"),
                                  leaving_reason="Moved away, whereabouts unknown"),
                  EnrolmentRecord("7", D("2025-07-07")),
                  EnrolmentRecord("8", None, ADMITTED, leaving_date=D("2025-04-02"))]
    first = D("2025-09-02")
    school.export(first, enrolments, {**_everyone([first]), "7": {first: "NN"}})
    report = school.night(first)
    assert sorted((c["pupil_key"], c["kind"], c["episode_start"], c["stage"]) for c in school.cases()) == [
        ("5", "destination_unknown", D("2025-07-18"), "referral_prepare"),
        ("6", "destination_unknown", D("2025-07-22"), "referral_prepare"),
        ("7", "place_not_taken_up", D("2025-07-07"), "referral_prepare")]
    [warning] = [w for w in report.warnings if "the calendar knows only" in w]
    assert "1 school day(s) up to Tue 02 Sep 2025" in warning and "none before Tue 02 Sep 2025" in warning
    assert "[[calendar.terms]]" in warning and "2024/25" in warning
