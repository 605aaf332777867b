"""The SQLite store (the embedded default), on SQLAlchemy Core in threads of its own.
PostgreSQL's is `postgres.py`; the table definitions here serve both stores' tests too.

The database keeps the rules: ids come from it and are never reused, a unique index on
lower(username) settles races between processes, and a conditional write is one
`UPDATE ... WHERE id = ? AND version IN (...)`. The schema is its migrations' (migrations/).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from users_api.store import (
    DEFAULT_OPTIONS,
    MAX_ID,
    MAX_VERSION,
    USER_COLUMNS,
    IdempotencyKey,
    IdempotencyKeyReused,
    IdsExhausted,
    PreconditionFailed,
    SchemaNotCurrent,
    StoreOptions,
    StoreUnavailable,
    UnknownStoreURL,
    User,
    UsernameTaken,
    UserNotFound,
    UsersTaken,
    WriteOutcomeUnknown,
    free_users,
    user_from_row,
    user_row,
)
from users_api.store.migrations import behind, current, head, upgrade


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database session's time zone (PostgreSQL
    answers in its `TimeZone`); SQLite would hand back naive ones, which are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"a naive datetime has no time zone to store: {value}")
        return None if value is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


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
lowered_username: ColumnElement[str] = func.lower(users.c.username)
"""A username as the unique index compares it, and as Python's `lower()` gives it for the ASCII
names the spec allows (in the "C" collation on PostgreSQL: migration 0002)."""
_next_version: ColumnElement[int] = case(
    (users.c.version >= MAX_VERSION, 1), else_=users.c.version + 1
)
"""`store.next_version` in SQL: past the column's largest is 1 again, not an overflow."""
idempotency_keys = Table(
    "idempotency_keys",
    MetaData(),
    Column("owner", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64)),
    Column("user_id", BigInteger),
    Column("username", String(64)),
    Column("created_at", UTCDateTime()),
)


logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
THREADS = 40
"""The store's threads, as many as Starlette's thread pool had for the sync handlers before."""
CHECK_EVERY_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 1.0
FORGET_KEYS_AT_ONCE = 10
"""How many keys past retention each create with an idempotency key drops, at most: ten for
the one it adds, so that forgetting outpaces any writer, in a short part of its transaction."""
USERNAME_INDEX = "users_username_lower_key"
"""The unique index on lower(username) (migration 0001), which the database names in a refusal."""


def _in_its_threads(
    method: Callable[Concatenate[SQLStore, P], R],
) -> Callable[Concatenate[SQLStore, P], Coroutine[Any, Any, R]]:
    """The method, to be awaited: it runs in the store's own threads (see `SQLStore._in_thread`),
    so that the event loop never waits on the database."""

    async def in_thread(self: SQLStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        call = functools.partial(method, self, *args, **kwargs)
        return await self._in_thread(call, self._timeout_seconds)

    functools.update_wrapper(in_thread, method)
    return in_thread


class SQLStore:
    """Connects lazily: a database that is down at start makes requests fail with
    `StoreUnavailable` until it is up, and one whose schema is behind, with `SchemaNotCurrent`
    until `prepare` or `users-api migrate` has brought it up to date."""

    def __init__(
        self,
        url: str,
        options: StoreOptions = DEFAULT_OPTIONS,
    ) -> None:
        if make_url(url).get_backend_name() != "sqlite":
            raise UnknownStoreURL(f"the SQL store is SQLite's, not {url!r}: see open_store")
        self._timeout_seconds = options.timeout_ms / 1000
        """How long a call waits on the database, all told (a thread, a connection, connecting,
        its statements), before it is `StoreUnavailable`: a stalled database gives 503s."""
        self.engine = _engine(
            url,
            options.pool_size,
            options.sqlite_synchronous,
            options.sqlite_busy_timeout_ms,
            options.timeout_ms,
        )
        self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="users-store")
        """More than the pool's connections, so that a call waits for a connection inside the
        pool's own timeout (then 503), and a read is not queued behind writers waiting for
        SQLite's write lock."""
        self._retention = timedelta(hours=options.idempotency_retention_hours)
        self._schema_current = False
        """Once seen at the newest revision; a schema is never downgraded under a service."""
        self._writers = threading.Lock()
        self._busy_timeout_ms = options.sqlite_busy_timeout_ms
        database = self.engine.url.database
        self._file = Path(database).resolve() if database not in (None, "", ":memory:") else None
        """The SQLite file, whose identity when first opened is `_opened`."""
        self._opened: tuple[int, int] | None = None
        self._checking = threading.Lock()
        self._next_check = 0.0
        self._last_check: StoreUnavailable | None = StoreUnavailable("not checked yet")

    @_in_its_threads
    def create(self, *, username: str) -> User:
        with self._writing(username) as connection:
            return _inserted(connection, username, datetime.now(UTC))

    @_in_its_threads
    def create_once(self, *, username: str, key: IdempotencyKey) -> tuple[User, bool]:
        """Writers take turns: a repeat while the first is running waits for it, then gets its
        answer."""
        now = datetime.now(UTC)
        this_key = (idempotency_keys.c.owner == key.owner) & (idempotency_keys.c.key == key.key)
        with self._writing(username, exclusive=True) as connection:
            self._forget_expired_keys(connection, now, this_key)
            found = connection.execute(select(idempotency_keys).where(this_key)).one_or_none()
            if found is not None:
                if found.fingerprint != key.fingerprint:
                    raise IdempotencyKeyReused()
                created = found.created_at
                return User(found.user_id, found.username, created, created, version=1), True
            user = _inserted(connection, username, now)
            connection.execute(
                insert(idempotency_keys).values(
                    owner=key.owner,
                    key=key.key,
                    fingerprint=key.fingerprint,
                    user_id=user.id,
                    username=username,
                    created_at=now,
                )
            )
            return user, False

    def _forget_expired_keys(self, connection: Connection, now: datetime, this_key: Any) -> None:
        """Drop this key if past retention, and up to `FORGET_KEYS_AT_ONCE` other such keys."""
        created_at = idempotency_keys.c.created_at
        expired = created_at <= now - self._retention
        connection.execute(delete(idempotency_keys).where(this_key, expired))
        key = tuple_(idempotency_keys.c.owner, idempotency_keys.c.key)
        oldest = (
            select(*key.clauses)
            .where(expired)
            .order_by(created_at)  # by its index, never a scan of the keys still kept
            .limit(FORGET_KEYS_AT_ONCE)
            .with_for_update(skip_locked=True)  # PostgreSQL: creates at once drop other keys
        )
        connection.execute(delete(idempotency_keys).where(key.in_(oldest)))

    @_in_its_threads
    def get(self, user_id: int) -> User:
        with self._connect() as connection:
            row = connection.execute(select(users).where(users.c.id == user_id)).one_or_none()
        if row is None:
            raise UserNotFound(user_id)
        return user_from_row(row)

    @_in_its_threads
    def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        query = select(users).where(users.c.id > after).order_by(users.c.id).limit(limit)
        if username is not None:
            query = query.where(lowered_username == username.lower())
        with self._connect() as connection:
            return [user_from_row(row) for row in connection.execute(query)]

    @_in_its_threads
    def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User:
        statement = (
            update(users)
            .where(users.c.id == user_id)
            .values(
                username=username,
                updated_at=datetime.now(UTC),
                version=_next_version,
            )
            .returning(*users.c)
        )
        if expected_versions is not None:
            statement = statement.where(users.c.version.in_(expected_versions))
        with self._writing(username) as connection:
            row = connection.execute(statement).one_or_none()
            if row is None:
                self._refuse(connection, user_id)
            return user_from_row(row)

    @_in_its_threads
    def delete(self, user_id: int, *, expected_versions: Collection[int] | None = None) -> None:
        statement = delete(users).where(users.c.id == user_id).returning(users.c.id)
        if expected_versions is not None:
            statement = statement.where(users.c.version.in_(expected_versions))
        with self._connect(write=True) as connection:
            if connection.execute(statement).one_or_none() is None:
                self._refuse(connection, user_id)

    async def add_all(
        self, users_to_add: Iterable[User], *, last_id: int = 0, check_only: bool = False
    ) -> int:
        """Not a request's call (`users-api import`): it takes as long as the file does."""
        add = functools.partial(self._add_all, users_to_add, last_id, check_only)
        return await self._in_thread(add, None)

    @_in_its_threads
    def last_id(self) -> int:
        with self._connect() as connection:
            # AUTOINCREMENT keeps its highest id here, past deletes.
            handed_out = text("SELECT seq FROM sqlite_sequence WHERE name = 'users'")
            return int(connection.execute(handed_out).scalar() or 0)

    def _add_all(self, users_to_add: Iterable[User], last_id: int, check_only: bool) -> int:
        added = 0
        taken = UsersTaken()
        with self._connect(write=True) as connection:
            remaining = iter(users_to_add)
            batches = iter(lambda: list(islice(remaining, 1000)), [])
            for batch in batches:
                # The free ones go in, for later batches to be checked against them too.
                if free := _free(connection, batch, added + taken.count, taken):
                    connection.execute(insert(users), [_values(user) for user in free])
                added += len(free)
            if taken.count:
                raise taken
            if check_only:
                connection.rollback()
                return added
            # Explicit ids bypass the sequence: move it past them, and past `last_id`, so that
            # none is handed out again.
            past = {"last_id": last_id}
            if last_id and not connection.execute(text(_MOVE_AUTOINCREMENT_PAST), past).rowcount:
                # No user was ever added to this database: nothing keeps its highest id yet.
                connection.execute(text(_START_AUTOINCREMENT_PAST), past)
        return added

    async def check(self) -> None:
        """Whether the database answers within `CHECK_TIMEOUT_SECONDS`, asked at most every
        `CHECK_EVERY_SECONDS` however often this is called (by every load balancer's probe);
        in between, the last answer stands."""
        with self._checking:
            due = time.monotonic() >= self._next_check
            if due:
                self._next_check = time.monotonic() + CHECK_EVERY_SECONDS
        if due:
            try:
                await self._in_thread(self._ask, CHECK_TIMEOUT_SECONDS)
            except StoreUnavailable as error:
                self._last_check = error
                raise
            self._last_check = None
        elif self._last_check is not None:
            raise StoreUnavailable(self._last_check.reason)

    def _ask(self) -> None:
        with self._connect() as connection:
            connection.execute(select(1))
        self._refuse_another_file()

    def _refuse_another_file(self) -> None:
        """SQLite keeps writing to a file that was removed or replaced under it: acknowledged
        writes that the next start would not find. Once the file at the store's path is not
        the one it opened, it writes no more."""
        if self._file is not None and self._opened is not None:
            try:
                current = _identity(self._file)
            except OSError:  # gone, or its folder no longer readable
                current = None
            if current != self._opened:
                raise StoreUnavailable(f"the database file {self._file} was removed or replaced")

    async def prepare(self) -> None:
        if not self._schema_current:
            await self._in_thread(self.migrate, None)  # bounded by its lock timeout

    def migrate(self) -> str:
        """Bring the schema to the newest revision now, and return it (`users-api migrate`)."""
        with self._unavailable_on_connection_errors():
            revision = upgrade(self.engine, lock_timeout_ms=self._busy_timeout_ms)
        self._found_current(revision)
        return revision

    def _require_current_schema(self) -> None:
        """Refuse to serve from a schema older than this version's; read once it is current."""
        if self._schema_current:
            return
        with self._unavailable_on_connection_errors(), self.engine.connect() as connection:
            revision = current(connection)
        if behind(revision):
            raise SchemaNotCurrent(revision, head())
        self._found_current(revision)

    def _found_current(self, revision: str | None) -> None:
        if revision != head():
            logger.warning(
                "the database schema is at revision %s, a later release's: serving from it as "
                "it is (this version's newest is %s)",
                revision,
                head(),
            )
        if self._file is not None and self._opened is None:
            self._opened = _identity(self._file)
        self._schema_current = True

    async def close(self) -> None:
        """Calls not yet started are dropped, later ones are refused with `StoreUnavailable`; the
        loop never waits for the database here."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()

    async def _in_thread(self, call: Callable[[], R], timeout_seconds: float | None) -> R:
        """`call`, run in the store's threads with the caller's context (its request id); after
        `timeout_seconds` (if any) the caller gets `StoreUnavailable`, and the thread finishes
        alone: a write it had not begun to commit is rolled back, and one it had is
        `WriteOutcomeUnknown` to the caller."""
        caller = _Caller()
        in_context = functools.partial(contextvars.copy_context().run, _for, caller, call)
        try:
            running = asyncio.get_running_loop().run_in_executor(self._threads, in_context)
        except RuntimeError as error:  # the executor takes no work once the store is closed
            raise StoreUnavailable(str(error)) from error
        try:
            async with asyncio.timeout(timeout_seconds) as waiting:
                return await running
        except asyncio.CancelledError:  # the request was cut short (the shutdown grace ended)
            caller.give_up()  # a write not yet committing is rolled back
            raise
        except TimeoutError:
            if not waiting.expired():  # the call's own, a socket's say: not the deadline
                raise
            assert timeout_seconds is not None  # only a deadline runs out
            reason = f"the database did not answer within {timeout_seconds * 1000:.0f} ms"
            if caller.give_up():
                raise WriteOutcomeUnknown(f"{reason}, while a write was committing") from None
            raise StoreUnavailable(reason) from None

    @contextmanager
    def _connect(self, *, write: bool = False) -> Iterator[Connection]:
        """A connection to the database; in a transaction when `write`."""
        self._require_current_schema()
        if write:
            self._refuse_another_file()
        with (
            self._unavailable_on_connection_errors(),
            self._taking_turns() if write else nullcontext(),
            self.engine.begin() if write else self.engine.connect() as connection,
        ):
            yield connection
            if write and (caller := _CALLER.get()) is not None and not caller.may_commit():
                # Its caller was answered 503 already: what it was told did not happen must not.
                # (A COMMIT that SQLite refuses has rolled back: a plain 503 too.)
                raise StoreUnavailable("the write finished past its deadline: rolled back")

    @contextmanager
    def _taking_turns(self) -> Iterator[None]:
        """SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
        up to 100 ms between tries, however soon the writer is done. This process's writers
        queue on a lock instead, so each starts as the one before commits; the busy handler is
        left to wait only for other processes."""
        if not self._writers.acquire(timeout=self._busy_timeout_ms / 1000):
            raise StoreUnavailable("database is locked")
        try:
            yield
        finally:
            self._writers.release()

    @contextmanager
    def _writing(self, username: str, *, exclusive: bool = False) -> Iterator[Connection]:
        """A write transaction in which the unique index's refusal means `UsernameTaken`;
        `exclusive` takes SQLite's write lock before its first read, not at its first write
        (where another process's commit since the read would fail it at once)."""
        try:
            with self._connect(write=True) as connection:
                if exclusive:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        except IntegrityError as error:
            if USERNAME_INDEX not in str(error.orig):
                # An id the database handed out is held by a row added with its own (beside the
                # sequence): never a taken name, and a retry takes the next id.
                raise StoreUnavailable(str(error.orig).strip()) from error
            raise UsernameTaken(username, self._holder(username)) from error

    def _holder(self, username: str) -> int | None:
        """Who has `username` now (after the refused transaction: it may have gone since), if
        the database says so at once: the 409 does not wait on it."""
        try:
            with self._unavailable_on_connection_errors(), self.engine.connect() as connection:
                return connection.execute(
                    select(users.c.id).where(lowered_username == username.lower())
                ).scalar()
        except StoreUnavailable:
            return None

    @staticmethod
    @contextmanager
    def _unavailable_on_connection_errors() -> Iterator[None]:
        """The database is down, unreachable, out of connections or busy past its timeout."""
        try:
            yield
        except OperationalError as error:
            raise StoreUnavailable(str(error.orig).strip()) from error
        except PoolTimeout as error:
            raise StoreUnavailable(str(error)) from error

    @staticmethod
    def _refuse(connection: Connection, user_id: int) -> NoReturn:
        """Why a write matched no row: no such user, or not at an expected version."""
        exists = connection.execute(select(users.c.id).where(users.c.id == user_id)).first()
        raise PreconditionFailed(user_id) if exists else UserNotFound(user_id)


class _Caller:
    """What a store call's thread and its awaiting caller know of each other, under one lock:
    whether the caller has stopped waiting (its deadline passed, it was answered 503), and
    whether the thread has begun to commit. Whichever comes first decides what the 503 says."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gone = False
        self._committing = False

    def may_commit(self) -> bool:
        """Asked by the thread before it commits: not once the caller has gone (roll back)."""
        with self._lock:
            self._committing = not self._gone
            return self._committing

    def give_up(self) -> bool:
        """Said by the caller at its deadline; whether the thread was committing by then."""
        with self._lock:
            self._gone = True
            return self._committing


_CALLER: contextvars.ContextVar[_Caller | None] = contextvars.ContextVar("caller", default=None)
"""The caller of the store call running in this thread."""


def _for(caller: _Caller, call: Callable[[], R]) -> R:
    """`call`, run in a store thread for `caller`."""
    _CALLER.set(caller)
    return call()


_MOVE_AUTOINCREMENT_PAST = (
    "UPDATE sqlite_sequence SET seq = max(seq, :last_id) WHERE name = 'users'"
)
_START_AUTOINCREMENT_PAST = "INSERT INTO sqlite_sequence (name, seq) VALUES ('users', :last_id)"


def _identity(path: Path) -> tuple[int, int]:
    """What tells one file from another at the same path: its device and inode."""
    status = path.stat()
    return status.st_dev, status.st_ino


def _free(connection: Connection, batch: list[User], first: int, taken: UsersTaken) -> list[User]:
    """`free_users` of the batch, against the rows already in the database."""
    clashes = connection.execute(
        select(users.c.id, lowered_username).where(
            or_(
                users.c.id.in_([user.id for user in batch]),
                lowered_username.in_([user.username.lower() for user in batch]),
            )
        )
    )
    return free_users(batch, first, clashes, taken)


def _inserted(connection: Connection, username: str, now: datetime) -> User:
    """A new user, at version 1; past the spec's largest id, none (the transaction rolls back).
    Writers take turns, so ids become visible in order: a cursor never passes an id that
    commits later."""
    values = {"username": username, "created_at": now, "updated_at": now, "version": 1}
    user = user_from_row(connection.execute(insert(users).values(values).returning(*users.c)).one())
    if user.id > MAX_ID:
        raise IdsExhausted()
    return user


def _values(user: User) -> dict[str, Any]:
    return dict(zip(USER_COLUMNS, user_row(user), strict=True))


def _engine(
    url: str, pool_size: int, synchronous: str, busy_timeout_ms: int, timeout_ms: int
) -> Engine:
    """A pool of at most `pool_size` connections; a request finding none free waits for one, up
    to `timeout_ms`."""
    parsed = make_url(url)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, pool_size=pool_size, max_overflow=0, pool_timeout=timeout_ms / 1000
    )

    @event.listens_for(engine, "connect")
    def configure(connection: Any, _: Any) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA busy_timeout={busy_timeout_ms:d}")
        connection.execute(f"PRAGMA synchronous={synchronous}")

    return engine
