"""What every test that talks to the API shares: the one key the suite's apps and servers are
started with, the header that sends it, and the check of a problem response."""

from __future__ import annotations

from typing import Any

from httpx import Response
from starlette.testclient import TestClient

from users_api.app import create_app
from users_api.handlers.problem_types import PROBLEM_TYPES, ProblemType
from users_api.settings import Settings
from users_api.store.memory import MemoryStore

API_KEY = "test-key"
"""The key of every app built in process and every server started (`USERS_API_KEYS`)."""
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def client_with(
    store: MemoryStore | None = None, address: str = "127.0.0.1", **settings: Any
) -> TestClient:
    """An app's test client with API_KEY and "other-key", calling from `address` (the operator's
    own machine by default)."""
    app = create_app(Settings(api_keys=(API_KEY, "other-key"), **settings), store=store)
    return app.test_client(client=(address, 50000))


def assert_problem(
    response: Response, status: int, kind: ProblemType | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status, of `kind` if given (else of a kind
    with this status, or `about:blank`); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    if kind is not None:
        assert (problem["type"], problem["title"]) == (kind.uri, kind.title)
    elif problem["type"] != "about:blank":
        kind = PROBLEM_TYPES[problem["type"].removeprefix("/problems/")]
        assert (kind.status, problem["title"]) == (status, kind.title)
    assert problem["title"]
    return problem
