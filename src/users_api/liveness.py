"""`GET /healthz`, answered ahead of whatever can make a request queue.

`FlaskApp` runs every request on one of its 10 WSGI threads; when requests wait on a stalled
store, they hold all of them, and a liveness probe queued behind them would tell the load
balancer that a live process is dead. So the probe's handler is called here, on the event loop,
by both app classes alike; the operation stays in the spec, where clients read it.
"""

from __future__ import annotations

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.handlers.health import check_health

PATH = "/healthz"
HEAD_OR_GET = ("HEAD", "GET")
OPERATION_ID = "users_api.handlers.health.check_health"
"""As Connexion's router would name it, for the access log and the metrics."""


class Liveness:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in HEAD_OR_GET:
            await self.app(scope, receive, send)
            return
        scope.setdefault("extensions", {})[ROUTING_CONTEXT] = {"operation_id": OPERATION_ID}
        body, status, headers = await check_health()
        await JSONResponse(body, status, headers)(scope, receive, send)
