"""The request's headers as every reader downstream reads them alike."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from users_api.middleware import HTTPMiddleware
from users_api.problems import invalid


class RequestHeaders(HTTPMiddleware):
    """Each header sent on several lines becomes one, its values comma-joined (RFC 9110,
    section 5.3): else Connexion's validators, Flask and the handlers would each read another
    line of it (the first, or all joined). A second Content-Type is a 400, for the same reason.

    The media type is lowercased: it is case-insensitive, but Connexion looks the body's schema
    up by it as written, and would skip validating `APPLICATION/JSON`.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        lines: dict[bytes, list[bytes]] = {}
        for name, value in scope["headers"]:
            lines.setdefault(name, []).append(value)
        if len(lines.get(b"content-type", ())) > 1:
            raise invalid("A request may have one Content-Type.", [])
        if b"content-type" in lines:
            media_type, semicolon, parameters = lines[b"content-type"][0].partition(b";")
            lines[b"content-type"] = [media_type.strip().lower() + semicolon + parameters]
        headers = [(name, b", ".join(values)) for name, values in lines.items()]
        await self.app({**scope, "headers": headers}, receive, send)
