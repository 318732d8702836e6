"""purge removes what is past its retention period and keeps the rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from cme_batch.config import RetentionConfig
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.purge import purge
from cme_batch.store import ingest
from cme_batch.store import tables as t

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


def _n(engine: Engine, table: t.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_purge_removes_only_what_is_old(engine: Engine) -> None:
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test")
    ingest.apply_batch(engine, school, SourceBatch("t", "t", records=[
        PupilRecord("P1", upn=None, legal_surname="X"),
        MarksRecord("P1", date(2017, 9, 4), ("N", "N")),
        MarksRecord("P1", date(2025, 9, 4), ("N", "N"))]), NOW)
    old, recent = NOW - timedelta(days=4000), NOW - timedelta(days=5)
    with engine.begin() as conn:
        pid = conn.execute(select(t.pupils.c.id)).scalar_one()
        for i, (closed_on, status) in enumerate([(date(2012, 1, 5), "closed"), (date(2025, 11, 1), "closed"),
                                                 (None, "open")]):
            cid = conn.execute(insert(t.cases).values(
                ref=f"CME-2025-{i:04d}", pupil_id=pid, kind="unexplained_absence", status=status,
                opened_on=date(2011, 12, 1), closed_on=closed_on, updated_at=NOW)).inserted_primary_key[0]
            conn.execute(insert(t.case_events).values(case_id=cid, at=old, kind="opened", actor="system"))
        for i, when in enumerate([old, recent]):
            conn.execute(insert(t.replies).values(mailbox_uid=f"u{i}", received_at=when, raw=b"x",
                                                  outcome="review"))
            oid = conn.execute(insert(t.outbox).values(
                idempotency_key=f"k{i}", message_id=f"<m{i}@x>", purpose="summary", recipients=["a@b.example"],
                subject="s", mime=b"x", status="sent", attempts=1, maybe_duplicate=False,
                created_at=when)).inserted_primary_key[0]
            conn.execute(insert(t.referral_archive).values(
                case_id=cid, kind="referral", method="smime", schema_version="1.0", sha256="0" * 64,
                encrypted=b"x", outbox_id=oid, created_at=when))
    cfg = RetentionConfig()
    counts = purge(engine, cfg, NOW, dry_run=True)
    assert counts == {"replies": 1, "referral_bundles": 1, "case_events": 1, "sent_emails": 1,
                      "register_years": 1, "mark_corrections": 0}
    assert _n(engine, t.replies) == 2  # a dry run changes nothing
    assert purge(engine, cfg, NOW) == counts
    assert [_n(engine, x) for x in (t.replies, t.referral_archive, t.case_events, t.outbox, t.mark_strips)] == \
        [1, 1, 2, 1, 1]
    with engine.connect() as conn:
        assert conn.execute(select(t.mark_strips.c.academic_year)).scalar_one() == 2025
        assert conn.execute(select(func.count()).select_from(t.cases)).scalar_one() == 3
