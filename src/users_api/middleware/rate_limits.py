"""Rate limits, by the `limits` library: writes per API key, and all requests per client address.

Counts live in the storage `storage_url` names: `memory://` is per process (two workers let
twice as much through), `redis://HOST:PORT` is shared by every worker and instance.

When Redis is down or stalled, requests pass unlimited (fail open) after at most the storage's
timeout: the limits guard the service against floods, and refusing every request while they
cannot be counted would be the outage they guard against. Each such request is counted in a
metric, and a warning is logged at most every `WARN_EVERY_SECONDS`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from connexion.exceptions import OAuthProblem, ProblemException
from connexion.security import BearerSecurityHandler
from limits import RateLimitItem
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.auth import digest
from users_api.middleware import HTTPMiddleware
from users_api.settings import parse_limits

if TYPE_CHECKING:
    import coredis

logger = logging.getLogger(__name__)

WRITES = {"POST", "PUT", "PATCH", "DELETE"}
"""The methods that change something: limited per key (and, cut short, of unknown outcome)."""
WARN_EVERY_SECONDS = 10
UNLIMITED_PATHS = {"/healthz", "/readyz"}
"""Probes: a load balancer must always get through. (Prometheus's scrapes of /metrics are
answered before these limits; to anyone else /metrics is an unknown path, and counted.)"""


class Limiter:
    """The `limits` library's sliding-window-counter limiter over the storage `storage_url` names.

    A sliding window counter keeps two counts per key and weighs the previous window's by how
    much of it still overlaps, so a burst at a window's edge is not let through twice. A moving
    window is exact but keeps a timestamp per request, and in memory it costs a thread hop per
    request (the library expires timestamps through `asyncio.to_thread`).

    For Redis it brings its own connection pool, so that `close()` can release it. The Redis
    client is imported only then: it weighs on every worker.
    """

    def __init__(self, storage_url: str, *, timeout_ms: int = 250) -> None:
        options: dict[str, Any] = {}
        self.timeout_seconds = timeout_ms / 1000
        """How long a request waits for its counts, connecting included, before it passes."""
        self._pool: coredis.ConnectionPool | None = None
        self.remote = not storage_url.startswith("memory:")
        """Whether the counts live in Redis, whose calls can fail or stall."""
        if self.remote:
            import coredis

            self._pool = options["connection_pool"] = coredis.ConnectionPool.from_url(
                storage_url,
                connect_timeout=self.timeout_seconds,
                stream_timeout=self.timeout_seconds,
            )
        storage = storage_from_string(f"async+{storage_url}", **options)
        self.windows = SlidingWindowCounterRateLimiter(storage)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()


class RateLimits(HTTPMiddleware):
    """429 for a request over a limit, with `Retry-After` and the `RateLimit-*` headers."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        writes: str,
        requests: str,
        limiter: Limiter,
        on_storage_failure: Callable[[], object],
    ) -> None:
        super().__init__(app)
        self.writes = parse_limits(writes)
        self.requests = parse_limits(requests)
        self.limiter = limiter
        self.on_storage_failure = on_storage_failure
        self._quiet_until = 0.0

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] not in UNLIMITED_PATHS:
            if self.limiter.remote:
                await self._count_or_pass(scope)
            else:  # counted in this process: nothing to wait for, nothing that can fail
                await self._count(scope)
        await self.app(scope, receive, send)

    async def _count_or_pass(self, scope: Scope) -> None:
        try:
            async with asyncio.timeout(self.limiter.timeout_seconds):
                await self._count(scope)
        except ProblemException:
            raise
        except Exception as error:  # whatever the storage failed with
            self._pass_unlimited(error)

    async def _count(self, scope: Scope) -> None:
        client = scope["client"][0] if scope.get("client") else "unknown"
        await self._hit(self.requests, "address", client)
        if scope["method"] in WRITES and (key := _bearer_key(Request(scope))):
            await self._hit(self.writes, "key", key)

    def _pass_unlimited(self, error: Exception) -> None:
        self.on_storage_failure()
        if time.monotonic() >= self._quiet_until:
            self._quiet_until = time.monotonic() + WARN_EVERY_SECONDS
            reason = (
                f"no answer within {self.limiter.timeout_seconds * 1000:.0f} ms"
                if isinstance(error, TimeoutError)
                else str(error) or type(error).__name__
            )
            logger.warning("rate limits are off: their storage failed: %s", reason)

    async def _hit(self, items: list[RateLimitItem], kind: str, who: str) -> None:
        for item in items:
            if not await self.limiter.windows.hit(item, kind, who):
                stats = await self.limiter.windows.get_window_stats(item, kind, who)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                raise ProblemException(
                    status=429,
                    detail=f"More than {item} from this {_WHO[kind]}; retry in {wait} s.",
                    headers={
                        "Retry-After": str(wait),
                        "RateLimit-Limit": str(item.amount),
                        "RateLimit-Remaining": str(stats.remaining),
                        "RateLimit-Reset": str(wait),
                    },
                )


_WHO = {"address": "client address", "key": "API key"}


def _bearer_key(request: Request) -> str:
    """A digest of the request's bearer key, read as the key check reads it (Connexion's parse):
    limits are kept by key, but keys are never stored."""
    try:
        scheme, key = BearerSecurityHandler.get_auth_header_value(request)
    except OAuthProblem:  # the key check answers it 401
        return ""
    if scheme != "bearer":
        return ""
    return digest(key).hex()[:32]
