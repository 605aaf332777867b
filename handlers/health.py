"""Liveness and readiness, for the load balancer in front of the service."""

from __future__ import annotations

from typing import Any

from users_api.store import UserStore

Response = tuple[dict[str, Any], int, dict[str, str]]


async def check_health() -> Response:
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}


async def check_readiness(*, store: UserStore) -> Response:
    """OK once the store answers; its `StoreUnavailable` becomes the 503."""
    await store.check()
    return await check_health()
