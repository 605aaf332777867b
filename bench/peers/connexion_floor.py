"""The floor of each Connexion app class: one constant user for GET and PUT /users/{user_id},
through a spec that declares nothing to validate or authorize. `flask_app` and `async_app`
call sync handlers (an `AsyncApp` runs them in its thread pool); `async_app_coroutines` calls
`async def` handlers, as the project's are, on its event loop; `async_app_asyncpg` runs the
same `async def` handlers over an asyncpg pool, with `fastapi_asyncpg`'s statements on the
service's table in PostgreSQL (`BENCH_POSTGRES_URL`).

No service built on that class can serve these two operations for less CPU than this; the
bench shows how far above it the project and the stock peer are, and, on PostgreSQL, where
that class stands against FastAPI over the same pool.
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

from bench.fill import sample_users
from bench.peers import fastapi_asyncpg

USER = next(sample_users(1))


def get_user(user_id: str) -> dict[str, Any]:
    return USER


def update_user(user_id: str, body: Any) -> dict[str, Any]:
    return USER


async def get_user_coroutine(user_id: str) -> dict[str, Any]:
    return USER


async def update_user_coroutine(user_id: str, body: Any) -> dict[str, Any]:
    return USER


COROUTINES = {"get_user": get_user_coroutine, "update_user": update_user_coroutine}


async def get_user_asyncpg(user_id: str) -> Any:
    row = await pool.fetchrow(fastapi_asyncpg.GET, int(user_id))
    return _found(row)


async def update_user_asyncpg(user_id: str, body: Any) -> Any:
    row = await pool.fetchrow(
        fastapi_asyncpg.PUT, int(user_id), body["username"], datetime.now(UTC)
    )
    return _found(row)


def _found(row: Any) -> Any:
    if row is None:
        return {"title": "Not Found"}, 404
    user = dict(row)
    for stamp in ("created_at", "updated_at"):
        user[stamp] = user[stamp].isoformat()
    return user


ASYNCPG = {"get_user": get_user_asyncpg, "update_user": update_user_asyncpg}
pool: Any = None


@asynccontextmanager
async def pool_open(_: object) -> AsyncIterator[None]:
    global pool
    size = fastapi_asyncpg.POOL_SIZE
    pool = await asyncpg.create_pool(os.environ["BENCH_POSTGRES_URL"], min_size=size, max_size=size)
    yield
    await pool.close()


flask_app = connexion.FlaskApp(__name__, specification_dir=Path(__file__).parent)
flask_app.add_api("connexion_floor.yaml")
async_app = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent)
async_app.add_api("connexion_floor.yaml")
async_app_coroutines = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent)
async_app_coroutines.add_api(
    "connexion_floor.yaml",
    resolver=Resolver(lambda operation_id: COROUTINES[operation_id.rpartition(".")[2]]),
)
async_app_asyncpg = connexion.AsyncApp(
    __name__, specification_dir=Path(__file__).parent, lifespan=pool_open
)
async_app_asyncpg.add_api(
    "connexion_floor.yaml",
    resolver=Resolver(lambda operation_id: ASYNCPG[operation_id.rpartition(".")[2]]),
)
