"""replies: what each reply token was sent with (a confirmation request, or an office action email)

Revision ID: 0003_reply_token_purpose
Revises: 0002_replies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reply_token_purpose"
down_revision = "0002_replies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reply_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reply_tokens", schema=None) as batch_op:
        batch_op.drop_column("purpose")
