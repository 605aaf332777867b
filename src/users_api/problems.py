"""Every error the service answers, as one RFC 9457 `application/problem+json` shape, its kind
(`type`) from the catalogue in handlers/problem_types.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from asgi_correlation_id import correlation_id
from connexion import AbstractApp
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from users_api import store
from users_api.handlers import problem_types as kinds
from users_api.handlers.problem_types import ProblemType

logger = logging.getLogger(__name__)

KIND_OF_STATUS = {
    kind.status: kind
    for kind in (
        kinds.VALIDATION,
        kinds.UNAUTHORIZED,
        kinds.INSUFFICIENT_SCOPE,
        kinds.CONTENT_TOO_LARGE,
        kinds.UNSUPPORTED_MEDIA_TYPE,
        kinds.RATE_LIMITED,
        kinds.UNAVAILABLE,
    )
}
"""The kind of a problem that names none (Connexion's own, Starlette's): each of these statuses
means one thing here."""
KIND_OF_STORE_ERROR: dict[type[store.StoreError], ProblemType] = {
    store.UserNotFound: kinds.USER_NOT_FOUND,
    store.UsernameTaken: kinds.USERNAME_TAKEN,
    store.PreconditionFailed: kinds.PRECONDITION_FAILED,
    store.StoreUnavailable: kinds.UNAVAILABLE,
    store.WriteOutcomeUnknown: kinds.WRITE_OUTCOME_UNKNOWN,
    store.IdempotencyKeyReused: kinds.IDEMPOTENCY_KEY_REUSED,
    store.IdempotencyKeyInUse: kinds.IDEMPOTENCY_KEY_IN_USE,
    store.IdsExhausted: kinds.IDS_EXHAUSTED,
}
RETRY_AFTER_SECONDS = 1
"""How long a client should wait after a 503, or a 409 for a request still in flight, before it
tries again."""


def invalid(detail: str, errors: Sequence[Mapping[str, str]]) -> ProblemException:
    """A 400 that lists every failing field."""
    return ProblemException(status=400, detail=detail, ext={"errors": errors})


def problem(
    status: int,
    detail: str,
    *,
    kind: ProblemType | None = None,
    extensions: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ConnexionResponse:
    body = problem_body(status, detail, kind, extensions)
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return ConnexionResponse(
        status_code=status,
        mimetype="application/problem+json",
        body=json.dumps(body),
        headers=headers,
    )


def problem_body(
    status: int,
    detail: str,
    kind: ProblemType | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem's JSON: `kind`, else the one its status means, else `about:blank`;
    `instance` names the request by its id; `extensions` (`errors`, say) follow."""
    kind = kind or KIND_OF_STATUS.get(status)
    body: dict[str, Any] = {
        "type": kind.uri if kind else "about:blank",
        "title": kinds.title_of(status),
        "status": status,
        "detail": detail,
        "instance": f"urn:request:{correlation_id.get()}",
    }
    body.update({name: value for name, value in (extensions or {}).items() if value})
    return body


def problem_response(
    status: int, detail: str, headers: Mapping[str, str], *, kind: ProblemType | None = None
) -> Response:
    """A problem answered outside Connexion's error handling, as an ASGI app."""
    return Response(
        json.dumps(problem_body(status, detail, kind)),
        status_code=status,
        headers=dict(headers),
        media_type="application/problem+json",
    )


def install_error_handlers(
    app: AbstractApp,
    operations_at: Callable[[str], Mapping[str, Any]],
    on_store_error_seen: Callable[[store.StoreError], object],
) -> None:
    """Route every exception to one problem response; `operations_at` gives a path's
    operations by method (a 405's `Allow`), and `on_store_error_seen` hears of each store error
    (for the metrics). The handlers are coroutines: Connexion runs any other in a thread."""

    async def on_problem(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, ProblemException)
        return problem(exc.status, str(exc.detail), extensions=exc.ext, headers=exc.headers)

    async def on_store_error(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, store.StoreError)
        on_store_error_seen(exc)
        kind = next(
            (KIND_OF_STORE_ERROR[cls] for cls in type(exc).__mro__ if cls in KIND_OF_STORE_ERROR),
            None,
        )
        if kind is None:  # not one a request can meet (an import's clash of ids)
            return await on_unexpected(request, exc)
        headers, extensions = {}, {}
        if isinstance(exc, store.StoreUnavailable):
            logger.warning("store unavailable: %s", exc.reason)
        if isinstance(exc, store.StoreUnavailable | store.IdempotencyKeyInUse):
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if isinstance(exc, store.UsernameTaken) and exc.holder is not None:
            extensions["holder"] = f"/users/{exc.holder}"  # any key that may write may read
        return problem(kind.status, str(exc), kind=kind, extensions=extensions, headers=headers)

    async def on_http_exception(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405 and (methods := operations_at(request.url.path)):
            headers["Allow"] = ", ".join(methods)  # stock names only one of a path's methods
        return problem(exc.status_code, exc.detail, headers=headers)

    async def on_unexpected(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem(500, "The server failed to answer this request.")

    app.add_error_handler(ProblemException, on_problem)
    app.add_error_handler(store.StoreError, on_store_error)
    app.add_error_handler(HTTPException, on_http_exception)
    app.add_error_handler(Exception, on_unexpected)
