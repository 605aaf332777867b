"""Request targets no operation could serve, refused before any router reads them."""

from __future__ import annotations

import re

from connexion.exceptions import ProblemException
from starlette.types import Receive, Scope, Send

from users_api.middleware import HTTPMiddleware

MAX_TARGET_BYTES = 4096
"""The longest request target (path and query) answered: longer gets 414. It also keeps every
integer in a path below the 4,300 digits past which Python refuses to convert one (a 500 in
the router, before any validation)."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
"""No path of the API holds a control character; Connexion's router and Flask's disagree on
whether a path segment may (a 500 between them)."""


class RequestTarget(HTTPMiddleware):
    """414 for a target longer than `MAX_TARGET_BYTES`; 404 for a path with a control character
    (`/problems/a%0Ab`) or an empty segment (`//users/1`, `/users/1/`)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        _check(scope)
        await self.app(scope, receive, send)


def _check(scope: Scope) -> None:
    path = scope.get("raw_path") or scope["path"].encode()
    if len(path) + len(scope["query_string"]) > MAX_TARGET_BYTES:
        raise ProblemException(
            status=414, detail=f"The request target is longer than {MAX_TARGET_BYTES} bytes."
        )
    if CONTROL.search(scope["path"]):
        raise ProblemException(
            status=404, detail="No resource has a control character in its path."
        )
    if "//" in scope["path"] or (scope["path"].endswith("/") and scope["path"] != "/"):
        # Not the path without the extra slash: the routers would redirect there, to whichever
        # host the client's `Host` header names.
        raise ProblemException(status=404, detail="No resource has a path with an empty segment.")
