"""PostgreSQL through a real PgBouncer in transaction pooling mode, prepared statements off
(`--no-prepared-statements`): the store contract, and two instances that lose no update."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.support.api import AUTH
from tests.support.pgbouncer import pgbouncer, postgres_database, through
from tests.support.servers import LOAD, Server, serve
from tests.support.stores import Blocking, sql_engine
from tests.unit.test_store_contract import *  # noqa: F403  # the contract, over the fixture below
from users_api.store import StoreOptions
from users_api.store.postgres import PostgresStore


@pytest.fixture(scope="module")
def bounced_url() -> Iterator[str]:
    """A database reached through PgBouncer, migrated once for the module's tests."""
    with postgres_database() as database, pgbouncer() as port:
        url = through(port, database)
        PostgresStore(url, StoreOptions(prepared_statements=False)).migrate()
        yield url


@pytest.fixture
def backend(bounced_url: str) -> Iterator[Blocking]:
    """The contract's backend: an empty store through PgBouncer."""
    _empty(bounced_url)
    blocking = Blocking(PostgresStore(bounced_url, StoreOptions(prepared_statements=False)))
    yield blocking
    blocking.close()


def test_two_instances_through_pgbouncer_lose_no_update(tmp_path: Path, bounced_url: str) -> None:
    """Read-modify-write with If-Match from 8 clients over two instances, each with more pool
    connections than PgBouncer gives the database: every success counts."""
    _empty(bounced_url)  # the contract's tests before may have moved its ids to the ceiling
    store = ("--store", bounced_url, "--no-prepared-statements", "--pool-size", "8", *LOAD)
    with (
        serve(tmp_path / "a", *store) as first,
        serve(tmp_path / "b", *store) as second,
    ):
        created = httpx.post(f"{first.url}/users", json={"username": "n0"}, headers=AUTH)
        assert created.status_code == 201, created.text
        user = f"/users/{created.json()['id']}"
        read = httpx.get(f"{second.url}{user}", headers=AUTH)
        assert (read.status_code, read.json()["username"]) == (200, "n0")
        taken = httpx.post(f"{second.url}/users", json={"username": "N0"}, headers=AUTH)
        assert taken.status_code == 409
        deadline = time.monotonic() + 60

        def increment(n: int) -> None:
            server: Server = (first, second)[n % 2]
            with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as client:
                while time.monotonic() < deadline:
                    current = client.get(user)
                    count = int(current.json()["username"][1:])
                    written = client.put(
                        user,
                        json={"username": f"n{count + 1}"},
                        headers={"If-Match": current.headers["ETag"]},
                    )
                    if written.status_code == 200:
                        return
                    assert written.status_code == 412, written.text
                raise AssertionError("no update got through in time")

        with ThreadPoolExecutor(max_workers=8) as clients:
            list(clients.map(increment, range(100)))
        final = httpx.get(f"{first.url}{user}", headers=AUTH).json()
        assert final["username"] == "n100"
        assert "Traceback" not in first.output() + second.output()


def _empty(url: str) -> None:
    engine = sql_engine(url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE users, idempotency_keys RESTART IDENTITY"))
    engine.dispose()
