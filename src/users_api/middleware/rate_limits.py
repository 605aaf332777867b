"""Rate limits, by the `limits` library: writes per API key, and all requests per client address.

Counts live in the storage `storage_url` names: `memory://` is per process (two workers let
twice as much through), `redis://HOST:PORT` is shared by every worker and instance. In
memory they are counted by `LocalWindows`, as `limits` counts them.

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
from limits import RateLimitItem, WindowStats
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
SWEEP_EVERY_SECONDS = 1
"""How often `LocalWindows` forgets the counts of windows that have passed."""
UNLIMITED_PATHS = {"/healthz", "/readyz"}
"""Probes: a load balancer must always get through. (Prometheus's scrapes of /metrics are
answered before these limits; to anyone else /metrics is an unknown path, and counted.)"""


class Limiter:
    """Sliding window counters, over the storage `storage_url` names.

    A sliding window counter keeps two counts per key and weighs the previous window's by how
    much of it still overlaps, so a burst at a window's edge is not let through twice. A moving
    window is exact but keeps a timestamp per request.

    For Redis it is `limits`' own, with a connection pool of its own, so that `close()` can
    release it. The Redis client is imported only then: it weighs on every worker.
    """

    def __init__(self, storage_url: str, *, timeout_ms: int = 250) -> None:
        self.timeout_seconds = timeout_ms / 1000
        """How long a request waits for its counts, connecting included, before it passes."""
        self._pool: coredis.ConnectionPool | None = None
        self.remote = not storage_url.startswith("memory:")
        """Whether the counts live in Redis, whose calls can fail or stall."""
        self.windows: SlidingWindowCounterRateLimiter | LocalWindows = LocalWindows()
        if self.remote:
            import coredis

            self._pool = coredis.ConnectionPool.from_url(
                storage_url,
                connect_timeout=self.timeout_seconds,
                stream_timeout=self.timeout_seconds,
            )
            options: dict[str, Any] = {"connection_pool": self._pool}
            storage = storage_from_string(f"async+{storage_url}", **options)
            self.windows = SlidingWindowCounterRateLimiter(storage)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.disconnect()


class LocalWindows:
    """`limits`' sliding window counter, for counts in this process: the same arithmetic on
    plain integers. `limits`' memory storage took ~10 µs a hit (a lock, two key strings and an
    expiry task), most of what the rate limits cost a request; this takes ~1 µs. Counts are
    only ever touched from one event loop, between awaits.
    """

    def __init__(self) -> None:
        # (limit, identifiers) -> [current window's number, previous window's count, current's]
        self._counts: dict[tuple[RateLimitItem, tuple[str, ...]], list[int]] = {}
        self._sweep_at = 0.0

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        now = time.time()
        counts = self._counted(item, identifiers, now)
        if math.floor(_weighted(item, counts, now)) + 1 > item.amount:
            return False
        counts[2] += 1
        return True

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        now = time.time()
        counts = self._counted(item, identifiers, now)
        remaining = max(0, item.amount - math.floor(_weighted(item, counts, now)))
        _, previous, current = counts
        if not (previous or current):
            return WindowStats(now, remaining)
        expiry = item.get_expiry()
        previous_reset_in = current_reset_in = math.inf
        if previous:
            previous_reset_in = _previous_expires_in(expiry, now) % (expiry / previous)
        if current:
            current_reset_in = ((1 - ((now / expiry) % 1)) * expiry + expiry) % expiry
        return WindowStats(now + min(previous_reset_in, current_reset_in), remaining)

    def _counted(self, item: RateLimitItem, identifiers: tuple[str, ...], now: float) -> list[int]:
        """The counts of `identifiers` under `item`, moved on to the window `now` is in."""
        if now >= self._sweep_at:
            self._sweep(now)
        window = int(now / item.get_expiry())
        counts = self._counts.setdefault((item, identifiers), [window, 0, 0])
        if counts[0] != window:
            counts[1] = counts[2] if counts[0] == window - 1 else 0
            counts[0], counts[2] = window, 0
        return counts

    def _sweep(self, now: float) -> None:
        """Forget the counts whose windows are both past: an address sent a request once
        must not be kept for ever."""
        self._sweep_at = now + SWEEP_EVERY_SECONDS
        for (item, identifiers), (window, _, _) in list(self._counts.items()):
            if window < int(now / item.get_expiry()) - 1:
                del self._counts[item, identifiers]


def _weighted(item: RateLimitItem, counts: list[int], now: float) -> float:
    """The previous window's count, weighed by how much of it the sliding window still
    covers, and the current window's."""
    _, previous, current = counts
    expiry = item.get_expiry()
    previous_expires_in = _previous_expires_in(expiry, now) if previous else 0.0
    return previous * previous_expires_in / expiry + current


def _previous_expires_in(expiry: int, now: float) -> float:
    return (1 - (((now - expiry) / expiry) % 1)) * expiry


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
