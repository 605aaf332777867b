"""What the asyncpg peers share: their statements on the service's `users` table in PostgreSQL
(`BENCH_POSTGRES_URL`, filled by `users-api import`) and their pool's size."""

from __future__ import annotations

import os

POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "5"))  # `make bench` gives the service's
GET = "SELECT id, username, created_at, updated_at FROM users WHERE id = $1"
PUT = (
    "UPDATE users SET username = $2, updated_at = $3, version = version + 1 WHERE id = $1 "
    "RETURNING id, username, created_at, updated_at"
)
