"""`/healthz` and `/readyz`, answered on the event loop, ahead of whatever can make a request
queue.

`FlaskApp` runs every request on one of its WSGI threads; when requests wait on a stalled store,
they hold all of them, and a probe queued behind them would tell the load balancer that a live
process is dead, or answer its readiness late. So the probes' handlers are called here, by both
app classes alike; the operations stay in the spec, where clients read them. Liveness answers
before it reads a body; a readiness probe that carries one goes on, to be refused like any
other request with a body an operation does not take.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.connexion_adapter import name_operation
from users_api.handlers.health import check_health, check_readiness
from users_api.handlers.problem_types import UNAVAILABLE
from users_api.middleware import HTTPMiddleware
from users_api.problems import RETRY_AFTER_SECONDS, problem_response
from users_api.store import StoreError, StoreUnavailable, UserStore

logger = logging.getLogger(__name__)

HEAD_OR_GET = ("HEAD", "GET")


class Probes(HTTPMiddleware):
    def __init__(
        self, app: ASGIApp, *, store: UserStore, on_store_error: Callable[[StoreError], object]
    ) -> None:
        super().__init__(app)
        self.store = store
        self.on_store_error = on_store_error

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if (
            path not in ("/healthz", "/readyz")
            or scope["method"] not in HEAD_OR_GET
            or (path == "/readyz" and _has_body(Headers(scope=scope)))
        ):
            await self.app(scope, receive, send)
            return
        if path == "/healthz":
            name_operation(scope, check_health.__name__)  # for the access log and the metrics
            body, status, headers = await check_health()
            await JSONResponse(body, status, headers)(scope, receive, send)
            return
        name_operation(scope, check_readiness.__name__)
        try:
            body, status, headers = await check_readiness(store=self.store)
        except StoreUnavailable as error:
            self.on_store_error(error)
            logger.warning("store unavailable: %s", error.reason)
            retry = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            await problem_response(503, str(error), retry, kind=UNAVAILABLE)(scope, receive, send)
            return
        await JSONResponse(body, status, headers)(scope, receive, send)


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
