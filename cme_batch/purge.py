"""Retention: remove what the school no longer needs to keep, as the configuration says.

- raw DSL replies older than ``retention.replies_days`` (by the day they arrived);
- archived referral bundles older than ``retention.bundles_days``: the encrypted message goes, the
  row saying which bundle of which case was queued, when, and its SHA-256 stays (the referrals stage
  reads it to know that a closed case's update already went: without it the LA would be sent the
  update again, years after the case closed);
- the audit events of cases closed more than ``retention.case_events_days`` ago (the case row,
  its reference and its outcome stay);
- sent emails older than ``retention.outbox_days`` (summaries and digests name pupils), except
  those sent since the latest evaluation date: through a holiday every morning evaluates the last
  school day again, and the morning stage knows that day's summary, digest and office emails went
  only by finding them in the outbox (without them it would send them all again);
- failed emails older than ``retention.outbox_days`` once a digest has reported them, if they are
  the school's own (summaries, digests: no case) or about a case whose audit events go too; never
  a failed email about a case still open or closed recently (the DSL must still see that it never
  went), nor a failed digest that is the only one to have shown a problem or a reply (the next
  digest shows those again only while that failed digest is there: ``told_in_failed_digest``);
- attendance marks of academic years that ended more than ``retention.registers_years`` ago,
  with the corrections recorded for them;
- every pupil who left before the oldest academic year kept, with all that is stored about
  them (details, contacts, flags, cases and their mail), once nothing about them is younger
  than its own retention period (``_expired_pupils``).

Everything happens in one transaction; ``dry_run`` counts without deleting. On SQLite what is
deleted is overwritten with zeros (``secure_delete``) and the WAL is folded into the file and
emptied afterwards: deleted rows must not stay readable in the file's free space.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, exists, func, select, update

from cme_batch.config import RetentionConfig
from cme_batch.marks import academic_year_of, year_start
from cme_batch.store import tables as t


@dataclass(frozen=True)
class Cutoffs:
    replies: datetime
    bundles: datetime
    case_events: date
    outbox: datetime
    registers_year: int  # strips of academic years before this one go

    @classmethod
    def from_config(cls, cfg: RetentionConfig, now: datetime) -> Cutoffs:
        return cls(now - timedelta(days=cfg.replies_days), now - timedelta(days=cfg.bundles_days),
                   (now - timedelta(days=cfg.case_events_days)).date(), now - timedelta(days=cfg.outbox_days),
                   academic_year_of(now.date()) - cfg.registers_years)


def _count(conn: Connection, table: Table, *where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def _expired_pupils(c: Cutoffs) -> Any:
    """The ids of pupils past retention: on no roll since before the oldest academic year whose
    registers are kept, and with nothing younger than its own period (an open case, events of a
    case closed recently, a bundle, a reply or an email still kept).

    Their admission register entries are as old as their attendance registers: keeping their name,
    date of birth, contacts and safeguarding flags once those are gone would keep personal data
    about children without end.
    """
    p, e, cs = t.pupils.c, t.enrolments.c, t.cases.c
    left_by = year_start(c.registers_year)
    kept_case = select(cs.pupil_id).where((cs.status != "closed") | (cs.closed_on >= c.case_events)
                                          | cs.closed_on.is_(None))
    case_pupil = select(cs.pupil_id).where(cs.id == t.referral_archive.c.case_id)
    return select(p.id).where(
        p.updated_at < datetime.combine(left_by, datetime.min.time(), tzinfo=c.outbox.tzinfo),
        p.id.in_(select(e.pupil_id)),
        # an admission still open or ended since; a place withdrawn before the child started ends at
        # its first day (it never gets a leaving date: such a child was kept for good)
        p.id.not_in(select(e.pupil_id).where(
            (e.withdrawn.is_not(True) & (e.leaving_date.is_(None) | (e.leaving_date >= left_by)))
            | (e.withdrawn.is_(True) & ((e.leaving_date >= left_by)
                                        | (func.coalesce(e.entry_date, e.admission_date) >= left_by))))),
        p.id.not_in(select(t.mark_strips.c.pupil_id).where(t.mark_strips.c.academic_year >= c.registers_year)),
        p.id.not_in(select(t.la_returns.c.pupil_id).where(t.la_returns.c.listed_on >= left_by)),
        p.id.not_in(kept_case),
        p.id.not_in(case_pupil.where(t.referral_archive.c.created_at >= c.bundles)),
        p.id.not_in(select(cs.pupil_id).where(cs.id == t.replies.c.case_id, t.replies.c.received_at >= c.replies)),
        p.id.not_in(select(cs.pupil_id).where(cs.id == t.outbox.c.case_id, t.outbox.c.created_at >= c.outbox)),
    )


def _delete_pupils(conn: Connection, ids: list[int]) -> None:
    """Delete these pupils and every row about them, children first (no reliance on ON DELETE CASCADE)."""
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        cases = select(t.cases.c.id).where(t.cases.c.pupil_id.in_(chunk))
        for table in (t.case_events, t.reply_tokens, t.replies, t.referral_archive):
            conn.execute(delete(table).where(table.c.case_id.in_(cases)))
        conn.execute(delete(t.outbox).where(t.outbox.c.case_id.in_(cases)))
        conn.execute(delete(t.cases).where(t.cases.c.pupil_id.in_(chunk)))
        for table in (t.la_returns, t.mark_changes, t.mark_strips, t.flags, t.contacts, t.enrolments, t.pupil_keys):
            conn.execute(delete(table).where(table.c.pupil_id.in_(chunk)))
        conn.execute(delete(t.pupils).where(t.pupils.c.id.in_(chunk)))


def purge(engine: Engine, cfg: RetentionConfig, now: datetime, dry_run: bool = False) -> dict[str, int]:
    """Delete what is past its retention period; return how many rows of each kind (would) go."""
    c = Cutoffs.from_config(cfg, now)
    with engine.connect() as conn:
        evaluated = conn.execute(select(func.max(t.detect_runs.c.as_of))).scalar()
    if evaluated is not None:  # keep the mail of the date the mornings still evaluate
        c = replace(c, outbox=min(c.outbox, datetime.combine(evaluated, datetime.min.time(), tzinfo=now.tzinfo)))
    old_cases = select(t.cases.c.id).where(t.cases.c.status == "closed", t.cases.c.closed_on < c.case_events)
    plan = [
        ("replies", t.replies, (t.replies.c.received_at < c.replies,)),
        ("case_events", t.case_events, (t.case_events.c.case_id.in_(old_cases),)),
        ("sent_emails", t.outbox, (t.outbox.c.status == "sent", t.outbox.c.created_at < c.outbox)),
        ("register_years", t.mark_strips, (t.mark_strips.c.academic_year < c.registers_year,)),
        ("mark_corrections", t.mark_changes, (t.mark_changes.c.day < year_start(c.registers_year),)),
    ]
    ob, told = t.outbox.c, t.outbox.alias("told")
    failed_mail = (ob.status == "failed", ob.created_at < c.outbox, ob.reported_at.is_not(None),
                   ob.case_id.is_(None) | ob.case_id.in_(old_cases),
                   (ob.purpose != "digest") | (~exists().where(told.c.reported_at == ob.created_at)
                                               & ~exists().where(t.replies.c.shown_at == ob.created_at)))
    plan.insert(0, ("failed_emails", t.outbox, failed_mail))  # first: what it looks at is deleted below
    a = t.referral_archive.c
    old_bundles = (a.created_at < c.bundles, func.length(a.encrypted) > 0)
    counts: dict[str, int] = {}
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite and not dry_run:  # overwrite what is deleted: no name left in the file's free pages
            conn.exec_driver_sql("PRAGMA secure_delete=ON")
        counts["referral_bundles"] = _count(conn, t.referral_archive, *old_bundles)
        for name, table, where in plan:
            counts[name] = _count(conn, table, *where)
        if not counts["failed_emails"]:  # named only when there are some (the keys callers know stay as they were)
            del counts["failed_emails"]
        pupils = list(conn.execute(_expired_pupils(c)).scalars())
        counts["pupils"] = len(pupils)
        if dry_run:
            conn.rollback()
            return counts
        old_mail = select(t.outbox.c.id).where(
            (t.outbox.c.status == "sent") & (t.outbox.c.created_at < c.outbox) | t.outbox.c.id.in_(
                select(ob.id).where(*failed_mail)))
        conn.execute(update(t.referral_archive).where(t.referral_archive.c.outbox_id.in_(old_mail))
                     .values(outbox_id=None))
        conn.execute(update(t.referral_archive).where(*old_bundles).values(encrypted=b""))
        for _name, table, where in plan:
            conn.execute(delete(table).where(*where))
        _delete_pupils(conn, pupils)
    if sqlite:
        _fold_wal(engine)
    return counts


def _fold_wal(engine: Engine) -> None:
    """Write the WAL (old copies of the pages just cleared among them) into the database file and
    empty it, then turn ``secure_delete`` off again on the pooled connection. A reader still open
    elsewhere can keep part of the WAL until the next checkpoint; nothing is lost either way."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA secure_delete=OFF")
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.commit()
