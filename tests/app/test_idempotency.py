"""Idempotent creates: `POST /users` with an `Idempotency-Key`, retried as a client whose
response was lost retries it, in process (tests/server/test_idempotent_retries.py: across the
workers and restarts of real servers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.api import API_KEY, AUTH, assert_problem, client_with
from tests.support.stores import fresh_store
from users_api.app import create_app
from users_api.handlers.problem_types import (
    IDEMPOTENCY_KEY_REUSED,
    USERNAME_TAKEN,
    VALIDATION,
)
from users_api.settings import APP_FLAVOURS, Settings

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'
JSON = {"Content-Type": "application/json"}
NOT_ASCII = "caf\u00e9".encode()


def keyed(key: str = KEY, api_key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}


def test_a_repeat_gets_the_first_201_marked_as_a_replay(client: TestClient) -> None:
    first = client.post("/users", json={"username": "cosmo"}, headers=keyed())
    client.put("/users/1", json={"username": "kramer"}, headers=AUTH)
    spaced = b'{ "username" : "cosmo" }'  # the same JSON
    repeat = client.post("/users", content=spaced, headers=keyed() | JSON)
    assert (first.status_code, repeat.status_code) == (201, 201)
    assert repeat.json() == first.json()  # the user as created, not as it is now
    for header in ("Location", "ETag"):
        assert repeat.headers[header] == first.headers[header]
    assert "Idempotent-Replayed" not in first.headers
    assert repeat.headers["Idempotent-Replayed"] == "true"
    assert len(client.get("/users", headers=AUTH).json()["items"]) == 1


def test_a_key_sent_again_with_another_body_is_a_422(client: TestClient) -> None:
    client.post("/users", json={"username": "cosmo"}, headers=keyed())
    refused = client.post("/users", json={"username": "elaine"}, headers=keyed())
    assert_problem(refused, 422, IDEMPOTENCY_KEY_REUSED)
    assert [user["username"] for user in client.get("/users", headers=AUTH).json()["items"]] == [
        "cosmo"
    ]


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_each_api_key_has_idempotency_keys_of_its_own(tmp_path: Path, flavour: str) -> None:
    """Another client's same key and body are its own create: here a taken name, not a replay
    of the first client's user."""
    with fresh_store("sqlite", tmp_path) as store:
        client = client_with(store=store, app=flavour)
        body = {"username": "cosmo"}
        mine = client.post("/users", json=body, headers=keyed(api_key=API_KEY))
        theirs = client.post("/users", json=body, headers=keyed(api_key="other-key"))
        assert mine.status_code == 201
        assert_problem(theirs, 409, USERNAME_TAKEN)


@pytest.mark.parametrize("key", ["", " x", "x" * 256, NOT_ASCII, "a\tb"])
def test_a_malformed_key_is_a_400_naming_it(client: TestClient, key: str | bytes) -> None:
    headers = {**AUTH, "Idempotency-Key": key}
    response = client.post("/users", json={"username": "cosmo"}, headers=headers)
    problem = assert_problem(response, 400, VALIDATION)
    assert [error["parameter"] for error in problem["errors"]] == ["Idempotency-Key"]


def test_a_clients_keys_follow_its_api_key_not_its_place_in_the_list(tmp_path: Path) -> None:
    """`USERS_API_KEYS=k1,k2`, then a restart with `k2,k1`: each key's name changes places."""
    with fresh_store("sqlite", tmp_path) as store:
        before = create_app(Settings(api_keys=("k1", "k2")), store=store).test_client()
        after = create_app(Settings(api_keys=("k2", "k1")), store=store).test_client()
        first = before.post("/users", json={"username": "cosmo"}, headers=keyed(api_key="k1"))
        mine = after.post("/users", json={"username": "cosmo"}, headers=keyed(api_key="k1"))
        theirs = after.post("/users", json={"username": "cosmo"}, headers=keyed(api_key="k2"))
    assert (first.status_code, mine.status_code) == (201, 201)
    assert (mine.json(), mine.headers["Idempotent-Replayed"]) == (first.json(), "true")
    assert_problem(theirs, 409, USERNAME_TAKEN)  # its own create, not k1's replayed
