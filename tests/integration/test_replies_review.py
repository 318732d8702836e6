"""Replies as Outlook, Gmail, Apple Mail, phones and Thunderbird write them, to the real request.

Each test queues the real morning mail (so the DSL's confirmation request, its subject, token and
text, are the ones cme-batch sends), writes the reply a mail client would send to it into a real
Maildir, and runs the real replies stage into a real store. What is asserted is what the DSL
would notice: the case's status, confirmation or hold, a referral queued or not, and the
digest's "Replies kept for review" list.
"""

from __future__ import annotations

import base64
import email
import email.policy
import mailbox as stdlib_mailbox
import quopri
from collections.abc import Callable
from datetime import date, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from sqlalchemy import Engine, select

from cme_batch.app import App
from cme_batch.dispatch import queue_confirmed_referrals
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies import pending_review
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW
from tests.replies_support import DSL, case_row, deliver_and_run, make_case

REF = "CME-2025-0071"
OTHER = "CME-2025-0072"
AS_OF = date(2025, 11, 28)
LATER = FIXED_NOW + timedelta(hours=3)
BOT = "cme-bot@school.example"


@pytest.fixture
def app(reply_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", "correct-horse-battery-staple-42")
    return reply_app(LATER, """
[referral]
passphrase = { env = "CME_TEST_LA_PASSPHRASE" }
""")


def request_to(app: App, engine: Engine, case_id: int, recipient: str = DSL) -> EmailMessage:
    """The confirmation request the morning mail sent ``recipient`` about the case, as it left."""
    queue_morning_mail(app, AS_OF)
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.recipients, t.outbox.c.mime).where(
            t.outbox.c.purpose == "confirm_request", t.outbox.c.case_id == case_id)).all()
    [mime] = [r.mime for r in rows if recipient in str(r.recipients)]
    msg = email.message_from_bytes(mime, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _parts(original: EmailMessage) -> tuple[str, str]:
    plain, html = original.get_body(("plain",)), original.get_body(("html",))
    assert plain is not None and html is not None
    return str(plain.get_content()), str(html.get_content())


def _headers(sender: str, subject: str, original: EmailMessage, extra: dict[str, str] | None = None) -> str:
    head = {"From": f"Dee Ess-Ell <{sender}>", "To": BOT, "Subject": subject,
            "Date": format_datetime(FIXED_NOW + timedelta(hours=1)), "Message-ID": make_msgid(domain="school.example"),
            "In-Reply-To": str(original.get("Message-ID", "<request@school.example>")), "MIME-Version": "1.0",
            **(extra or {})}
    return "".join(f"{k}: {v}\r\n" for k, v in head.items())


def _qp(text: str) -> str:
    return quopri.encodestring(text.replace("\n", "\r\n").encode("utf-8")).decode("ascii")


def outlook_reply(original: EmailMessage, new_text: str, *, sender: str = DSL,
                  extra: dict[str, str] | None = None) -> bytes:
    """Outlook (desktop or web): HTML with a plain-text alternative, quoted-printable; the original is
    quoted under a "From: / Sent:" block with no '>' marks."""
    plain, html = _parts(original)
    subject = str(original["Subject"])
    quote = (f"From: cme-batch <{BOT}>\nSent: Monday, December 1, 2025 6:00 AM\nTo: Dee Ess-Ell <{sender}>\n"
             f"Subject: {subject}\n\n{plain}")
    text = f"{new_text}\n\nDee Ess-Ell\nDesignated Safeguarding Lead\n\n{quote}"
    new_html = "".join(f"<p class=MsoNormal>{line or '&nbsp;'}<o:p></o:p></p>" for line in new_text.split("\n"))
    body_html = (f"<html><body><div class=WordSection1>{new_html}<div style='border:none;border-top:solid #E1E1E1 "
                 f"1.0pt'><p><b>From:</b> cme-batch &lt;{BOT}&gt;<br><b>Sent:</b> Monday, December 1, 2025 6:00 AM"
                 f"</p></div>{html}</div></body></html>")
    boundary = "_000_OutlookBoundary_"
    head = _headers(sender, f"RE: {subject}", original, {
        "Thread-Topic": subject, "Thread-Index": "AQHbQ2x1c2Vz", "Content-Language": "en-GB",
        "X-MS-Has-Attach": "", "X-MS-TNEF-Correlator": "",
        "Content-Type": f'multipart/alternative; boundary="{boundary}"', **(extra or {})})
    return (f"{head}\r\n--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(text)}\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(body_html)}\r\n--{boundary}--\r\n").encode("ascii")


def iphone_reply(original: EmailMessage, new_text: str, *, sender: str = DSL,
                 extra: dict[str, str] | None = None) -> bytes:
    """Mail on an iPhone: plain text only, quoted-printable, the original quoted with '>' below."""
    plain, _ = _parts(original)
    quoted = "\n".join("> " + line if line else ">" for line in plain.splitlines())
    text = f"{new_text}\n\nSent from my iPhone\n\n> On 1 Dec 2025, at 06:00, cme-batch <{BOT}> wrote:\n>\n{quoted}\n"
    head = _headers(sender, f"Re: {original['Subject']}", original, {
        "Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable",
        "X-Mailer": "iPhone Mail (22B91)", **(extra or {})})
    return f"{head}\r\n{_qp(text)}".encode("ascii")


def gmail_reply(original: EmailMessage, new_text: str, *, sender: str = DSL) -> bytes:
    """Gmail: HTML with a base64 plain-text alternative; the original quoted with '>' under "On ... wrote:"."""
    plain, html = _parts(original)
    quoted = "\n".join("> " + line if line else ">" for line in plain.splitlines())
    text = f"{new_text}\n\nOn Mon, 1 Dec 2025 at 06:00, cme-batch <{BOT}> wrote:\n\n{quoted}\n"
    boundary = "000000000000a1b2c3"
    head = _headers(sender, f"Re: {original['Subject']}", original, {
        "Content-Type": f'multipart/alternative; boundary="{boundary}"'})
    new_html = "".join(f"<div>{line or '<br>'}</div>" for line in new_text.split("\n"))
    return (f"{head}\r\n--{boundary}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{base64.encodebytes(text.encode()).decode()}\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            f"{_qp(f'<div dir=ltr>{new_html}</div><br><div class=gmail_quote><blockquote>{html}</blockquote></div>')}"
            f"\r\n--{boundary}--\r\n").encode("ascii")


def thunderbird_reply(original: EmailMessage, paragraph: str, *, sender: str = DSL) -> bytes:
    """Thunderbird: format=flowed plain text, a long paragraph wrapped at 72 columns with soft breaks
    (a trailing space, RFC 3676), the original quoted with '>' below."""
    plain, _ = _parts(original)
    lines, cur = [], ""
    for word in paragraph.split(" "):
        if cur and len(cur) + 1 + len(word) > 72:
            lines.append(cur + " ")  # the soft break: the space stays at the end of the line
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    lines.append(cur)
    quoted = "\n".join("> " + line if line else ">" for line in plain.splitlines())
    text = "\n".join(lines) + f"\n\nDee\n\nOn 01/12/2025 06:00, cme-batch wrote:\n{quoted}\n"
    head = _headers(sender, f"Re: {original['Subject']}", original, {
        "Content-Type": "text/plain; charset=UTF-8; format=flowed", "Content-Transfer-Encoding": "8bit",
        "User-Agent": "Mozilla Thunderbird"})
    return (head + "\r\n" + text.replace("\n", "\r\n")).encode("utf-8")


def referrals_queued(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(t.outbox.c.id).where(t.outbox.c.purpose == "referral")).all())


def review_list(engine: Engine) -> list[tuple[str | None, str | None]]:
    """The digest's "Replies kept for review": (case, why kept) of each."""
    with engine.connect() as conn:
        return [(r["case_ref"], r["reason"]) for r in pending_review(conn)]


# -- an automatic reply never acts ---------------------------------------------------------------

def test_an_automatic_reply_never_acts_even_when_its_text_is_a_command(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """A mailbox rule (or flow) answering every "please confirm the referral" on the DSL's behalf:
    a machine's CONFIRM is not the DSL's decision, and no pupil data may go to the LA on it."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)
    auto = outlook_reply(request, f"CONFIRM {REF}", extra={"Auto-Submitted": "auto-replied"})
    auto = auto.replace(b"Subject: RE: ", b"Subject: Automatic reply: ", 1)

    report = deliver_and_run(app, maildir, auto)

    assert not report.accepted
    assert case_row(engine, case_id).confirmed_at is None
    assert queue_confirmed_referrals(app, AS_OF).referred == [] and referrals_queued(engine) == 0
    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and "automatic reply" in why

    # the DSL's own answer to the same request ("Auto-Submitted: no" says a person wrote it) is read, and the
    # referral goes
    report = deliver_and_run(app, maildir, outlook_reply(request, f"CONFIRM {REF}", extra={"Auto-Submitted": "no"}))
    assert dict(report.accepted) == {"CONFIRM": 1}
    assert queue_confirmed_referrals(app, AS_OF).referred == [REF]


def test_an_out_of_office_answer_is_listed_as_one_not_as_a_bad_command(
        app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """Exchange's out-of-office answer keeps the request's subject, token and all: the digest says what it is."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)
    text = "I am out of the office until Monday 8 December. For safeguarding concerns please contact the deputy DSL.\n"
    oof = (_headers(DSL, f"Automatic reply: {request['Subject']}", request, {
        "Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All",
        "Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable"})
        + "\r\n" + _qp(text)).encode("ascii")

    deliver_and_run(app, maildir, oof)

    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and "automatic reply" in why
    assert case_row(engine, case_id).confirmed_at is None


# -- more than one command: nothing is done, and the DSL is told --------------------------------------

def test_a_confirm_and_a_close_in_one_reply_do_neither(app: App, engine: Engine,
                                                       maildir: stdlib_mailbox.Maildir) -> None:
    """Before: the CONFIRM on the first line was obeyed (pupil data to the LA) and the CLOSE below it,
    the DSL's last word, silently dropped."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)
    raw = outlook_reply(request, f"CONFIRM {REF}\nCLOSE {REF} mum rang: the family moved to Spain last week")

    report = deliver_and_run(app, maildir, raw)

    assert not report.accepted
    case = case_row(engine, case_id)
    assert (case.status, case.confirmed_at) == ("open", None)
    assert queue_confirmed_referrals(app, AS_OF).referred == [] and referrals_queued(engine) == 0
    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and "more than one command" in why

    # one command per reply, Outlook's unmarked quote of our request (CONFIRM and all) below it: obeyed
    report = deliver_and_run(app, maildir, outlook_reply(request, f"CLOSE {REF} mum rang: the family moved to Spain"))
    assert dict(report.accepted) == {"CLOSE": 1}
    case = case_row(engine, case_id)
    assert (case.status, case.confirmed_at) == ("closed", None)


def test_two_cases_confirmed_in_one_reply_are_both_kept_for_review(app: App, engine: Engine,
                                                                   maildir: stdlib_mailbox.Maildir) -> None:
    """Before: the first case was confirmed and the second line dropped without a word: the DSL
    believed both referrals had gone."""
    case_id = make_case(engine, REF, FIXED_NOW)
    other_id = make_case(engine, OTHER, FIXED_NOW)
    request = request_to(app, engine, case_id)
    raw = iphone_reply(request, f"Confirm {REF}\nConfirm {OTHER}")

    report = deliver_and_run(app, maildir, raw)

    assert not report.accepted
    assert case_row(engine, case_id).confirmed_at is None and case_row(engine, other_id).confirmed_at is None
    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and "more than one command" in why


# -- a CLOSE written as a condition or a question is not a close -----------------------------------

@pytest.mark.parametrize("line", [
    f"Close {REF} once the LA confirm she is on roll in Wales",
    f"CLOSE {REF} if the home visit tomorrow finds the house empty",
    f"CLOSE {REF} family moved to Wales?",
])
def test_a_conditional_or_questioning_close_leaves_the_child_watched(
        line: str, app: App, engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """Before: the case was closed at once, and the child no longer watched for this absence."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)

    report = deliver_and_run(app, maildir, iphone_reply(request, line))

    assert not report.accepted
    assert case_row(engine, case_id).status == "open"
    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and "condition or a question" in why

    # a plain CLOSE, as Gmail writes it, closes the case
    report = deliver_and_run(app, maildir, gmail_reply(request, f"CLOSE {REF} on roll at a school in Wales, LA told"))
    assert dict(report.accepted) == {"CLOSE": 1} and case_row(engine, case_id).status == "closed"


# -- a reason wrapped by the mail client is kept whole ------------------------------------------------

def test_a_hold_reason_wrapped_by_thunderbird_is_kept_whole(app: App, engine: Engine,
                                                            maildir: stdlib_mailbox.Maildir) -> None:
    """format=flowed: the client wraps a long line with soft breaks. Before: the reason stopped at the
    first wrap, and the held request and digest showed half a sentence."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)
    reason = ("police are visiting the family this afternoon with the social worker, do not send anything "
              "to the LA until they report back to me")

    report = deliver_and_run(app, maildir, thunderbird_reply(request, f"HOLD {REF} {reason}"))

    assert dict(report.accepted) == {"HOLD": 1}
    assert case_row(engine, case_id).hold_reason == reason


# -- a reply kept for review says which case it was about ------------------------------------------

def thunderbird_below(original: EmailMessage, new_text: str) -> bytes:
    """Thunderbird's default: the reply written below the quote, under an unmarked "On ... wrote:" line."""
    raw = thunderbird_reply(original, "")
    head, _, body = raw.partition(b"\r\n\r\n")
    quote = body.partition(b"On 01/12/2025")[2]
    return head + b"\r\n\r\nOn 01/12/2025" + quote + b"\r\n" + new_text.encode() + b"\r\n\r\nDee\r\n"


@pytest.mark.parametrize(("client", "new_text", "says"), [
    ("outlook", f"Hi,\n\nCONFIRM {REF}", "not the reply's first line"),  # a greeting first
    ("thunderbird-below", f"CONFIRM {REF}", "not the reply's first line"),  # bottom-posted
    ("outlook", "Confirm.", "not a command"),  # no reference
    ("outlook", f"CONFIRM {REF}.", "not a command"),  # a full stop
    ("iphone", f"HOLD {REF}\npolice visiting today", "needs a reason"),  # the reason on the next line
    ("gmail", "CONFIRM CME-2025-0999", "no case has that reference"),  # a mistyped reference
])
def test_a_reply_kept_for_review_is_listed_under_its_case(client: str, new_text: str, says: str, app: App,
                                                          engine: Engine, maildir: stdlib_mailbox.Maildir) -> None:
    """Not acted on (not one command alone on the first line, for this case) and listed: before, with no
    case, so the DSL could not tell which referral still waited for her, nor why."""
    case_id = make_case(engine, REF, FIXED_NOW)
    request = request_to(app, engine, case_id)
    write = {"outlook": outlook_reply, "iphone": iphone_reply, "gmail": gmail_reply,
             "thunderbird-below": thunderbird_below}[client]

    report = deliver_and_run(app, maildir, write(request, new_text))

    assert not report.accepted and case_row(engine, case_id).confirmed_at is None
    [(case_ref, why)] = review_list(engine)
    assert case_ref == REF and why is not None and says in why
