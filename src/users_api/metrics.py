"""Prometheus metrics, served at /metrics.

With several workers, `users-api serve` points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder
before they start: each worker then writes its samples there, and /metrics, whichever worker
answers it, adds up every worker's (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from starlette.types import ASGIApp

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """One app's metrics, in a registry of its own so that apps in one process don't mix."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.requests = Counter(
            "users_http_requests",
            "Requests answered, by the spec's operationId (none: no operation matched) and the "
            "name of the API key (none: no key was accepted).",
            ["operation", "method", "status", "key"],
            registry=registry,
        )
        self.latency = Histogram(
            "users_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["operation"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.in_flight = Gauge(
            "users_http_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.store_errors = Counter(
            "users_store_errors",
            "Store calls that failed, by error: not found, conflicts, unavailable.",
            ["error"],
            registry=registry,
        )
        self.unlimited = Counter(
            "users_rate_limit_storage_failures",
            "Requests let through unlimited because the rate limits' storage failed or stalled.",
            registry=registry,
        )
        self._counted: dict[tuple[str, str, int, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}
        exposed = registry
        if os.environ.get(MULTIPROCESS_DIR):  # every worker's samples, added up
            exposed = CollectorRegistry()
            MultiProcessCollector(exposed)
        self.endpoint: ASGIApp = make_asgi_app(exposed)

    def answered(self, operation: str, method: str, status: int, key: str, seconds: float) -> None:
        """One request answered. Each label set's child is looked up once: prometheus-client's
        `labels()` checks and locks on every call, about as long as the count itself."""
        labels = (operation, method, status, key)
        counted = self._counted.get(labels)
        if counted is None:
            counted = self._counted[labels] = self.requests.labels(*labels)
        counted.inc()
        timed = self._timed.get(operation)
        if timed is None:
            timed = self._timed[operation] = self.latency.labels(operation)
        timed.observe(seconds)

    def close(self) -> None:
        """A worker that stops takes its in-flight count with it."""
        if os.environ.get(MULTIPROCESS_DIR):
            mark_process_dead(os.getpid())
