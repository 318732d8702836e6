"""The store's tables (SQLAlchemy Core). Schema changes go through Alembic migrations only.

Dates are ``Date``; moments are timezone-aware UTC ``DateTime``. JSON columns hold small
structured values (addresses, phone lists, event details) that are read whole.
Session marks live in ``mark_strips``: one row per pupil per academic year (see ``cme_batch.marks``).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _ts(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


schools = Table(
    "schools",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("la_number", String(3), nullable=False),
    Column("establishment_number", String(4), nullable=False),
    Column("name", String(200), nullable=False),
    UniqueConstraint("la_number", "establishment_number"),
)

pupils = Table(
    "pupils",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", ForeignKey("schools.id"), nullable=False),
    Column("upn", String(13), nullable=True),
    Column("legal_surname", String(100)),
    Column("legal_forename", String(100)),
    Column("preferred_surname", String(100)),
    Column("preferred_forename", String(100)),
    Column("middle_names", String(200)),
    Column("dob", Date),
    Column("sex", String(10)),
    Column("year_group", String(10)),
    Column("reg_group", String(20)),
    Column("address", JSON),
    Column("phones", JSON),
    Column("emails", JSON),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("school_id", "upn"),
)

pupil_keys = Table(
    "pupil_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("source", String(50), nullable=False),
    Column("pupil_key", String(100), nullable=False),
    UniqueConstraint("source", "pupil_key"),
)

enrolments = Table(
    "enrolments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("source", String(50), nullable=False),
    Column("admission_date", Date),
    Column("entry_date", Date),
    Column("leaving_date", Date),
    Column("leaving_reason", String(200)),
    Column("destination", String(200)),
    Column("withdrawn", Boolean, nullable=False, default=False),
    _ts("updated_at", False),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("source", String(50), nullable=False),
    Column("contact_key", String(100), nullable=False),
    Column("priority", Integer),
    Column("title", String(20)),
    Column("surname", String(100)),
    Column("forename", String(100)),
    Column("relationship", String(50)),
    Column("parental_responsibility", Boolean),
    Column("lives_with", Boolean),
    Column("phones", JSON),
    Column("emails", JSON),
    Column("address", JSON),
    _ts("updated_at", False),
    UniqueConstraint("pupil_id", "source", "contact_key"),
)

flags = Table(
    "flags",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("source", String(50), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("start_date", Date),
    Column("end_date", Date),
    Column("detail", String(200)),
)

mark_strips = Table(
    "mark_strips",
    metadata,
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), primary_key=True),
    Column("academic_year", Integer, primary_key=True),
    Column("marks", Text, nullable=False),
    _ts("updated_at", False),
    Index("ix_mark_strips_year", "academic_year"),
)

mark_alphabet = Table(
    "mark_alphabet",
    metadata,
    Column("code", String(10), primary_key=True),
    Column("symbol", String(1), nullable=False, unique=True),
)

mark_changes = Table(
    "mark_changes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("day", Date, nullable=False),
    Column("session", String(2), nullable=False),
    Column("old_code", String(10), nullable=False),
    Column("new_code", String(10), nullable=False),
    Column("ingest_run_id", ForeignKey("ingest_runs.id"), nullable=True),
    _ts("at", False),
)

calendar_days = Table(
    "calendar_days",
    metadata,
    Column("day", Date, primary_key=True),
    Column("school_day", Boolean, nullable=False),
    Column("note", String(100)),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(50), nullable=False),
    Column("origin", String(500), nullable=False),
    Column("checksum", String(64)),
    Column("status", String(20), nullable=False),  # running, ok, failed, rejected, skipped
    _ts("started_at", False),
    _ts("finished_at"),
    Column("counts", JSON),
    Column("warnings", JSON),
    Column("error", Text),
    Column("cursor", String(100)),
    Index("ix_ingest_runs_source_checksum", "source", "checksum"),
)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(50), primary_key=True),
    Column("cursor", String(100)),
    _ts("last_success_at"),
    _ts("last_attempt_at"),
    Column("last_error", Text),
)

cases = Table(
    "cases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ref", String(20), nullable=False, unique=True),
    Column("pupil_id", ForeignKey("pupils.id"), nullable=False, index=True),
    Column("kind", String(30), nullable=False),
    Column("status", String(20), nullable=False),  # open, closed
    Column("stage", String(30)),
    Column("episode_start", Date),
    Column("opened_on", Date, nullable=False),
    Column("closed_on", Date),
    Column("closed_reason", String(50)),
    Column("school_days", Integer),
    Column("last_attended", Date),
    Column("referral_due", Date),
    Column("register_gaps", JSON),
    Column("alerts", JSON),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("confirmed_by", String(200)),
    Column("confirmation_message_id", String(300)),
    Column("referred_at", DateTime(timezone=True)),
    Column("hold_reason", Text),
    _ts("updated_at", False),
    # added by 0002_engine: is the child of compulsory school age on the last evaluation (None: no DOB)
    Column("compulsory_school_age", Boolean),
    Index("ix_cases_status_kind", "status", "kind"),
)

# added by 0002_engine: one row per detect run (its evaluation date refuses going backwards)
detect_runs = Table(
    "detect_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("school_id", ForeignKey("schools.id"), nullable=False, index=True),
    Column("as_of", Date, nullable=False),
    _ts("at", False),
    Column("run_id", String(40)),
    Column("counts", JSON),
    Column("warnings", JSON),
)

# added by 0002_engine: the LA 10-day return, one row per pupil per unauthorised episode
la_returns = Table(
    "la_returns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pupil_id", ForeignKey("pupils.id", ondelete="CASCADE"), nullable=False),
    Column("episode_start", Date, nullable=False),
    Column("reached_on", Date, nullable=False),
    Column("listed_on", Date, nullable=False, index=True),
    Column("school_days", Integer, nullable=False),
    UniqueConstraint("pupil_id", "episode_start"),
)

case_events = Table(
    "case_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False, index=True),
    _ts("at", False),
    Column("as_of", Date),
    Column("kind", String(40), nullable=False),  # opened, stage, closed, alert, confirmed, note, ...
    Column("stage", String(30)),
    Column("actor", String(200), nullable=False),  # "system", or an email address
    Column("detail", JSON),
    Column("evidence", JSON),
)

stage_runs = Table(
    "stage_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", String(40), nullable=False, index=True),
    Column("stage", String(30), nullable=False),
    _ts("started_at", False),
    _ts("finished_at"),
    Column("outcome", String(20), nullable=False),  # running, ok, failed, skipped
    Column("detail", Text),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("message_id", String(300), nullable=False, unique=True),
    Column("purpose", String(40), nullable=False),  # summary, digest, referral, receipt, update, alert
    Column("case_id", ForeignKey("cases.id"), nullable=True, index=True),
    Column("recipients", JSON, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("mime", LargeBinary, nullable=False),
    Column("status", String(20), nullable=False),  # queued, sending, sent, failed
    Column("attempts", Integer, nullable=False, default=0),
    _ts("next_attempt_at"),
    Column("last_error", Text),
    Column("maybe_duplicate", Boolean, nullable=False, default=False),
    _ts("created_at", False),
    _ts("sent_at"),
    # added by 0002_mail: when it (re-)entered the queue, who is sending it now, when it was last
    # tried, and when its problem was reported in a summary
    _ts("queued_at"),
    Column("claimed_by", String(40)),
    _ts("claimed_at"),
    _ts("last_attempt_at"),
    _ts("reported_at"),
    Index("ix_outbox_status", "status"),
)

referral_archive = Table(
    "referral_archive",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", ForeignKey("cases.id"), nullable=False, index=True),
    Column("kind", String(20), nullable=False),  # referral, update
    Column("method", String(20), nullable=False),  # smime, pdf-passphrase
    Column("schema_version", String(10), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("encrypted", LargeBinary, nullable=False),
    Column("outbox_id", ForeignKey("outbox.id"), nullable=True),
    _ts("created_at", False),
)

replies = Table(
    "replies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_uid", String(200), nullable=False, unique=True),
    Column("message_id", String(300)),
    Column("sender", String(300)),
    _ts("received_at", False),
    Column("raw", LargeBinary, nullable=False),
    Column("outcome", String(20), nullable=False),  # accepted, review
    Column("reason", Text),
    Column("command", String(20)),
    Column("case_id", ForeignKey("cases.id"), nullable=True),
    _ts("shown_at"),  # when a reply kept for review went out in a DSL digest (migration 0002_replies)
)

reply_tokens = Table(
    "reply_tokens",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("case_id", ForeignKey("cases.id", ondelete="CASCADE"), nullable=False),
    Column("recipient", String(300), nullable=False),
    _ts("issued_at", False),
    _ts("expires_at", False),
    _ts("used_at"),
    #: What the token was sent with (the outbox purpose: ``confirm_request``, ``review_request``,
    #: ``office_action``); only a request put to the DSL can carry a decision. None: issued before
    #: this was kept.
    Column("purpose", String(30)),
)
