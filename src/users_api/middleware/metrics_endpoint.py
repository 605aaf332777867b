"""`/metrics`, for the operator's networks only, and for GET only; to anyone else it does not
exist (the app's 404)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.metrics import Metrics
from users_api.middleware import HTTPMiddleware
from users_api.problems import problem_response

PATH = "/metrics"


class MetricsEndpoint(HTTPMiddleware):
    def __init__(self, app: ASGIApp, *, metrics: Metrics, networks: Sequence[str]) -> None:
        super().__init__(app)
        self.metrics = metrics
        self.networks = [ipaddress.ip_network(network) for network in networks]

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != PATH or not self._may_scrape(scope):
            await self.app(scope, receive, send)
        elif scope["method"] == "GET":
            await self.metrics.endpoint(scope, receive, send)
        else:
            answer = problem_response(405, "/metrics answers GET only.", {"Allow": "GET"})
            await answer(scope, receive, send)

    def _may_scrape(self, scope: Scope) -> bool:
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:
            return False
        return address is not None and any(address in network for network in self.networks)
