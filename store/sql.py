"""The SQL store, on SQLAlchemy Core: SQLite (the embedded default) and PostgreSQL.

The database keeps the rules: ids come from it and are never reused, a unique index on
lower(username) settles races between processes, and a conditional write is one
`UPDATE ... WHERE id = ? AND version IN (...)`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    TypeDecorator,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError

from store import PreconditionFailed, User, UsernameTaken, UserNotFound
from store.migrations import upgrade


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite would hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


# The columns queries use; the schema itself (keys, index, constraints) is in migrations/.
users = Table(
    "users",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("username", String(64)),
    Column("created_at", UTCDateTime()),
    Column("updated_at", UTCDateTime()),
    Column("version", Integer),
)


class SQLStore:
    def __init__(self, url: str) -> None:
        self.engine = _engine(url)
        upgrade(self.engine)

    def create(self, *, username: str) -> User:
        now = datetime.now(UTC)
        statement = (
            insert(users)
            .values(username=username, created_at=now, updated_at=now, version=1)
            .returning(*users.c)
        )
        with self._writing(username) as connection:
            return _user(connection.execute(statement).one())

    def get(self, user_id: int) -> User:
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.id == user_id)).one_or_none()
        if row is None:
            raise UserNotFound(user_id)
        return _user(row)

    def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        query = select(users).where(users.c.id > after).order_by(users.c.id).limit(limit)
        if username is not None:
            query = query.where(func.lower(users.c.username) == username.lower())
        with self.engine.connect() as connection:
            return [_user(row) for row in connection.execute(query)]

    def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User:
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(
                username=username,
                updated_at=datetime.now(UTC),
                version=users.c.version + 1,
            )
            .returning(*users.c)
        )
        if expected_versions is not None:
            statement = statement.where(users.c.version.in_(expected_versions))
        with self._writing(username) as connection:
            row = connection.execute(statement).one_or_none()
            if row is None:
                self._refuse(connection, user_id)
            return _user(row)

    def delete(self, user_id: int, *, expected_versions: Collection[int] | None = None) -> None:
        statement = delete(users).where(users.c.id == user_id).returning(users.c.id)
        if expected_versions is not None:
            statement = statement.where(users.c.version.in_(expected_versions))
        with self.engine.begin() as connection:
            if connection.execute(statement).one_or_none() is None:
                self._refuse(connection, user_id)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _writing(self, username: str) -> Iterator[Connection]:
        """A write transaction in which the unique index's refusal means `UsernameTaken`."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError as error:
            raise UsernameTaken(username) from error

    @staticmethod
    def _refuse(connection: Connection, user_id: int) -> NoReturn:
        """Why a write matched no row: no such user, or not at an expected version."""
        exists = connection.execute(select(users.c.id).where(users.c.id == user_id)).first()
        raise PreconditionFailed(user_id) if exists else UserNotFound(user_id)


def _user(row: Row[Any]) -> User:
    return User(row.id, row.username, row.created_at, row.updated_at, row.version)


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed.set(drivername="postgresql+psycopg"))
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed)

    @event.listens_for(engine, "connect")
    def configure(connection: Any, _: Any) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA busy_timeout=5000")
        connection.execute("PRAGMA synchronous=FULL")

    return engine
