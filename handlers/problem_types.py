"""The kinds of problem the service answers, each with a stable `type` URI that a client can
branch on, and the short page served at that URI.

The URIs are relative (`/problems/username-taken`): RFC 9457 resolves them against the
request's URL, so each names a page of the server that answered, whatever host a load
balancer gives it (behind a proxy that adds a path prefix, they would need it too). A problem
with no kind of its own (a path that matches no route, a method a path does not take, a
failure of the server's own) is `about:blank`.

Every problem's title is its status's, as RFC 9110 names it: the `type` tells kinds apart,
and titles stay what clients of 1.0, when every type was `about:blank`, saw.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

RFC_9110_TITLES = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}
"""Where Python's `HTTPStatus` still has the phrase that RFC 9110 replaced."""


def title_of(status: int) -> str:
    return RFC_9110_TITLES.get(status, HTTPStatus(status).phrase)


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    meaning: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"

    @property
    def title(self) -> str:
        return title_of(self.status)


VALIDATION = ProblemType(
    "validation",
    400,
    "The request does not match the API's description: a parameter or the body is invalid "
    "(`errors` lists each failure, by `pointer` into the body or by `parameter`, and why), or "
    "the request is framed wrongly (two `Content-Type`s, a body where the operation takes none).",
)
UNAUTHORIZED = ProblemType(
    "unauthorized",
    401,
    "The `Authorization: Bearer` key is missing or unknown.",
)
INSUFFICIENT_SCOPE = ProblemType(
    "insufficient-scope",
    403,
    "The key is valid but lacks the scope the operation needs (`users:read` or `users:write`).",
)
USER_NOT_FOUND = ProblemType(
    "user-not-found",
    404,
    "No user has this id: it never existed, or it was deleted (ids are never reused).",
)
USERNAME_TAKEN = ProblemType(
    "username-taken",
    409,
    "Another user has this username, compared case-insensitively; `holder` is that user's path.",
)
IDEMPOTENCY_KEY_IN_USE = ProblemType(
    "idempotency-key-in-use",
    409,
    "A request with this `Idempotency-Key` is still being answered; retry after `Retry-After` "
    "seconds to get its outcome.",
)
PRECONDITION_FAILED = ProblemType(
    "precondition-failed",
    412,
    "`If-Match` names none of the user's current `ETag`: it changed since it was read. Read it "
    "again, and send the new `ETag`.",
)
CONTENT_TOO_LARGE = ProblemType(
    "content-too-large",
    413,
    "The request body is larger than the server accepts.",
)
UNSUPPORTED_MEDIA_TYPE = ProblemType(
    "unsupported-media-type",
    415,
    "The request body is not `application/json`.",
)
IDEMPOTENCY_KEY_REUSED = ProblemType(
    "idempotency-key-reused",
    422,
    "This `Idempotency-Key` came before with a different request body; a key names one "
    "request. Use a new key for a new request.",
)
RATE_LIMITED = ProblemType(
    "rate-limited",
    429,
    "Over a rate limit: writes per API key, or requests per client address. Retry after "
    "`Retry-After` seconds.",
)
UNAVAILABLE = ProblemType(
    "unavailable",
    503,
    "The service cannot answer now: its user store cannot be reached, stayed busy past its "
    "timeout or is not ready yet, or the server is shutting down. Nothing was changed. Retry "
    "after `Retry-After` seconds.",
)
WRITE_OUTCOME_UNKNOWN = ProblemType(
    "write-outcome-unknown",
    503,
    "The user store stopped answering while the write was being committed: it may or may not "
    "have been made. Read the user before retrying; a create sent again with its "
    "`Idempotency-Key` is safe. Retry after `Retry-After` seconds.",
)
IDS_EXHAUSTED = ProblemType(
    "ids-exhausted",
    507,
    "Every user id up to the largest the API allows (9007199254740991) has been handed out, "
    "and ids are never reused: no user can be created. Nothing was changed.",
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
        WRITE_OUTCOME_UNKNOWN,
        IDS_EXHAUSTED,
    )
}


async def get_problem_type(problem_type: str) -> tuple[Any, int, dict[str, str]]:
    """The page at a problem type's URI, for the person reading a problem."""
    kind = PROBLEM_TYPES[problem_type]  # the spec's enum has let only these through
    meaning = CODE.sub(r"<code>\1</code>", html.escape(kind.meaning))
    page = PAGE.format(slug=kind.slug, status=kind.status, title=kind.title, meaning=meaning)
    return page, 200, {"Content-Type": "text/html"}


CODE = re.compile(r"`([^`]+)`")
PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>{slug}</title>
<h1>{slug}</h1>
<p>HTTP status {status}, {title}.</p>
<p>{meaning}</p>
<p>Every error of the Users API is an RFC 9457 problem; its <code>type</code> names its kind.
The API's description, with every kind, is at <a href="/openapi.json">/openapi.json</a>.</p>
</html>
"""
