"""Headers every response gets, or loses, whatever answered it."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from users_api.middleware import HTTPMiddleware


class ResponseHeaders(HTTPMiddleware):
    """`X-Content-Type-Options: nosniff` everywhere, and `Cache-Control: private, no-cache` on
    the users resource: a browser may keep a user but must ask first (`If-None-Match` with its
    `ETag`, answered `304` while it is current), and no shared cache keeps what a key read.
    No Content-Type on a 204 or 304, which have no body (Connexion gives them one)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        users = scope["path"] == "/users" or scope["path"].startswith("/users/")

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if users:
                    headers["Cache-Control"] = "private, no-cache"
                if message["status"] in (204, 304):
                    del headers["Content-Type"]
            await send(message)

        await self.app(scope, receive, add_headers)
