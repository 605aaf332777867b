"""The SQL schema's history, as Alembic revisions: applied at start or by `users-api migrate`,
never by a request (a request that finds the schema behind gets 503).

Revisions only add (a table, a column with a default, an index) or loosen: each release serves
from the schema of the next one as it is, so that instances of both answer during a rolling
deploy, and a rollback needs no downgrade.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from users_api.store import StoreUnavailable

MIGRATION_LOCK = 7261128
"""The PostgreSQL advisory lock that one migrating process at a time holds."""
LOCK_NOT_AVAILABLE = "55P03"
"""PostgreSQL's SQLSTATE for a lock wait cut short by `lock_timeout`."""


@cache
def head() -> str:
    """The newest revision: the schema this version of the service needs."""
    return str(_scripts().get_current_head())


def current(connection: Connection) -> str | None:
    """The database's revision; None before the first."""
    return MigrationContext.configure(connection).get_current_revision()


def behind(revision: str | None) -> bool:
    """Whether a database at `revision` needs this version's migrations: it has none yet, or one
    before `head()`. One this version does not know is a later release's: not behind."""
    return revision is None or (revision in _known() and revision != head())


def upgrade(engine: Engine, *, lock_timeout_ms: int) -> str:
    """Bring the database to the newest revision, and return its revision then.

    A database already there, or past it (`behind`), is only read. Otherwise processes that
    start together upgrade one at a time: on PostgreSQL under an advisory lock, on SQLite under
    the database's write lock, each held until the upgrade commits. Waiting for that lock, or
    for a lock on a table that a long transaction holds, takes at most `lock_timeout_ms` (on
    SQLite, the busy timeout of the engine's connections, which the caller passes here to be
    named); then nothing has changed, and `StoreUnavailable` says why.
    """
    config = _config()
    try:
        with engine.connect() as connection:
            if not behind(revision := current(connection)):
                return str(revision)
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # A migration may rebuild an index over every user: no request's time limit.
                connection.execute(text(f"SET LOCAL lock_timeout = {lock_timeout_ms:d}"))
                connection.execute(text("SET LOCAL statement_timeout = 0"))
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK:d})"))
            else:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as error:
        if getattr(error.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE and (
            "database is locked" not in str(error.orig)
        ):
            raise
        raise StoreUnavailable(
            f"the schema migration waited {lock_timeout_ms} ms for a lock that another "
            "migration or a long transaction holds, and gave up; nothing was changed"
        ) from error
    return head()


@cache
def _scripts() -> ScriptDirectory:
    """This version's revisions, read from the package once."""
    return ScriptDirectory.from_config(_config())


@cache
def _known() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(files(__name__)))
    return config
