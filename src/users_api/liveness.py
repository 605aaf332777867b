"""`GET /healthz`, answered ahead of whatever can make a request queue.

`FlaskApp` runs every request on one of its 10 WSGI threads; when requests wait on a stalled
store, they hold all of them, and a liveness probe queued behind them would tell the load
balancer that a live process is dead. So the probe's handler is called here, on the event loop,
by both app classes alike; the operation stays in the spec, where clients read it.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.connexion_adapter import name_operation
from users_api.handlers.health import check_health

PATH = "/healthz"
HEAD_OR_GET = ("HEAD", "GET")


class Liveness:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] not in HEAD_OR_GET:
            await self.app(scope, receive, send)
            return
        name_operation(scope, check_health.__name__)  # for the access log and the metrics
        body, status, headers = await check_health()
        await JSONResponse(body, status, headers)(scope, receive, send)
