"""Schemathesis over the whole spec: every operation, positive and negative data, then the
stateful phase that follows the spec's links. Settings are in schemathesis.toml.

It runs in the same pytest process as every other test. It used to run alone: the stateful
phase failed as flaky (hypothesis's FlakyStrategyDefinition, "while selecting a rule to run")
beside other tests, and once alone. Its sequences shared one store, emptied between them but
not reset: ids went on counting and idempotency keys stayed. Hypothesis builds new sequences
on the choices of earlier ones and requires the same choices to draw the same way; a sequence
that met other answers on its second run (a 404 for an id that had been a user's, a stored
reply for a key sent again) left a link's bundle empty and drew differently. Which sequences
it draws depends on the process too (it mixes in the constants of every local module loaded,
the tests' and users_api's), so whether one met a stale id changed with what else ran. Each
sequence now runs on a new store of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from connexion import AbstractApp
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.conftest import app_settings
from tests.support.profile import scaled
from tests.support.stores import StoreSlot, fresh_store
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
    pair: tuple[str, str], store: UserStore, tmp_path: Path
) -> None:
    """Create, then get, update and delete the created user, as the spec's links chain them."""
    flavour, backend = pair
    slot = StoreSlot()
    app = create_app(app_settings(flavour), store=slot)
    with slot.holding(store):  # the fixture's store, while the spec is loaded
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    sequences = itertools.count()

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            """Each sequence runs on a store of its own, new and empty, so that a replay of it
            meets the same answers: ids from 1 again, no idempotency key kept from before."""
            self.stores = ExitStack()
            folder = tmp_path / f"sequence-{next(sequences)}"
            folder.mkdir()
            self.stores.enter_context(
                slot.holding(self.stores.enter_context(fresh_store(backend, folder)))
            )

        def teardown(self) -> None:
            self.stores.close()
            super().teardown()

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=scaled(40, 10),
            stateful_step_count=8,
            derandomize=True,
            deadline=None,
            database=None,
        )
    )
