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

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.connexion_adapter import name_operation
from users_api.handlers.health import check_health, check_readiness
from users_api.middleware import HTTPMiddleware
from users_api.store import UserStore

HEAD_OR_GET = ("HEAD", "GET")


class Probes(HTTPMiddleware):
    """A store that cannot be reached makes `/readyz` raise, for the error handlers to answer
    and count as they do for every operation."""

    def __init__(self, app: ASGIApp, *, store: UserStore) -> None:
        super().__init__(app)
        self.store = store

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
        else:
            name_operation(scope, check_readiness.__name__)
            body, status, headers = await check_readiness(store=self.store)
        await JSONResponse(body, status, headers)(scope, receive, send)


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
