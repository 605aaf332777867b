"""Middleware for how messages are framed, which Connexion leaves to the app."""

from __future__ import annotations

import re
from collections.abc import Callable

from connexion.exceptions import ProblemException, UnsupportedMediaTypeProblem
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from users_api.problems import invalid

MAX_TARGET_BYTES = 4096
"""The longest request target (path and query) answered: longer gets 414. It also keeps every
integer in a path below the 4,300 digits past which Python refuses to convert one (a 500 in
the router, before any validation)."""

CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""No path of the API holds a control character; Connexion's router and Flask's disagree on
whether a path segment may (a 500 between them)."""


class RequestFraming:
    """Refuses a request target longer than `MAX_TARGET_BYTES` with 414, a body larger than
    `max_bytes` with 413 (by Content-Length, and by counting the bytes of a chunked one), a body
    sent to an operation that takes none (`takes_body` says which: every GET and DELETE here)
    with 400, and a body without a Content-Type with 415, then passes the body on with an exact
    Content-Length: Connexion validates a body only when one is declared. A second
    Content-Type is a 400; a path with an empty segment (`//users/1`, `/users/1/`) or a control
    character (`/problems/a%0Ab`) is a 404.
    (The console's files under /ui/ are answered before this, by Swagger UI's middleware.)
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, takes_body: Callable[[str, str], bool | None]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.takes_body = takes_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("raw_path") or scope["path"].encode()
        if len(path) + len(scope["query_string"]) > MAX_TARGET_BYTES:
            raise ProblemException(
                status=414,
                detail=f"The request target is longer than {MAX_TARGET_BYTES} bytes.",
            )
        if CONTROL.search(scope["path"]):
            raise ProblemException(
                status=404, detail="No resource has a control character in its path."
            )
        if "//" in scope["path"] or (scope["path"].endswith("/") and scope["path"] != "/"):
            # Not the path without the extra slash: the routers would redirect there, to
            # whichever host the client's `Host` header names.
            raise ProblemException(
                status=404,
                detail="No resource has a path with an empty segment.",
            )
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and not CONTENT_LENGTH.fullmatch(declared):
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
        if body:
            takes_body = self.takes_body(scope["method"], scope["path"])
            if takes_body is False:
                raise invalid("This operation takes no request body.", [])
            if takes_body and "content-type" not in headers:
                raise UnsupportedMediaTypeProblem("A request body needs a Content-Type.")
        if len(headers.getlist("content-type")) > 1:
            # Connexion's validator would read the first, Flask both joined: never the same body.
            raise invalid("A request may have one Content-Type.", [])

        framed = _framed(scope["headers"], len(body))
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
            detail=f"The request body is larger than {self.max_bytes} bytes.",
        )


def _framed(headers: list[tuple[bytes, bytes]], length: int) -> list[tuple[bytes, bytes]]:
    """The request's headers with an exact Content-Length, and each header sent on several
    lines as one, its values comma-joined (RFC 9110, section 5.3): else Connexion's validators,
    Flask and the handlers would each read another line of it (the first, or all joined).

    The media type is lowercased: it is case-insensitive, but Connexion looks the body's
    schema up by it as written, and skipped validating `APPLICATION/JSON`."""
    values: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name == b"content-type":
            media_type, semicolon, parameters = value.partition(b";")
            value = media_type.strip().lower() + semicolon + parameters
        if name not in (b"content-length", b"transfer-encoding"):
            values.setdefault(name, []).append(value)
    combined = [(name, b", ".join(lines)) for name, lines in values.items()]
    return [*combined, (b"content-length", str(length).encode())]


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
