"""The PostgreSQL store, on asyncpg: each call on the caller's event loop, no thread between.

A read, and a write of one statement (`UPDATE ... RETURNING`, `INSERT ... RETURNING`,
`DELETE`), is one round trip, in autocommit; an idempotent create is one explicit transaction.
asyncpg prepares each statement once per connection (its statement cache), unless prepared
statements are off for PgBouncer. The schema is its migrations' (migrations/), applied over a
synchronous SQLAlchemy engine by `prepare()` or `migrate()`, never on a request's path.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, NoReturn, TypeAlias, TypeVar

import asyncpg
from asyncpg import exceptions as pg

from users_api.store import (
    DEFAULT_OPTIONS,
    MAX_ID,
    MAX_VERSION,
    USER_COLUMNS,
    IdempotencyKey,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdsExhausted,
    PreconditionFailed,
    SchemaNotCurrent,
    StoreOptions,
    StoreUnavailable,
    User,
    UsernameTaken,
    UserNotFound,
    UsersTaken,
    WriteOutcomeUnknown,
    free_users,
    user_from_row,
    user_row,
)
from users_api.store.migrations import behind, head

logger = logging.getLogger(__name__)

R = TypeVar("R")
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record]

CHECK_EVERY_SECONDS = 1.0
CHECK_TIMEOUT_SECONDS = 1.0
FORGET_KEYS_AT_ONCE = 10
"""How many keys past retention each create with an idempotency key drops, at most: ten for
the one it adds, so that forgetting outpaces any writer, in a short part of its transaction."""
IDEMPOTENCY_LOCKS = 7261129
"""The class of advisory locks that a create holds on its idempotency key."""
CREATE_LOCK = 7261130
"""The class of the advisory lock that a create holds from taking its id until it commits."""
CREATE_TURN = f"{CREATE_LOCK:d}, hashtext(current_schema())"
"""That lock's key, one per schema: advisory locks are the whole database's, and each schema
(a tenant's, a test's) has a sequence and a table of its own to keep in order."""
NAME_WAIT_MS = 500
"""How long a create waits for a transaction that holds its name uncommitted (an import's,
say) before it is `StoreUnavailable`: it holds every other create back meanwhile."""
USERNAME_INDEX = "users_username_lower_key"
"""The unique index on lower(username) (migration 0001), which the database names in a refusal."""
IMPORT_BATCH = 1000

# What a failed call means: the database is away or busy (a retry may pass), never a bug here.
UNAVAILABLE_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    pg.PostgresConnectionError,
    pg.OperatorInterventionError,  # statement_timeout, shutdown
    pg.InsufficientResourcesError,  # too many connections
    pg.LockNotAvailableError,  # lock_timeout
    pg.TransactionRollbackError,  # deadlock, serialization
)

_COLUMNS = ", ".join(USER_COLUMNS)
_GET = f"SELECT {_COLUMNS} FROM users WHERE id = $1"
_LIST = f"SELECT {_COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
# lower() in the column's "C" collation (migration 0002), as the unique index has it.
_LIST_NAMED = (
    f"SELECT {_COLUMNS} FROM users WHERE id > $1 AND lower(username) = $3 ORDER BY id LIMIT $2"
)
_HOLDER = "SELECT id FROM users WHERE lower(username) = $1"
_EXISTS = "SELECT 1 FROM users WHERE id = $1"
# A NULL array: no If-Match, any version.
_UPDATE = (
    "UPDATE users SET username = $2, updated_at = $3, "
    f"version = CASE WHEN version >= {MAX_VERSION:d} THEN 1 ELSE version + 1 END "
    f"WHERE id = $1 AND ($4::int[] IS NULL OR version = ANY($4::int[])) RETURNING {_COLUMNS}"
)
_DELETE = (
    "DELETE FROM users WHERE id = $1 AND ($2::int[] IS NULL OR version = ANY($2::int[])) "
    "RETURNING id"
)
# PostgreSQL hands out an id at the INSERT and shows the row at the COMMIT: creates take turns
# (the advisory lock, held to the statement's own commit) so that ids become visible in order
# and a cursor never passes an id that commits later. The lock is taken before the id, then
# a name held by another uncommitted transaction is waited for NAME_WAIT_MS at most.
_TURN = (
    f"WITH turn AS (SELECT pg_advisory_xact_lock({CREATE_TURN})), "
    f"waits AS (SELECT set_config('lock_timeout', '{NAME_WAIT_MS:d}', true) FROM turn)"
)
# An id past the spec's largest is not inserted: no row comes back (IdsExhausted).
_CREATE = (
    f"{_TURN}, next AS (SELECT nextval(pg_get_serial_sequence('users', 'id')) AS id FROM waits) "
    "INSERT INTO users (id, username, created_at, updated_at, version) "
    f"SELECT id, $1, $2, $2, 1 FROM next WHERE id <= {MAX_ID:d} RETURNING {_COLUMNS}"
)
_CREATE_WITH_KEY = (
    f"{_TURN}, next AS (SELECT nextval(pg_get_serial_sequence('users', 'id')) AS id FROM waits), "
    "created AS (INSERT INTO users (id, username, created_at, updated_at, version) "
    f"SELECT id, $1, $2, $2, 1 FROM next WHERE id <= {MAX_ID:d} RETURNING {_COLUMNS}), "
    "kept AS (INSERT INTO idempotency_keys (owner, key, fingerprint, user_id, username, "
    "created_at) SELECT $3, $4, $5, id, username, created_at FROM created) "
    f"SELECT {_COLUMNS} FROM created"
)
# The key's lock is its schema's too: a tenant's key never holds back another's.
_LOCK_KEY = (
    f"SELECT pg_try_advisory_xact_lock({IDEMPOTENCY_LOCKS:d}, "
    "hashtext(current_schema() || ' ' || $1))"
)
# A key past retention is forgotten (dropped) before it is looked up.
_FIND_KEY = (
    "WITH expired AS (DELETE FROM idempotency_keys WHERE owner = $1 AND key = $2 "
    "AND created_at <= $3) "
    "SELECT fingerprint, user_id, username, created_at FROM idempotency_keys "
    "WHERE owner = $1 AND key = $2 AND created_at > $3"
)
_FORGET_KEYS = (
    "DELETE FROM idempotency_keys WHERE (owner, key) IN (SELECT owner, key FROM "
    f"idempotency_keys WHERE created_at <= $1 LIMIT {FORGET_KEYS_AT_ONCE:d})"
)
_SEQUENCE = "pg_get_serial_sequence('users', 'id')"
_LAST_ID = f"SELECT pg_sequence_last_value({_SEQUENCE}::regclass)"
TAKE_CREATE_TURN = f"SELECT pg_advisory_xact_lock({CREATE_TURN})"
# Past every id in the table, `last_id` and the last handed out, and never backwards; without
# consuming an id (run twice by an import with a `last_id`, it moves once).
_MOVE_SEQUENCE_PAST = (
    f"SELECT setval({_SEQUENCE}, GREATEST(past, 1), past >= 1) FROM (SELECT GREATEST(max(id), "
    f"$1::bigint, pg_sequence_last_value({_SEQUENCE}::regclass)) AS past FROM users) AS moved"
)
_CLASHES = "SELECT id, lower(username) FROM users WHERE id = ANY($1) OR lower(username) = ANY($2)"
_INSERT_USER = (
    "INSERT INTO users (id, username, created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5)"
)
_REVISION = "SELECT version_num FROM alembic_version"


class PostgresStore:
    """Connects lazily: a database that is down at start makes requests fail with
    `StoreUnavailable` until it is up, and one whose schema is behind, with `SchemaNotCurrent`
    until `prepare` or `users-api migrate` has brought it up to date.

    asyncpg's connections belong to one event loop: each loop that calls gets a pool of its
    own, closed as that loop shuts down (`asyncio.run`'s end), except that a loop without one
    (a FlaskApp WSGI thread's) runs its calls on the loop that last ran `prepare` (the
    server's), so that `pool_size` still bounds the process's connections."""

    def __init__(self, url: str, options: StoreOptions = DEFAULT_OPTIONS) -> None:
        scheme, _, rest = url.partition("://")
        self._url = url
        self._dsn = f"{scheme.partition('+')[0]}://{rest}"
        self._options = options
        self._timeout_seconds = options.timeout_ms / 1000
        """How long a call waits on the database, all told (a connection, connecting, its
        statement), before it is `StoreUnavailable`: a stalled database gives 503s."""
        self._retention = timedelta(hours=options.idempotency_retention_hours)
        self._pools: dict[asyncio.AbstractEventLoop, _Pool] = {}
        self._pools_lock = threading.Lock()
        self._home: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._schema_current = False
        """Once seen at the newest revision; a schema is never downgraded under a service."""
        self._checking = threading.Lock()
        self._next_check = 0.0
        self._last_check: StoreUnavailable | None = StoreUnavailable("not checked yet")

    # Requests' calls

    async def get(self, user_id: int) -> User:
        row = await self._call(lambda db: db.fetchrow(_GET, user_id))
        if row is None:
            raise UserNotFound(user_id)
        return user_from_row(row)

    async def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        if username is None:
            rows = await self._call(lambda db: db.fetch(_LIST, after, limit))
        else:
            name = username.lower()
            rows = await self._call(lambda db: db.fetch(_LIST_NAMED, after, limit, name))
        return [user_from_row(row) for row in rows]

    async def create(self, *, username: str) -> User:
        async def insert(db: Connection) -> User:
            now = datetime.now(UTC)
            return _created(await _named(db, username, db.fetchrow(_CREATE, username, now)))

        return await self._call(insert, write=True)

    async def create_once(self, *, username: str, key: IdempotencyKey) -> tuple[User, bool]:
        """A repeat while the first is running finds its key locked: in use."""

        async def once(db: Connection) -> tuple[User, bool]:
            now = datetime.now(UTC)
            async with db.transaction():
                # Two keys whose 32-bit hashes collide share a lock: the later is told "in use".
                if not await db.fetchval(_LOCK_KEY, f"{key.owner} {key.key}"):
                    raise IdempotencyKeyInUse()
                expired = now - self._retention
                found = await db.fetchrow(_FIND_KEY, key.owner, key.key, expired)
                if found is not None:
                    if found["fingerprint"] != key.fingerprint:
                        raise IdempotencyKeyReused()
                    created = found["created_at"]
                    user = User(found["user_id"], found["username"], created, created, 1)
                    return user, True
                await db.execute(_FORGET_KEYS, expired)
                row = db.fetchrow(
                    _CREATE_WITH_KEY, username, now, key.owner, key.key, key.fingerprint
                )
                user = _created(await _named(db, username, row))
                _PROGRESS.get().sent = True  # all that is left is the COMMIT
                return user, False

        # Not a write until its COMMIT: cut short before, the transaction is rolled back.
        return await self._call(once)

    async def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User:
        versions = None if expected_versions is None else list(expected_versions)

        async def write(db: Connection) -> User:
            now = datetime.now(UTC)
            row = await _named(db, username, db.fetchrow(_UPDATE, user_id, username, now, versions))
            if row is None:
                await _refuse(db, user_id)
            return user_from_row(row)

        return await self._call(write, write=True)

    async def delete(
        self, user_id: int, *, expected_versions: Collection[int] | None = None
    ) -> None:
        versions = None if expected_versions is None else list(expected_versions)

        async def write(db: Connection) -> None:
            if await db.fetchval(_DELETE, user_id, versions) is None:
                await _refuse(db, user_id)

        await self._call(write, write=True)

    # Not requests' calls

    async def last_id(self) -> int:
        # A create refused at the ceiling moved the sequence past it, to no one.
        return min(int(await self._call(lambda db: db.fetchval(_LAST_ID)) or 0), MAX_ID)

    async def add_all(
        self, users_to_add: Iterable[User], *, last_id: int = 0, check_only: bool = False
    ) -> int:
        """Not a request's call (`users-api import`): no deadline, it takes as long as the
        file does."""

        async def add(db: Connection) -> int:
            if last_id and not check_only:
                # Once the creates in flight are done, ids are handed out past the file's:
                # creates go on beside the import, and none takes an id that it brings.
                async with db.transaction():
                    await db.execute(TAKE_CREATE_TURN)
                    await db.execute(_MOVE_SEQUENCE_PAST, last_id)
            added = 0
            taken = UsersTaken()
            transaction = db.transaction()
            await transaction.start()
            try:
                await db.execute("SET LOCAL statement_timeout = 0")
                if not last_id:  # the file's ids are known at its end only: creates wait
                    await db.execute(TAKE_CREATE_TURN)
                remaining = iter(users_to_add)
                while batch := list(islice(remaining, IMPORT_BATCH)):
                    # The free ones go in, for later batches to be checked against them too.
                    if free := await _free(db, batch, added + taken.count, taken):
                        await db.executemany(_INSERT_USER, [user_row(user) for user in free])
                    added += len(free)
                if taken.count:
                    raise taken
                if check_only:
                    await transaction.rollback()
                    return added
                # Explicit ids bypass the sequence: move it past them, and past `last_id`.
                await db.execute(_MOVE_SEQUENCE_PAST, last_id)
            except BaseException:
                await transaction.rollback()
                raise
            await transaction.commit()
            return added

        return await self._call(add, unbounded=True)

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
                await self._ask()
            except StoreUnavailable as error:
                self._last_check = error
                raise
            self._last_check = None
        elif self._last_check is not None:
            raise StoreUnavailable(self._last_check.reason)

    async def _ask(self) -> None:
        await self._call(lambda db: db.fetchval("SELECT 1"), seconds=CHECK_TIMEOUT_SECONDS)

    async def prepare(self) -> None:
        """Migrate (in a thread: Alembic's engine is synchronous), and make this loop the one
        that loops without a pool of their own send their calls to."""
        self._home = asyncio.get_running_loop()
        if not self._schema_current:
            await asyncio.to_thread(self.migrate)  # bounded by its lock timeout

    def migrate(self) -> str:
        """Bring the schema to the newest revision now, and return it (`users-api migrate`)."""
        from sqlalchemy import NullPool, create_engine, make_url
        from sqlalchemy.exc import OperationalError

        from users_api.store.migrations import upgrade

        options = self._options
        url = make_url(self._url)
        # A statement's timeout as requests have it, unless a migration lifts it (a rebuilt index).
        timeout = f"{url.query.get('options', '')} -c statement_timeout={options.timeout_ms:d}"
        engine = create_engine(
            url.set(drivername="postgresql+psycopg").update_query_dict(
                {"options": timeout.strip()}
            ),
            poolclass=NullPool,
            connect_args={"connect_timeout": max(1, math.ceil(options.timeout_ms / 1000))},
        )
        try:
            revision = upgrade(engine, lock_timeout_ms=options.timeout_ms)
        except OperationalError as error:
            raise StoreUnavailable(str(error.orig).strip()) from error
        finally:
            engine.dispose()
        self._found_current(revision)
        return revision

    def _found_current(self, revision: str | None) -> None:
        if revision != head():
            logger.warning(
                "the database schema is at revision %s, a later release's: serving from it as "
                "it is (this version's newest is %s)",
                revision,
                head(),
            )
        self._schema_current = True

    async def close(self) -> None:
        """Closes this loop's pool; later calls are refused with `StoreUnavailable`. Another
        loop's pool is closed as that loop shuts down."""
        self._closed = True
        pool = self._pools.get(asyncio.get_running_loop())
        if pool is not None:
            await pool.close()

    # The way to the database

    async def _call(
        self,
        work: Callable[[Connection], Awaitable[R]],
        *,
        write: bool = False,
        seconds: float | None = None,
        unbounded: bool = False,
    ) -> R:
        """`work` on a connection of this loop's pool, within the store timeout (or `seconds`;
        no limit when `unbounded`): past it, or when the database fails, `StoreUnavailable`,
        and `WriteOutcomeUnknown` for a write that was sent (it may have committed)."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            home = self._home
            if home is not None and home is not loop and home.is_running():
                call = self._call(work, write=write, seconds=seconds, unbounded=unbounded)
                return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, home))
            pool = await self._pool(loop)
        if seconds is None and not unbounded:
            seconds = self._timeout_seconds
        state = _Progress()
        _PROGRESS.set(state)
        try:
            async with asyncio.timeout(seconds) as waiting:
                db = await pool.take()
                try:
                    if not self._schema_current:
                        await self._require_current_schema(db)
                    state.sent = write
                    done = await work(db)
                except BaseException as error:
                    pool.give_back(db, error)
                    raise
                pool.give_back(db)
                return done
        except TimeoutError:
            if not waiting.expired():
                raise
            reason = f"the database did not answer within {(seconds or 0) * 1000:.0f} ms"
            if state.sent:
                raise WriteOutcomeUnknown(f"{reason}, while a write was committing") from None
            raise StoreUnavailable(reason) from None
        except UNAVAILABLE_ERRORS as error:
            reason = str(error).strip() or type(error).__name__
            if state.sent and not isinstance(error, _NOT_APPLIED):
                raise WriteOutcomeUnknown(f"{reason}, while a write was committing") from error
            raise StoreUnavailable(reason) from error

    async def _require_current_schema(self, db: Connection) -> None:
        """Refuse to serve from a schema older than this version's; read once it is current."""
        try:
            revision = await db.fetchval(_REVISION)
        except pg.UndefinedTableError:
            revision = None
        if behind(revision):
            raise SchemaNotCurrent(revision, head())
        self._found_current(revision)

    async def _pool(self, loop: asyncio.AbstractEventLoop) -> _Pool:
        """This loop's pool, made on its first call, and closed as the loop shuts down its
        async generators (what `asyncio.run` does before it closes the loop)."""
        pool = _Pool(self._connect, self._options.pool_size)
        with self._pools_lock:
            self._pools[loop] = pool
        keeper = _keep(pool, lambda: self._forget(loop, pool))
        await anext(keeper)  # the loop holds it now, to close it at its shutdown
        pool.keeper = keeper
        return pool

    def _forget(self, loop: asyncio.AbstractEventLoop, pool: _Pool) -> None:
        with self._pools_lock:
            if self._pools.get(loop) is pool:
                del self._pools[loop]

    async def _connect(self) -> Connection:
        """A connection whose statements PostgreSQL itself stops at the store timeout too."""
        options = self._options
        connection: Connection = await asyncpg.connect(
            self._dsn,
            server_settings={"statement_timeout": str(options.timeout_ms)},
            statement_cache_size=100 if options.prepared_statements else 0,
        )
        return connection


_NOT_APPLIED = (pg.OperatorInterventionError, pg.LockNotAvailableError, pg.TransactionRollbackError)
"""Errors after which the database has rolled a write back: it is not of unknown outcome."""


class _Progress:
    """How far a call got: whether its write was sent (a failure then leaves it unknown)."""

    sent = False


_PROGRESS: contextvars.ContextVar[_Progress] = contextvars.ContextVar("progress")
"""The running call's progress, for a transaction to say when its COMMIT is next."""


class _Pool:
    """At most `size` connections of one event loop. A call waits for one within its own
    deadline; a connection whose call was cut short, or lost its way to the database, is
    dropped, since a statement may still be running on it. Nothing is sent on taking or
    returning one."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], size: int) -> None:
        self._connect = connect
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self.keeper: AsyncGenerator[None] | None = None

    async def take(self) -> Connection:
        """An idle connection, or a new one; `give_back` returns it. (A pair, not an
        `@asynccontextmanager`, whose generator cost a request ~5 µs.)"""
        await self._slots.acquire()
        try:
            while self._idle:
                connection = self._idle.pop()
                if not connection.is_closed():
                    return connection
            connection = await self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._open.add(connection)
        return connection

    def give_back(self, connection: Connection, error: BaseException | None = None) -> None:
        """Kept for the next call, unless `error` may have left it unusable or busy."""
        if error is None or (
            isinstance(error, Exception)
            and not isinstance(error, _BROKEN)
            and not connection.is_closed()
            and not connection.is_in_transaction()
        ):
            self._idle.append(connection)
        else:
            self._drop(connection)
        self._slots.release()

    def _drop(self, connection: Connection) -> None:
        connection.terminate()
        self._open.discard(connection)

    async def close(self) -> None:
        connections, self._idle = [*self._open], []
        for connection in connections:
            try:
                await asyncio.wait_for(connection.close(), CHECK_TIMEOUT_SECONDS)
            except (Exception, asyncio.CancelledError):
                connection.terminate()
        self._open.clear()


_BROKEN = (OSError, asyncpg.InterfaceError, pg.PostgresConnectionError)
"""Errors after which a connection is not to be used again."""


async def _keep(pool: _Pool, forget: Callable[[], None]) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        forget()
        await pool.close()


async def _named(db: Connection, username: str, write: Awaitable[R]) -> R:
    """`write`, in which the unique index's refusal means `UsernameTaken`."""
    try:
        return await write
    except pg.UniqueViolationError as error:
        if error.constraint_name != USERNAME_INDEX:
            # An id the database handed out is held by a row added with its own (beside the
            # sequence): never a taken name, and a retry takes the next id.
            raise StoreUnavailable(str(error)) from error
        holder = None
        if not db.is_in_transaction():  # else the refused transaction must end first
            with suppress(*UNAVAILABLE_ERRORS):
                holder = await db.fetchval(_HOLDER, username.lower())
        raise UsernameTaken(username, holder) from error


def _created(row: asyncpg.Record | None) -> User:
    """The user a create inserted; none past the spec's largest id."""
    if row is None:
        raise IdsExhausted()
    return user_from_row(row)


async def _refuse(db: Connection, user_id: int) -> NoReturn:
    """Why a write matched no row: no such user, or not at an expected version."""
    exists = await db.fetchval(_EXISTS, user_id)
    raise PreconditionFailed(user_id) if exists else UserNotFound(user_id)


async def _free(db: Connection, batch: list[User], first: int, taken: UsersTaken) -> list[User]:
    """`free_users` of the batch, against the rows already in the database."""
    ids, names = [user.id for user in batch], [user.username.lower() for user in batch]
    clashes = [(row[0], row[1]) for row in await db.fetch(_CLASHES, ids, names)]
    return free_users(batch, first, clashes, taken)
