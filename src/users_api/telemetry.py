"""One access log line and one set of metrics per request; /metrics itself is served here, to
the operator's networks only, and for GET only."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.connexion_adapter import key_name, operation_id
from users_api.handlers.problem_types import WRITE_OUTCOME_UNKNOWN
from users_api.metrics import Metrics
from users_api.problems import problem_response
from users_api.ratelimit import WRITES

logger = logging.getLogger("users.access")

AUTH_FAILURES = {401, 403}
CUT_SHORT = "The service stopped before this request was answered; retry it."
CUT_SHORT_WRITE = (
    "The service stopped before this request was answered: the change may or may not have been "
    "made. Read before retrying; a create sent again with its Idempotency-Key is safe."
)
NO_OPERATION = "(no operation)"
"""The access message's path when no operation matched; the path itself is in `path`."""
CLIENT_CLOSED_REQUEST = 499
"""What the access log and the metrics say of a request its client abandoned (nginx's code)."""


class RequestTelemetry:
    """Outside Connexion's exception handling, so it sees every final status.

    The log line names the operation as the spec does, by operationId and path template, so
    ids stay out of what logs are grouped by (the raw path only when no operation matched),
    and it never holds a header's value.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        templates: Mapping[str, str],
        metrics_networks: Sequence[str],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates
        """Path template of each operationId."""
        self.metrics_networks = [ipaddress.ip_network(network) for network in metrics_networks]
        """Who may read /metrics; to anyone else it does not exist (the app's 404)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and self._may_scrape(scope):
            if scope["method"] == "GET":
                await self.metrics.endpoint(scope, receive, send)
            else:
                await problem_response(405, "/metrics answers GET only.", {"Allow": "GET"})(
                    scope, receive, send
                )
            return
        started = time.perf_counter()
        status, sent_bytes, responded = 500, 0, False

        async def measure(message: Message) -> None:
            nonlocal status, sent_bytes, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        # Connexion's router records the operation in the scope's extensions, which the copy
        # of the scope it routes shares with this one.
        scope.setdefault("extensions", {})
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, measure)
            if not responded:  # the client left before its request was whole: no one to answer
                status = CLIENT_CLOSED_REQUEST
        except asyncio.CancelledError:
            # The shutdown grace ended with this request unanswered (its body still arriving,
            # say) and uvicorn cancelled it: a 503 to retry elsewhere, not uvicorn's bare 500.
            if responded:
                raise
            writes = scope["method"] in WRITES
            await problem_response(
                503,
                CUT_SHORT_WRITE if writes else CUT_SHORT,
                {"Retry-After": "1", "Connection": "close"},
                kind=WRITE_OUTCOME_UNKNOWN if writes else None,
            )(scope, receive, measure)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            operation = operation_id(scope)
            key = key_name(scope)
            self.metrics.requests.labels(
                operation or "none", scope["method"], status, key or "none"
            ).inc()
            self.metrics.latency.labels(operation or "none").observe(seconds)
            # A path no operation matched (Swagger UI's files, a typo) has no template: it is
            # in the line once, in `path` (users_api.logs shows it to a person).
            template = self.templates[operation] if operation else None
            path = template or scope["path"]
            client = scope.get("client")
            logger.log(
                _level(status),
                "%s %s %s",
                scope["method"],
                template or NO_OPERATION,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "operation": operation,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "response_bytes": sent_bytes,
                    "client": client[0] if client else None,
                    "key": key,
                },
            )

    def _may_scrape(self, scope: Scope) -> bool:
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:
            return False
        return address is not None and any(address in net for net in self.metrics_networks)


def _level(status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status in AUTH_FAILURES:
        return logging.WARNING
    return logging.INFO
