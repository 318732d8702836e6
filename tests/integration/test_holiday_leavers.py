"""A leaving dated in a holiday, on a real store: the LA's CME team works through the holidays.

The school's SIMS exports are written as its scheduled task writes them and imported through the
importer; the night runs as the timer starts it (05:30, Monday to Friday) with its default
evaluation date (``App.default_as_of``: in a holiday, the last school day before it), and its
``detect`` and ``summary`` stages. What is checked is what the school sees: the case, its dates,
the evaluation date the night used, and the DSL's request to confirm the referral.

A leaving is taken as passed when it is on or before the evaluation date, or when no school day
lies after the evaluation date up to the leaving date and the leaving date has come (the night's
date in England): a leaving dated in a holiday is seen on that holiday's morning, not on the first
morning of the next term; a leaving dated on a later school day waits for that day's registers.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.sims.writer import write_enrolments, write_marks, write_pupils
from cme_batch import detect
from cme_batch.importer import import_files
from cme_batch.model import EnrolmentRecord, MarksRecord
from cme_batch.nightly import NightlyReport, run_nightly
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import TERMS_2026, clocked_app, weekdays, year4_pupil
from tests.replies_support import DSL, KEY, KEY_ENV

D = date.fromisoformat
# the rest of 2025/26 (the autumn term 2025 is in the base configuration) and the autumn of 2026/27
TERMS = TERMS_2026 + """
[[calendar.terms]]
start = "2026-11-02"
end = "2026-12-18"

[replies]
mailbox = "maildir"
token_keys = [{ id = "k1", secret = { env = "CME_TEST_REPLY_KEY" } }]

[replies.maildir]
path = "replies"
"""
ADMITTED = D("2021-09-06")


def _present(keys: str, days: Iterable[date]) -> Iterator[MarksRecord]:
    return (MarksRecord(k, d, ("/", "\\")) for d in days for k in keys)


class School:
    """One school's store and its SIMS drop; ``morning`` runs the night as the timer does."""

    def __init__(self, engine: Engine, store_url: str, tmp_path: Path) -> None:
        self.app = clocked_app(write_config(tmp_path, store_url, TERMS), engine, datetime(2025, 9, 1, 19, tzinfo=UTC))
        self.folder = tmp_path / "sims"
        self.n = 0
        self.pupils = [year4_pupil(k) for k in "123"]

    def export(self, on: date, enrolments: Iterable[EnrolmentRecord], marks: Iterable[MarksRecord]) -> None:
        """The export made on ``on`` at 19:00 (after the registers close), imported at once."""
        self.app.clock_box["now"] = datetime(on.year, on.month, on.day, 19, tzinfo=UTC)  # type: ignore[attr-defined]
        self.n += 1
        folder = self.folder / str(self.n)
        folder.mkdir(parents=True)
        enrolments = list(enrolments)
        by_key = {p.pupil_key: p for p in self.pupils}
        paths = [write_pupils(folder / "pupils-1.xml", self.pupils, {}, {}),
                 write_enrolments(folder / "admissions-1.xml", by_key, [e for e in enrolments if not e.leaving_date]),
                 write_enrolments(folder / "leavers-1.xml", by_key, [e for e in enrolments if e.leaving_date]),
                 write_marks(folder / "marks-1.xml", by_key, list(marks))]
        list(import_files(self.app, paths, "sims-xml"))

    def morning(self, on: date) -> tuple[date, NightlyReport]:
        """The timer's run at 05:30 (England) on ``on``: its default evaluation date, detect and summary."""
        self.app.clock_box["now"] = datetime(on.year, on.month, on.day, 4, 30, tzinfo=UTC)  # type: ignore[attr-defined]
        as_of = self.app.default_as_of()
        report = run_nightly(self.app, as_of, ("detect", "summary"))
        assert not report.failed, report.stages
        return as_of, report

    def cases(self, kind: str = "destination_unknown") -> list[dict[str, Any]]:
        with self.app.engine().connect() as conn:
            rows = conn.execute(select(t.cases, t.pupil_keys.c.pupil_key).join(
                t.pupil_keys, t.pupil_keys.c.pupil_id == t.cases.c.pupil_id).where(t.cases.c.kind == kind)
                .order_by(t.cases.c.id)).mappings()
            return [dict(r) for r in rows]

    def requests_to_dsl(self, ref: str) -> list[EmailMessage]:
        """The confirmation requests queued to the DSL about the case ``ref``."""
        with self.app.engine().connect() as conn:
            rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients, t.outbox.c.purpose)
                                .order_by(t.outbox.c.id)).all()
        out = []
        for r in rows:
            msg = email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
            if r.purpose == "confirm_request" and [a.lower() for a in r.recipients] == [DSL] and ref in str(msg["Subject"]):
                out.append(msg)
        return out  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def _reply_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


ROLL = [EnrolmentRecord(k, None, ADMITTED) for k in "123"]


@pytest.mark.parametrize(("last_week", "recorded", "leaving", "mornings_before", "first_day_back"), [
    # the summer: term ended Friday 17 July 2026; recorded on Monday 20 July, dated Wednesday 22 July
    ((D("2026-07-13"), D("2026-07-17")), D("2026-07-20"), D("2026-07-22"),
     [D("2026-07-21")], D("2026-09-03")),
    # the October half term (26-30 October 2026): recorded on Monday 26 October, dated Wednesday 28 October
    ((D("2026-10-19"), D("2026-10-23")), D("2026-10-26"), D("2026-10-28"), [D("2026-10-27")], D("2026-11-02")),
    # Christmas (19 December 2025 to 5 January 2026): dated Friday 2 January, recorded on 22 December
    ((D("2025-12-15"), D("2025-12-19")), D("2025-12-22"), D("2026-01-02"),
     [D("2025-12-23"), D("2025-12-31")], D("2026-01-05")),
])
def test_a_leaving_dated_in_a_holiday_opens_destination_unknown_that_morning(
        engine: Engine, store_url: str, tmp_path: Path, last_week: tuple[date, date], recorded: date,
        leaving: date, mornings_before: list[date], first_day_back: date) -> None:
    """A child's leaving, no destination recorded, is entered in SIMS during a holiday and dated a
    day of it. Every holiday morning evaluates the last school day of term.

    Before: the leaving counted only once the evaluation date reached it, **on the first morning of
    the next term**: in the summer six weeks on, while the LA's CME team works through the holiday."""
    school = School(engine, store_url, tmp_path)
    school.export(last_week[1], ROLL, _present("123", weekdays(*last_week)))
    school.morning(last_week[1] + timedelta(days=3))  # the Monday after the last day of term
    left = EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving)
    school.export(recorded, [*ROLL[:2], left], [])
    for morning in mornings_before:  # recorded, but the leaving date has not come: nothing yet
        as_of, _ = school.morning(morning)
        assert as_of == last_week[1]
        assert school.cases() == [], morning

    as_of, report = school.morning(leaving)
    assert as_of == last_week[1]  # the holiday morning still evaluates the last school day of term
    [case] = school.cases()
    assert (case["pupil_key"], case["status"], case["stage"]) == ("3", "open", "referral_prepare")
    # the episode is the leaving; opened as of the night's evaluation date; the referral is due at once,
    # that is on the day the child left (never before it)
    assert (case["episode_start"], case["opened_on"], case["referral_due"]) == (leaving, last_week[1], leaving)
    [ask] = school.requests_to_dsl(case["ref"])  # the DSL is asked to confirm the referral that morning
    text = ask.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"CONFIRM {case['ref']}" in text and f"{leaving:%a %d %b %Y}" in text
    assert "Surname3" not in str(ask["Subject"]) and "Forename3" not in str(ask["Subject"])

    # the first morning back changes nothing: the case is that one, not a second
    school.export(first_day_back, [*ROLL[:2], left], _present("12", [first_day_back]))
    school.morning(first_day_back + timedelta(days=1))
    assert [(c["ref"], c["status"], c["episode_start"], c["referral_due"]) for c in school.cases()] == [
        (case["ref"], "open", leaving, leaving)]


def test_a_future_dated_leaving_and_a_leaving_after_an_old_evaluation_date_wait_for_their_day(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """On Friday 10 July 2026 the office records two leavings with no destination: child 3's dated
    Monday 20 July (the holiday), child 2's dated Wednesday 15 July (a school day).

    Neither may open a case before its date. Child 2's leaving is a school day's: it counts once
    the evaluation date reaches it, even when ``detect`` is run late with an older ``--as-of``.
    Child 3's is a holiday's: it counts on the morning of 20 July, not in September (before: **on
    Friday 4 September**, the first morning after the first school day of the autumn term)."""
    school = School(engine, store_url, tmp_path)
    july = weekdays(D("2026-07-06"), D("2026-07-10"))
    school.export(D("2026-07-09"), ROLL, _present("123", july[:-1]))
    school.morning(D("2026-07-10"))  # Thursday's registers
    leavings = [ROLL[0], EnrolmentRecord("2", None, ADMITTED, leaving_date=D("2026-07-15")),
                EnrolmentRecord("3", None, ADMITTED, leaving_date=D("2026-07-20"))]
    school.export(D("2026-07-10"), leavings, _present("123", july))
    for morning in weekdays(D("2026-07-13"), D("2026-07-15")):  # Friday 10 .. Tuesday 14 July evaluated
        school.morning(morning)
        assert school.cases() == [], morning
    # detect run by hand on Friday 17 July with an older date: child 2's leaving is still ahead of it
    school.app.clock_box["now"] = datetime(2026, 7, 17, 9, tzinfo=UTC)  # type: ignore[attr-defined]
    detect.run_detect(school.app, D("2026-07-14"))
    assert school.cases() == []
    school.export(D("2026-07-17"), leavings, _present("13", weekdays(D("2026-07-13"), D("2026-07-17"))))
    as_of, _ = school.morning(D("2026-07-16"))  # Wednesday 15 July evaluated: child 2 has left
    assert as_of == D("2026-07-15")
    assert [(c["pupil_key"], c["episode_start"], c["opened_on"], c["referral_due"]) for c in school.cases()] == [
        ("2", D("2026-07-15"), D("2026-07-15"), D("2026-07-15"))]
    school.morning(D("2026-07-17"))
    as_of, _ = school.morning(D("2026-07-20"))  # Monday 20 July, the holiday: Friday 17 July evaluated
    assert as_of == D("2026-07-17")
    assert [(c["pupil_key"], c["episode_start"], c["opened_on"], c["referral_due"]) for c in school.cases()] == [
        ("2", D("2026-07-15"), D("2026-07-15"), D("2026-07-15")),
        ("3", D("2026-07-20"), D("2026-07-17"), D("2026-07-20"))]
