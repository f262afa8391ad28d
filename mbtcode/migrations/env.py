"""Alembic environment: runs against the Flask app's engine (see mbtcode.migrate)."""

from __future__ import annotations

from alembic import context

import mbtcode.models  # noqa: F401  (registers the tables on db.metadata)
from mbtcode.extensions import db

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via `alembic` by hand
    raise RuntimeError("run migrations through 'mbtcode init', which passes a connection")

context.configure(
    connection=connection,
    target_metadata=db.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
