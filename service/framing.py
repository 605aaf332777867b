"""Middleware for how messages are framed, which Connexion leaves to the app."""

from __future__ import annotations

from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.problems import invalid


class RequestBodyGuard:
    """Refuses a body larger than `max_bytes` with 413 (by Content-Length, and by counting the
    bytes of a chunked one) and a body without a Content-Type with 415, then passes the body
    on with an exact Content-Length: Connexion validates a body only when one is declared.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and not declared.isdigit():
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
        if body and "content-type" not in headers:
            raise UnsupportedMediaTypeProblem("A request body needs a Content-Type.")

        framed = [
            (k, v)
            for k, v in scope["headers"]
            if k not in (b"content-length", b"transfer-encoding")
        ]
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
            status=413,
            title="Content Too Large",
            detail=f"The request body is larger than {self.max_bytes} bytes.",
        )


class BodilessResponses:
    """Drops the Content-Type that Connexion puts on 204 and 304 responses, which have no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_framed(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] in (204, 304):
                message["headers"] = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"content-type"
                ]
            await send(message)

        await self.app(scope, receive, send_framed)
