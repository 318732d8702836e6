"""Review tests of the sixteenth session's changes: the calendar's projection over a holiday, and the Arbor full pull's cursor."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord
from tests.adapters.arbor_helpers import PASSWORD, arbor_app, ingest_ok, stored_cursor
from tests.conftest import write_config
from tests.helpers import TERMS_2026, clocked_app, weekdays
from tests.integration.test_holiday_leavers import ADMITTED, ROLL, School, _present
from tests.integration.test_morning_steps import case_row, lay, mails, marks, night, pupil
from tests.replies_support import KEY, KEY_ENV

D = date.fromisoformat


@pytest.fixture(autouse=True)
def _reply_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_summer_club_day_does_not_hold_back_a_holiday_leaving(engine: Engine, store_url: str,
                                                                 tmp_path: Path) -> None:
    """Term ended Fri 17 Jul 2026; on Mon 20 Jul the school runs a summer club and two of its three
    pupils are marked present (half the roll: the registers show the school open). Child 3's leaving,
    no destination, is recorded on 20 Jul dated Wed 22 Jul (the holiday).

    Expected (DOMAIN.md 5, README "holiday leavers"): every holiday morning evaluates the club day,
    and a leaving dated in the holiday counts once its date has come: the destination-unknown case
    opens on the morning of 22 or 23 Jul. Now: the club day (an "opened" day) makes ``build`` project
    the rest of the holiday as school days, so ``leavings_to`` finds a school day (21 Jul) before the
    leaving and waits for it: no case until the first night of September."""
    school = School(engine, store_url, tmp_path)
    last_week = (D("2026-07-13"), D("2026-07-17"))
    school.export(last_week[1], ROLL, _present("123", weekdays(*last_week)))
    school.morning(D("2026-07-20"))
    left = EnrolmentRecord("3", None, ADMITTED, leaving_date=D("2026-07-22"))
    school.export(D("2026-07-20"), [*ROLL[:2], left], _present("12", [D("2026-07-20")]))
    as_of, _ = school.morning(D("2026-07-21"))
    assert as_of == D("2026-07-20")  # the club day is evaluated
    for morning in (D("2026-07-22"), D("2026-07-23"), D("2026-07-24")):
        as_of, _ = school.morning(morning)
    assert as_of == D("2026-07-20")
    cases = school.cases()
    assert [(c["pupil_key"], c["episode_start"]) for c in cases] == [("3", D("2026-07-22"))]


TOKEN_REPLIES = f"""
[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
"""


def _term_end_typed_a_day_early(tmp_path: Path, store_url: str) -> Path:
    """The test school with the autumn term's end typed Thu 18 Dec 2025 (the school is open on Fri
    19 Dec, as every register shows), the rest of 2025/26 configured right (Christmas holiday to 2 Jan)."""
    path = write_config(tmp_path, store_url, TOKEN_REPLIES + TERMS_2026)
    text = path.read_text(encoding="utf-8")
    assert 'end = "2025-12-19"' in text
    path.write_text(text.replace('end = "2025-12-19"', 'end = "2025-12-18"'), encoding="utf-8")
    return path


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_term_end_typed_a_day_early_does_not_put_the_due_date_in_the_christmas_holiday(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    """Every register is taken on Fri 19 Dec (the configuration ends the term on the 18th). Dot is N
    from Wed 10 Dec: on 19 Dec it is her 8th school day, and the DSL is asked to confirm.

    Expected (DOMAIN.md 5: the due date is the streak's 10th school day by the calendar, skipping
    holidays; the Christmas holiday 20 Dec - 4 Jan is configured right): Tue 6 Jan 2026. Now: the
    one open day after the configured term end projects every weekday of the holiday as a school
    day: "Referral due" Tue 23 Dec 2025, a date in the holiday with the school closed."""
    app = clocked_app(_term_end_typed_a_day_early(tmp_path, store_url), engine,
                      datetime(2025, 12, 1, 5, 30, tzinfo=UTC))
    seen = weekdays(D("2025-12-01"), D("2025-12-09"))
    absent = weekdays(D("2025-12-10"), D("2025-12-19"))
    lay(app, *(pupil(k, n) for k, n in (("1", "Amy"), ("2", "Bob"), ("3", "Col"), ("4", "Dot"))),
        *(m for k in "123" for m in marks(k, {d: ("/", "\\") for d in seen + absent})),
        *marks("4", {**{d: ("/", "\\") for d in seen}, **{d: ("N", "N") for d in absent}}))
    for day in absent:
        night(app, day)
    case = case_row(engine)
    assert (case["school_days"], case["stage"]) == (8, "referral_prepare")
    [(_s, text), *_] = mails(engine, "confirm_request")
    # DOMAIN.md 5: the 10th school day by the calendar, skipping holidays: Mon 5, Tue 6 Jan 2026
    assert case["referral_due"] == D("2026-01-06"), case["referral_due"]
    assert "Tue 06 Jan 2026" in text


# -- Arbor: a full pull forced by a deletion, with no head revision -----------------------------------
@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_full_pull_forced_by_a_deletion_without_head_revision_moves_the_cursor_past_it(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """Arbor gives no head revision. On a term night a wrong roll-call record is deleted (and a mark
    entered): the deletion forces a full pull. No student row changed since the last night.

    Expected: the full pull reads everything after the changelog it read first, so its cursor
    passes the deletion (the changelog's newest revision read before the students), and the next
    night follows the changes again. Now: the cursor is max(newest student revision, old cursor),
    which stays at the old cursor: the deletion forces a full pull every night (logged each time)
    until some student row changes."""
    school = FakeSchool()
    school.load([
        PupilRecord("p1", upn="A916299925001", legal_surname="Ashdown", legal_forename="Amelia", dob=date(2018, 3, 4)),
        PupilRecord("p4", upn="D916299925004", legal_surname="Dunn", legal_forename="Dev", dob=date(2019, 1, 2)),
        EnrolmentRecord("p1", admission_date=date(2022, 9, 5), entry_date=date(2022, 9, 5)),
        EnrolmentRecord("p4", admission_date=date(2024, 9, 4), entry_date=date(2024, 9, 4)),
        MarksRecord("p1", date(2025, 9, 8), tuple("//" * 5)),
        MarksRecord("p4", date(2025, 9, 8), tuple("//" * 5)),
    ])
    with FakeArbor(school, password=PASSWORD) as server:
        server.head_revision_supported = False
        app = arbor_app(tmp_path, store_url, engine, server)
        ingest_ok(app)  # the first night: a full pull
        school.set_mark("p4", date(2025, 9, 15), "AM", "/")
        ingest_ok(app)  # changes only
        school.delete("AttendanceRollCallRecord", ("p4", date(2025, 9, 15), "AM"))  # made in error
        school.set_mark("p1", date(2025, 9, 15), "AM", "N")
        deleted_at = school.revision
        ingest_ok(app)  # the deletion forces a full pull
        ingest_ok(app)  # a night with no change in Arbor
        # the full pull read everything up to the deletion (its changelog was read before the
        # students): the cursor passes it, and the nights after follow the changelog again
        cursor = stored_cursor(engine)
        assert cursor is not None and int(cursor) >= deleted_at, (cursor, deleted_at)
