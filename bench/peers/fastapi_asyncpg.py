"""FastAPI + pydantic over an asyncpg pool, the shape of TechEmpower's FastAPI entry: the same
GET and PUT as `fastapi_users`, on the service's `users` table in PostgreSQL
(`BENCH_POSTGRES_URL`, filled by `users-api import`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException

from bench.peers.fastapi_users import User, UserId, UserWrite, require_key
from bench.peers.users_table import GET, POOL_SIZE, PUT

pool: Any = None


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    global pool
    pool = await asyncpg.create_pool(
        os.environ["BENCH_POSTGRES_URL"], min_size=POOL_SIZE, max_size=POOL_SIZE
    )
    yield
    await pool.close()


app = FastAPI(title="Users (FastAPI + asyncpg peer)", lifespan=lifespan)


def found(row: Any, user_id: int) -> User:
    if row is None:
        raise HTTPException(404, f"User {user_id} does not exist.")
    return User.model_validate(dict(row))


@app.get("/users/{user_id}")
async def get_user(user_id: UserId) -> User:
    return found(await pool.fetchrow(GET, user_id), user_id)


@app.put("/users/{user_id}", dependencies=[Depends(require_key)])
async def update_user(user_id: UserId, body: UserWrite) -> User:
    return found(await pool.fetchrow(PUT, user_id, body.username, datetime.now(UTC)), user_id)
