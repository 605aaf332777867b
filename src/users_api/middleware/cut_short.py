"""A request still unanswered when the shutdown grace ends is answered 503, not uvicorn's 500."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from users_api.handlers.problem_types import WRITE_OUTCOME_UNKNOWN
from users_api.middleware import HTTPMiddleware
from users_api.middleware.rate_limits import WRITES
from users_api.problems import RETRY_AFTER_SECONDS, problem_response

CUT_SHORT = "The service stopped before this request was answered; retry it."
CUT_SHORT_WRITE = (
    "The service stopped before this request was answered: the change may or may not have been "
    "made. Read before retrying; a create sent again with its Idempotency-Key is safe."
)


class CutShort(HTTPMiddleware):
    """uvicorn cancels the requests in flight when the grace ends: each that has not begun its
    answer gets a 503 to retry elsewhere (a write: of unknown outcome)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        responded = False

        async def watch(message: Message) -> None:
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            if responded:
                raise
            writes = scope["method"] in WRITES
            await problem_response(
                503,
                CUT_SHORT_WRITE if writes else CUT_SHORT,
                {"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"},
                kind=WRITE_OUTCOME_UNKNOWN if writes else None,
            )(scope, receive, send)
