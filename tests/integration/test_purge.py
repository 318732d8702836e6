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
                      "register_years": 1, "mark_corrections": 0, "pupils": 0}
    assert _n(engine, t.replies) == 2  # a dry run changes nothing
    assert purge(engine, cfg, NOW) == counts
    assert [_n(engine, x) for x in (t.replies, t.referral_archive, t.case_events, t.outbox, t.mark_strips)] == \
        [1, 2, 2, 1, 1]
    with engine.connect() as conn:
        # the old bundle's content went; its row (kind, date, hash) stays: the referrals stage reads it
        assert sorted(len(bytes(b)) for b in conn.execute(select(t.referral_archive.c.encrypted)).scalars()) == [0, 1]
        assert conn.execute(select(t.mark_strips.c.academic_year)).scalar_one() == 2025
        assert conn.execute(select(func.count()).select_from(t.cases)).scalar_one() == 3


def _pupil(engine: Engine, school: int, key: str, left: date | None, when: datetime) -> int:
    """A pupil with a contact, a safeguarding flag, an enrolment and a term of marks, stored at ``when``."""
    from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord

    start = date(when.year if when.month >= 9 else when.year - 1, 9, 4)
    ingest.apply_batch(engine, school, SourceBatch("t", "t", records=[
        PupilRecord(key, upn=f"A{key:0>12}", legal_surname=f"Surname{key}", dob=date(2006, 3, 1)),
        EnrolmentRecord(key, admission_date=date(2010, 9, 1), entry_date=date(2010, 9, 1), leaving_date=left),
        ContactRecord(key, "c1", priority=1, surname="Parent", phones=("07700900000",)),
        FlagRecord(key, "child_protection_plan"),
        MarksRecord(key, start, ("N", "N"))]), when)
    with engine.connect() as conn:
        return int(conn.execute(select(t.pupils.c.id).where(t.pupils.c.upn == f"A{key:0>12}")).scalar_one())


def test_a_pupil_who_left_more_than_six_years_ago_is_removed_entirely_and_no_one_younger(engine: Engine) -> None:
    """Name, date of birth, contacts and safeguarding flags go with the registers; a pupil who left
    within the period, or whose case is younger, stays whole."""
    with engine.begin() as conn:
        school = ingest.ensure_school(conn, "916", "2999", "Test")
    gone = _pupil(engine, school, "OLD", date(2012, 7, 20), datetime(2012, 3, 1, tzinfo=UTC))
    recent = _pupil(engine, school, "RECENT", date(2021, 7, 20), datetime(2021, 3, 1, tzinfo=UTC))
    with_case = _pupil(engine, school, "CASE", date(2012, 7, 20), datetime(2012, 3, 1, tzinfo=UTC))
    on_roll = _pupil(engine, school, "NOW", None, datetime(2012, 3, 1, tzinfo=UTC))
    with engine.begin() as conn:
        for pid, ref, closed in ((gone, "CME-2012-0001", date(2012, 6, 1)), (with_case, "CME-2012-0002",
                                                                             date(2020, 6, 1))):
            cid = conn.execute(insert(t.cases).values(
                ref=ref, pupil_id=pid, kind="unexplained_absence", status="closed", opened_on=date(2012, 5, 1),
                closed_on=closed, hold_reason="DSL note", updated_at=NOW)).inserted_primary_key[0]
            conn.execute(insert(t.case_events).values(case_id=cid, at=NOW - timedelta(days=5000), kind="opened",
                                                      actor="system"))
            conn.execute(insert(t.outbox).values(
                idempotency_key=ref, message_id=f"<{ref}@x>", purpose="referral", case_id=cid, recipients=["a@b"],
                subject="s", mime=b"names the pupil", status="failed", attempts=1, maybe_duplicate=False,
                created_at=NOW - timedelta(days=5000)))
    counts = purge(engine, RetentionConfig(), NOW, dry_run=True)
    assert counts["pupils"] == 1
    assert purge(engine, RetentionConfig(), NOW)["pupils"] == 1
    with engine.connect() as conn:
        left = set(conn.execute(select(t.pupils.c.id)).scalars())
        assert left == {recent, with_case, on_roll}
        for table in (t.enrolments, t.contacts, t.flags, t.pupil_keys, t.cases):
            assert gone not in set(conn.execute(select(table.c.pupil_id)).scalars()), table.name
            assert {recent, with_case, on_roll} <= set(conn.execute(select(table.c.pupil_id)).scalars()) or \
                table is t.cases
        assert list(conn.execute(select(t.cases.c.ref)).scalars()) == ["CME-2012-0002"]
        assert _n(engine, t.outbox) == 1  # the younger case's message stays with it
