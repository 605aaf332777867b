"""Plain Flask over a psycopg connection pool, served by gunicorn with 8 threads: the same GET
and PUT as `seed_flask`, on the service's `users` table in PostgreSQL (`BENCH_POSTGRES_URL`,
filled by `users-api import`)."""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from bench.peers.seed_flask import API_KEY, valid_user_write
from bench.peers.users_table import POOL_SIZE

GET = "SELECT id, username, created_at, updated_at FROM users WHERE id = %s"
PUT = (
    "UPDATE users SET username = %s, updated_at = %s, version = version + 1 WHERE id = %s "
    "RETURNING id, username, created_at, updated_at"
)
pool = ConnectionPool(
    os.environ["BENCH_POSTGRES_URL"],
    min_size=POOL_SIZE,
    max_size=POOL_SIZE,
    kwargs={"autocommit": True, "row_factory": dict_row},
)
app = Flask(__name__)


def shown(row: Any, user_id: int) -> tuple[Response, int]:
    if row is None:
        return jsonify(error=f"User {user_id} does not exist."), 404
    row["created_at"] = row["created_at"].isoformat()
    row["updated_at"] = row["updated_at"].isoformat()
    return jsonify(row), 200


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> tuple[Response, int]:
    with pool.connection() as connection:
        return shown(connection.execute(GET, (user_id,)).fetchone(), user_id)


@app.put("/users/<int:user_id>")
def update_user(user_id: int) -> tuple[Response, int]:
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(presented.encode(), API_KEY.encode()):
        return jsonify(error="A valid API key is needed."), 401
    body: Any = request.get_json(silent=True)
    if not valid_user_write(body):
        return jsonify(error="The request body is invalid."), 400
    now = datetime.now(UTC)
    with pool.connection() as connection:
        row = connection.execute(PUT, (body["username"], now, user_id)).fetchone()
    return shown(row, user_id)
