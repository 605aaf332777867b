"""Schemathesis over the whole spec: every operation, positive and negative data, then the
stateful phase that follows the spec's links. Settings are in schemathesis.toml.

`make check` and `make test` run this file in a pytest process of its own: collected beside
the other tests, the stateful phase fails as flaky (hypothesis's FlakyStrategyDefinition, a
draw of another type on replay) on some runs and not others, though it passes alone every time;
the cause is in hypothesis's or schemathesis's state, not found yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from connexion import AbstractApp
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import app_settings
from tests.support.profile import scaled
from tests.support.stores import fresh_store
from users_api.app import create_app
from users_api.store import UserStore

api = schemathesis.pytest.from_fixture("api_schema")

PAIRS = [("async", "memory"), ("flask", "sqlite")]
"""Each app class and each store once: the four pairs took half of `make check`, and the other
suites run every pair (the store contract runs every store; app/ runs both app classes)."""


@pytest.fixture(params=PAIRS, ids=["-".join(pair) for pair in PAIRS])
def pair(request: pytest.FixtureRequest) -> tuple[str, str]:
    flavour, backend = request.param
    return flavour, backend


@pytest.fixture
def store(pair: tuple[str, str], tmp_path: Path) -> Iterator[UserStore]:
    with fresh_store(pair[1], tmp_path) as store:
        yield store


@pytest.fixture
def app(pair: tuple[str, str], store: UserStore) -> AbstractApp:
    return create_app(app_settings(pair[0]), store=store)


@pytest.fixture
def api_schema(app: AbstractApp) -> OpenApiSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@api.parametrize()
@hypothesis.settings(max_examples=scaled(100, 10))  # make check's size; the full one is the toml's
def test_every_operation_conforms_to_the_spec(case: schemathesis.Case) -> None:
    case.call_and_validate()


def test_stateful_sequences_along_the_links_conform(
    api_schema: OpenApiSchema, store: UserStore
) -> None:
    """Create, then get, update and delete the created user, as the spec's links chain them."""

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            """Each sequence starts from an empty store, so a replay meets the same answers."""
            for user in asyncio.run(store.list(after=0, limit=1_000_000)):
                asyncio.run(store.delete(user.id))

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=scaled(40, 10),
            stateful_step_count=8,
            derandomize=True,
            deadline=None,
            database=None,
        )
    )
