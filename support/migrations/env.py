"""Alembic environment: the connection is handed in by support.db.migrate (never built from a URL here)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import support.db.models  # noqa: F401 - registers the tables on SQLModel.metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `switchboard migrate` (support.db.migrate)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
