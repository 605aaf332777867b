"""What the PostgreSQL store adds to the contract: its pool's wait, bounded by the store
timeout, and readiness asked at most once a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import pytest
from asyncpg import Connection
from sqlalchemy import text

from tests.support.stores import Blocking, migrated, postgres_schema, sql_engine
from users_api.store import IdempotencyKey, StoreUnavailable, WriteOutcomeUnknown, postgres


def test_a_call_waits_for_a_busy_pool_within_the_store_timeout() -> None:
    """The pool's one connection is busy for 1.2 s: a read that would wait past the store
    timeout (500 ms) gets its 503 then; one that needs to wait less gets its answer."""
    with postgres_schema() as url:
        store = migrated(url, pool_size=1, timeout_ms=500)

        async def scenario() -> tuple[BaseException | None, float, str]:
            user = await store.create(username="cosmo")
            hold = "SET statement_timeout = 0; SELECT pg_sleep(1.2); RESET statement_timeout"
            holding = asyncio.Event()

            def hold_the_connection(db: Connection) -> Awaitable[str]:
                holding.set()  # called once the call has the pool's one connection
                return db.execute(hold)

            busy = asyncio.create_task(store._call(hold_the_connection, unbounded=True))
            await holding.wait()
            started = time.monotonic()
            try:
                await store.get(user.id)
                refused: BaseException | None = None
            except StoreUnavailable as error:
                refused = error
            waited = time.monotonic() - started
            await asyncio.sleep(max(0.0, 1.1 - (time.monotonic() - started)))
            answered = await store.get(user.id)  # waits for the connection, ~0.1 s
            await busy
            await store.close()
            return refused, waited, answered.username

        refused, waited, answered = asyncio.run(scenario())
    assert isinstance(refused, StoreUnavailable)
    assert not isinstance(refused, WriteOutcomeUnknown)  # a read never is
    assert 0.45 <= waited < 0.5 * 3
    assert answered == "cosmo"


def test_readiness_asks_postgresql_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    with postgres_schema() as url:
        store = migrated(url)
        asked: list[float] = []
        ask = store._ask

        async def counted() -> None:
            asked.append(time.monotonic())
            await ask()

        monkeypatch.setattr(store, "_ask", counted)

        async def probe_often() -> None:
            started = time.monotonic()
            while time.monotonic() - started < 2.5:
                await store.check()
                await asyncio.sleep(0.01)
            await store.close()

        asyncio.run(probe_often())
    assert len(asked) == 3  # at 0 s, 1 s and 2 s


def test_creates_take_turns_per_schema_so_another_schemas_creates_go_on() -> None:
    """A session holds one schema's turn to create: that schema's creates wait for it (503 at
    the store timeout), another's (a tenant's, a test's) are made at once, keyed or not."""
    key = IdempotencyKey("owner", "k-1", "fingerprint")
    with postgres_schema() as held_url, postgres_schema() as free_url:
        held = Blocking(migrated(held_url, timeout_ms=300))
        free = Blocking(migrated(free_url, timeout_ms=300))
        engine = sql_engine(held_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as other:
            other.execute(text(f"SELECT pg_advisory_lock({postgres.CREATE_TURN})"))
            with pytest.raises(StoreUnavailable):
                held.create(username="cosmo")
            made = free.create(username="cosmo")
            kept, replayed = free.create_once(username="elaine", key=key)
            other.execute(text(f"SELECT pg_advisory_unlock({postgres.CREATE_TURN})"))
        engine.dispose()
        assert (made.username, kept.username, replayed) == ("cosmo", "elaine", False)
        held.close()
        free.close()


def test_an_idempotent_create_cut_short_before_its_commit_changed_nothing() -> None:
    """Its transaction never reached COMMIT: a plain 503 (not of unknown outcome), nothing kept,
    and a retry with the same key creates the user."""
    key = IdempotencyKey("owner", "k-1", "fingerprint")
    with postgres_schema() as url:
        store = migrated(url, timeout_ms=300)
        engine = sql_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as other:
            other.execute(text(f"SELECT pg_advisory_lock({postgres.CREATE_TURN})"))
            with pytest.raises(StoreUnavailable) as refused:
                asyncio.run(store.create_once(username="cosmo", key=key))
            other.execute(text(f"SELECT pg_advisory_unlock({postgres.CREATE_TURN})"))
        engine.dispose()
        assert not isinstance(refused.value, WriteOutcomeUnknown)
        blocking = Blocking(store)
        assert blocking.list(after=0, limit=10) == []
        created, replayed = blocking.create_once(username="cosmo", key=key)
        assert (created.username, replayed) == ("cosmo", False)
        blocking.close()
