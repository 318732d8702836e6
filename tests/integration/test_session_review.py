"""Adversarial review of the session's engine and morning-mail changes, each on a real store.

Each test is a scenario a user would notice; see the docstrings for what went wrong before.
"""

from __future__ import annotations

import email
import email.policy
import mailbox as stdlib_mailbox
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies.process import read_replies
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.replies_support import DEPUTY, DSL, KEY, KEY_ENV, MAILDIR_REPLIES, reply

SPRING = date(2026, 1, 5), date(2026, 3, 27)
AUTUMN_TERMS = """
[[calendar.terms]]
start = "2025-09-02"
end = "2025-10-24"

[[calendar.terms]]
start = "2025-11-03"
end = "2025-12-19"
"""


def _app(tmp_path: Path, store_url: str, engine: Engine, extra: str, autumn: bool = True) -> App:
    cfg = write_config(tmp_path, store_url, extra)
    if not autumn:  # a school that configured only the terms from its first day on the system
        cfg.write_text(cfg.read_text(encoding="utf-8").replace(AUTUMN_TERMS.strip(), ""), encoding="utf-8")
        assert "2025-09-02" not in cfg.read_text(encoding="utf-8")
    app = clocked_app(cfg, engine, datetime(2026, 1, 5, 5, 0, tzinfo=UTC))
    return app


def _pupil(key: str) -> PupilRecord:
    return PupilRecord(key, upn=None, legal_surname=f"Surname{key}", legal_forename=f"Forename{key}",
                       dob=date(2017, 3, 1), year_group="4", reg_group="4B")


def _import(app: App, day: date, *records: Any) -> None:
    app.clock_box["now"] = datetime.combine(day, time(23, 0), UTC)  # type: ignore[attr-defined]
    apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)), app.now())


def _cases(engine: Engine) -> list[tuple[str, str, date | None]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t.cases.c.kind, t.cases.c.status, t.cases.c.episode_start)
                                               .order_by(t.cases.c.id))]  # type: ignore[misc]


@pytest.mark.parametrize("autumn", [True, False])
def test_an_autumn_leaver_is_not_a_new_case_in_january_when_the_autumn_is_not_configured(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch, autumn: bool) -> None:
    """A school that came to cme-batch in January and configured its terms from then on. A child
    who left on 10 Sep 2025, no destination recorded (the SIMS leavers report gives the year's
    leavers), was a new "destination unknown" case on the first January night: the days before
    the first known school day counted as "no school" back to 1 August, the whole autumn term
    inside the repeat window. With the autumn configured, that leaving is outside the window."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app = _app(tmp_path, store_url, engine, f"""
[[calendar.terms]]
start = "{SPRING[0]}"
end = "{SPRING[1]}"
""", autumn=autumn)
    day = date(2026, 1, 7)
    _import(app, day, _pupil("p1"), EnrolmentRecord("p1", entry_date=date(2021, 9, 6), leaving_date=date(2025, 9, 10)),
            _pupil("p2"), MarksRecord("p2", day, ("/", "/")))
    detect.run_detect(app, day)
    assert _cases(engine) == []


# -- an absence the DSL closed, raised again ------------------------------------------------------

def _replies_app(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch,
                 extra: str = "") -> App:
    monkeypatch.setenv(KEY_ENV, KEY)
    stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
    return _app(tmp_path, store_url, engine, f"""
[[calendar.terms]]
start = "{SPRING[0]}"
end = "{SPRING[1]}"
{MAILDIR_REPLIES}{extra}""")


def _night(app: App, day: date, *marks: Any) -> None:
    """The night after ``day``: the records imported (default: that day's N), detect, replies, mail."""
    _import(app, day, _pupil("p1"), *(marks or (MarksRecord("p1", day, ("N", "N")),)))
    detect.run_detect(app, day)
    read_replies(app)
    queue_morning_mail(app, day)


def _ua(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.cases).where(t.cases.c.kind == "unexplained_absence")
                                 .order_by(t.cases.c.id)))


def _asks(engine: Engine, case_id: int) -> list[Any]:
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients).where(
            t.outbox.c.case_id == case_id, t.outbox.c.purpose == "confirm_request").order_by(t.outbox.c.id)).all()
    return [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
            for r in rows if [a.lower() for a in r.recipients] == [DSL]]


def _close(app: App, engine: Engine, text: str = "mum rang, he has chickenpox") -> Any:
    case = _ua(engine)[-1]
    ask = _asks(engine, case.id)[-1]
    mbox = stdlib_mailbox.Maildir(str(Path(str(app.config_path)).parent / "replies"), create=False)
    mbox.add(reply(DSL, f"Re: {ask['Subject']}", f"CLOSE {case.ref} {text}\n"))
    read_replies(app)
    case = _ua(engine)[-1]
    assert (case.status, case.closed_reason) == ("closed", "closed_by_dsl")
    return case


def _days(app: App) -> list[date]:
    return detect.evaluate(app, SPRING[1]).calendar.school_days(*SPRING)


def test_a_correction_of_the_closed_absences_first_day_does_not_ask_the_dsl_again_the_next_morning(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DSL closes an 8-day absence by reply; that night the office corrects its first day to
    illness (I), the other days still N. Before, the shortened streak was a *new* case, and the DSL
    was asked the next morning to confirm a referral of the absence they had just closed, with no
    word of their close. Now it is the episode they closed: raised again on its 10th school day,
    as the same case, saying so."""
    app = _replies_app(tmp_path, store_url, engine, monkeypatch)
    days = _days(app)
    _night(app, days[0], MarksRecord("p1", days[0], ("/", "/")))
    for d in days[1:9]:
        _night(app, d)
    closed = _close(app, engine)
    asked = len(_asks(engine, closed.id))
    _night(app, days[9], MarksRecord("p1", days[1], ("I", "I")), MarksRecord("p1", days[9], ("N", "N")))
    _night(app, days[10])  # 9 days of N since the correction
    assert [(c.id, c.status) for c in _ua(engine)] == [(closed.id, "closed")]
    assert len(_asks(engine, closed.id)) == asked
    _night(app, days[11])  # the corrected streak's 10th school day
    [case] = _ua(engine)
    assert (case.id, case.status, case.episode_start, case.school_days) == (closed.id, "open", days[2], 10)
    text = " ".join(_asks(engine, case.id)[-1].get_body(("plain",)).get_content().split())
    assert "Raised again: this case was closed by reply on" in text and "chickenpox" in text


def _digest(engine: Engine) -> str:
    with engine.connect() as conn:
        mime = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "digest")
                            .order_by(t.outbox.c.id.desc()).limit(1)).scalar_one()
    msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
    return " ".join(msg.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]


def test_a_raised_again_case_keeps_saying_so_after_a_correction_closes_and_reopens_it(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raised again on the 10th day; the 11th day's register says present (the case closes,
    "returned"), then the office corrects it back to N (detect reopens it). Before, the DSL's
    digest then asked for the confirmation with no word that they had closed this absence: only
    the latest reopening was read, and a correction's reopening does not say why."""
    app = _replies_app(tmp_path, store_url, engine, monkeypatch)
    days = _days(app)
    _night(app, days[0], MarksRecord("p1", days[0], ("/", "/")))
    for d in days[1:9]:
        _night(app, d)
    _close(app, engine)
    for d in days[9:11]:
        _night(app, d)
    assert "Raised again: this case was closed by reply" in _digest(engine)
    _night(app, days[11], MarksRecord("p1", days[11], ("/", "/")))
    assert _ua(engine)[-1].status == "closed"
    _night(app, days[12], MarksRecord("p1", days[11], ("N", "N")), MarksRecord("p1", days[12], ("N", "N")))
    [case] = _ua(engine)
    assert (case.status, case.school_days) == ("open", 12)
    digest = _digest(engine)
    assert "Awaiting your confirmation" in digest and case.ref in digest
    assert "Raised again: this case was closed by reply" in digest and "chickenpox" in digest


def test_a_place_not_taken_up_is_not_called_a_child_gone_from_the_exports(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A child given a place from the term's first day who never came has, by the 12th school day,
    no register mark at all: that is the place-not-taken-up case, opened and on the DSL's list.
    Before, the office was also told the child "is on no other list here" and to "record the
    leaving": a child who never started, and is being looked for, sent to the wrong task."""
    app = _replies_app(tmp_path, store_url, engine, monkeypatch)
    days = _days(app)
    _import(app, days[0], _pupil("p2"), EnrolmentRecord("p2", admission_date=days[0]),
            _pupil("p1"), MarksRecord("p1", days[0], ("/", "/")))
    for d in days[1:13]:
        _import(app, d, _pupil("p1"), MarksRecord("p1", d, ("/", "/")))
    ev = detect.run_detect(app, days[12])
    assert [(k, s) for k, s, _ in _cases(engine)] == [("place_not_taken_up", "open")]
    assert not [w for w in ev.warnings if "no register mark at all" in w]
    # a child on roll for years, with not one mark this term (gone from the exports), is still warned about
    _import(app, days[13], _pupil("p3"), EnrolmentRecord("p3", admission_date=date(2021, 9, 6),
                                                         entry_date=date(2021, 9, 6)),
            _pupil("p1"), MarksRecord("p1", days[13], ("/", "/")))
    ev = detect.run_detect(app, days[13])
    assert [w for w in ev.warnings if "1 pupil(s) on roll have had no register mark at all" in w]


def _referred_then_closed_then_raised_again(tmp_path: Path, store_url: str, engine: Engine,
                                            monkeypatch: pytest.MonkeyPatch) -> tuple[App, list[date], Any]:
    """Confirmed by the DSL on the 8th day, referred that night (S/MIME); the deputy then closes the
    case by reply (the LA is sent the update "the school has closed the case"); the register goes on
    saying N and the case is raised again, still referred. Returns the app, the school days and a
    night's function."""
    from cme_batch.dispatch import queue_confirmed_referrals
    from tests.referral_support import make_pki, smime_config

    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki", now=datetime(2025, 12, 1, tzinfo=UTC))
    app = _replies_app(tmp_path, store_url, engine, monkeypatch, smime_config(pki))
    days = _days(app)

    def night(day: date, code: str) -> None:
        _import(app, day, _pupil("p1"), MarksRecord("p1", day, (code, code)))
        detect.run_detect(app, day)
        read_replies(app)
        queue_confirmed_referrals(app, day)
        queue_morning_mail(app, day)

    night(days[0], "/")
    for d in days[1:9]:
        night(d, "N")
    case = _ua(engine)[-1]
    mbox = stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=False)
    mbox.add(reply(DSL, f"Re: {_asks(engine, case.id)[-1]['Subject']}", f"CONFIRM {case.ref}\n"))
    night(days[9], "N")
    assert _ua(engine)[-1].referred_at is not None
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients).where(
            t.outbox.c.case_id == case.id, t.outbox.c.purpose == "confirm_request")).all()
    to_deputy = [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
                 for r in rows if [a.lower() for a in r.recipients] == [DEPUTY]][-1]
    mbox.add(reply(DEPUTY, f"Re: {to_deputy['Subject']}", f"CLOSE {case.ref} family moved abroad\n"))
    night(days[10], "N")
    assert (_ua(engine)[-1].status, _ua(engine)[-1].closed_reason) == ("closed", "closed_by_dsl")
    with engine.connect() as conn:
        assert conn.execute(select(t.referral_archive.c.kind)).scalars().all() == ["referral", "update"]
    for d in days[11:21]:
        night(d, "N")
    case = _ua(engine)[-1]
    assert (case.status, case.referred_at is not None) == ("open", True)  # raised again, still referred
    return app, days, night


def _summary(engine: Engine) -> str:
    with engine.connect() as conn:
        mime = conn.execute(select(t.outbox.c.mime).where(t.outbox.c.purpose == "summary")
                            .order_by(t.outbox.c.id.desc()).limit(1)).scalar_one()
    msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
    return " ".join(msg.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]


def test_the_la_is_told_a_referred_case_it_was_told_had_closed_is_open_again(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LA was sent the close. Before, nothing told it the case was raised again: the DSL's digest
    asked her to tell the LA herself, and **the LA believed the case of a child still missing was
    closed**. Now the referrals stage sends an update that the case is open again, on the night it
    is raised again, once; the digest says so, and the office's summary says nothing of it."""
    from cme_batch.referral.bundle import build_bundle

    app, _days, _night = _referred_then_closed_then_raised_again(tmp_path, store_url, engine, monkeypatch)
    with engine.connect() as conn:
        kinds = conn.execute(select(t.referral_archive.c.kind).order_by(t.referral_archive.c.id)).scalars().all()
        case_id = conn.execute(select(t.cases.c.id).where(t.cases.c.kind == "unexplained_absence")).scalar_one()
        queued = conn.execute(select(t.outbox.c.idempotency_key).where(
            t.outbox.c.purpose == "update").order_by(t.outbox.c.id)).scalars().all()
    assert kinds == ["referral", "update", "update"], "the close, then open again: one update each"
    assert len(queued) == 2 and queued[1].endswith(":2")
    with engine.connect() as conn:
        doc = build_bundle(conn, case_id, app.config, app.now(), "update").document
    assert (doc["update"]["reason"], doc["case"]["status"], doc["update"]["closed_on"]) == ("other", "open", None)
    assert "the LA is sent an update that the case is open again" in _digest(engine)
    office = _summary(engine)
    assert "open again" not in office and "closed by reply" not in office


def test_the_la_hears_of_a_referred_case_raised_again_after_the_dsl_closed_it(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the above, the child comes back: the LA, told the case was closed and then open again,
    is told the child returned: one update for each change, never one twice."""
    _app, days, night = _referred_then_closed_then_raised_again(tmp_path, store_url, engine, monkeypatch)
    night(days[21], "/")
    assert (_ua(engine)[-1].status, _ua(engine)[-1].closed_reason) == ("closed", "returned")
    night(days[22], "/")
    with engine.connect() as conn:
        updates = conn.execute(select(t.referral_archive.c.id).where(t.referral_archive.c.kind == "update")).all()
    assert len(updates) == 3, "the DSL's close, open again, the return"


def test_a_correction_of_a_leavers_earlier_mark_does_not_take_the_child_back_on_roll(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leaving entered late and dated back: the child was marked N on two days after it, before
    the office recorded it (no destination: a "destination unknown" case). The next night the
    office corrects an older mark of the child (present -> late). Before, that correction made
    the year's marks "newer than the leaving", the two old N days counted as a register still kept:
    the case closed, the child was taken back on roll with an unexplained absence instead, and the
    office was told to remove marks. Now only a marked day after the day the leaving was stored counts."""
    app = _replies_app(tmp_path, store_url, engine, monkeypatch)
    days = _days(app)
    enrol = EnrolmentRecord("p1", entry_date=date(2021, 9, 6))
    for d in days[0:5]:
        _import(app, d, _pupil("p1"), enrol, MarksRecord("p1", d, ("/", "/")))
    for d in days[5:7]:
        _import(app, d, _pupil("p1"), enrol, MarksRecord("p1", d, ("N", "N")))
    left = EnrolmentRecord("p1", entry_date=date(2021, 9, 6), leaving_date=days[4])
    _import(app, days[7], _pupil("p1"), left)
    detect.run_detect(app, days[7])
    assert [(k, s) for k, s, _ in _cases(engine)] == [("destination_unknown", "open")]
    _import(app, days[8], _pupil("p1"), left, MarksRecord("p1", days[1], ("L", "L")))
    ev = detect.run_detect(app, days[8])
    assert [(k, s) for k, s, _ in _cases(engine)] == [("destination_unknown", "open")]
    assert not [w for w in ev.warnings if "still have register marks after their leaving date" in w]
    # marked again on a later day (the MIS undid the leaving): on roll again, and said so
    _import(app, days[9], _pupil("p1"), left, MarksRecord("p1", days[9], ("/", "/")))
    ev = detect.run_detect(app, days[9])
    assert ("destination_unknown", "open") not in [(k, s) for k, s, _ in _cases(engine)]
    assert [w for w in ev.warnings if "still have register marks after their leaving date" in w]
