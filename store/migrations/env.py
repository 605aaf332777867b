"""Alembic's entry point: runs the revisions on the connection `upgrade()` hands over."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
