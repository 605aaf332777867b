"""The request's body, read whole and checked before Connexion sees it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.middleware import HTTPMiddleware
from users_api.problems import invalid

CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
FRAMING = (b"content-length", b"transfer-encoding")


class RequestBody(HTTPMiddleware):
    """413 for a body larger than `max_bytes` (by Content-Length, and by counting the bytes of a
    chunked one); 400 for a body sent to an operation that takes none (every GET and DELETE
    here; `operations_at` gives a path's operations by method); 415 for a body without a
    Content-Type. The body goes on with an exact Content-Length: Connexion validates a body
    only when one is declared.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_bytes: int,
        operations_at: Callable[[str], Mapping[str, Any]],
    ) -> None:
        super().__init__(app)
        self.max_bytes = max_bytes
        self.operations_at = operations_at

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and not CONTENT_LENGTH.fullmatch(declared.decode("latin-1")):
            raise invalid("Content-Length is not a number.", [])
        if declared is not None and int(declared) > self.max_bytes:
            raise self._too_large()
        body = b""
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
            if len(body) > self.max_bytes:
                raise self._too_large()
        # Where no operation matches, the router answers 404 or 405 whatever the body.
        operation = self.operations_at(scope["path"]).get(scope["method"]) if body else None
        if operation is not None and "requestBody" not in operation:
            raise invalid("This operation takes no request body.", [])
        if operation is not None and b"content-type" not in headers:
            raise UnsupportedMediaTypeProblem("A request body needs a Content-Type.")

        framed = [(name, value) for name, value in scope["headers"] if name not in FRAMING]
        framed.append((b"content-length", str(len(body)).encode()))
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": framed}, replay, send)

    def _too_large(self) -> ProblemException:
        return ProblemException(
            status=413, detail=f"The request body is larger than {self.max_bytes} bytes."
        )
