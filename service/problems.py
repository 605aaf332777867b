"""Every error the service answers, as one RFC 9457 `application/problem+json` shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from asgi_correlation_id import correlation_id
from connexion import AbstractApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from users_api.store import (
    PreconditionFailed,
    SchemaNotCurrent,
    StoreError,
    StoreUnavailable,
    UserIdTaken,
    UsernameTaken,
    UserNotFound,
)

logger = logging.getLogger(__name__)

STORE_ERROR_STATUS: dict[type[StoreError], int] = {
    UserNotFound: 404,
    UsernameTaken: 409,
    UserIdTaken: 409,
    PreconditionFailed: 412,
    StoreUnavailable: 503,
    SchemaNotCurrent: 503,
}
RETRY_AFTER_SECONDS = 1
"""How long a client should wait after a 503 before it tries again."""


def invalid(detail: str, errors: Sequence[Mapping[str, str]]) -> ProblemException:
    """A 400 that lists every failing field."""
    return ProblemException(status=400, title="Bad Request", detail=detail, ext={"errors": errors})


def problem(
    request: ConnexionRequest,
    status: int,
    detail: str,
    *,
    errors: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ConnexionResponse:
    body = problem_body(status, detail, errors)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return ConnexionResponse(
        status_code=status,
        mimetype="application/problem+json",
        content_type="application/problem+json",
        body=json.dumps(body),
        headers=headers,
    )


def problem_body(
    status: int, detail: str, errors: Sequence[Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """The problem's JSON: `instance` names the request by its id."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": f"urn:request:{correlation_id.get()}",
    }
    if errors:
        body["errors"] = list(errors)
    return body


def problem_response(status: int, detail: str, headers: Mapping[str, str]) -> Response:
    """A problem answered outside Connexion's error handling, as an ASGI app."""
    return Response(
        json.dumps(problem_body(status, detail)),
        status_code=status,
        headers=dict(headers),
        media_type="application/problem+json",
    )


def install_error_handlers(
    app: AbstractApp,
    allowed_methods: Callable[[str], list[str]],
    on_store_error_seen: Callable[[StoreError], object],
) -> None:
    """Route every exception to one problem response; `allowed_methods` gives a path's `Allow`,
    and `on_store_error_seen` hears of each store error (for the metrics)."""

    def on_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        errors = (exc.ext or {}).get("errors")
        return problem(request, exc.status, str(exc.detail), errors=errors, headers=exc.headers)

    def on_store_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, StoreError)
        on_store_error_seen(exc)
        headers = {}
        if isinstance(exc, StoreUnavailable):
            logger.warning("store unavailable: %s", exc.reason)
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return problem(request, STORE_ERROR_STATUS[type(exc)], str(exc), headers=headers)

    def on_http_exception(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := allowed_methods(request.url.path)):
            headers["Allow"] = ", ".join(methods)  # stock names only one of a path's methods
        return problem(request, exc.status_code, exc.detail, headers=headers)

    def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(request, 500, "The server failed to answer this request.")

    app.add_error_handler(ProblemException, on_problem)
    app.add_error_handler(StoreError, on_store_error)
    app.add_error_handler(HTTPException, on_http_exception)
    app.add_error_handler(Exception, on_unexpected)
