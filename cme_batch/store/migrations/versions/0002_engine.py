"""engine: cases.compulsory_school_age, detect_runs, la_returns

Revision ID: 0002_engine
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_engine"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("compulsory_school_age", sa.Boolean(), nullable=True))
    op.create_table(
        "detect_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("school_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=True),
        sa.Column("counts", sa.JSON(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["school_id"], ["schools.id"], name=op.f("fk_detect_runs_school_id_schools")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detect_runs")),
    )
    with op.batch_alter_table("detect_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detect_runs_school_id"), ["school_id"], unique=False)
    op.create_table(
        "la_returns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pupil_id", sa.Integer(), nullable=False),
        sa.Column("episode_start", sa.Date(), nullable=False),
        sa.Column("reached_on", sa.Date(), nullable=False),
        sa.Column("listed_on", sa.Date(), nullable=False),
        sa.Column("school_days", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["pupil_id"], ["pupils.id"], name=op.f("fk_la_returns_pupil_id_pupils"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_la_returns")),
        sa.UniqueConstraint("pupil_id", "episode_start", name=op.f("uq_la_returns_pupil_id")),
    )
    with op.batch_alter_table("la_returns", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_la_returns_listed_on"), ["listed_on"], unique=False)


def downgrade() -> None:
    op.drop_table("la_returns")
    op.drop_table("detect_runs")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("compulsory_school_age")
