"""The new school year, when most children go missing from education, on a real store.

The school's SIMS exports are written as its scheduled task writes them (pupils, admissions,
leavers, marks: ``adapters.sims.writer``) and imported through the importer, then ``detect``
runs night by night as the timer runs it. What is checked is what a user sees: the cases, their
stage, school days and referral due date, and the warnings of the morning emails.

The SIMS leavers report lists the pupils who left *this* academic year, and cme-batch never
removes an admission a SIMS export stops giving: a July leaving the school undoes in SIMS
over the summer (the child came back in September) stays in the store after the export stops
carrying it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from adapters.sims.writer import write_enrolments, write_marks, write_pupils
from cme_batch import detect
from cme_batch.app import App
from cme_batch.importer import import_files
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord
from cme_batch.store import tables as t
from tests.conftest import write_config

# the rest of 2025/26 (the autumn term 2025 is in the base configuration) and the autumn of 2026/27
TERMS = """
[[calendar.terms]]
start = "2026-01-05"
end = "2026-03-27"

[[calendar.terms]]
start = "2026-04-13"
end = "2026-07-17"

[[calendar.terms]]
start = "2026-09-03"
end = "2026-10-23"
"""
JULY = (date(2026, 7, 6), date(2026, 7, 17))
ADMITTED = date(2021, 9, 6)


def _weekdays(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)
            if (first + timedelta(days=i)).weekday() < 5]


def _pupil(key: str) -> PupilRecord:
    return PupilRecord(key, legal_surname=f"Surname{key}", legal_forename=f"Forename{key}", dob=date(2017, 3, 1),
                       year_group="4", reg_group="4B")


class School:
    """One school's store and its SIMS drop: each ``export`` writes the four reports and imports them."""

    def __init__(self, engine: Engine, store_url: str, tmp_path: Path) -> None:
        self.clock = datetime(2026, 7, 1, 19, tzinfo=UTC)
        self.app = App(str(write_config(tmp_path, store_url, TERMS)), clock=lambda: self.clock)
        self.app._engine = engine
        self.folder = tmp_path / "sims"
        self.n = 0
        self.known: dict[str, PupilRecord] = {}  # every pupil ever exported (a leaver's identity in the leavers report)

    def export(self, on: date, pupils: list[PupilRecord], enrolments: Iterable[EnrolmentRecord],
               marks: Iterable[MarksRecord]) -> None:
        """The evening export of ``on`` (19:00, after the registers close), imported at once: ``pupils``
        on roll, with the admissions and leavers of this academic year in ``enrolments``."""
        self.clock = datetime(on.year, on.month, on.day, 19, tzinfo=UTC)
        self.n += 1
        folder = self.folder / str(self.n)
        folder.mkdir(parents=True)
        self.known.update((p.pupil_key, p) for p in pupils)
        by_key = self.known
        enrolments = list(enrolments)
        paths = [write_pupils(folder / "pupils-1.xml", pupils, {}, {}),
                 write_enrolments(folder / "admissions-1.xml", by_key, [e for e in enrolments if not e.leaving_date]),
                 write_enrolments(folder / "leavers-1.xml", by_key, [e for e in enrolments if e.leaving_date]),
                 write_marks(folder / "marks-1.xml", by_key, marks)]
        list(import_files(self.app, paths, "sims-xml"))

    def night(self, as_of: date) -> detect.DetectReport:
        """The night's detect, early the next morning."""
        self.clock = datetime(as_of.year, as_of.month, as_of.day, 19, tzinfo=UTC) + timedelta(hours=10)
        return detect.run_detect(self.app, as_of)

    def cases(self) -> list[dict[str, Any]]:
        with self.app.engine().connect() as conn:
            rows = conn.execute(select(t.cases, t.pupil_keys.c.pupil_key).join(
                t.pupil_keys, t.pupil_keys.c.pupil_id == t.cases.c.pupil_id).order_by(t.cases.c.id)).mappings()
            return [dict(r) for r in rows]


def _marks(key: str, days: Iterable[date], code: str) -> Iterator[MarksRecord]:
    for d in days:
        yield MarksRecord(key, d, (code, "\\" if code == "/" else code))


# -- a July leaving undone in SIMS over the summer ------------------------------------------------------
def test_a_july_leaver_still_registered_in_september_is_watched_as_on_roll(engine: Engine, store_url: str,
                                                                          tmp_path: Path) -> None:
    """Two children recorded in July as leaving on the last day of term, one with a destination
    ("moving to Cleeve School"), one without. Neither went: the school undid the leavings in SIMS,
    so September's exports list both as pupils on roll and mark them absent (N) every day, and
    September's leavers report (this academic year) no longer carries the July leavings.

    Before: both were "left" for cme-batch for good. The child with a destination had **no case
    and no warning at all** through two weeks of unexplained absence; the other kept only the
    July "destination unknown" case, so none of the policy's steps (first-day call, contacts,
    home visit) and no 10th-day referral for an absence were ever asked for.
    """
    school = School(engine, store_url, tmp_path)
    pupils = [_pupil(k) for k in ("1", "2", "3", "4")]
    july_roll = [EnrolmentRecord("1", None, ADMITTED), EnrolmentRecord("2", None, ADMITTED),
                 EnrolmentRecord("3", None, ADMITTED, leaving_date=JULY[1], destination="Cleeve School"),
                 EnrolmentRecord("4", None, ADMITTED, leaving_date=JULY[1])]
    school.export(JULY[1], pupils, july_roll, [m for p in pupils for m in _marks(p.pupil_key, _weekdays(*JULY), "/")])
    school.night(JULY[1])
    assert [(c["pupil_key"], c["kind"]) for c in school.cases()] == [("4", "destination_unknown")]

    september = _weekdays(date(2026, 9, 3), date(2026, 9, 16))
    for i, night in enumerate(september):
        done = september[:i + 1]
        school.export(night, pupils, [],  # no admission this year; no leaver this year
                      [*(m for k in "12" for m in _marks(k, done, "/")), *(m for k in "34" for m in _marks(k, done, "N"))])
        report = school.night(night)
        absent = {c["pupil_key"]: c for c in school.cases() if c["kind"] == "unexplained_absence"}
        assert sorted(absent) == ["3", "4"], night
        assert {c["school_days"] for c in absent.values()} == {i + 1}, night
        assert any("2 pupil(s) recorded as having left" in w and "4B" in w for w in report.warnings), night
    # the policy's steps, by the 10th school day of absence (3, 4, 7-11, 14, 15, 16 September)
    assert {(c["stage"], c["episode_start"], c["referral_due"]) for c in absent.values()} == {
        ("referral_due", date(2026, 9, 3), date(2026, 9, 16))}
    [du] = [c for c in school.cases() if c["kind"] == "destination_unknown"]
    assert (du["status"], du["closed_reason"], du["closed_on"]) == ("closed", "no_longer_applies", date(2026, 9, 3))


def test_a_leaving_dated_back_over_the_summer_opens_destination_unknown_at_once(engine: Engine, store_url: str,
                                                                                tmp_path: Path) -> None:
    """The register of 16 and 17 July was kept for a child (present), then on 20 July the school
    records that the family left on the 15th, no destination known. Those two days' marks were
    stored before the leaving was: they are the past, not a register SIMS still keeps, so the
    holiday night (still evaluating 17 July) opens "destination unknown" at once instead of
    waiting for September with the child "still registered"."""
    school = School(engine, store_url, tmp_path)
    pupils = [_pupil(k) for k in ("1", "2", "3")]
    roll = [EnrolmentRecord(k, None, ADMITTED) for k in "123"]
    july = [m for p in pupils for m in _marks(p.pupil_key, _weekdays(*JULY), "/")]
    school.export(JULY[1], pupils, roll, july)
    school.night(JULY[1])
    assert school.cases() == []
    left = EnrolmentRecord("3", None, ADMITTED, leaving_date=date(2026, 7, 15))
    school.export(date(2026, 7, 20), pupils[:2], [*roll[:2], left], [m for m in july if m.pupil_key != "3"])
    report = school.night(JULY[1])  # the holiday: the last school day again
    assert [(c["pupil_key"], c["kind"], c["status"]) for c in school.cases()] == [("3", "destination_unknown", "open")]
    assert not [w for w in report.warnings if "recorded as having left" in w]


# -- a child gone from the MIS's exports over the summer ----------------------------------------------------
def test_a_child_gone_from_every_september_export_is_warned_about_on_the_10th_school_day(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """A child on roll in July is in none of September's exports: no pupil row, no leaving, no mark
    (taken off roll in SIMS with a leaving that never reached cme-batch). No streak counts a day with
    no mark, so no case opens; the daily "no register mark" warning alone read the same as a register
    not taken yesterday. On the 10th school day with no mark at all, the warning says so."""
    school = School(engine, store_url, tmp_path)
    pupils = [_pupil(k) for k in ("1", "2", "3")]
    roll = [EnrolmentRecord(k, None, ADMITTED) for k in "123"]
    school.export(JULY[1], pupils, roll, [m for p in pupils for m in _marks(p.pupil_key, _weekdays(*JULY), "/")])
    school.night(JULY[1])
    september = _weekdays(date(2026, 9, 3), date(2026, 9, 16))
    for i, night in enumerate(september):
        school.export(night, pupils[:2], [], [m for k in "12" for m in _marks(k, september[:i + 1], "/")])
        report = school.night(night)
        long = [w for w in report.warnings if "no register mark at all for 10 school days" in w]
        assert any(f"no register mark on {night:%a %d %b %Y} for 1 pupil(s)" in w for w in report.warnings), night
        if i < 9:
            assert long == [], night
        else:
            assert len(long) == 1 and "since Thu 03 Sep 2026" in long[0] and "4B" in long[0], report.warnings
            assert "Surname3" not in long[0] and "Forename3" not in long[0]
    assert school.cases() == []
