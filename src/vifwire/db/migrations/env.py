"""Alembic environment: always run with a connection handed in by `migrate()`."""

from alembic import context

from vifwire.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `migrate()` drives us
    raise RuntimeError("run migrations through vifwire.db.engine.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
