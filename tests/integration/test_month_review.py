"""A month in the life of the school office and the DSL, lived night by night.

Each test builds a small school in a real SQLite store, lays each day's register in the evening
as the MIS export gives it, and runs the night the next weekday morning as the timer does (the
default evaluation date; detect with its catch-up, the DSL's replies, the referrals stage with a
passphrase so that a referral really goes, and the morning emails). Replies are written into a
real Maildir as a mail client sends them, answering the emails the night queued. Then it reads
what the office, the DSL and the LA were sent.

Scenarios lived through while writing this file, with nothing found wrong: an absence across the
February half term (steps and due dates skip the holiday; holiday mornings ask nothing again),
the May Day bank holiday inside a streak, a HOLD then a CONFIRM, a CONFIRM on day 9 and the
child back on day 10 (the LA sent the referral, then that the child returned), two siblings
absent together, a looked-after child absent on the Friday before half term and a child with a
child protection plan absent one day (the Social Care alert), a late correction of a day in an
unreferred absence, the server off on two mornings mid-streak, a place not taken up in September
(with and without marks), repeated short absences (review request, CLOSE by reply), and a
leaver with no destination. The one below was wrong.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.nightly import run_nightly
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import DSL, KEY, KEY_ENV, MAILDIR_REPLIES, reply

PASS_ENV = "CME_TEST_LA_PASSPHRASE"
LA = "missingpupils@gloucestershire.gov.uk"
HALF_TERM = {date(2026, 2, 16) + timedelta(days=i) for i in range(5)}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A real SQLite store (the school's default)."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def school(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """The test school with the spring terms of 2026 (half term 16-20 Feb), replies read from a
    Maildir, and referrals encrypted with a passphrase."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(PASS_ENV, "correct-horse-battery-staple-42")
    stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
    cfg = write_config(tmp_path, store_url, f"""
[[calendar.terms]]
start = "2026-01-05"
end = "2026-02-13"

[[calendar.terms]]
start = "2026-02-23"
end = "2026-03-27"
{MAILDIR_REPLIES}
[referral]
passphrase = {{ env = "{PASS_ENV}" }}
""")
    return clocked_app(cfg, engine, datetime(2026, 1, 4, 12, 0, tzinfo=UTC))


class School:
    """The school as its night lives it: registers in the evening, the run the next weekday morning."""

    def __init__(self, app: App, *pupils: PupilRecord) -> None:
        self.app, self.keys = app, [p.pupil_key for p in pupils]
        self.lay(*pupils)

    def lay(self, *records: Any) -> None:
        apply_batch(self.app.engine(), self.app.school_id, SourceBatch("test", "test", records=list(records)),
                    self.app.now())

    def register(self, day: date, codes: dict[str, str]) -> None:
        """The day's register as exported that evening: every pupil present but those in ``codes``."""
        self.app.clock_box["now"] = datetime.combine(day, time(17, 0), UTC)  # type: ignore[attr-defined]
        self.lay(*(MarksRecord(k, day, (codes[k], codes[k]) if k in codes else ("/", "\\")) for k in self.keys))

    def morning(self, day: date) -> date:
        """The timer's run at 05:30 on ``day``, for the last school day; its evaluation date."""
        self.app.clock_box["now"] = datetime.combine(day, time(5, 30), UTC)  # type: ignore[attr-defined]
        as_of = self.app.default_as_of()
        report = run_nightly(self.app, as_of, only=("detect", "replies", "referrals", "summary"))
        assert not report.failed, report.stages
        return as_of

    def sent(self) -> list[tuple[str, list[str], str, str]]:
        """(purpose, recipients, subject, plain text or "") of every message queued, oldest first."""
        with self.app.engine().connect() as conn:
            rows = conn.execute(select(t.outbox.c.purpose, t.outbox.c.recipients, t.outbox.c.subject,
                                       t.outbox.c.mime).order_by(t.outbox.c.id)).all()
        out = []
        for purpose, to, subject, mime in rows:
            msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
            body = msg.get_body(("plain",)) if msg.get_content_maintype() != "application" else None
            out.append((purpose, [a.lower() for a in to], subject, body.get_content() if body is not None else ""))
        return out

    def answer(self, what: str, to: str, body: str) -> None:
        """Reply, as ``to``, to the latest email sent to ``to`` whose subject has ``what``."""
        subject = next(s for _, rcpt, s, _ in reversed(self.sent()) if what in s and to in rcpt)
        stdlib_mailbox.Maildir(str(Path(str(self.app.config_path)).parent / "replies"), create=False).add(
            reply(to, "Re: " + subject, body))

    def cases(self) -> list[Any]:
        with self.app.engine().connect() as conn:
            return list(conn.execute(select(t.cases).order_by(t.cases.c.id)).all())


def pupil(key: str, forename: str) -> PupilRecord:
    return PupilRecord(key, legal_forename=forename, legal_surname="Pupil", dob=date(2016, 5, 1), year_group="4",
                       reg_group="4C")


def school_days(first: date, last: date) -> list[date]:
    """The test school's school days from ``first`` to ``last`` (weekdays, not the half term)."""
    days = (first + timedelta(days=i) for i in range((last - first).days + 1))
    return [d for d in days if d.weekday() < 5 and d not in HALF_TERM]


def next_weekday(day: date) -> date:
    day += timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


# -- a referred child's register corrected for a day before the referral ----------------------------
def test_a_correction_inside_a_referred_absence_never_tells_the_la_a_missing_child_returned(school: App) -> None:
    """Ada is absent without explanation from Mon 12 Jan. The DSL confirms the referral on the morning
    of day 9; it goes to the LA that night. On Wed 28 Jan, still absent, the office corrects Fri 16 Jan
    (day 5) to present: the teacher had marked her N by mistake that one day.

    Before, the night of the correction closed the referred case as "returned": the LA was sent an
    update saying **the child has returned to school** while she had not been seen for eight school
    days and was still missing, and the DSL was asked that same morning to confirm a second referral
    for the same child under a new case reference, with nothing saying the LA already had her.
    Now the referred case goes on (its streak from the day after the corrected day); the LA is told
    only when she really comes back.
    """
    s = School(school, pupil("1", "Ada"), pupil("2", "Ben"))
    days = school_days(date(2026, 1, 5), date(2026, 2, 6))
    absent = set(school_days(date(2026, 1, 12), date(2026, 2, 3)))  # back on Wed 4 Feb
    for day in days:
        s.register(day, {"1": "N"} if day in absent else {})
        morning = next_weekday(day)
        s.morning(morning)
        if morning == date(2026, 1, 23):  # the request came the morning before (day 8): the DSL confirms
            s.answer("please confirm the referral", DSL, f"CONFIRM {s.cases()[0].ref}\n")
        if morning == date(2026, 1, 28):
            s.register(date(2026, 1, 16), {})  # the office's correction of Fri 16 Jan: present
        if morning == date(2026, 2, 4):  # Tue 3 Feb's registers read: Ada still absent
            to_la = [(p, subj) for p, rcpt, subj, _ in s.sent() if LA in rcpt]
            assert [p for p, _ in to_la] == ["referral"], (
                f"while Ada is still missing the LA must not be told she returned: {to_la}")
            [case] = [c for c in s.cases() if c.status == "open"]
            assert case.referred_at is not None
            requests = [subj for p, rcpt, subj, _ in s.sent() if p == "confirm_request"]
            assert all(case.ref in subj for subj in requests), f"a second referral of Ada was asked for: {requests}"
            digest = [text for p, _, _, text in s.sent() if p == "digest"][-1]
            assert "No referral is waiting for you." in digest
            assert "Referred to the LA: watch for the child's return" in digest
    # Ada came back on Wed 4 Feb: now, and only now, the LA is told
    to_la = [p for p, rcpt, _, _ in s.sent() if LA in rcpt]
    assert to_la == ["referral", "update"]
    assert [(c.status, c.closed_reason) for c in s.cases()] == [("closed", "returned")]
