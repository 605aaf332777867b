"""What the PostgreSQL peers share: their pool's size, and the asyncpg peers' statements on
the service's `users` table (`BENCH_POSTGRES_URL`, filled by `users-api import`)."""

from __future__ import annotations

import os

from users_api.store import DEFAULT_OPTIONS

POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", DEFAULT_OPTIONS.pool_size))
"""The service's, which `make bench` passes on; its default when a peer is started by hand."""
GET = "SELECT id, username, created_at, updated_at FROM users WHERE id = $1"
PUT = (
    "UPDATE users SET username = $2, updated_at = $3, version = version + 1 WHERE id = $1 "
    "RETURNING id, username, created_at, updated_at"
)
