"""The summary stage: queue the morning emails, and a confirmation request for each case that needs one.

Everything is queued in one transaction with the bookkeeping it causes (outbox problems marked
reported, review replies marked shown, reply tokens issued), so a crash leaves either all of it
or none. Idempotency keys carry the evaluation date: running the stage twice for one date queues
nothing the second time, except an update digest when email problems or replies kept for review
have appeared since the first run (the digest already queued cannot show them, and nothing is
marked reported that no digest carries).

A repeat-missing case, which has no referral to confirm, gets a review request instead, whose
reply CLOSE ends the case. A confirmation request goes to the DSL and to the deputy DSL separately, each with its own
single-use reply token in the subject (``cme_batch.replies.tokens``): the reply is accepted only
from the address the token was issued to. A new request is sent when the last one's token has
expired or been used without a confirmation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import Connection, select

from cme_batch.app import App, in_school_time
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.mail import outbox
from cme_batch.morning import documents
from cme_batch.morning.facts import KIND_LABEL, OFFICE_STAGES, CaseFact, Facts, aware, gather
from cme_batch.replies import process as replies_process
from cme_batch.replies import tokens as tokens_mod
from cme_batch.replies.tokens import Tokens
from cme_batch.report import Document, Row, Section, render_html, render_text
from cme_batch.schoolcal import SchoolCalendar, build
from cme_batch.store import tables as t


@dataclass
class Queued:
    summary: int | None = None
    digest: int | None = None
    requests: int = 0
    reviews: int = 0
    actions: int = 0

    def __str__(self) -> str:
        return (f"summary #{self.summary}, digest #{self.digest}, {self.requests} confirmation request(s), "
                f"{self.reviews} review request(s), {self.actions} office action request(s)")


def email_for(doc: Document, subject: str, sender: str, recipients: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(render_text(doc))
    msg.add_alternative(render_html(doc), subtype="html")
    return msg


def calendar_for(config: Config, as_of: date) -> SchoolCalendar:
    """School days around the evaluation date, for the due dates of next steps."""
    return build(config.calendar, as_of - timedelta(days=400), as_of + timedelta(days=120))


def _sender(config: Config) -> str:
    if not config.mail.from_address:
        raise BadInputError("mail.from is not set: the morning emails need a sender address")
    return config.mail.from_address


def dsl_addresses(config: Config) -> list[str]:
    out = [config.staff.dsl.email]
    if config.staff.deputy_dsl:
        out.append(config.staff.deputy_dsl.email)
    return out


def _live_request(conn: Connection, case_id: int, recipient: str, now: datetime) -> bool:
    """Whether ``recipient`` holds a request about the case she can still decide on: an unused,
    unexpired code sent with a request to the DSL (not an office action email: a deputy on the
    office list holds those too), since the case was last reopened (a case the DSL closed and the
    absence raised again asks both afresh, saying when and why it was closed)."""
    rt = t.reply_tokens.c
    since = tokens_mod.reopened_at(conn, case_id)
    rows = conn.execute(select(rt.expires_at, rt.used_at, rt.issued_at, rt.purpose).where(
        rt.case_id == case_id, rt.recipient == recipient.lower())).all()
    return any(r.used_at is None and outbox.utc(r.expires_at) > now  # type: ignore[operator]
               and r.purpose in tokens_mod.DECIDING
               and (since is None or outbox.utc(r.issued_at) >= since)  # type: ignore[operator]
               for r in rows)


def _case_message(conn: Connection, c: CaseFact, recipient: str, tokens: Tokens, config: Config, now: datetime,
                  *, purpose: str, key: str, what: str, doc: Document) -> None:
    """Queue one message about one case to one person, with that person's reply token in the subject."""
    token = tokens.issue(conn, c.id, recipient, now, purpose)
    subject = replies_process.subject_for(c.ref, token, what)
    sender = _sender(config)
    outbox.enqueue(conn, idempotency_key=key.format(nonce=token.split(".")[1]), purpose=purpose,
                   recipients=[recipient], subject=subject, message=email_for(doc, subject, sender, [recipient]),
                   case_id=c.id, from_address=sender, now=now)


def _recorded(conn: Connection, c: CaseFact, config: Config) -> Section:
    """What the office and staff have recorded on the case by reply (NOTE), oldest first: the policy's
    step V, the office passing on to the DSL what its calls and visits found, before she decides."""
    from cme_batch.referral.content import recorded_actions

    rows = [Row([f"{date.fromisoformat(a['date']):%a %d %b %Y}" if a["date"] else "-", a["label"], a["who"],
                 a["outcome"]]) for a in recorded_actions(conn, c.id, config)]
    return Section("Recorded on this case", ["Date", "Action", "By", "Outcome"], rows,
                   empty=f"Nothing has been recorded on this case yet (the office records its calls by replying "
                         f"NOTE {c.ref} <action>: <outcome> to its action emails).")


def _request(conn: Connection, c: CaseFact, recipient: str, tokens: Tokens, config: Config, now: datetime,
             as_of: date) -> None:
    """A confirmation request to the DSL or the deputy: the reply CONFIRM sends the referral.

    A held case gets a fresh request once its last one is used (by the HOLD itself): that request
    says it is on hold and why, or the morning after a HOLD would read as if it had been ignored.
    """
    due = f"{c.referral_due:%a %d %b %Y}" if c.referral_due else "-"
    held = [] if c.held is None else [
        f"ON HOLD: the referral was put on hold by reply ({c.held or 'no reason given'}). Nothing is sent to the LA "
        f"until the DSL or the deputy DSL replies CONFIRM {c.ref}."]
    if c.raised_again:
        held.insert(0, c.raised_again)
    doc = Document(
        title=f"CME referral {c.ref} is on hold" if c.held is not None else f"Confirm the CME referral {c.ref}",
        subtitle=f"{config.school.name}. Registers as of {as_of:%d %b %Y}.",
        sections=[Section(
            "The case", ["", ""], [Row(["Pupil", c.pupil]), Row(["Year", c.year_group]),
                                   Row(["Why", KIND_LABEL.get(c.kind, c.kind)]),
                                   Row(["School days", c.days_shown]), Row(["Referral due", due])],
            notes=[*held, f"To send the referral to the LA, reply to this email with the first line: CONFIRM {c.ref}",
                   f"Or: HOLD {c.ref} <reason> | CLOSE {c.ref} <reason> | NOTE {c.ref} <text>",
                   "Keep the subject as it is: it carries the code that proves the reply is yours. "
                   "Write plain text, with no attachments."]), _recorded(conn, c, config)],
        footer="Only the DSL and the deputy DSL receive this request, each with their own code.")
    _case_message(conn, c, recipient, tokens, config, now, purpose="confirm_request",
                  key=f"confirm:{c.ref}:{recipient.lower()}:{{nonce}}",
                  what="referral on hold, reply CONFIRM to send it" if c.held is not None else
                  "please confirm the referral", doc=doc)


def _review_request(conn: Connection, c: CaseFact, recipient: str, tokens: Tokens, config: Config, now: datetime,
                    as_of: date) -> None:
    """A request to the DSL or the deputy to review a repeat-missing case: the reply CLOSE ends it.

    Nothing else carries a reply token for such a case (it has no referral to confirm and no office
    step), and a reply without one is never acted on: without this email the DSL could not close it.
    """
    doc = Document(
        title=f"Review the repeated absences of {c.ref}",
        subtitle=f"{config.school.name}. Registers as of {as_of:%d %b %Y}.",
        sections=[Section(
            "The case", ["", ""], [Row(["Pupil", c.pupil]), Row(["Year", c.year_group]),
                                   Row(["Why", KIND_LABEL.get(c.kind, c.kind)]),
                                   Row(["School days missed in the episodes", str(c.school_days)]),
                                   Row(["Latest episode began", f"{c.streak_start:%a %d %b %Y}" if c.streak_start
                                        else "-"])],
            notes=[f"When the pattern is resolved, reply to this email with the first line: CLOSE {c.ref} <reason>",
                   f"To record what was done meanwhile: NOTE {c.ref} <action>: <outcome> "
                   "(actions: home-visit, social-media, other-agency, contacts-tried, first-day-call)",
                   "Keep the subject as it is: it carries the code that proves the reply is yours. "
                   "Write plain text, with no attachments."]), _recorded(conn, c, config)],
        footer="Only the DSL and the deputy DSL receive this request, each with their own code.")
    _case_message(conn, c, recipient, tokens, config, now, purpose="review_request",
                  key=f"review:{c.ref}:{recipient.lower()}:{{nonce}}", what="please review the repeated absences",
                  doc=doc)


def _office_action(conn: Connection, c: CaseFact, recipient: str, tokens: Tokens, config: Config, now: datetime,
                   as_of: date, banners: list[tuple[str, str]] | None = None) -> None:
    """A per-case message to an office address whose reply can record what the office did (NOTE)."""
    step = "first-day call" if c.office_step == "first_day_call" else "contact every emergency contact"
    doc = Document(
        title=f"{c.ref}: {step}",
        subtitle=f"{config.school.name}. Registers as of {as_of:%d %b %Y}.",
        sections=[Section(
            "The pupil", ["", ""], [Row(["Pupil", c.pupil]), Row(["Year", c.year_group]),
                                    Row(["Class", c.reg_group]), Row(["School days absent", c.days_shown])],
            notes=[f"When done, reply with the first line: NOTE {c.ref} <action>: <outcome>",
                   f"for example: NOTE {c.ref} first-day-call: spoke to mum, child ill, back Monday",
                   "Actions: first-day-call, contacts-tried, home-visit, social-media, other-agency. "
                   "Keep the subject as it is; write plain text, with no attachments."]),
            Section("Emergency contacts recorded", ["Contact", "Numbers and email"],
                    [Row([who, how]) for who, how in c.contacts],
                    intro="As the MIS export gave them, first priority first: check the MIS for a later change.",
                    empty="No emergency contact is recorded for this child: the office cannot make this call. "
                          "Tell the DSL (or the deputy DSL) today, and record the contacts in the MIS.")],
        footer="Sent by cme-batch to the school office.", banners=list(banners or []))
    _case_message(conn, c, recipient, tokens, config, now, purpose="office_action",
                  key=f"{_action_key(c, recipient)}:{as_of.isoformat()}", what=f"{step} needed", doc=doc)


def _action_key(c: CaseFact, recipient: str) -> str:
    """What an office action email asks: one step, for one school day of absence, of one person.

    Evaluation dates that are not school days (a weekend, a holiday: the timer runs every weekday
    morning) leave the day count as it was, so a half term does not ask the same first-day call
    five more times; the next school day of absence asks again.
    """
    return f"action:{c.ref}:{recipient.lower()}:{c.office_step}-day{c.days_absent}"


def _queued_id(conn: Connection, key: str) -> int | None:
    got = conn.execute(select(t.outbox.c.id).where(t.outbox.c.idempotency_key == key)).scalar()
    return None if got is None else int(got)


def _queue_digest(conn: Connection, config: Config, facts: Facts, counts: str, dsl: list[str], now: datetime
                  ) -> int:
    """Queue the date's digest and mark what it shows as reported; return the id of the date's latest digest.

    The digest is queued once per date. When the stage runs again for the date (after a failed send,
    or by hand) the digest already queued cannot show the email problems and replies kept for review
    that appeared since: if there are any, they go in an update digest of their own. Problems and
    replies are marked only when a digest that shows them is queued here, since no later digest
    shows them again.
    """
    key = f"digest:{facts.as_of.isoformat()}"
    subject = f"CME digest {config.school.name} {facts.as_of.isoformat()}: {counts}"
    first = _queued_id(conn, key)
    if first is not None:
        if not facts.outbox_problems and not facts.review_replies:
            return _overdue_reminder(conn, config, facts, counts, dsl, now, key, first)
        n = 1
        while _queued_id(conn, f"{key}:update:{n}") is not None:
            n += 1
        key = f"{key}:update:{n}"
        subject = f"CME digest {config.school.name} {facts.as_of.isoformat()} (update {n}): {counts}"
    sender = _sender(config)
    doc = documents.dsl_document(facts, update=first is not None)
    digest = outbox.enqueue(conn, idempotency_key=key, purpose="digest", recipients=dsl, subject=subject,
                            message=email_for(doc, subject, sender, dsl), from_address=sender, now=now)
    outbox.mark_reported(conn, [p.id for p in facts.outbox_problems], now)
    replies_process.mark_shown(conn, [r["id"] for r in facts.review_replies], now)
    return digest


def _overdue_reminder(conn: Connection, config: Config, facts: Facts, counts: str, dsl: list[str], now: datetime,
                      key: str, first: int) -> int:
    """On a morning with no new school day (a weekend or holiday: the night evaluated the same date
    again), the date's digest again, once that morning, while a referral is past its due date without
    the DSL's confirmation (DOMAIN.md 5: "told every morning, in red"). Returns the latest digest's id."""
    today = in_school_time(now).date()
    created = conn.execute(select(t.outbox.c.created_at).where(t.outbox.c.id == first)).scalar_one()
    if not documents.overdue(facts) or in_school_time(aware(created) or now).date() >= today:
        return first
    key = f"{key}:reminder:{today.isoformat()}"
    found = _queued_id(conn, key)
    if found is not None:
        return found
    subject = f"CME digest {config.school.name} {facts.as_of.isoformat()} (reminder {today.isoformat()}): {counts}"
    sender = _sender(config)
    doc = documents.dsl_document(facts, reminder=True)
    return outbox.enqueue(conn, idempotency_key=key, purpose="digest", recipients=dsl, subject=subject,
                          message=email_for(doc, subject, sender, dsl), from_address=sender, now=now)


def queue_morning(conn: Connection, config: Config, as_of: date, now: datetime, tokens: Tokens | None
                  ) -> tuple[Queued, Facts]:
    """Queue the summary, the digest and the confirmation requests in the caller's transaction."""
    problems = outbox.problems(conn, include_reported=False)
    review = replies_process.pending_review(conn)
    staff = {a.lower() for a in (*dsl_addresses(config), *(p.email for p in config.staff.office))}
    for r in review:  # the staff's own replies are always listed; others may be a flood of newsletters
        r["staff"] = (r.get("sender") or "").lower() in staff
    facts = gather(conn, config, as_of, now, calendar_for(config, as_of), problems, review)
    facts.confirm_by_reply = tokens is not None
    queued = Queued()
    sender = _sender(config)
    counts = documents.subject_counts(facts)
    office_subject = f"CME summary {config.school.name} {as_of.isoformat()}: {counts}"
    office = [p.email for p in config.staff.office]
    queued.summary = outbox.enqueue(
        conn, idempotency_key=f"summary:{as_of.isoformat()}", purpose="summary", recipients=office,
        subject=office_subject, message=email_for(documents.office_document(facts), office_subject, sender, office),
        from_address=sender, now=now)
    dsl = dsl_addresses(config)
    queued.digest = _queue_digest(conn, config, facts, counts, dsl, now)
    if tokens is not None:
        for c in facts.cases:
            if c.office_step in OFFICE_STAGES:
                for person in config.staff.office:
                    asked = t.outbox.c.idempotency_key.startswith(f"{_action_key(c, person.email)}:", autoescape=True)
                    if conn.execute(select(t.outbox.c.id).where(asked).limit(1)).first() is None:
                        _office_action(conn, c, person.email, tokens, config, now, as_of,
                                       documents.data_banners(facts, stale_only=True))
                        queued.actions += 1
            if c.awaiting_confirmation or c.kind == "repeat_missing":
                for addr in dsl:
                    if not _live_request(conn, c.id, addr, now):
                        if c.awaiting_confirmation:
                            _request(conn, c, addr, tokens, config, now, as_of)
                            queued.requests += 1
                        else:
                            _review_request(conn, c, addr, tokens, config, now, as_of)
                            queued.reviews += 1
    return queued, facts


def queue_morning_mail(app: App, as_of: date) -> str:
    """The nightly 'summary' stage, and ``cme-batch summary``.

    Under the summary lock, waited for: a second copy started meanwhile (by hand, while the night
    runs) reads the store only once the first has queued, so it neither repeats the first's digest
    as an update nor sends a second confirmation request.
    """
    from cme_batch.runlock import STAGE_WAIT_SECONDS, run_lock

    config = app.config
    tokens = Tokens.from_config(config.replies) if config.replies.token_keys else None
    with run_lock(app.engine(), app.state_dir, "summary", wait=STAGE_WAIT_SECONDS), app.engine().begin() as conn:
        queued, facts = queue_morning(conn, config, as_of, app.now(), tokens)
    note = "" if tokens else "; no reply token key configured, so no confirmation requests"
    return f"{queued}{note}"
