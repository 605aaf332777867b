"""Each test builds its own app over its own store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from connexion import AbstractApp
from httpx import Response
from starlette.testclient import TestClient

from tests.installed import Installed, build_and_install
from tests.stores import fresh_store
from users_api.app import create_app
from users_api.handlers.problem_types import PROBLEM_TYPES, ProblemType
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store import UserStore

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, installed into a fresh virtual environment, for the tests that run it."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UserStore]:
    """The HTTP suites run over the mock store and over the embedded default."""
    with fresh_store(request.param, tmp_path) as store:
        yield store


UNLIMITED = "1000000/second"


@pytest.fixture(params=APP_FLAVOURS)
def app(request: pytest.FixtureRequest, store: UserStore) -> AbstractApp:
    """Both flavours, Connexion's FlaskApp and its AsyncApp, pass the same suites. No rate limit
    refuses them: a 429 in one of schemathesis's sequences, and not in its replay, would fail it
    as flaky (the rate limits have tests of their own)."""
    settings = Settings(
        api_keys=(API_KEY,),
        validate_responses=True,
        app=request.param,
        rate_limit_writes=UNLIMITED,
        rate_limit_requests=UNLIMITED,
    )
    return create_app(settings, store=store)


@pytest.fixture
def client(app: AbstractApp) -> TestClient:
    """Calls from loopback, as the operator's own machine would."""
    return app.test_client(client=("127.0.0.1", 50000))


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
