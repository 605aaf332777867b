"""One fresh, empty store of each backend, for the tests parametrized over them."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections.abc import Collection, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, make_url, text

from users_api.store import IdempotencyKey, StoreOptions, User, UserStore
from users_api.store.memory import MemoryStore
from users_api.store.postgres import PostgresStore
from users_api.store.sql import SQLStore

T = TypeVar("T")

POSTGRES_URL = os.environ.get(
    "USERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[UserStore]:
    if backend == "memory":
        yield MemoryStore()
        return
    with fresh_store_url(backend, tmp_path) as url:
        if backend == "sqlite":
            shutil.copyfile(_sqlite_template(), tmp_path / "users.db")
            store = SQLStore(url)  # at the newest schema already, as its first call sees
        else:
            store = migrated(url)
        yield store
        asyncio.run(store.close())


@functools.cache
def _sqlite_template() -> Path:
    """A SQLite database at the newest schema, migrated once per test process: each fresh store
    starts as a copy of it, which takes a millisecond where a migration takes tens."""
    folder = Path(tempfile.mkdtemp(prefix="users-sqlite-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    store = migrated(f"sqlite:///{folder / 'users.db'}")
    asyncio.run(store.close())  # the last connection out folds SQLite's log into the file
    assert [path.name for path in folder.iterdir()] == ["users.db"]
    return folder / "users.db"


def migrated(url: str, **options: Any) -> Any:
    """A SQL store over a database at the newest schema, as `serve` starts with one: SQLite's
    `SQLStore` or PostgreSQL's `PostgresStore`, as `open_store` picks."""
    if url.startswith("postgresql"):
        return migrated_postgres(url, **options)
    store = SQLStore(url, StoreOptions(**options))
    store.migrate()
    return store


def migrated_postgres(url: str, **options: Any) -> PostgresStore:
    store = PostgresStore(url, StoreOptions(**options))
    store.migrate()
    return store


def sql_engine(url: str, **options: Any) -> Engine:
    """A SQLAlchemy engine on a store's database, for a test's own statements beside the store
    (the PostgreSQL store has none of its own)."""
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"), **options)


@contextmanager
def fresh_store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty `sqlite` or `postgresql` database, for this test alone."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'users.db'}"
    else:
        with postgres_schema() as url:
            yield url


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A URL for a schema of its own in the test database, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


class StoreSlot:
    """Stands in for the store of the test running now, behind an app that outlives the test."""

    def __init__(self) -> None:
        self._store: UserStore | None = None

    @contextmanager
    def holding(self, store: UserStore) -> Iterator[None]:
        """`store` until the block ends, then the one held before it (if any)."""
        before, self._store = self._store, store
        try:
            yield
        finally:
            self._store = before

    def __getattr__(self, name: str) -> Any:
        if self._store is None:
            raise AssertionError("the app was called outside a test that gave it a store")
        return getattr(self._store, name)


class Blocking:
    """A store's coroutines, each run to its end on an event loop that the calling thread keeps,
    as a server keeps its loop: the contract suite drives every backend through this, from plain
    test functions and from threads racing each other. A loop per call would open a PostgreSQL
    connection per call (the store's pool is per loop), which is no server's way and slow.
    `close` closes the store, then every thread's loop and the pool it kept."""

    def __init__(self, store: UserStore) -> None:
        self.store = store
        self._runners: dict[int, asyncio.Runner] = {}
        self._runners_lock = threading.Lock()
        self._close_loops = weakref.finalize(self, _close_runners, self._runners)
        """At `close`, or when this is collected unclosed: no loop outlives its test."""

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        thread = threading.get_ident()
        with self._runners_lock:
            runner = self._runners.get(thread)
            if runner is None:
                # A factory keeps the loop off the thread's current one, which asyncio.run resets.
                runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
                self._runners[thread] = runner
        return runner.run(call)

    def create(self, *, username: str) -> User:
        return self._run(self.store.create(username=username))

    def create_once(self, *, username: str, key: IdempotencyKey) -> tuple[User, bool]:
        return self._run(self.store.create_once(username=username, key=key))

    def get(self, user_id: int) -> User:
        return self._run(self.store.get(user_id))

    def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        return self._run(self.store.list(after=after, limit=limit, username=username))

    def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User:
        update = self.store.update(user_id, username=username, expected_versions=expected_versions)
        return self._run(update)

    def delete(self, user_id: int, *, expected_versions: Collection[int] | None = None) -> None:
        self._run(self.store.delete(user_id, expected_versions=expected_versions))

    def add_all(self, users: Iterable[User], *, last_id: int = 0, check_only: bool = False) -> int:
        return self._run(self.store.add_all(users, last_id=last_id, check_only=check_only))

    def last_id(self) -> int:
        return self._run(self.store.last_id())

    def check(self) -> None:
        self._run(self.store.check())

    def close(self) -> None:
        self._run(self.store.close())
        self._close_loops()


def _close_runners(runners: dict[int, asyncio.Runner]) -> None:
    """Each loop shuts down its async generators as it closes: the PostgreSQL store's pool on
    that loop is closed then."""
    for runner in runners.values():
        runner.close()
    runners.clear()
