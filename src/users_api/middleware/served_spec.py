"""/openapi.json and /openapi.yaml: the repo's document itself, which the console reads.

Connexion's own copy inlines every `$ref` (a client generated from it gets a model per
response instead of `User`) and rewrites `servers`. An ASGI middleware serves it, so the
same code works under Connexion's `FlaskApp` and its `AsyncApp`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from users_api.middleware import HTTPMiddleware


class ServeSpecAsWritten(HTTPMiddleware):
    """`text` is the spec file as read; `document`, the same parsed."""

    def __init__(self, app: ASGIApp, *, text: str, document: dict[str, Any]) -> None:
        super().__init__(app)
        self.documents = {
            "/openapi.json": Response(json.dumps(document), media_type="application/json"),
            "/openapi.yaml": Response(text, media_type="text/yaml"),
        }

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = self.documents.get(scope["path"])
        if document is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(405, headers={"Allow": "GET, HEAD"})
        await document(scope, receive, send)
