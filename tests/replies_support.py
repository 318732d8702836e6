"""Building blocks for reply tests: a case in a real store, and replies as a mail client writes them."""

from __future__ import annotations

import itertools
import mailbox as stdlib_mailbox
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.dispatch import DispatchReport, queue_confirmed_referrals
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies import Tokens, process, subject_for
from cme_batch.replies.tokens import KeyRing
from cme_batch.store import ingest
from cme_batch.store import tables as t

KEY_ENV = "CME_TEST_REPLY_KEY"
KEY = "test-reply-key-0123456789abcdef"  # the value tests put in KEY_ENV
DSL, DEPUTY, OFFICE = "dsl@school.example", "deputy@school.example", "office@school.example"
MX = "mx.school.example"  # the authserv-id of "our" receiving server in tests

_pupils = itertools.count(1)


def make_tokens(lifetime_days: int = 14) -> Tokens:
    return Tokens(KeyRing([("k1", KEY.encode())]), timedelta(days=lifetime_days))


def make_case(engine: Engine, ref: str, now: datetime, *, status: str = "open") -> int:
    """A pupil loaded through the ingest path, and one open case for them; the case's id."""
    n = next(_pupils)
    with engine.begin() as conn:
        school_id = ingest.ensure_school(conn, "916", "2999", "The John Moore Primary School")
    key = f"R{n}-{ref}"
    batch = SourceBatch(source="test", origin="replies-test", records=[PupilRecord(
        key, legal_surname="Testchild", legal_forename="Alex", dob=date(2017, 5, 1), year_group="3")])
    ingest.apply_batch(engine, school_id, batch, now)
    with engine.begin() as conn:
        pupil_id = conn.execute(select(t.pupil_keys.c.pupil_id).where(t.pupil_keys.c.pupil_key == key)).scalar_one()
        return int(conn.execute(insert(t.cases).values(
            ref=ref, pupil_id=pupil_id, kind="unexplained_absence", status=status, stage="referral_prepare",
            episode_start=date(2025, 11, 17), opened_on=date(2025, 11, 17), school_days=8,
            updated_at=now)).inserted_primary_key[0])


def issue(engine: Engine, toks: Tokens, case_id: int, recipient: str, now: datetime) -> str:
    with engine.begin() as conn:
        return toks.issue(conn, case_id, recipient, now)


def reply(sender: str, subject: str, body: str | None, *, html: str | None = None,
          attachment: bytes | None = None, auth_results: list[str] | None = None,
          when: datetime | None = None) -> bytes:
    """A reply as a mail client sends it. ``auth_results`` are header values, topmost first."""
    msg = EmailMessage()
    for value in auth_results or []:
        msg["Authentication-Results"] = value
    msg["From"] = f"Staff Member <{sender}>"
    msg["To"] = "cme-bot@school.example"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if when is not None:
        msg["Date"] = format_datetime(when)
    if body is not None:
        msg.set_content(body)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="scan.pdf")
    return msg.as_bytes()


def dsl_reply(command: str, token: str, case_ref: str, *, sender: str = DSL, **kw: Any) -> bytes:
    """A top-posted reply to the message we sent about ``case_ref``: command first, our text quoted."""
    body = (f"{command}\n\nDee Ess-Ell\nDesignated Safeguarding Lead\n\n"
            f"On Mon, 1 Dec 2025 at 06:00, cme-batch wrote:\n> Case {case_ref} is ready for referral.\n"
            f"> Reply CONFIRM {case_ref} to send it to the local authority.\n")
    return reply(sender, "Re: " + subject_for(case_ref, token), body, **kw)


def trusted_pass(domain: str = "school.example") -> str:
    return f"{MX}; dkim=pass header.d={domain} header.s=sel1; spf=pass smtp.mailfrom={domain}; " \
           f"dmarc=pass (p=reject) header.from={domain}"


def deliver_and_run(app: App, maildir: stdlib_mailbox.Maildir, *messages: bytes) -> process.RepliesReport:
    """Put the messages in the Maildir and run the replies stage once."""
    for raw in messages:
        maildir.add(raw)
    report = process.read_replies(app)
    assert report is not None
    return report


def case_row(engine: Engine, case_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(t.cases).where(t.cases.c.id == case_id)).one()


#: The [replies] section of a store reading replies from a Maildir at ``replies`` (the key in ``KEY_ENV``).
MAILDIR_REPLIES = f"""
[replies]
mailbox = "maildir"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]

[replies.maildir]
path = "replies"
"""


def maildir_app(tmp_path: Path, store_url: str, engine: Engine, now: datetime, extra: str = "") -> App:
    """An App reading replies from the Maildir ``tmp_path/replies`` (set ``KEY_ENV`` first), at ``now``."""
    from tests.conftest import write_config

    a = App(str(write_config(tmp_path, store_url, MAILDIR_REPLIES + extra)), clock=lambda: now)
    a._engine = engine
    return a


def night_of(app: App, day: date, code: str | None, pupil: PupilRecord | None = None,
             flags: tuple[Any, ...] = ()) -> DispatchReport:
    """The night after ``day``, stage by stage as ``nightly`` runs them (sending aside): that day's
    register of one pupil ("p1", or ``pupil``, with ``flags``) imported, ``code`` in both sessions
    (None: the register was not taken), detect, the replies read, confirmed referrals queued, the
    morning's emails. ``app`` is a ``tests.helpers.clocked_app``."""
    app.clock_box["now"] = datetime.combine(day, time(23, 0), UTC)  # type: ignore[attr-defined]
    records: list[Any] = [pupil or PupilRecord("p1", upn="A123456789012", dob=date(2017, 3, 1)), *flags]
    if code is not None:
        records.append(MarksRecord("p1", day, (code, code)))
    ingest.apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=records), app.now())
    detect.run_detect(app, day)
    process.read_replies(app)
    report = queue_confirmed_referrals(app, day)
    queue_morning_mail(app, day)
    return report
