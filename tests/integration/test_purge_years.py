"""Retention after years of nightly use: what ``purge`` removes must never make a stage redo old work."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update

from cme_batch.app import App
from cme_batch.config import RetentionConfig
from cme_batch.dispatch import queue_confirmed_referrals
from cme_batch.purge import purge
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.referral_support import NOW, Family, seed_case

PASS_ENV = "CME_TEST_LA_PASSPHRASE"
PASS_CONFIG = f'''
[referral]
method = "pdf-passphrase"
passphrase = {{ env = "{PASS_ENV}" }}
passphrase_sharing = "agreed by phone with the Access to Education Team"
'''


@pytest.fixture
def referral_app(engine: Engine, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv(PASS_ENV, "correct horse battery staple 42")
    app = clocked_app(write_config(tmp_path, store_url, PASS_CONFIG), engine, NOW)
    return app


def _mail(engine: Engine, purpose: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(t.outbox).where(
            t.outbox.c.purpose == purpose)).scalar_one())


def test_a_closed_referral_whose_update_bundle_was_purged_is_not_updated_again(referral_app: App,
                                                                               engine: Engine) -> None:
    """A referred child returned; the LA got the update. Once purge has removed that update's bundle
    and its sent email, the next night must not send the LA the same update again."""
    case_id = seed_case(engine, Family(referred=True))
    with engine.begin() as conn:
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(
            status="closed", closed_on=NOW.date(), closed_reason="returned"))
    assert queue_confirmed_referrals(referral_app, NOW.date()).updates == [_ref(engine, case_id)]
    with engine.begin() as conn:
        conn.execute(update(t.outbox).values(status="sent", sent_at=NOW))
    later = NOW + timedelta(days=60)
    short = RetentionConfig(bundles_days=30, outbox_days=30)
    counts = purge(engine, short, later)
    assert counts["referral_bundles"] == 1 and counts["sent_emails"] == 2
    with engine.connect() as conn:
        kept = conn.execute(select(t.referral_archive.c.kind, t.referral_archive.c.encrypted)).all()
    assert [(k, bytes(b)) for k, b in kept] == [("update", b"")]  # the bundle is gone, the fact it went stays
    assert purge(engine, short, later)["referral_bundles"] == 0  # safe to run twice
    referral_app.clock_box["now"] = later  # type: ignore[attr-defined]
    report = queue_confirmed_referrals(referral_app, later.date())
    assert report.updates == [] and _mail(engine, "update") == 0 and _mail(engine, "receipt") == 0


def _ref(engine: Engine, case_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(t.cases.c.ref).where(t.cases.c.id == case_id)).scalar_one())


def test_a_purge_in_the_holiday_does_not_send_the_last_school_days_mail_again(app: App, engine: Engine) -> None:
    """Over the Christmas holiday every morning evaluates the last school day of term again; a purge
    with short retention in between must not make the next morning queue that day's summary and
    digest a second time."""
    from datetime import UTC, date, datetime

    from cme_batch import detect
    from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
    from cme_batch.morning.queue import queue_morning_mail
    from cme_batch.store import ingest

    last_day, clock = date(2025, 12, 19), {"now": datetime(2025, 12, 20, 5, 30, tzinfo=UTC)}
    app.clock = lambda: clock["now"]
    ingest.apply_batch(engine, app.school_id, SourceBatch("t", "t", records=[
        PupilRecord("P1", legal_surname="Example", year_group="3"),
        EnrolmentRecord("P1", admission_date=date(2025, 9, 2), entry_date=date(2025, 9, 2)),
        MarksRecord("P1", last_day, ("N", "N"))]), clock["now"])
    detect.run_detect(app, last_day)
    queue_morning_mail(app, last_day)
    with engine.begin() as conn:
        conn.execute(update(t.outbox).values(status="sent", sent_at=clock["now"]))
    before = _mail(engine, "summary"), _mail(engine, "digest")
    assert before == (1, 1)
    for day in (29, 30, 31):  # holiday mornings: a purge, then the night for the same date
        clock["now"] = datetime(2025, 12, day, 5, 30, tzinfo=UTC)
        purge(engine, RetentionConfig(outbox_days=1), clock["now"])
        queue_morning_mail(app, last_day)
    with engine.connect() as conn:
        again = conn.execute(select(t.outbox.c.purpose).where(t.outbox.c.status != "sent")).scalars().all()
    assert again == [] and (_mail(engine, "summary"), _mail(engine, "digest")) == before
