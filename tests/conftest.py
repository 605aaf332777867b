"""Each test has a store of its own, and an app of its own over it (or, in the suites that read
nothing an app keeps across requests, the `kept_app` of its flavour).

Each test is marked with its folder, what it needs to run: `unit` (no app, no server), `app`
(the app in process), `server` (a real `users-api serve` process), `deployment` (nginx,
Prometheus, Chromium, a built wheel or Node around it). `pytest -m "not deployment"` is
`make check`'s selection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from connexion import AbstractApp
from hypothesis import settings
from starlette.testclient import TestClient

from tests.support.api import API_KEY
from tests.support.installed import Installed, build_and_install
from tests.support.profile import PROFILE
from tests.support.stores import StoreSlot, fresh_store
from users_api.app import create_app
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store import UserStore

# A property test that names no count of its own tries this many examples (each of today's
# names one, through `scaled`). Not "ci": that is hypothesis's own profile, which it loads in CI.
settings.register_profile("full", max_examples=100)
settings.register_profile("check", max_examples=20)
settings.load_profile(PROFILE)


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, installed into a fresh virtual environment, for the tests that run it."""
    return build_and_install(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[UserStore]:
    """The HTTP suites run over the mock store and over the embedded default."""
    with fresh_store(request.param, tmp_path) as store:
        yield store


LAYERS = ("unit", "app", "server", "deployment")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        layer = item.path.parent.name
        assert layer in LAYERS, f"{item.nodeid}: put it in one of tests/{{{','.join(LAYERS)}}}/"
        item.add_marker(layer)


UNLIMITED = "1000000/second"


def app_settings(flavour: str) -> Settings:
    """Both flavours, Connexion's FlaskApp and its AsyncApp, pass the same suites. No rate limit
    refuses them: a 429 in one of schemathesis's sequences, and not in its replay, would fail it
    as flaky (the rate limits have tests of their own)."""
    return Settings(
        api_keys=(API_KEY,),
        validate_responses=True,
        app=flavour,
        rate_limit_writes=UNLIMITED,
        rate_limit_requests=UNLIMITED,
    )


@pytest.fixture(params=APP_FLAVOURS)
def app(request: pytest.FixtureRequest, store: UserStore) -> AbstractApp:
    return create_app(app_settings(request.param), store=store)


@pytest.fixture
def client(app: AbstractApp) -> TestClient:
    """Calls from loopback, as the operator's own machine would."""
    return app.test_client(client=("127.0.0.1", 50000))


_KEPT_APPS: dict[str, tuple[AbstractApp, StoreSlot]] = {}


@pytest.fixture(params=APP_FLAVOURS)
def kept_app(request: pytest.FixtureRequest, store: UserStore) -> Iterator[AbstractApp]:
    """The `app` fixture's app, built once per flavour and kept, over this test's own fresh
    store: for the suites that read nothing an app keeps across requests (metrics, rate limits),
    where building an app apiece was most of their time."""
    flavour: str = request.param
    if flavour not in _KEPT_APPS:
        slot = StoreSlot()
        _KEPT_APPS[flavour] = (create_app(app_settings(flavour), store=slot), slot)
    app, slot = _KEPT_APPS[flavour]
    with slot.holding(store):
        yield app
