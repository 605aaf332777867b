"""The kinds of problem the service answers, each with a stable `type` URI that a client can
branch on, and the short page served at that URI.

The URIs are relative (`/problems/username-taken`): RFC 9457 resolves them against the
request's URL, so each names a page of the server that answered, whatever host a load
balancer gives it. A problem with no kind of its own (a path that matches no route, a method a
path does not take, a failure of the server's own) is `about:blank`, titled by its status.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    meaning: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


VALIDATION = ProblemType(
    "validation",
    400,
    "Invalid request",
    "A parameter or the body does not match the API's description; `errors` lists each "
    "failure, by `pointer` into the body or by `parameter`, and why.",
)
UNAUTHORIZED = ProblemType(
    "unauthorized",
    401,
    "Unauthorized",
    "The `Authorization: Bearer` key is missing or unknown.",
)
INSUFFICIENT_SCOPE = ProblemType(
    "insufficient-scope",
    403,
    "Forbidden",
    "The key is valid but lacks the scope the operation needs (`users:read` or `users:write`).",
)
USER_NOT_FOUND = ProblemType(
    "user-not-found",
    404,
    "User not found",
    "No user has this id: it never existed, or it was deleted (ids are never reused).",
)
USERNAME_TAKEN = ProblemType(
    "username-taken",
    409,
    "Username taken",
    "Another user has this username, compared case-insensitively; `holder` is that user's path.",
)
IDEMPOTENCY_KEY_IN_USE = ProblemType(
    "idempotency-key-in-use",
    409,
    "Request in progress",
    "A request with this `Idempotency-Key` is still being answered; retry after `Retry-After` "
    "seconds to get its outcome.",
)
PRECONDITION_FAILED = ProblemType(
    "precondition-failed",
    412,
    "Precondition Failed",
    "`If-Match` names none of the user's current `ETag`: it changed since it was read. Read it "
    "again, and send the new `ETag`.",
)
CONTENT_TOO_LARGE = ProblemType(
    "content-too-large",
    413,
    "Content Too Large",
    "The request body is larger than the server accepts.",
)
UNSUPPORTED_MEDIA_TYPE = ProblemType(
    "unsupported-media-type",
    415,
    "Unsupported Media Type",
    "The request body is not `application/json`.",
)
IDEMPOTENCY_KEY_REUSED = ProblemType(
    "idempotency-key-reused",
    422,
    "Idempotency-Key reused",
    "This `Idempotency-Key` came before with a different request body; a key names one "
    "request. Use a new key for a new request.",
)
RATE_LIMITED = ProblemType(
    "rate-limited",
    429,
    "Too Many Requests",
    "Over a rate limit: writes per API key, or requests per client address. Retry after "
    "`Retry-After` seconds.",
)
UNAVAILABLE = ProblemType(
    "unavailable",
    503,
    "Service Unavailable",
    "The service cannot answer now: its user store cannot be reached, stayed busy past its "
    "timeout or is not ready yet, or the server is shutting down. Nothing was changed. Retry "
    "after `Retry-After` seconds.",
)

PROBLEM_TYPES = {
    kind.slug: kind
    for kind in (
        VALIDATION,
        UNAUTHORIZED,
        INSUFFICIENT_SCOPE,
        USER_NOT_FOUND,
        USERNAME_TAKEN,
        IDEMPOTENCY_KEY_IN_USE,
        PRECONDITION_FAILED,
        CONTENT_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        IDEMPOTENCY_KEY_REUSED,
        RATE_LIMITED,
        UNAVAILABLE,
    )
}


async def get_problem_type(problem_type: str) -> tuple[Any, int, dict[str, str]]:
    """The page at a problem type's URI, for the person reading a problem."""
    kind = PROBLEM_TYPES[problem_type]  # the spec's enum has let only these through
    meaning = CODE.sub(r"<code>\1</code>", html.escape(kind.meaning))
    page = PAGE.format(title=html.escape(kind.title), status=kind.status, meaning=meaning)
    return page, 200, {"Content-Type": "text/html"}


CODE = re.compile(r"`([^`]+)`")
PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>{title}</title>
<h1>{title}</h1>
<p>HTTP status {status}.</p>
<p>{meaning}</p>
<p>Every error of the Users API is an RFC 9457 problem; its <code>type</code> names its kind.
The API's description, with every kind, is at <a href="/openapi.json">/openapi.json</a>.</p>
</html>
"""
