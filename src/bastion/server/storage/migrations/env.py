"""Alembic environment: runs on the connection ``storage.migrate.upgrade`` passes in."""

from alembic import context

from bastion.server.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
