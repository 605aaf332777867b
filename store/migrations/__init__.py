"""The SQL schema's history, as Alembic revisions; the service applies them at start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest revision; a no-op when it is there already.

    On PostgreSQL an advisory lock makes processes that start together upgrade one at a time.
    """
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(7261128)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
