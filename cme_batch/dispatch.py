"""The referrals stage: a confirmed case becomes an encrypted referral in the outbox.

For each open case the DSL has confirmed and that has not been referred, one transaction
builds the bundle, encrypts it, queues it for the LA, archives the sealed message with its
hash, marks the case referred with an audit event, and queues a receipt for the DSL. Either
all of that happens or none of it. A case on HOLD (``hold_reason`` set) is skipped, confirmed
or not: the DSL's HOLD stands until a later CONFIRM lifts it (``replies.process``). When no
encryption is configured the referral is held: an audit event records why (once per reason)
and the digest shows it.

When a referred child's case closes (the child returned, or a destination became known),
the LA is sent an update bundle the same way, once per close. A referred case opened again after
the LA was told it closed (the DSL closed it by reply and the register went on saying
unexplained: ``criteria.raised_again_at``; or a correction brought the episode back) is sent an
update that it is open again, and another when it closes again.

The bundle machinery (the PDF writer and the cryptography behind it, about a third of a second
to import) is imported only when there is a case to send: most nights there is none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING

from sqlalchemy import Connection, func, insert, select, update

from cme_batch.app import App
from cme_batch.config import Config
from cme_batch.errors import CmeError
from cme_batch.mail import outbox
from cme_batch.store import tables as t

if TYPE_CHECKING:
    from cme_batch.referral.bundle import Encrypted

SYSTEM = "system"


@dataclass
class DispatchReport:
    referred: list[str] = field(default_factory=list)
    updates: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [f"{len(self.referred)} referral(s) queued", f"{len(self.updates)} update(s) queued"]
        if self.held:
            parts.append(f"{len(self.held)} held ({', '.join(self.held)})")
        if self.failed:
            parts.append(f"{len(self.failed)} failed ({', '.join(self.failed)})")
        return ", ".join(parts)


def _event(conn: Connection, case_id: int, kind: str, now: datetime, as_of: date, detail: dict[str, object]) -> None:
    conn.execute(insert(t.case_events).values(case_id=case_id, at=now, as_of=as_of, kind=kind, actor=SYSTEM,
                                              detail=detail, evidence=None))


def _last_held_reason(conn: Connection, case_id: int) -> str | None:
    row = conn.execute(select(t.case_events.c.detail).where(
        t.case_events.c.case_id == case_id, t.case_events.c.kind.in_(("referral_held", "referral_queued")))
        .order_by(t.case_events.c.id.desc()).limit(1)).first()
    return (row.detail or {}).get("reason") if row else None


def _receipt(conn: Connection, config: Config, sealed: Encrypted, outbox_id: int, now: datetime,
             suffix: str = "") -> None:
    dsl = [config.staff.dsl.email] + ([config.staff.deputy_dsl.email] if config.staff.deputy_dsl else [])
    sender = config.mail.from_address or config.school.email or ""
    what = "referral" if sealed.kind == "referral" else "referral update"
    msg = EmailMessage()
    msg["Subject"] = f"Receipt: CME {what} {sealed.ref} queued for the LA"
    msg["From"] = sender
    msg["To"] = ", ".join(dsl)
    msg.set_content(
        f"The {what} for case {sealed.ref} has been encrypted ({sealed.method}) and queued for "
        f"{', '.join(sealed.recipients)}.\nArchived copy SHA-256: {sealed.sha256}\n"
        f"Outbox message #{outbox_id}; 'cme-batch outbox' shows when it has been delivered.\n")
    outbox.enqueue(conn, idempotency_key=f"receipt:{sealed.kind}:{sealed.ref}{suffix}", purpose="receipt",
                   recipients=dsl, subject=str(msg["Subject"]), message=msg, case_id=sealed.case_id,
                   from_address=sender, now=now)


def _send_one(conn: Connection, config: Config, case_id: int, ref: str, kind: str, as_of: date, now: datetime,
              report: DispatchReport) -> None:
    from cme_batch.referral.bundle import Held, archive, build_bundle, encrypt_bundle

    bundle = build_bundle(conn, case_id, config, now, kind)
    sealed = encrypt_bundle(bundle, config)
    if isinstance(sealed, Held):
        if _last_held_reason(conn, case_id) != sealed.reason:
            _event(conn, case_id, "referral_held", now, as_of, {"reason": sealed.reason, "bundle": kind})
        report.held.append(ref)
        return
    sender = config.mail.from_address or config.school.email or ""
    # a case's second update (after it was raised again and closed again) is a message of its own
    earlier = conn.execute(select(func.count()).select_from(t.referral_archive).where(
        t.referral_archive.c.case_id == case_id, t.referral_archive.c.kind == kind)).scalar_one()
    suffix = f":{earlier + 1}" if kind == "update" and earlier else ""
    outbox_id = outbox.enqueue(conn, idempotency_key=f"{kind}:{ref}{suffix}", purpose=kind,
                               recipients=list(sealed.recipients),
                               subject=sealed.subject, message=sealed.raw, case_id=case_id, from_address=sender,
                               now=now)
    archive_id = archive(conn, case_id, sealed, outbox_id)
    _event(conn, case_id, f"{kind}_queued", now, as_of, {
        "method": sealed.method, "sha256": sealed.sha256, "outbox_id": outbox_id, "archive_id": archive_id,
        "schema_version": sealed.schema_version, "to": list(sealed.recipients)})
    if kind == "referral":
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(referred_at=now, updated_at=now))
        report.referred.append(ref)
    else:
        report.updates.append(ref)
    _receipt(conn, config, sealed, outbox_id, now, suffix)


def queue_confirmed_referrals(app: App, as_of: date) -> DispatchReport:
    """The nightly 'referrals' stage: one transaction per case, so one bad case does not block the rest."""
    c = t.cases.c
    engine, config, now = app.engine(), app.config, app.now()
    report = DispatchReport()
    with engine.connect() as conn:
        todo = [(r.id, r.ref, "referral") for r in conn.execute(select(c.id, c.ref).where(
            c.status == "open", c.confirmed_at.is_not(None), c.hold_reason.is_(None), c.referred_at.is_(None))
            .order_by(c.id))]
        todo += [(case_id, ref, "update") for case_id, ref in _updates_due(conn)]
    log = app.log(stage="referrals")
    for case_id, ref, kind in todo:
        try:
            with engine.begin() as conn:
                if kind == "referral" and not _still_due(conn, case_id):
                    continue  # a HOLD or CLOSE read since the list was made (``replies`` run meanwhile)
                _send_one(conn, config, case_id, ref, kind, as_of, now, report)
        except CmeError as exc:
            report.failed.append(ref)
            log.error("referral not queued", case=ref, kind=kind, error=str(exc).splitlines()[0])
    if report.failed:
        raise ReferralStageFailed(str(report))
    return report


def _still_due(conn: Connection, case_id: int) -> bool:
    """Whether the case is still open, confirmed, not on hold and not referred, checked again in the
    transaction that queues its referral, which then keeps it so: a ``replies`` run by hand while
    the stage runs may have read a HOLD or CLOSE since the cases were listed. (The bundle would
    refuse it too, but as a failure of the stage: exit 1 and a failure notice for a DSL's answer.)
    The update changes nothing but takes the case's lock (SQLite: the store's) until the
    referral is queued."""
    c = t.cases.c
    return conn.execute(update(t.cases).where(
        c.id == case_id, c.status == "open", c.confirmed_at.is_not(None), c.hold_reason.is_(None),
        c.referred_at.is_(None)).values(updated_at=c.updated_at)).rowcount == 1


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite gives UTC back without a zone


def _updates_due(conn: Connection) -> list[tuple[int, str]]:
    """Referred cases the LA has not been sent an update for since their latest change of state:
    closed ones with no update sent yet, or whose last update went before a later close (the case
    was raised again in between); and open ones whose last update (a close) went before the case
    was opened again (``reopened``: raised again after the DSL's close, or a correction that
    brought the episode back), so the LA, told it was closed, learns it is not. A change whose
    audit event ``purge`` has removed counts as told: an update is never sent twice for one."""
    c, ra, ce = t.cases.c, t.referral_archive.c, t.case_events.c
    last_update = {case_id: _utc(at) for case_id, at in conn.execute(
        select(ra.case_id, func.max(ra.created_at)).where(ra.kind == "update").group_by(ra.case_id))}
    last: dict[str, dict[int, datetime]] = {"closed": {}, "reopened": {}}
    if last_update:
        for case_id, kind, at in conn.execute(select(ce.case_id, ce.kind, func.max(ce.at)).where(
                ce.kind.in_(("closed", "reopened")), ce.case_id.in_(list(last_update))).group_by(ce.case_id, ce.kind)):
            last[kind][case_id] = _utc(at)

    def due(case_id: int, status: str) -> bool:
        if status == "closed":
            return case_id not in last_update or last["closed"].get(case_id, last_update[case_id]) > last_update[case_id]
        return case_id in last_update and last["reopened"].get(case_id, last_update[case_id]) > last_update[case_id]

    return [(r.id, r.ref) for r in conn.execute(select(c.id, c.ref, c.status).where(
        c.referred_at.is_not(None)).order_by(c.id)) if due(r.id, r.status)]


class ReferralStageFailed(CmeError):
    """Some confirmed referrals could not be queued (their cases are named); the others were."""
