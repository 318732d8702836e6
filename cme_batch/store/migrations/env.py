"""Alembic environment: always run with a connection handed in by ``cme_batch.store.migrate``."""

from __future__ import annotations

from alembic import context

from cme_batch.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when someone runs the alembic CLI directly
    raise RuntimeError("run migrations through 'cme-batch init', which passes the database connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
