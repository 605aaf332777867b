"""Connexion's `AsyncApp` as it comes, over PostgreSQL: `connexion_floor.yaml` (nothing to
validate or authorize), served by `async def` handlers over an asyncpg pool with
`fastapi_asyncpg`'s statements, in one round trip a request, as the service makes them. The
bench sets the service and FastAPI over the same pool beside it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import connexion
from connexion.resolver import Resolver

from bench.peers.users_table import GET, POOL_SIZE, PUT

pool: Any = None


async def get_user(user_id: str) -> Any:
    return _found(await pool.fetchrow(GET, int(user_id)))


async def update_user(user_id: str, body: Any) -> Any:
    return _found(await pool.fetchrow(PUT, int(user_id), body["username"], datetime.now(UTC)))


def _found(row: Any) -> Any:
    return (dict(row), 200) if row is not None else ({"title": "Not Found"}, 404)


async def _keep_session(_: asyncpg.Connection) -> None:
    """In place of the pool's reset query on each release: the handlers leave nothing in the
    session to reset."""


@asynccontextmanager
async def pool_open(_: object) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(
        os.environ["BENCH_POSTGRES_URL"],
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        reset=_keep_session,
    )
    yield
    await pool.close()


HANDLERS = {"get_user": get_user, "update_user": update_user}
app = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent, lifespan=pool_open)
app.add_api(
    "connexion_floor.yaml",
    resolver=Resolver(lambda operation_id: HANDLERS[operation_id.rpartition(".")[2]]),
)
