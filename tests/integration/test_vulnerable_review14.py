"""Review (fourteenth session): vulnerable pupils and compulsory school age, end to end.

Each test builds a small store (SQLite only, to stay fast), imports records the way adapters
write them, runs ``detect`` night by night (or a catch-up, as ``nightly`` does after nights
that never ran) and reads what the school or the LA would see: the case, the DSL's digest,
the referral's document.

Tests whose docstring says "found by the fourteenth session's review" failed on the code before
its fix.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.referral.content import build_document
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import FIXED_NOW

# Weeks of the autumn term 2025 in the shared test configuration (terms 2 Sep - 24 Oct, 3 Nov - 19 Dec).
MON, TUE, WED, THU, FRI = (date(2025, 11, d) for d in (10, 11, 12, 13, 14))
NEXT_MON, NEXT_TUE, NEXT_WED = date(2025, 11, 17), date(2025, 11, 18), date(2025, 11, 19)


@pytest.fixture
def store_url(tmp_path: Path) -> Iterator[str]:  # SQLite only: these tests are about rules, not the database
    yield f"sqlite:///{tmp_path / 'store.sqlite'}"


def ingest(app: App, *records: Record) -> None:
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)), app.now())


def pupil(key: str, forename: str, dob: date = date(2016, 5, 1)) -> PupilRecord:
    return PupilRecord(key, upn=f"T{key:0>12}", legal_forename=forename, legal_surname="Review", dob=dob,
                       year_group="4", reg_group="4R")


def marks(key: str, days: dict[date, str]) -> list[MarksRecord]:
    return [MarksRecord(key, d, (pair[0], pair[1])) for d, pair in days.items()]


def cases(app: App) -> list[dict[str, Any]]:
    with app.engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(t.cases).order_by(t.cases.c.id)).mappings()]


def digests(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "digest").order_by(t.outbox.c.id))
        return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
                .get_body(("plain",)).get_content().replace("\r\n", "\n") for r in rows]  # type: ignore[union-attr]


def summaries(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "summary").order_by(t.outbox.c.id))
        return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
                .get_body(("plain",)).get_content().replace("\r\n", "\n") for r in rows]  # type: ignore[union-attr]


def section(text: str, title: str) -> str:
    head = f"{title}\n{'-' * len(title)}\n"
    return text.split(head, 1)[1].split("\n\n", 1)[0] if head in text else ""


IMMEDIATE = "IMMEDIATE: inform Social Care"


# -- the alert when nights were missed ------------------------------------------------------------
@pytest.mark.parametrize("absent", [[MON], [MON, TUE, WED]], ids=["one_day", "three_days"])
def test_a_child_protection_alert_raised_and_closed_in_a_catch_up_reaches_the_dsl(
        app: App, engine: Engine, absent: list[date]) -> None:
    """Found by the fourteenth session's review (fixed). A child with a child protection plan absent without explanation while the server was off
    (Monday, or Monday to Wednesday), back before it came on again. The catch-up evaluates each
    missed day: the case opens with its immediate_social_care alert, then closes "returned". The
    next digest lists open cases' alerts only, so the DSL reads "No alerts." and sees the case
    only as a closed line, with nothing saying Social Care was to be told at once.

    DOMAIN.md 5: "A pupil with a child protection plan or who is looked after (in care) raises an
    immediate_social_care alert on the first day of unexplained absence: 'inform Social Care
    immediately and follow the safeguarding partnership's procedures'"; the policy: "If a child is
    subject to a child protection plan ... inform Social Care immediately"."""
    week = [date(2025, 11, 7), MON, TUE, WED, THU, FRI]
    ingest(app, pupil("1", "Cato"), pupil("2", "Ula"), FlagRecord("1", "child_protection_plan", start=date(2025, 1, 6)),
           *marks("1", {d: ("NN" if d in absent else "/\\") for d in week}),
           *marks("2", {d: "/\\" for d in week}))
    detect.run_detect(app, date(2025, 11, 7))
    queue_morning_mail(app, date(2025, 11, 7))  # Friday's night: then the server is off
    for day in (MON, TUE, WED, THU):  # the catch-up, as nightly._detect does it
        detect.run_detect(app, day)
    detect.run_detect(app, FRI)
    queue_morning_mail(app, FRI)
    [case] = cases(app)
    assert [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]  # raised, in the store
    assert (case["status"], case["closed_reason"]) == ("closed", "returned")
    digest = digests(engine)[-1]
    assert "Cato Review" in section(digest, "Closed since the last summary"), digest
    # what the DSL must read: that this child's absence called for Social Care at once
    assert "Cato Review" in section(digest, IMMEDIATE), digest


def test_the_alert_of_the_first_night_of_absence_shows_every_morning_while_open(app: App, engine: Engine) -> None:
    """Holds: the ordinary nights. A looked-after child, absent from Monday: Tuesday's and
    Wednesday's digests both carry the alert; the office's summary never does."""
    ingest(app, pupil("1", "Lia"), FlagRecord("1", "looked_after", detail="Gloucestershire"),
           *marks("1", {date(2025, 11, 7): "/\\", MON: "NN", TUE: "NN"}))
    for day in (date(2025, 11, 7), MON, TUE):
        detect.run_detect(app, day)
        queue_morning_mail(app, day)
    for text in digests(engine)[1:]:
        assert "Lia Review" in section(text, IMMEDIATE), text
    for text in summaries(engine)[1:]:
        assert "Lia Review" in text  # the office still calls
        assert "Social Care" not in text and "looked after" not in text and "in care" not in text, text


# -- flags recorded late, ended, removed ----------------------------------------------------------
def test_a_plan_recorded_after_the_absence_began_raises_the_alert_that_night(app: App, engine: Engine) -> None:
    """Holds: a child protection plan entered in the MIS on the third day of the absence (dated from
    that day) raises the alert the night it is imported, and the DSL's review at once."""
    ingest(app, pupil("1", "Ned"), *marks("1", {date(2025, 11, 7): "/\\", MON: "NN"}))
    detect.run_detect(app, MON)
    ingest(app, *marks("1", {TUE: "NN"}))
    detect.run_detect(app, TUE)
    [case] = cases(app)
    assert (case["stage"], case["alerts"]) == ("contact_all", [])
    ingest(app, FlagRecord("1", "child_protection_plan", start=WED), *marks("1", {WED: "NN"}))
    detect.run_detect(app, WED)
    queue_morning_mail(app, WED)
    [case] = cases(app)
    assert [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]
    assert case["alerts"][0]["raised_on"] == WED.isoformat()
    assert case["stage"] == "dsl_review"
    assert "Ned Review" in section(digests(engine)[-1], IMMEDIATE)


def test_a_flag_removed_by_a_later_export_keeps_the_alert_and_the_step(app: App, engine: Engine) -> None:
    """Holds: the MIS's next export no longer has the looked-after flag (a full export replaces the
    pupil's flags) while the case is open: the alert and the DSL's review stay, the digest still
    lists the child as IMMEDIATE."""
    ingest(app, pupil("1", "Oli"), FlagRecord("1", "looked_after"),
           *marks("1", {date(2025, 11, 7): "/\\", MON: "NN"}))
    detect.run_detect(app, MON)
    full = SourceBatch("test", "test", records=[pupil("1", "Oli"), *marks("1", {TUE: "NN"})],
                       replaces=frozenset({"flags"}))
    apply_batch(app.engine(), app.school_id, full, app.now())
    with engine.connect() as conn:
        assert conn.execute(select(t.flags)).all() == []  # the flag is gone from the store
    detect.run_detect(app, TUE)
    queue_morning_mail(app, TUE)
    [case] = cases(app)
    assert case["status"] == "open" and case["stage"] == "dsl_review"
    assert [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]
    assert "Oli Review" in section(digests(engine)[-1], IMMEDIATE)


def test_a_flag_removed_while_the_case_is_open_leaves_the_alert_without_its_reason(
        app: App, engine: Engine) -> None:
    """Found by the fourteenth session's review (minor; fixed). Same as above: the digest's IMMEDIATE row reads its "Vulnerability" from the flags
    active this morning, not from the alert, so the DSL is told to inform Social Care about a child
    with an empty reason (the alert itself stored "looked_after")."""
    ingest(app, pupil("1", "Oli"), FlagRecord("1", "looked_after"),
           *marks("1", {date(2025, 11, 7): "/\\", MON: "NN"}))
    detect.run_detect(app, MON)
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=[
        pupil("1", "Oli"), *marks("1", {TUE: "NN"})], replaces=frozenset({"flags"})), app.now())
    detect.run_detect(app, TUE)
    queue_morning_mail(app, TUE)
    row = next(line for line in section(digests(engine)[-1], IMMEDIATE).splitlines() if "Oli Review" in line)
    assert "looked after" in row, row


def test_a_plan_that_ended_during_the_absence_is_on_the_referral(app: App, engine: Engine) -> None:
    """Found by the fourteenth session's review (fixed). A child protection plan in force on the absence's first day (the alert was raised for
    it) ends in the MIS on the absence's third day. The referral, built on day 10, reads flags as of
    its evaluation date only: "child_protection_plan": false, the plan missing from its flags,
    while its alerts say immediate_social_care. The LA reads of a child missing with no plan.

    DOMAIN.md 6: a referral carries "Vulnerability: child protection plan, looked after, ... where
    recorded"."""
    days = [MON, TUE, WED, THU, FRI, NEXT_MON, NEXT_TUE, NEXT_WED, date(2025, 11, 20), date(2025, 11, 21)]
    ingest(app, pupil("1", "Pia"), FlagRecord("1", "child_protection_plan", start=date(2025, 3, 3), end=WED),
           *marks("1", {date(2025, 11, 7): "/\\", **{d: "NN" for d in days}}))
    for d in days:
        detect.run_detect(app, d)
    [case] = cases(app)
    assert case["stage"] == "referral_due" and [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]
    with engine.connect() as conn:
        doc = build_document(conn, case["id"], app.config, FIXED_NOW)
    assert doc["vulnerability"]["alerts"] == ["immediate_social_care"]
    assert doc["vulnerability"]["child_protection_plan"] is True, doc["vulnerability"]
    assert [f.get("until") for f in doc["vulnerability"]["flags"] if f["kind"] == "child_protection_plan"] == [
        WED.isoformat()]  # the day it ended, for the LA (and the form: "Yes (ended ...)")


def test_a_plan_that_ended_before_the_absence_raises_nothing(app: App) -> None:
    """Holds: a plan ended the Friday before the absence: no alert, the usual steps."""
    ingest(app, pupil("1", "Rex"), FlagRecord("1", "child_protection_plan", start=date(2025, 3, 3),
                                              end=date(2025, 11, 7)),
           *marks("1", {date(2025, 11, 7): "/\\", MON: "NN"}))
    detect.run_detect(app, MON)
    [case] = cases(app)
    assert (case["stage"], case["alerts"]) == ("first_day_call", [])


# -- other cases, gaps --------------------------------------------------------------------------------
def test_a_looked_after_child_whose_absence_has_a_missing_register_keeps_one_case_and_one_alert(
        app: App) -> None:
    """Holds: N on Monday, no register on Tuesday, N on Wednesday (and a catch-up night over them):
    one case from Monday, one alert, the gap shown, the due date counting the gap."""
    ingest(app, pupil("1", "Sam"), FlagRecord("1", "looked_after"),
           *marks("1", {date(2025, 11, 7): "/\\", MON: "NN", TUE: "--", WED: "NN"}))
    detect.run_detect(app, date(2025, 11, 7))
    for d in (MON, TUE, WED):
        detect.run_detect(app, d)
    [case] = cases(app)
    assert (case["status"], case["episode_start"], case["school_days"]) == ("open", MON, 2)
    assert case["register_gaps"] == [TUE.isoformat()]
    assert [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]
    assert case["referral_due"] == date(2025, 11, 21)  # the 10th school day from Monday, the gap counted


def test_a_place_not_taken_up_by_a_looked_after_child_raises_the_alert(app: App, engine: Engine) -> None:
    """Holds: a looked-after child admitted for Monday who never comes (N, N): one case,
    place_not_taken_up, with the alert, listed IMMEDIATE in the digest."""
    ingest(app, pupil("1", "Tam"), FlagRecord("1", "looked_after"),
           EnrolmentRecord("1", admission_date=MON), *marks("1", {MON: "NN", TUE: "NN"}))
    detect.run_detect(app, MON)
    detect.run_detect(app, TUE)
    queue_morning_mail(app, TUE)
    [case] = [c for c in cases(app) if c["status"] == "open"]
    assert case["kind"] == "place_not_taken_up"
    assert [a["kind"] for a in case["alerts"]] == ["immediate_social_care"]
    assert "Tam Review" in section(digests(engine)[-1], IMMEDIATE)


# -- compulsory school age ----------------------------------------------------------------------------
def test_a_child_reaching_compulsory_school_age_during_an_open_case(app: App, engine: Engine) -> None:
    """Holds: born 1 Sep 2020 (fifth birthday 1 Sep 2025, compulsory school age from 31 Dec 2025).
    Absent from Monday 15 Dec; the case says "below", the digest says so; the referral states the
    date it is reached. (The autumn term ends 19 Dec, so the flip itself is not reached here.)"""
    dob = date(2020, 9, 1)
    days = [date(2025, 12, d) for d in (15, 16, 17, 18, 19)]
    ingest(app, PupilRecord("1", upn="T000000000001", legal_forename="Vi", legal_surname="Review", dob=dob,
                            year_group="R", reg_group="R1"),
           *marks("1", {date(2025, 12, 12): "/\\", **{d: "NN" for d in days}}))
    for d in days:
        detect.run_detect(app, d)
    queue_morning_mail(app, days[-1])
    [case] = cases(app)
    assert case["compulsory_school_age"] is False
    assert "below compulsory school age" in section(digests(engine)[-1], "Vulnerability of pupils with open cases")
    with engine.connect() as conn:
        doc = build_document(conn, case["id"], app.config, FIXED_NOW)
    assert doc["child"]["compulsory_school_age"] == {"status": "below_compulsory_school_age", "from": "2025-12-31"}
