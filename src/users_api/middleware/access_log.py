"""One access log line and one set of request metrics per request, with its final status."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.connexion_adapter import follow_routing, key_name, operation_id
from users_api.logs import AccessLines
from users_api.metrics import Metrics
from users_api.middleware import HTTPMiddleware

AUTH_FAILURES = {401, 403}
NO_OPERATION = "(no operation)"
"""The message's path when no operation matched: the raw path is in `path`, once."""
CLIENT_CLOSED_REQUEST = 499
"""What the access log and the metrics say of a request its client abandoned (nginx's code)."""


class AccessLog(HTTPMiddleware):
    """Outside Connexion's exception handling, so it sees every final status.

    The line names the operation as the spec does, by operationId and path template, so ids
    stay out of what logs are grouped by (the raw path only when no operation matched), and it
    never holds a header's value.
    """

    def __init__(
        self, app: ASGIApp, *, lines: AccessLines, metrics: Metrics, templates: Mapping[str, str]
    ) -> None:
        super().__init__(app)
        self.lines = lines
        self.metrics = metrics
        self.templates = templates
        """Path template of each operationId."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status, sent_bytes, responded = 500, 0, False

        async def measure(message: Message) -> None:
            nonlocal status, sent_bytes, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            elif message["type"] == "http.response.body":
                sent_bytes += len(message.get("body", b""))
            await send(message)

        follow_routing(scope)
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, measure)
            if not responded:  # the client left before its request was whole: no one to answer
                status = CLIENT_CLOSED_REQUEST
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            operation, key = operation_id(scope), key_name(scope)
            self.metrics.answered(
                operation or "none", scope["method"], status, key or "none", seconds
            )
            template = self.templates[operation] if operation else None
            client = scope.get("client")
            self.lines.write(
                _level(status),
                f"{scope['method']} {template or NO_OPERATION} {status}",
                {
                    "method": scope["method"],
                    "path": template or scope["path"],
                    "operation": operation,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "response_bytes": sent_bytes,
                    "client": client[0] if client else None,
                    "key": key,
                },
            )


def _level(status: int) -> int:
    if status >= 500:
        return logging.ERROR
    if status in AUTH_FAILURES:
        return logging.WARNING
    return logging.INFO
