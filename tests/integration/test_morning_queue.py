"""The summary stage: once per date, requests carry tokens, and the office can record an action by reply.

Every child gets the office's first-day call and emergency contacts, a vulnerable child too; and a
second run for one date never marks an email problem or a reply kept for review as reported unless a
digest shows it.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.demo.generator import generate
from cme_batch.mail import outbox
from cme_batch.mail.sender import Drainer
from cme_batch.mail.transport import MemoryTransport, MessageRejected, Outgoing
from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies.process import read_replies
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import KEY, KEY_ENV, MAILDIR_REPLIES, reply

AS_OF = date(2025, 12, 19)
NOW = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)


def _app_with_replies(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """An App whose replies come from a Maildir and whose clock the test can move (``app.clock_box``)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    maildir = tmp_path / "replies"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    cfg = write_config(tmp_path, store_url, MAILDIR_REPLIES)
    app = clocked_app(cfg, engine, NOW)
    return app


@pytest.fixture
def school_app(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    app = _app_with_replies(tmp_path, store_url, engine, monkeypatch)
    school = generate(2025, 80)
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=school.records), NOW)
    detect.run_detect(app, AS_OF)
    return app


def _outbox(engine: Engine, purpose: str) -> list[tuple[list[str], bytes]]:
    with engine.connect() as conn:
        return [(r.recipients, bytes(r.mime)) for r in conn.execute(
            select(t.outbox.c.recipients, t.outbox.c.mime).where(t.outbox.c.purpose == purpose))]


def _texts(engine: Engine, purpose: str) -> list[str]:
    """The plain text of every message queued for ``purpose``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == purpose).order_by(t.outbox.c.id))
        return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
                .get_body(("plain",)).get_content().replace("\r\n", "\n") for r in rows]  # type: ignore[union-attr]


def _section(text: str, title: str) -> str:
    """One section of a rendered email, from under its title to the blank line that ends it ("" if absent)."""
    head = f"{title}\n{'-' * len(title)}\n"
    return text.split(head, 1)[1].split("\n\n", 1)[0] if head in text else ""


def test_once_per_date_and_requests_only_while_no_live_token(school_app: App, engine: Engine) -> None:
    first = queue_morning_mail(school_app, AS_OF)
    assert "summary #" in first
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(t.outbox)).scalar_one()
    assert len(_outbox(engine, "summary")) == 1 and len(_outbox(engine, "digest")) == 1
    requests = _outbox(engine, "confirm_request")
    assert requests and {r[0][0] for r in requests} == {"dsl@school.example", "deputy@school.example"}
    queue_morning_mail(school_app, AS_OF)  # the same night again: nothing new
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.outbox)).scalar_one() == n
    school_app.clock_box["now"] = NOW + timedelta(days=15)  # type: ignore[attr-defined]
    queue_morning_mail(school_app, AS_OF + timedelta(days=1))  # tokens expired: new requests go out
    assert len(_outbox(engine, "confirm_request")) == 2 * len(requests)


def test_office_records_a_first_day_call_by_replying_note(school_app: App, engine: Engine, tmp_path: Path) -> None:
    queue_morning_mail(school_app, AS_OF)
    actions = [(to, email.message_from_bytes(raw, policy=email.policy.default))
               for to, raw in _outbox(engine, "office_action")]
    assert actions, "a first-day call case should have an office action message"
    to, request = actions[0]
    assert to == ["office@school.example"] and "[cme:" in str(request["Subject"])
    ref = str(request["Subject"]).split(":")[0]
    note = reply("office@school.example", f"Re: {request['Subject']}",
                 f"NOTE {ref} first-day-call: spoke to dad, child unwell, back Monday\n")
    (tmp_path / "replies" / "new" / "1.office").write_bytes(note)
    report = read_replies(school_app)
    assert report is not None and report.as_dict()["accepted"] == 1
    with engine.connect() as conn:
        kinds = conn.execute(select(t.case_events.c.kind, t.case_events.c.actor, t.case_events.c.detail).join(
            t.cases, t.cases.c.id == t.case_events.c.case_id).where(t.cases.c.ref == ref,
                                                                      t.case_events.c.kind.in_(("action", "note")))).all()
    assert len(kinds) == 1 and kinds[0].actor == "office@school.example"
    assert (kinds[0].detail["action"], kinds[0].detail["outcome"]) == (
        "first_day_call", "spoke to dad, child unwell, back Monday")


# -- the office's steps for every child ----------------------------------------------------------
DAY_1 = date(2025, 11, 12)  # a Wednesday in term
PUPILS = {"1001": "Plain Pupil", "2002": "Yusuf Carter", "3003": "Poppy Stone"}


def test_vulnerable_children_still_get_the_office_call_and_contacts(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A young carer's and a CP-plan child's cases are at DSL review from day 1; the office still acts."""
    app = _app_with_replies(tmp_path, store_url, engine, monkeypatch)
    days = [DAY_1, DAY_1 + timedelta(days=1), DAY_1 + timedelta(days=2)]
    records: list[PupilRecord | FlagRecord | MarksRecord] = [
        PupilRecord(key, legal_forename=name.split()[0], legal_surname=name.split()[1], dob=date(2016, 5, 1),
                    year_group="4", reg_group="4C") for key, name in PUPILS.items()]
    records += [FlagRecord("2002", "young_carer"), FlagRecord("3003", "child_protection_plan")]
    records += [MarksRecord(key, DAY_1 - timedelta(days=1), ("/", "/", "N", "N", "N", "N", "N", "N"))
                for key in PUPILS]
    ingest.apply_batch(engine, app.school_id, SourceBatch("test", "test", records=records), NOW)
    steps = [("first-day call", "First-day calls today", 3), ("contact every emergency contact",
                                                              "Emergency contacts to try today", 0)]
    for day, (step, title, calls) in zip(days, steps, strict=False):
        detect.run_detect(app, day)
        queue_morning_mail(app, day)
        summary = _texts(engine, "summary")[-1]
        assert all(name in _section(summary, title) for name in PUPILS.values()), (day, title)
        assert f"3 open case(s), {calls} first-day call(s)" in summary
        assert "young carer" not in summary.lower() and "child protection" not in summary.lower()
        with engine.connect() as conn:
            asked = conn.execute(select(t.cases.c.ref).join(t.outbox, t.outbox.c.case_id == t.cases.c.id).where(
                t.outbox.c.purpose == "office_action", t.outbox.c.idempotency_key.like(f"%:{day.isoformat()}"),
                t.outbox.c.subject.like(f"%{step} needed%"))).scalars().all()
            refs = conn.execute(select(t.cases.c.ref)).scalars().all()
        assert sorted(asked) == sorted(refs) and len(refs) == 3, (day, step)
    detect.run_detect(app, days[2])  # day 3: the DSL's step for every child; nothing more for the office
    queue_morning_mail(app, days[2])
    summary = _texts(engine, "summary")[-1]
    assert "No first-day calls." in summary and "No emergency contacts to try." in summary
    with engine.connect() as conn:
        assert not conn.execute(select(t.outbox.c.id).where(t.outbox.c.purpose == "office_action",
                                                            t.outbox.c.idempotency_key.like(f"%:{days[2]}"))).all()
    digest = _texts(engine, "digest")[0]  # the DSL side as before: the CP-plan child first, in red
    assert "Poppy Stone" in _section(digest, "IMMEDIATE: inform Social Care")


# -- a second run for the same date ---------------------------------------------------------------
def test_a_second_run_for_the_date_shows_new_problems_and_review_replies_in_an_update_digest(
        school_app: App, engine: Engine, tmp_path: Path) -> None:
    queue_morning_mail(school_app, AS_OF)
    with engine.begin() as conn:  # the LA refuses the referral when the night's send runs
        referral = outbox.enqueue(
            conn, idempotency_key="referral:CME-2025-0001", purpose="referral", recipients=["cme@la.example"],
            subject="CME referral CME-2025-0001", message=b"Subject: CME referral\r\n\r\n(encrypted)\r\n",
            from_address="cme-batch@school.example", now=NOW)

    def refuse(m: Outgoing) -> None:
        if m.outbox_id == referral:
            raise MessageRejected("550 5.7.1 message refused")

    Drainer(engine, school_app.config.mail, MemoryTransport(on_send=refuse), clock=lambda: NOW, run_id="t").run()
    (tmp_path / "replies" / "new" / "1.dsl").write_bytes(  # an HTML-only reply from a phone: kept for review
        reply("dsl@school.example", "Re: CME-2025-0001: please confirm", None, html="<p>CONFIRM CME-2025-0001</p>"))
    report = read_replies(school_app)
    assert report is not None and report.as_dict()["review"] == 1
    queue_morning_mail(school_app, AS_OF)  # the nightly started again by hand for the same date
    digests = _texts(engine, "digest")
    assert len(digests) == 2 and "update to this morning's digest" in digests[1]
    assert f"#{referral} referral" in _section(digests[1], "Email problems") and "550 5.7.1" in digests[1]
    assert "dsl@school.example" in _section(digests[1], "Replies kept for review (not acted on)")
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(t.outbox)).scalar_one()
    queue_morning_mail(school_app, AS_OF)  # shown once: a third run has nothing new to say
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.outbox)).scalar_one() == n


def test_what_happened_while_no_summary_went_out_is_in_the_next_one(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nights caught up after the server was off: a case opened and closed in the gap, and an LA
    return listed on one of those days, reach the next summary and digest."""
    app = _app_with_replies(tmp_path, store_url, engine, monkeypatch)
    school_days = detect.evaluate(app, date(2025, 11, 28)).calendar.school_days(date(2025, 11, 10),
                                                                               date(2025, 11, 28))
    marks = {"4004": {d: ("G", "G") for d in school_days[:11]}, "5005": {d: ("/", "\\") for d in school_days}}
    marks["5005"].update({school_days[2]: ("N", "N"), school_days[3]: ("N", "N")})
    records: list[PupilRecord | MarksRecord] = [
        PupilRecord(k, legal_forename=n, legal_surname="Gapp", dob=date(2016, 5, 1), year_group="4", reg_group="4C")
        for k, n in (("4004", "Ula"), ("5005", "Cato"))]
    records += [MarksRecord(k, d, pair) for k, days in marks.items() for d, pair in days.items()]
    ingest.apply_batch(engine, app.school_id, SourceBatch("test", "test", records=records), NOW)
    detect.run_detect(app, school_days[0])
    queue_morning_mail(app, school_days[0])
    for day in school_days[1:12]:  # the server was off: detect catches up, no summary goes out
        detect.run_detect(app, day)
    queue_morning_mail(app, school_days[12])
    summary, digest = _texts(engine, "summary")[-1], _texts(engine, "digest")[-1]
    assert "Ula Gapp" in _section(summary, "LA 10-day return: new entries"), summary
    closed = _section(digest, "Closed since the last summary")
    assert "Cato Gapp" in closed and "returned" in closed, digest
    assert "Closed since the last summary" not in summary  # the DSL's, not the office's


def test_problems_a_failed_digest_carried_are_shown_in_the_next_one(school_app: App, engine: Engine,
                                                                    tmp_path: Path) -> None:
    """The LA refuses a referral, and a reply of the DSL is kept for review; the digest that tells the
    DSL is itself refused (her mailbox full). Before, the refused digest had marked both as told: the
    next morning's digest listed only the digest's own failure, and **the DSL never learnt that the
    referral had not reached the LA, nor that her reply was not acted on**."""
    (tmp_path / "replies" / "new" / "1.dsl").write_bytes(  # HTML only, from a phone: kept for review
        reply("dsl@school.example", "Re: CME-2025-0001: please confirm", None, html="<p>CONFIRM CME-2025-0001</p>"))
    assert read_replies(school_app) is not None
    with engine.begin() as conn:
        referral = outbox.enqueue(
            conn, idempotency_key="referral:CME-2025-0001", purpose="referral", recipients=["cme@la.example"],
            subject="CME referral CME-2025-0001", message=b"Subject: CME referral\r\n\r\n(encrypted)\r\n",
            from_address="cme-batch@school.example", now=NOW)

    def refuse(purpose: int | None) -> MemoryTransport:
        def on_send(m: Outgoing) -> None:
            if m.outbox_id == purpose:
                raise MessageRejected("552 5.2.2 mailbox full" if purpose != referral else "550 5.7.1 refused")
        return MemoryTransport(on_send=on_send)

    Drainer(engine, school_app.config.mail, refuse(referral), clock=lambda: NOW, run_id="t1").run()
    queue_morning_mail(school_app, AS_OF)
    with engine.connect() as conn:
        digest = conn.execute(select(t.outbox.c.id).where(t.outbox.c.purpose == "digest")).scalar_one()
    assert f"#{referral} referral" in _section(_texts(engine, "digest")[0], "Email problems")
    Drainer(engine, school_app.config.mail, refuse(digest), clock=lambda: NOW, run_id="t2").run()

    tomorrow = NOW + timedelta(days=3)
    school_app.clock_box["now"] = tomorrow  # type: ignore[attr-defined]
    queue_morning_mail(school_app, date(2025, 12, 22))
    problems = _section(_texts(engine, "digest")[-1], "Email problems")
    assert f"#{digest} digest" in problems and "552 5.2.2" in problems
    assert f"#{referral} referral" in problems and "550 5.7.1" in problems
    assert "dsl@school.example" in _section(_texts(engine, "digest")[-1], "Replies kept for review (not acted on)")
    Drainer(engine, school_app.config.mail, MemoryTransport(), clock=lambda: tomorrow, run_id="t3").run()
    school_app.clock_box["now"] = tomorrow + timedelta(days=1)  # type: ignore[attr-defined]
    queue_morning_mail(school_app, date(2025, 12, 23))  # shown in a digest that went: not again
    last = _texts(engine, "digest")[-1]
    assert f"#{referral} referral" not in _section(last, "Email problems")
    assert "dsl@school.example" not in _section(last, "Replies kept for review (not acted on)")


def test_the_dsls_request_shows_what_the_office_recorded(school_app: App, engine: Engine) -> None:
    """The policy's step V: the office passes its concerns to the DSL. What the office learnt and
    recorded by reply (NOTE: "grandmother says they moved abroad", "number disconnected") reached
    only the LA's referral form: **the DSL's confirmation request, from which she decides the
    referral, said nothing of it**. The request now lists what has been recorded on the case, by
    whom and when; with nothing recorded, it says so."""
    queue_morning_mail(school_app, AS_OF)
    with engine.connect() as conn:
        case_ids = sorted({r.case_id for r in conn.execute(select(t.outbox.c.case_id).where(
            t.outbox.c.purpose == "confirm_request"))})
    assert len(case_ids) >= 2
    noted, quiet = case_ids[0], case_ids[1]
    with engine.begin() as conn:
        conn.execute(t.case_events.insert().values(
            case_id=noted, at=NOW, kind="action", actor="office@school.example",
            detail={"action": "contacts_tried", "outcome": "grandmother says they moved abroad",
                    "by": "office@school.example", "date": "2025-12-18"}))
        ref = conn.execute(select(t.cases.c.ref).where(t.cases.c.id == noted)).scalar_one()
        other = conn.execute(select(t.cases.c.ref).where(t.cases.c.id == quiet)).scalar_one()
    school_app.clock_box["now"] = NOW + timedelta(days=15)  # type: ignore[attr-defined]  # (the codes expired)
    queue_morning_mail(school_app, AS_OF + timedelta(days=1))
    texts = _texts(engine, "confirm_request")
    mine = [x for x in texts[len(texts) // 2:] if ref in x]
    assert mine and all("grandmother says they moved abroad" in x and "Thu 18 Dec 2025" in x
                        and "Every emergency contact tried" in x for x in mine), mine[:1]
    theirs = [x for x in texts[len(texts) // 2:] if other in x]
    assert theirs and all("Nothing has been recorded on this case yet" in x for x in theirs)
