"""A review from the Access to Education Team's side: what the LA receives, over weeks of a term.

Each test lives nights of a real store (import, ``detect``, the DSL's replies from a Maildir, the
``referrals`` stage, the morning mail and ``send``), with a transport that keeps what reaches the
LA's address. What the LA received is decrypted with ``openssl`` and its key, and read as a
caseworker reads it: the JSON and the PDF of each referral and update.
"""

from __future__ import annotations

import email
import email.policy
import json
import mailbox as stdlib_mailbox
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.dispatch import queue_confirmed_referrals
from cme_batch.mail.sender import send_run
from cme_batch.mail.transport import Delivery, MessageRejected, Outgoing, TemporarySendError
from cme_batch.model import Address, ContactRecord, EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies.process import read_replies
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.referral_support import PKI, make_pki, pdf_text, smime_config
from tests.replies_support import DSL, KEY, KEY_ENV, MAILDIR_REPLIES, reply
from tests.servers import need_tool

LA = "missingpupils@gloucestershire.gov.uk"
SPRING = date(2026, 1, 5), date(2026, 3, 27)
HOME = Address(("14 Imaginary Lane", "Tewkesbury"), "GL20 9ZZ")

pytestmark = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@dataclass
class Post:
    """A transport that keeps every message handed to it; the LA's server can be made to refuse."""

    name: str = "memory"
    received: list[Outgoing] = field(default_factory=list)
    la_refuses: str | None = None  # "temporary" or "permanent"

    def send(self, message: Outgoing) -> Delivery:
        if LA in message.recipients and self.la_refuses == "temporary":
            raise TemporarySendError("451 4.3.0 mailbox temporarily unavailable")
        if LA in message.recipients and self.la_refuses == "permanent":
            raise MessageRejected("554 5.7.1 message refused")
        self.received.append(message)
        return Delivery("250 ok")


@dataclass
class Received:
    """One message as the LA reads it: the outer headers, the note, the JSON and the PDF's text."""

    subject: str
    filenames: list[str]
    note: str
    doc: dict[str, Any]
    pdf: str


def child(key: str, forename: str, **kw: Any) -> PupilRecord:
    values: dict[str, Any] = dict(upn=None, legal_surname="Marsh-Ellery", legal_forename=forename,
                                  dob=date(2017, 3, 14), sex="F", year_group="3", reg_group="3W", address=HOME)
    values.update(kw)
    return PupilRecord(key, **values)


def mother(key: str, **kw: Any) -> ContactRecord:
    values: dict[str, Any] = dict(priority=1, title="Ms", surname="Marsh", forename="Joanna", relationship="Mother",
                                  parental_responsibility=True, lives_with=True, phones=("07700 900101",),
                                  emails=("j.marsh@example.invalid",), address=HOME)
    values.update(kw)
    return ContactRecord(key, "C100", **values)


class School:
    """A school's nights, one school day at a time, with the LA's mailbox."""

    def __init__(self, tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(KEY_ENV, KEY)
        (tmp_path / "pki").mkdir()
        self.pki: PKI = make_pki(tmp_path / "pki", now=datetime(2025, 12, 1, tzinfo=UTC))
        stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)
        cfg = write_config(tmp_path, store_url, f"""
[[calendar.terms]]
start = "{SPRING[0]}"
end = "{SPRING[1]}"
{MAILDIR_REPLIES}""" + smime_config(self.pki))
        self.tmp, self.engine = tmp_path, engine
        self.app: App = clocked_app(cfg, engine, datetime(2026, 1, 5, 5, 0, tzinfo=UTC))
        self.days = detect.evaluate(self.app, SPRING[1]).calendar.school_days(*SPRING)
        self.post = Post()
        self.pupils: dict[str, list[Any]] = {}
        self.mailbox = stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=False)

    def enrol(self, *records: Any) -> None:
        for r in records:
            self.pupils.setdefault(r.pupil_key, []).append(r)

    def night(self, i: int, marks: dict[str, str], *changes: Any) -> None:
        """The night after school day ``i``: that day's marks and any changed records imported,
        then every stage the nightly runs."""
        day = self.days[i]
        for r in changes:
            kept = [x for x in self.pupils.get(r.pupil_key, []) if type(x) is not type(r)
                    or isinstance(r, ContactRecord) and x.contact_key != r.contact_key]
            self.pupils[r.pupil_key] = [*kept, r]
        records: list[Any] = [r for rs in self.pupils.values() for r in rs]
        records += [MarksRecord(k, day, (c, c)) for k, c in marks.items()]
        self.app.clock_box["now"] = datetime.combine(day, time(23, 0), UTC)  # type: ignore[attr-defined]
        apply_batch(self.engine, self.app.school_id, SourceBatch(
            "test", "test", records=records, replaces=frozenset({"contacts", "flags", "enrolments"})), self.app.now())
        detect.run_detect(self.app, day)
        read_replies(self.app)
        try:
            queue_confirmed_referrals(self.app, day)
        finally:
            queue_morning_mail(self.app, day)
            send_run(self.app, transport=self.post, sleep=lambda s: None)

    def case(self, key: str, kind: str = "unexplained_absence") -> Any:
        with self.engine.connect() as conn:
            pid = conn.execute(select(t.pupil_keys.c.pupil_id).where(t.pupil_keys.c.pupil_key == key)).scalar_one()
            return conn.execute(select(t.cases).where(t.cases.c.pupil_id == pid, t.cases.c.kind == kind)
                                .order_by(t.cases.c.id.desc())).first()

    def confirm(self, key: str, kind: str = "unexplained_absence") -> None:
        """The DSL replies CONFIRM to the latest confirmation request of the pupil's case."""
        case = self.case(key, kind)
        self.mailbox.add(reply(DSL, f"Re: {self._asks(case.id)[-1]['Subject']}", f"CONFIRM {case.ref}\n"))

    def note(self, key: str, text: str, kind: str = "unexplained_absence") -> None:
        """The DSL records an action by replying NOTE to the case's latest request."""
        case = self.case(key, kind)
        self.mailbox.add(reply(DSL, f"Re: {self._asks(case.id)[-1]['Subject']}", f"NOTE {case.ref} {text}\n"))

    def _asks(self, case_id: int) -> list[Any]:
        """The confirmation requests sent to the DSL for a case, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.outbox.c.mime, t.outbox.c.recipients).where(
                t.outbox.c.case_id == case_id, t.outbox.c.purpose == "confirm_request")
                .order_by(t.outbox.c.id)).all()
        asks = [email.message_from_bytes(bytes(r.mime), policy=email.policy.default)
                for r in rows if [a.lower() for a in r.recipients] == [DSL]]
        assert asks, "no confirmation request to the DSL"
        return asks

    def to_la(self) -> list[Received]:
        """Every message that reached the LA's address, decrypted with the LA's key, in order."""
        return [self._read(m.raw) for m in self.post.received if LA in m.recipients]

    def _read(self, raw: bytes) -> Received:
        outer = email.message_from_bytes(raw, policy=email.policy.default)
        src, out = self.tmp / "in.eml", self.tmp / "out.eml"
        src.write_bytes(raw)
        proc = subprocess.run([need_tool("openssl", "openssl"), "cms", "-decrypt", "-in", str(src), "-recip",
                               str(self.pki.la.cert_path), "-inkey", str(self.pki.la.key_path), "-out", str(out)],
                              capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
        inner = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
        if inner.get_content_type() == "multipart/signed":
            inner = inner.get_payload(0)  # type: ignore[assignment]
        files: dict[str, bytes] = {}
        note = ""
        for part in inner.walk():
            if part.is_multipart():
                continue
            if part.get_filename():
                files[part.get_filename()] = part.get_payload(decode=True)
            else:
                note = part.get_content()
        [json_name] = [n for n in files if n.endswith(".json")]
        [pdf_name] = [n for n in files if n.endswith(".pdf")]
        return Received(str(outer["Subject"]), sorted(files), note, json.loads(files[json_name]),
                        pdf_text(files[pdf_name]))


@pytest.fixture
def school(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> School:
    return School(tmp_path, store_url, engine, monkeypatch)


def _absent_and_referred(school: School, *keys: str) -> None:
    """Present on the term's first day, then N every day; the DSL confirms each referral on the
    8th day's request; the referral goes on the 9th night."""
    school.night(0, {k: "/" for k in keys})
    for i in range(1, 9):
        school.night(i, {k: "N" for k in keys})
    for k in keys:
        school.confirm(k)
    school.night(9, {k: "N" for k in keys})


def _outbox(school: School, purpose: str) -> list[Any]:
    with school.engine.connect() as conn:
        return list(conn.execute(select(t.outbox).where(t.outbox.c.purpose == purpose).order_by(t.outbox.c.id)))


# -- a send that fails ----------------------------------------------------------------------

def test_an_update_never_reaches_the_la_before_the_referral_it_updates(school: School) -> None:
    """The LA's server refuses the referral for good (554); the child returns the next day. Before,
    the update went that night: the LA received "an update to our referral CME-2026-0001" for a
    referral it never had, and, once the DSL requeued the refused referral as the digest asked, the
    referral of a child who had long returned, after the update. Now the update waits for the
    referral: the LA receives nothing of the case until the referral goes, then both in order."""
    school.enrol(child("p1", "Amelia"), EnrolmentRecord("p1", entry_date=date(2021, 9, 6)), mother("p1"))
    school.post.la_refuses = "permanent"
    _absent_and_referred(school, "p1")
    [referral] = _outbox(school, "referral")
    assert referral.status == "failed"
    school.post.la_refuses = None
    school.night(10, {"p1": "/"})
    school.night(11, {"p1": "/"})
    assert school.case("p1").closed_reason == "returned"
    assert school.to_la() == [], "an update for a referral the LA never received"
    [update] = _outbox(school, "update")
    assert update.status == "queued" and f"#{referral.id}" in update.last_error

    with school.engine.begin() as conn:  # the DSL's technician: cme-batch outbox --requeue ID
        from cme_batch.mail import outbox
        assert outbox.requeue(conn, referral.id, school.app.now())
    send_run(school.app, transport=school.post, sleep=lambda s: None)
    got = school.to_la()
    assert [r.doc["kind"] for r in got] == ["referral", "update"]
    assert got[1].doc["update"]["reason"] == "returned"
    assert [o.status for o in (*_outbox(school, "referral"), *_outbox(school, "update"))] == ["sent", "sent"]


def test_a_referral_the_las_server_put_off_goes_the_next_night_then_the_update(school: School) -> None:
    """A temporary refusal (451) on the referral's night: retried the next night with the same
    bytes and Message-ID, before the update of that night, each once."""
    school.enrol(child("p1", "Amelia"), EnrolmentRecord("p1", entry_date=date(2021, 9, 6)), mother("p1"))
    school.post.la_refuses = "temporary"
    _absent_and_referred(school, "p1")
    assert school.to_la() == []
    school.post.la_refuses = None
    school.night(10, {"p1": "/"})
    school.night(11, {"p1": "/"})
    got = school.to_la()
    assert [(r.doc["kind"], r.doc["case"]["ref"]) for r in got] == [("referral", "CME-2026-0001"),
                                                                      ("update", "CME-2026-0001")]
    ids = [m.message_id for m in school.post.received if LA in m.recipients]
    assert len(set(ids)) == 2


# -- a sibling also missing -------------------------------------------------------------------

def test_a_sibling_who_is_missing_too_is_not_listed_as_if_at_school(school: School) -> None:
    """Two children of one family absent from the same day, both referred the same night. Before,
    each referral listed the other under "Siblings (other pupils on roll...)" with nothing more:
    the LA read a brother at school every day, and had two referrals it could not tell were one
    family gone. Now each sibling says whether a case is open for them, with its reference."""
    school.enrol(child("p1", "Amelia"), EnrolmentRecord("p1", entry_date=date(2021, 9, 6)), mother("p1"),
                 child("p2", "Oliver", dob=date(2019, 6, 2), sex="M", year_group="1", reg_group="1K"),
                 EnrolmentRecord("p2", entry_date=date(2023, 9, 6)), mother("p2"),
                 child("p3", "Rosie", dob=date(2020, 2, 2), year_group="R", reg_group="RB"),
                 EnrolmentRecord("p3", entry_date=date(2024, 9, 6)), mother("p3"))
    school.night(0, {"p1": "/", "p2": "/", "p3": "/"})
    for i in range(1, 9):
        school.night(i, {"p1": "N", "p2": "N", "p3": "/"})
    school.confirm("p1")
    school.confirm("p2")
    school.night(9, {"p1": "N", "p2": "N", "p3": "/"})
    got = {r.doc["child"]["legal_forename"]: r for r in school.to_la()}
    assert sorted(got) == ["Amelia", "Oliver"]
    amelia, oliver = got["Amelia"], got["Oliver"]
    sibs = {s["name"]: s for s in amelia.doc["siblings"]}
    assert sorted(sibs) == ["Oliver Marsh-Ellery", "Rosie Marsh-Ellery"]
    assert [(c["ref"], c["kind"], c["episode_start"]) for c in sibs["Oliver Marsh-Ellery"]["open_cases"]] == [
        (oliver.doc["case"]["ref"], "unexplained_absence", "2026-01-06")]
    assert sibs["Rosie Marsh-Ellery"]["open_cases"] == []
    assert [c["ref"] for s in oliver.doc["siblings"] if s["name"] == "Amelia Marsh-Ellery"
            for c in s["open_cases"]] == [amelia.doc["case"]["ref"]]
    assert f"ALSO MISSING: case {oliver.doc['case']['ref']}" in amelia.pdf
    assert "(other pupils on roll sharing a contact or the address)" in amelia.pdf


# -- two cases for one child ------------------------------------------------------------------

def _leaves(school: School, i: int, destination: str | None = None) -> EnrolmentRecord:
    return EnrolmentRecord("p1", entry_date=date(2021, 9, 6), leaving_date=school.days[i], leaving_reason="Moved away",
                           destination=destination)


def test_a_second_referral_of_one_child_names_the_first(school: School) -> None:
    """Referred for absence (the DSL's home visit recorded on that case), the child is then taken
    off roll with no destination: the LA is told, and the DSL confirms the "destination unknown"
    referral. Before, that second referral, under a new reference, said nothing of the first:
    "No actions are recorded on this case" for a child the school had visited at home, and the LA
    could not tell it from a new child. Now it names the earlier referral, when it went and where
    its actions are; the updates of each case go once each, in order."""
    school.enrol(child("p1", "Amelia"), EnrolmentRecord("p1", entry_date=date(2021, 9, 6)), mother("p1"))
    school.night(0, {"p1": "/"})
    for i in range(1, 9):
        school.night(i, {"p1": "N"})
    school.note("p1", "home-visit: nobody in, neighbour says the family moved out")
    school.night(9, {"p1": "N"})
    school.confirm("p1")
    school.night(10, {"p1": "N"})
    school.night(11, {"p1": "N"}, _leaves(school, 11))
    school.night(12, {})
    school.confirm("p1", "destination_unknown")
    school.night(13, {})
    school.night(14, {}, _leaves(school, 11, "Tewkesbury Academy"))
    school.night(15, {})
    got = school.to_la()
    assert [(r.doc["kind"], r.doc["case"]["ref"]) for r in got] == [
        ("referral", "CME-2026-0001"), ("update", "CME-2026-0001"),
        ("referral", "CME-2026-0002"), ("update", "CME-2026-0002")]
    first, left, second, traced = got
    assert [a["action"] for a in first.doc["actions"]] == ["home_visit"]
    assert "NO DESTINATION KNOWN" in left.pdf
    assert second.doc["case"]["earlier_referrals"] == [
        {"ref": "CME-2026-0001", "kind": "unexplained_absence", "referred_on": "2026-01-19",
         "status": "closed", "closed_reason": "left"}]
    assert ("Earlier referral of this child: CME-2026-0001 (unexplained absence, referred 19 Jan 2026; "
            "its actions taken were sent with it)") in second.pdf
    assert first.doc["case"]["earlier_referrals"] == []
    assert (traced.doc["update"]["reason"], traced.doc["update"]["destination"]) == (
        "destination_known", "Tewkesbury Academy")
