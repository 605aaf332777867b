"""The SQL schema's history, as Alembic revisions; the service applies them at start."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text


def upgrade(engine: Engine) -> str:
    """Bring the database to the newest revision, and return it.

    A database already there is only read. Otherwise processes that start together upgrade
    one at a time: on PostgreSQL under an advisory lock, on SQLite under the database's write
    lock, each held until the upgrade commits.
    """
    config = Config()
    config.set_main_option("script_location", str(files(__name__)))
    head = str(ScriptDirectory.from_config(config).get_current_head())
    with engine.connect() as connection:
        if MigrationContext.configure(connection).get_current_revision() == head:
            return head
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7261128)"))
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return head
