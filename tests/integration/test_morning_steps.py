"""The policy's daily steps as staff read them in the morning emails, day by day of an absence.

Each test builds a small school in a real store, lays registers, runs ``detect`` and the summary
stage for each evaluation date, and reads what the office summary, the DSL digest and the
per-case emails say.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import KEY, KEY_ENV


@pytest.fixture
def sapp(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """The test school (terms, half term 27-31 Oct, closures 1 Sep and 3 Nov 2025) with a reply token
    key, so that confirmation requests and office action emails are queued; the clock follows the night."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = write_config(tmp_path, store_url, f"""
[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
""")
    app = clocked_app(cfg, engine, datetime(2025, 9, 2, 5, 30, tzinfo=UTC))
    return app


def pupil(key: str, forename: str, surname: str = "Pupil", reg_group: str = "4C") -> PupilRecord:
    return PupilRecord(key, legal_forename=forename, legal_surname=surname, dob=date(2016, 5, 1), year_group="4",
                       reg_group=reg_group)


def lay(app: App, *records: object) -> None:
    ingest.apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)),  # type: ignore[arg-type]
                       app.clock_box["now"])  # type: ignore[attr-defined]


def marks(key: str, days: dict[date, tuple[str, str]]) -> list[MarksRecord]:
    return [MarksRecord(key, d, pair) for d, pair in days.items()]


def night(app: App, as_of: date) -> None:
    """The night after ``as_of``: detect, then the morning emails, at 05:30 the next day."""
    app.clock_box["now"] = datetime.combine(as_of + timedelta(days=1), time(5, 30), UTC)  # type: ignore[attr-defined]
    detect.run_detect(app, as_of)
    queue_morning_mail(app, as_of)


def weekdays(first: date, last: date) -> Iterable[date]:
    d = first
    while d <= last:
        if d.weekday() < 5:
            yield d
        d += timedelta(days=1)


def mails(engine: Engine, purpose: str) -> list[tuple[str, str]]:
    """(subject, plain text) of every message queued for ``purpose``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.subject, t.outbox.c.mime).where(t.outbox.c.purpose == purpose)
                            .order_by(t.outbox.c.id)).all()
    out = []
    for subject, mime in rows:
        msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
        body = msg.get_body(("plain",))
        assert body is not None
        out.append((subject, body.get_content().replace("\r\n", "\n")))
    return out


def section(text: str, title: str) -> str:
    head = f"{title}\n{'-' * len(title)}\n"
    return text.split(head, 1)[1].split("\n\n", 1)[0] if head in text else ""


def case_row(engine: Engine) -> dict[str, object]:
    with engine.connect() as conn:
        [row] = conn.execute(select(t.cases)).mappings().all()
    return dict(row)


# -- missing registers inside a streak ----------------------------------------------------------
def test_missing_registers_never_hold_back_the_referral_steps(sapp: App, engine: Engine) -> None:
    """Five days of N, then five school days with no register: by the tenth school day of absence
    (the referral's due date) the DSL has been asked to confirm the referral, and the digest says so.

    Before, the stage counted only the marked days: the case sat at "home visit" past its due date,
    no confirmation request was sent and the digest showed no referral waiting.
    """
    first, gap_from, last = date(2025, 11, 17), date(2025, 11, 24), date(2025, 11, 28)
    days = {d: ("/", "\\") for d in weekdays(date(2025, 11, 10), date(2025, 11, 14))}
    days.update({d: ("N", "N") for d in weekdays(first, gap_from - timedelta(days=1))})
    days.update({d: ("-", "-") for d in weekdays(gap_from, last)})
    lay(sapp, pupil("1", "Gina", "Gapley"), *marks("1", days))
    for d in weekdays(first, last):
        night(sapp, d)
    case = case_row(engine)
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("referral_due", 5, last)
    requests = mails(engine, "confirm_request")
    assert sorted(s.split(":")[0] for s, _ in requests) == [case["ref"], case["ref"]]  # the DSL and the deputy
    digest = mails(engine, "digest")[-1][1]
    assert case["ref"] in section(digest, "Awaiting your confirmation")
    assert "Gina Gapley, Year 4  6 referral due, day 10" in digest
    assert "2025-11-24, 2025-11-25, 2025-11-26, 2025-11-27, 2025-11-28" in section(
        mails(engine, "summary")[-1][1], "Register gaps and unknown codes")


def test_a_missing_register_moves_the_office_on_to_the_emergency_contacts(sapp: App, engine: Engine) -> None:
    """Absent Monday, no register Tuesday: Tuesday's step is the emergency contacts, not a second first-day call."""
    lay(sapp, pupil("1", "Hana"), *marks("1", {date(2025, 11, 7): ("/", "\\"), date(2025, 11, 10): ("N", "N"),
                                               date(2025, 11, 11): ("-", "-")}))
    night(sapp, date(2025, 11, 10))
    night(sapp, date(2025, 11, 11))
    monday, tuesday = (text for _, text in mails(engine, "summary"))
    assert "Hana Pupil" in section(monday, "First-day calls today")
    assert "Hana Pupil" not in section(tuesday, "First-day calls today")
    assert "Hana Pupil" in section(tuesday, "Emergency contacts to try today")
    assert [s.split(":")[1].split("[")[0].strip() for s, _ in mails(engine, "office_action")] == [
        "first-day call needed", "contact every emergency contact needed"]


# -- a day with no register taken ----------------------------------------------------------------
def test_a_register_not_taken_is_reported_not_a_quiet_morning(sapp: App, engine: Engine) -> None:
    """Class 4C's register was not taken on Tuesday: the summary says so, by class and count, without
    naming a child (warnings are logged and stored). Before, it read "No first-day calls." and
    "No register gaps in open cases." and nothing else: a child absent that day was on no list."""
    lay(sapp, pupil("1", "Ann", reg_group="4C"), pupil("2", "Ben", reg_group="4C"), pupil("3", "Cyd", reg_group="5B"),
        *(m for k in "123" for m in marks(k, {date(2025, 11, 10): ("/", "\\")})),
        *marks("3", {date(2025, 11, 11): ("/", "\\")}))
    night(sapp, date(2025, 11, 11))
    night(sapp, date(2025, 11, 16))  # a Sunday (Monday morning's run): Friday 14th, the last school day, unmarked
    tuesday, sunday = (text for _, text in mails(engine, "summary"))
    notes = section(tuesday, "Register gaps and unknown codes")
    assert "no register mark on Tue 11 Nov 2025 for 2 pupil(s) on roll (class(es): 4C)" in notes
    assert "no register mark on Fri 14 Nov 2025 for 3 pupil(s) on roll (class(es): 4C, 5B)" in section(
        sunday, "Register gaps and unknown codes")
    with engine.connect() as conn:
        stored = conn.execute(select(t.detect_runs.c.warnings)).scalars().all()
    assert not any(name in str(w) for w in stored for name in ("Ann", "Ben", "Cyd"))


# -- a place not taken up -----------------------------------------------------------------------
def test_a_child_who_does_not_come_on_the_agreed_first_day_gets_the_office_call_and_contacts(
        sapp: App, engine: Engine) -> None:
    """The one case is "place not taken up" (referral at once), but the child is absent like any other:
    the office calls on the first day and tries every contact on the second. Before, the child was on
    neither list and no action email went to the office."""
    first = date(2025, 11, 10)
    lay(sapp, pupil("9", "Nia", "Newstart"), EnrolmentRecord("9", admission_date=first),
        *marks("9", {first: ("N", "N"), first + timedelta(days=1): ("N", "N")}))
    night(sapp, first)
    night(sapp, first + timedelta(days=1))
    monday, tuesday = (text for _, text in mails(engine, "summary"))
    assert "Nia Newstart" in section(monday, "First-day calls today")
    assert "Nia Newstart" in section(tuesday, "Emergency contacts to try today")
    assert "Nia Newstart" in section(tuesday, "Places not taken up")
    ref = case_row(engine)["ref"]
    assert [s.split("[")[0].strip() for s, _ in mails(engine, "office_action")] == [
        f"{ref}: first-day call needed", f"{ref}: contact every emergency contact needed"]
    assert mails(engine, "confirm_request")  # and the DSL is asked about the referral from the first day


# -- a half term ---------------------------------------------------------------------------------
def test_half_term_mornings_do_not_ask_the_same_call_again(sapp: App, engine: Engine) -> None:
    """Absent on the Friday before half term: the first-day call is asked once, not on every morning
    the timer runs in the holiday (before: seven action emails for one day of absence). Back after
    half term and still absent: the emergency contacts are asked, once."""
    friday, back = date(2025, 10, 24), date(2025, 11, 4)  # 3 November is an INSET (closure) day
    lay(sapp, pupil("1", "Alfie", "Holt"), *marks("1", {date(2025, 10, 23): ("/", "\\"), friday: ("N", "N"),
                                                        back: ("N", "N")}))
    holiday_nights = [date(2025, 10, 26), *weekdays(date(2025, 10, 27), date(2025, 10, 30)), date(2025, 11, 2),
                      date(2025, 11, 3)]  # as of the day before each weekday morning's run
    for d in [friday, *holiday_nights, back]:
        night(sapp, d)
    assert [s.split(":")[1].split("[")[0].strip() for s, _ in mails(engine, "office_action")] == [
        "first-day call needed", "contact every emergency contact needed"]
    summaries = [text for _, text in mails(engine, "summary")]
    assert all("Alfie Holt" in section(s, "First-day calls today") for s in summaries[:-1])  # still listed
    assert "Alfie Holt" in section(summaries[-1], "Emergency contacts to try today")
