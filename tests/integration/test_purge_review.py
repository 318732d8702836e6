"""An adversarial review of ``purge``: nothing kept too long, nothing lost too early, no child missed.

Stores are built through the real import (``ingest.apply_batch``), ``detect`` and the morning
stage, and ``purge`` runs as the command runs it; what is left is read from the database (and,
for SQLite, from the database file's bytes) and from the drop folder's archive on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, update

from cme_batch import detect
from cme_batch.app import App
from cme_batch.config import RetentionConfig
from cme_batch.model import ContactRecord, EnrolmentRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.purge import purge
from cme_batch.store import ingest, migrate, open_store
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app

EXE = str(Path(sys.executable).with_name("cme-batch"))
SURNAME = "Quillfeatherington"  # a name no other text in the store holds
LAST_DAY = date(2025, 12, 19)
NIGHT = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)


def _n(engine: Engine, table: t.Table, *where: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())  # type: ignore[arg-type]


def _school(engine: Engine) -> int:
    with engine.begin() as conn:
        return ingest.ensure_school(conn, "916", "2999", "Test")


def _long_gone(engine: Engine, school: int) -> None:
    """A pupil who left in July 2012, with a contact: everything about them is past retention in 2025."""
    ingest.apply_batch(engine, school, SourceBatch("t", "t", records=[
        PupilRecord("GONE", upn="A123456789012", legal_surname=SURNAME, legal_forename="Tabitha",
                    dob=date(2005, 3, 1)),
        EnrolmentRecord("GONE", admission_date=date(2010, 9, 1), entry_date=date(2010, 9, 1),
                        leaving_date=date(2012, 7, 20)),
        ContactRecord("GONE", "c1", priority=1, surname=SURNAME, forename="Parent", phones=("07700900001",)),
        MarksRecord("GONE", date(2011, 9, 5), ("N", "N"))]), datetime(2012, 3, 1, tzinfo=UTC))


def test_a_purged_pupils_name_is_not_left_in_the_sqlite_file(tmp_path: Path) -> None:
    """Deleted rows stay in SQLite's free space (and in the WAL) until overwritten: a pupil purged
    for retention must not be readable in the database file afterwards. (The bytes of a database
    file: SQLite only, so this test makes its own store rather than run on both.)"""
    path = tmp_path / "own.sqlite"
    engine = open_store(f"sqlite:///{path}")
    migrate(engine)
    school = _school(engine)
    _long_gone(engine, school)
    ingest.apply_batch(engine, school, SourceBatch("t2", "t2", records=[
        PupilRecord("NOW", legal_surname="Present", legal_forename="Pupil", dob=date(2018, 1, 1)),
        EnrolmentRecord("NOW", admission_date=date(2022, 9, 1), entry_date=date(2022, 9, 1)),
        MarksRecord("NOW", date(2025, 11, 3), ("/", "\\"))]), datetime(2025, 11, 3, tzinfo=UTC))
    engine.dispose()  # as after the night that stored it: the WAL is folded into the file
    assert SURNAME.encode() in path.read_bytes()
    assert purge(engine, RetentionConfig(), datetime(2025, 12, 1, 6, tzinfo=UTC))["pupils"] == 1
    left = path.read_bytes() + (path.with_name(path.name + "-wal").read_bytes()
                                if path.with_name(path.name + "-wal").exists() else b"")
    assert SURNAME.encode() not in left
    assert b"A123456789012" not in left
    engine.dispose()
    engine.dispose()
    assert SURNAME.encode() not in path.read_bytes()
    with engine.connect() as conn:  # the pupil on roll is whole
        assert conn.execute(select(t.pupils.c.legal_surname)).scalars().all() == ["Present"]


def _night(app: App, engine: Engine) -> None:
    """One child absent without reason on the last day of term: detect opens a case, the morning
    queues the summary and the digest."""
    ingest.apply_batch(engine, app.school_id, SourceBatch("t", "t", records=[
        PupilRecord("P1", legal_surname=SURNAME, year_group="3"),
        EnrolmentRecord("P1", admission_date=date(2025, 9, 2), entry_date=date(2025, 9, 2)),
        MarksRecord("P1", LAST_DAY, ("N", "N"))]), NIGHT)
    detect.run_detect(app, LAST_DAY)
    queue_morning_mail(app, LAST_DAY)


def _nights_later(app: App, days: int) -> datetime:
    """The clock ``days`` later, after that night's detect (the mornings evaluate that day now)."""
    later = NIGHT + timedelta(days=days)
    app.clock = lambda: later
    detect.run_detect(app, later.date() - timedelta(days=1))
    return later


def test_failed_school_emails_naming_pupils_are_not_kept_for_ever(app: App, engine: Engine) -> None:
    """A summary and a digest the mail server refused hold whole emails naming children. Once
    reported and older than ``outbox_days`` they go as sent ones do; a failed email about a case
    still open stays (the DSL must still see that it never went)."""
    app.clock = lambda: NIGHT
    _night(app, engine)
    with engine.begin() as conn:
        case_id = conn.execute(select(t.cases.c.id)).scalar_one()
        conn.execute(update(t.outbox).where(t.outbox.c.purpose.in_(("summary", "digest"))).values(
            status="failed", last_error="550 mailbox unavailable", reported_at=NIGHT + timedelta(days=1)))
    assert _n(engine, t.outbox, t.outbox.c.status == "failed") == 2
    with engine.begin() as conn:  # a failed email about the open case (as a confirmation request would be)
        from cme_batch.mail import outbox
        outbox.enqueue(conn, idempotency_key="review:case", purpose="request", recipients=["dsl@school.example"],
                       subject="s", message=b"Subject: s\r\n\r\nnames " + SURNAME.encode(), case_id=case_id,
                       from_address="cme-batch@school.example", now=NIGHT)
        conn.execute(update(t.outbox).where(t.outbox.c.case_id == case_id).values(status="failed"))
    later = _nights_later(app, 200)
    counts = purge(engine, RetentionConfig(), later)
    with engine.connect() as conn:
        kept = conn.execute(select(t.outbox.c.purpose, t.outbox.c.status)).all()
    assert [tuple(r) for r in kept] == [("request", "failed")], counts
    assert _n(engine, t.cases, t.cases.c.status == "open") == 1


def test_a_failed_digest_that_told_the_dsl_of_a_reply_is_kept_while_the_reply_waits(app: App,
                                                                                       engine: Engine) -> None:
    """A reply shown only in a digest that failed is shown again in the next digest
    (``told_in_failed_digest``): purging that failed digest would hide the reply for good."""
    app.clock = lambda: NIGHT
    _night(app, engine)
    with engine.begin() as conn:
        digest_at = conn.execute(select(t.outbox.c.created_at).where(t.outbox.c.purpose == "digest")).scalar_one()
        conn.execute(update(t.outbox).where(t.outbox.c.purpose.in_(("summary", "digest"))).values(
            status="failed", reported_at=NIGHT))
        conn.execute(t.replies.insert().values(mailbox_uid="u1", received_at=NIGHT, raw=b"Subject: hi\r\n\r\nx",
                                               outcome="review", shown_at=digest_at))
    purge(engine, RetentionConfig(), _nights_later(app, 200))
    assert _n(engine, t.outbox, t.outbox.c.purpose == "digest") == 1
    assert _n(engine, t.outbox, t.outbox.c.purpose == "summary") == 0


def test_detect_decides_the_same_after_purge(app: App, engine: Engine) -> None:
    """A purge (shortest retention the configuration allows) between two nights changes nothing
    detect decides: the open case stays open at the same stage and no child drops out of view."""
    app.clock = lambda: NIGHT
    _night(app, engine)
    school = app.school_id
    _long_gone(engine, school)
    ingest.apply_batch(engine, school, SourceBatch("t3", "t3", records=[  # a leaver, destination unknown
        PupilRecord("LEFT", legal_surname="Leaver", year_group="5"),
        EnrolmentRecord("LEFT", admission_date=date(2021, 9, 1), entry_date=date(2021, 9, 1),
                        leaving_date=date(2025, 12, 10))]), NIGHT)
    detect.run_detect(app, LAST_DAY)

    def state() -> list[tuple[object, ...]]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(select(
                t.cases.c.ref, t.cases.c.kind, t.cases.c.status, t.cases.c.stage, t.cases.c.school_days)
                .order_by(t.cases.c.id))]
    before = state()
    assert sorted(k for _, k, s, _, _ in before if s == "open") == ["destination_unknown", "unexplained_absence"]
    short = RetentionConfig(replies_days=1, bundles_days=1, case_events_days=1, outbox_days=1)
    later = datetime(2026, 1, 5, 5, 30, tzinfo=UTC)
    assert purge(engine, short, later)["pupils"] == 1  # only the long-gone pupil
    app.clock = lambda: later
    detect.run_detect(app, LAST_DAY)  # the holiday: the same date evaluated again
    assert state() == before
    assert _n(engine, t.case_events, t.case_events.c.kind == "opened") == 2  # open cases keep their trail


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, "--config", str(cfg), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ})


def test_old_archived_mis_exports_are_removed_the_newest_of_each_report_stays(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """Each night's SIMS export (every pupil's name, date of birth, address) is moved to the archive
    folder once imported. Purge removes archived exports older than ``retention.archive_days``,
    except the newest of each report (what the freshness check reads), and leaves the drop
    folder's unread files alone."""
    drop = tmp_path / "drop"
    archive = drop / "archive"
    archive.mkdir(parents=True)
    cfg = write_config(tmp_path, store_url, '\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop"\n')
    now = datetime.now(UTC).timestamp()
    ages = {"pupils-20240101T0200.xml": 400, "pupils-20240102T0200.xml": 399, "pupils-20250101T0200.xml": 30,
            "attendance-20240101T0200.xml": 400, "leavers-20240101T0200.xml": 400,
            "leavers-20240102T0200.xml": 300}
    for name, days in ages.items():
        p = archive / name
        p.write_text(f"<SuperStarReport><Record><Surname>{SURNAME}</Surname></Record></SuperStarReport>")
        os.utime(p, (now - days * 86400, now - days * 86400))
    unread = drop / "pupils-20231201T0200.xml"
    unread.write_text("<SuperStarReport/>")
    os.utime(unread, (now - 500 * 86400, now - 500 * 86400))
    dry = _cli(cfg, "purge", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert len(list(archive.iterdir())) == 6
    run = _cli(cfg, "purge")
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in archive.iterdir()) == [
        "attendance-20240101T0200.xml", "leavers-20240102T0200.xml", "pupils-20250101T0200.xml"]
    assert unread.exists()
    assert "3 archived exports" in run.stdout and "3 archived exports" in dry.stdout
    assert SURNAME not in run.stdout + run.stderr


def test_purge_output_names_no_pupil(tmp_path: Path, store_url: str, engine: Engine) -> None:
    school = _school(engine)
    _long_gone(engine, school)
    cfg = write_config(tmp_path, store_url)
    run = _cli(cfg, "purge")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 pupils" in run.stdout
    for secret in (SURNAME, "Tabitha", "A123456789012", "2005-03-01", "01/03/2005"):
        assert secret not in run.stdout + run.stderr
    assert _n(engine, t.pupils) == 0


def test_purge_twice_and_a_clocked_purge_change_nothing_more(tmp_path: Path, store_url: str, engine: Engine) -> None:
    school = _school(engine)
    _long_gone(engine, school)
    app = clocked_app(write_config(tmp_path, store_url), engine, NIGHT)
    assert purge(engine, app.config.retention, app.now())["pupils"] == 1
    assert set(purge(engine, app.config.retention, app.now()).values()) == {0}
