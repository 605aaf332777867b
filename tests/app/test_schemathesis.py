"""Schemathesis over the whole spec: every operation, positive and negative data, then the
stateful phase that follows the spec's links. Settings are in schemathesis.toml."""

from __future__ import annotations

import asyncio

import hypothesis
import pytest
import schemathesis
from connexion import AbstractApp
from schemathesis.specs.openapi.schemas import OpenApiSchema

from users_api.store import UserStore

api = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def api_schema(app: AbstractApp) -> OpenApiSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@api.parametrize()
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
            max_examples=40,
            stateful_step_count=8,
            derandomize=True,
            deadline=None,
            database=None,
        )
    )
