"""One fresh, empty store of each backend, for the tests parametrized over them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from users_api.store import UserStore
from users_api.store.memory import MemoryStore
from users_api.store.sql import SQLStore

POSTGRES_URL = os.environ.get(
    "USERS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[UserStore]:
    if backend == "memory":
        yield MemoryStore()
        return
    with fresh_store_url(backend, tmp_path) as url:
        store = SQLStore(url)
        yield store
        store.close()


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
