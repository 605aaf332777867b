"""The user store: the interface every backend implements, its errors, and how to open one."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

MAX_ID = 2**53 - 1
"""The spec's largest `User.id`: the largest integer every client holds exactly."""
MAX_VERSION = 2**31 - 1
"""The largest version, the SQL stores' 32-bit column's; the write after it is version 1 again,
so that every version, and so every ETag, stays one that `If-Match` takes."""


def next_version(version: int) -> int:
    """The version a write moves a user at `version` to."""
    return 1 if version >= MAX_VERSION else version + 1


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    created_at: datetime
    """In UTC, as every store hands it back."""
    updated_at: datetime
    version: int
    """Grows by one on every write, from 1 to `MAX_VERSION` and round again; the ETag is made
    from it."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A client's `Idempotency-Key` for one create: who the client is (its API key's digest),
    the key, and a digest of the request's body, which must be the same each time."""

    owner: str
    key: str
    fingerprint: str


USER_COLUMNS = ("id", "username", "created_at", "updated_at", "version")
"""A user's columns in the SQL stores' `users` table, in the order of `user_row` and of the rows
`user_from_row` reads."""


def user_from_row(row: Iterable[Any]) -> User:
    """A user from a SQL row of `USER_COLUMNS`; both SQL stores read timestamps aware, in UTC."""
    user_id, username, created_at, updated_at, version = row
    return User(user_id, username, created_at, updated_at, version)


def user_row(user: User) -> tuple[int, str, datetime, datetime, int]:
    """`user` as a SQL row of `USER_COLUMNS`, its timestamps in UTC."""
    return (user.id, user.username, _utc(user.created_at), _utc(user.updated_at), user.version)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"a naive datetime has no time zone to store: {moment}")
    return moment.astimezone(UTC)


class StoreError(Exception):
    """A request the store refused; each subclass is one reason."""


class UserNotFound(StoreError):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"User {user_id} does not exist.")


class UsernameTaken(StoreError):
    def __init__(self, username: str, holder: int | None = None) -> None:
        super().__init__(f"The username {username!r} is taken.")
        self.username = username
        self.holder = holder
        """The id of the user who has it, where the store knows."""


class IdsExhausted(StoreError):
    def __init__(self) -> None:
        super().__init__(
            f"Every user id up to {MAX_ID} has been handed out: no user can be created."
        )


class UserIdTaken(StoreError):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"User {user_id} exists already.")
        self.user_id = user_id


class UsersTaken(StoreError):
    """What `add_all` found taken: how many of its users have an id or a username that is taken
    (in the store, or by one of its users before them), and the first `NAMED` of them, each
    with its place among them (0 for the first)."""

    NAMED = 20

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.named: list[tuple[int, UserIdTaken | UsernameTaken]] = []

    def add(self, place: int, error: UserIdTaken | UsernameTaken) -> None:
        self.count += 1
        if len(self.named) < self.NAMED:
            self.named.append((place, error))

    def __str__(self) -> str:
        return f"{self.count} user(s) with an id or a username that is taken"


def free_users(
    batch: Iterable[User], first: int, clashes: Iterable[tuple[int, str]], taken: UsersTaken
) -> list[User]:
    """The batch's users whose id and username are free, given the store's `clashes` with it
    (the id and lowered username of each row that has one of the batch's ids or usernames), and
    free among the batch's earlier free ones; the others go to `taken`, by place (the batch's
    first is at `first`)."""
    clashes = list(clashes)
    ids = {user_id for user_id, _ in clashes}
    holders = {name: user_id for user_id, name in clashes}
    free = []
    for place, user in enumerate(batch, first):
        name = user.username.lower()
        if user.id in ids:
            taken.add(place, UserIdTaken(user.id))
        elif name in holders:
            taken.add(place, UsernameTaken(user.username, holders[name]))
        else:
            free.append(user)
            ids.add(user.id)
            holders[name] = user.id
    return free


class IdempotencyKeyReused(StoreError):
    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was sent before with a different request body.")


class IdempotencyKeyInUse(StoreError):
    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being answered.")


class PreconditionFailed(StoreError):
    def __init__(self, user_id: int) -> None:
        super().__init__(f"User {user_id} has changed; its current ETag is not in If-Match.")


class StoreUnavailable(StoreError):
    """The database cannot be reached, or stayed busy past its timeout: worth a retry."""

    def __init__(
        self, reason: str, message: str = "The user store is unavailable; retry shortly."
    ) -> None:
        super().__init__(message)
        self.reason = reason
        """What the database said; for the operator's log, not for clients."""


class WriteOutcomeUnknown(StoreUnavailable):
    """The caller's deadline passed while its write was being committed: it may have been made
    or not, and only a read tells. (Past the deadline before the commit, a write is rolled back,
    and the caller gets a plain `StoreUnavailable`: nothing was changed.)"""

    def __init__(self, reason: str) -> None:
        super().__init__(
            reason,
            "The user store did not confirm the change in time: it may or may not have been "
            "made. Read before retrying; a create sent again with its Idempotency-Key is safe.",
        )


class SchemaNotCurrent(StoreUnavailable):
    """The database's schema is not the one this version needs (yet): it changes only at
    start (`UserStore.prepare`) or by `users-api migrate`, never on a request's path."""

    def __init__(self, revision: str | None, head: str) -> None:
        super().__init__(
            f"the database schema is at revision {revision or '(none)'}, this version needs "
            f"{head}: it is migrated at start, or run `users-api migrate`",
            "The user store's schema is not up to date yet; retry shortly.",
        )


class UserStore(Protocol):
    """Users by id, awaited by the handlers. `expected_versions`, when given, makes a
    write conditional: it happens only if the user's current version is among them (else
    `PreconditionFailed`), checked and written atomically."""

    async def create(self, *, username: str) -> User: ...

    async def create_once(self, *, username: str, key: IdempotencyKey) -> tuple[User, bool]:
        """`create`, once for `key`: the user and False the first time; within the store's
        retention of keys, the same user as created then and True for each repeat, whatever
        happened to it since. A repeat with another fingerprint raises `IdempotencyKeyReused`;
        one while the first is still running waits for it or raises `IdempotencyKeyInUse`. A
        create that fails (a taken username, say) keeps nothing: a retry runs it again."""
        ...

    async def get(self, user_id: int) -> User: ...

    async def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        """At most `limit` users with ids above `after`, by id."""
        ...

    async def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User: ...

    async def delete(
        self, user_id: int, *, expected_versions: Collection[int] | None = None
    ) -> None: ...

    async def add_all(
        self, users: Iterable[User], *, last_id: int = 0, check_only: bool = False
    ) -> int:
        """Add users as they are (ids, names, timestamps, versions), all or none, and return the
        count. Every user is checked: if any has an id or a username already taken, none is
        added and `UsersTaken` names them; an error raised by `users` adds none either. No id up
        to `last_id` (another store's `last_id()`) is handed out after. With `check_only`,
        nothing is added either way: only `UsersTaken` tells."""
        ...

    async def last_id(self) -> int:
        """The highest id ever handed out, a deleted user's perhaps (on PostgreSQL, perhaps one
        that a refused create used up); 0 before the first."""
        ...

    async def prepare(self) -> None:
        """Make the store ready to serve: bring a database's schema to the newest revision.
        Called at start (and again while it raises `StoreUnavailable`), never by a request."""
        ...

    async def check(self) -> None:
        """Raise `StoreUnavailable` unless the store can serve requests now."""
        ...

    async def close(self) -> None: ...


class MigrationRefused(StoreError):
    """A schema migration found data it cannot bring along; the message says what to change
    first. Nothing was changed."""


class UnknownStoreURL(ValueError):
    """A store URL the service cannot open; the message says what is expected."""


@dataclass(frozen=True)
class StoreOptions:
    """How a store talks to its database; a SQL store's settings, the memory store's too."""

    pool_size: int = 10
    timeout_ms: int = 5000
    idempotency_retention_hours: int = 24
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout_ms: int = 5000
    prepared_statements: bool = True
    """PostgreSQL: statements prepared once per connection; off behind PgBouncer's transaction
    pooling, where the next transaction may run on another server connection."""


DEFAULT_OPTIONS = StoreOptions()
STORE_URL = re.compile(r"(memory|sqlite|postgresql)(\+\w+)?://(.*)", re.DOTALL)


def check_store_url(url: str, *, default: str | None = None) -> None:
    """Raises UnknownStoreURL for a URL `open_store` cannot use. A SQLite file's folder must
    exist, unless `url` is the `default`, whose folder the store makes."""
    expected = "expected memory://, sqlite:///PATH or postgresql://USER@HOST:PORT/DB"
    matched = STORE_URL.fullmatch(url)
    if not matched:
        raise UnknownStoreURL(f"unknown store URL {url!r}: {expected}")
    if matched[1] == "sqlite":
        path = matched[3].removeprefix("/")
        if not matched[3].startswith("/") or not path or path.startswith("?"):
            raise UnknownStoreURL(f"a SQLite URL is sqlite:///PATH, not {url!r}")
        folder = Path(path.partition("?")[0]).parent
        if url != default and not folder.is_dir():
            raise UnknownStoreURL(f"the folder {folder} of {url!r} does not exist")


def open_store(url: str, options: StoreOptions = DEFAULT_OPTIONS) -> UserStore:
    """The backend a URL names: `memory://`, `sqlite:///path` (SQLAlchemy, in threads) or
    `postgresql://...` (asyncpg, on the caller's event loop).

    The SQL backends connect lazily, so a database that is down at start is not an error.
    """
    check_store_url(url, default=url)
    if url.startswith("memory"):
        from users_api.store.memory import MemoryStore

        return MemoryStore(options)
    if url.startswith("postgresql"):
        from users_api.store.postgres import PostgresStore

        return PostgresStore(url, options)
    from users_api.store.sql import SQLStore

    return SQLStore(url, options)
