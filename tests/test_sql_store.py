"""What the SQL store adds to the contract: its migrations, its settings, and a busy database."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import AUTH, assert_problem
from tests.stores import fresh_store_url, postgres_schema
from users_api.app import create_app
from users_api.settings import Settings
from users_api.store import StoreUnavailable, User
from users_api.store.sql import SQLStore


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'users.db'}"


@pytest.fixture
def write_lock(tmp_path: Path, sqlite_url: str) -> Iterator[None]:
    """Another process's write transaction, held on the database for the whole test."""
    SQLStore(sqlite_url).migrate()
    other = sqlite3.connect(tmp_path / "users.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.rollback()
    other.close()


@pytest.mark.usefixtures("write_lock")
def test_a_write_that_stays_busy_past_the_timeout_raises_store_unavailable(
    sqlite_url: str,
) -> None:
    store = SQLStore(sqlite_url, sqlite_busy_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable") as raised:
        asyncio.run(store.create(username="cosmo"))
    assert time.monotonic() - started >= 0.3
    assert raised.value.reason == "database is locked"


@pytest.mark.usefixtures("write_lock")
def test_writers_queued_behind_a_busy_database_each_give_up_in_bounded_time(
    sqlite_url: str,
) -> None:
    """This process's writers take turns; each waits at most the timeout for its turn and at
    most the timeout for SQLite's lock, and is told the database is locked."""
    store = SQLStore(sqlite_url, sqlite_busy_timeout_ms=300)
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda name: _create(store, name), ["a1", "b2", "c3"]))
    assert outcomes == ["database is locked"] * 3
    assert time.monotonic() - started < 3 * 0.6


@pytest.mark.usefixtures("write_lock")
def test_a_read_is_not_queued_behind_writers_waiting_for_the_write_lock(sqlite_url: str) -> None:
    """More writers wait than the pool has connections; a read still answers at once."""
    store = SQLStore(sqlite_url, pool_size=2, sqlite_busy_timeout_ms=500)

    async def writers_then_a_read() -> tuple[list[BaseException | User], float]:
        writes = [asyncio.ensure_future(store.create(username=f"w{n}")) for n in range(6)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await store.list(after=0, limit=10)
        read = time.monotonic() - started
        return await asyncio.gather(*writes, return_exceptions=True), read

    outcomes, read = asyncio.run(writers_then_a_read())
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert read < 0.25
    asyncio.run(store.close())


def test_a_closed_store_refuses_calls_as_unavailable(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url)
    asyncio.run(store.close())
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.get(1))


def _create(store: SQLStore, username: str) -> str:
    try:
        asyncio.run(store.create(username=username))
    except StoreUnavailable as error:
        return error.reason
    return "created"


@pytest.mark.usefixtures("write_lock")
def test_a_busy_database_answers_503_with_retry_after(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url, sqlite_busy_timeout_ms=100)
    client = create_app(Settings(api_keys=("test-key",)), store=store).test_client()
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    # readers are not blocked by a writer
    assert client.get("/users", headers=AUTH).status_code == 200


@pytest.mark.parametrize(("setting", "pragma"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_synchronous_follows_the_setting(sqlite_url: str, setting: str, pragma: int) -> None:
    store = SQLStore(sqlite_url, sqlite_synchronous=setting)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == pragma
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_the_postgresql_pool_opens_at_most_pool_size_connections() -> None:
    name = f"pool-{uuid.uuid4().hex[:8]}"
    with postgres_schema() as url:
        store = SQLStore(f"{url}&application_name={name}", pool_size=3)
        user = asyncio.run(store.create(username="cosmo"))
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda _: asyncio.run(store.get(user.id)), range(400)))
        with store.engine.connect() as connection:
            opened = connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": name},
            )
            assert opened.scalar() == 3
        asyncio.run(store.close())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_started_together_apply_once(tmp_path: Path, backend: str) -> None:
    with fresh_store_url(backend, tmp_path) as url:
        command = [sys.executable, "-m", "users_api.cli", "migrate", "--store", url]
        runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outputs = [run.communicate(timeout=60)[1] for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, outputs
        assert all("schema revision 0001" in output for output in outputs)
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            revisions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert revisions.all() == [("0001",)]
        engine.dispose()
