"""Idempotent creates: `POST /users` with an `Idempotency-Key`, retried as a client whose
response was lost retries it, in process and across the workers and restarts of real servers."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from starlette.testclient import TestClient

from tests.conftest import AUTH, assert_problem
from tests.servers import API_KEY as SERVER_KEY
from tests.servers import AUTH as SERVER_AUTH
from tests.servers import LOAD, serve
from tests.stores import fresh_store, fresh_store_url, postgres_schema
from tests.test_operations import client_with
from users_api.app import create_app
from users_api.handlers.problem_types import (
    IDEMPOTENCY_KEY_IN_USE,
    IDEMPOTENCY_KEY_REUSED,
    USERNAME_TAKEN,
    VALIDATION,
)
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store.postgres import TAKE_CREATE_TURN

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'
JSON = {"Content-Type": "application/json"}
NOT_ASCII = "caf\u00e9".encode()


def keyed(key: str = KEY, api_key: str = "test-key") -> dict[str, str]:
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
        mine = client.post("/users", json=body, headers=keyed(api_key="test-key"))
        theirs = client.post("/users", json=body, headers=keyed(api_key="other-key"))
        assert mine.status_code == 201
        assert_problem(theirs, 409, USERNAME_TAKEN)


@pytest.mark.parametrize("key", ["", " x", "x" * 256, NOT_ASCII, "a\tb"])
def test_a_malformed_key_is_a_400_naming_it(client: TestClient, key: str | bytes) -> None:
    headers = {**AUTH, "Idempotency-Key": key}
    response = client.post("/users", json={"username": "cosmo"}, headers=headers)
    problem = assert_problem(response, 400, VALIDATION)
    assert [error["parameter"] for error in problem["errors"]] == ["Idempotency-Key"]


def test_a_repeat_while_the_first_is_in_flight_gets_409_then_its_outcome(tmp_path: Path) -> None:
    """PostgreSQL: another session holds the creates' turn, so the first create waits inside its
    transaction, holding its key."""
    with postgres_schema() as url, serve(tmp_path, "--store", url) as server:
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        post = lambda: httpx.post(  # noqa: E731
            f"{server.url}/users",
            json={"username": "cosmo"},
            headers=keyed(api_key=SERVER_KEY),
            timeout=30,
        )
        with engine.connect() as blocker:
            blocker.execute(text(TAKE_CREATE_TURN))
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(post)
                time.sleep(0.5)
                in_flight = post()
                blocker.rollback()
                first_response = first.result(timeout=10)
        engine.dispose()
        assert_problem(in_flight, 409, IDEMPOTENCY_KEY_IN_USE)
        assert in_flight.headers["Retry-After"] == "1"
        assert first_response.status_code == 201
        replay = post()
        assert (replay.status_code, replay.json()) == (201, first_response.json())
        assert replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_retries_across_two_workers_and_a_restart_create_one_user(
    tmp_path: Path, backend: str
) -> None:
    """32 clients at once send the same keyed create, each retrying its 409 until it has a 201;
    then the server restarts and the create is sent once more."""
    answers: Counter[str] = Counter()
    lock = threading.Lock()

    def until_created(url: str) -> dict[str, object]:
        with httpx.Client(timeout=30) as client:  # a connection of its own: either worker
            while True:
                response = client.post(
                    f"{url}/users", json={"username": "cosmo"}, headers=keyed(api_key=SERVER_KEY)
                )
                kind = response.headers.get("Idempotent-Replayed", "first")
                with lock:
                    answers[f"{response.status_code} {kind}"] += 1
                if response.status_code == 201:
                    return dict(response.json()) | {"location": response.headers["Location"]}
                assert response.status_code == 409, response.text
                time.sleep(0.05)

    with fresh_store_url(backend, tmp_path) as url:
        with serve(tmp_path, "--store", url, "--workers", "2", *LOAD) as server:
            with ThreadPoolExecutor(32) as pool:
                created = list(pool.map(lambda _: until_created(server.url), range(32)))
            users = httpx.get(f"{server.url}/users", headers=SERVER_AUTH).json()["items"]
        with serve(tmp_path / "again", "--store", url) as restarted:
            after_restart = until_created(restarted.url)
    assert answers["201 first"] == 1, answers
    assert answers["201 true"] == 32, answers  # 31 repeats, and the one after the restart
    assert len({json.dumps(answer, sort_keys=True) for answer in created}) == 1
    assert after_restart == created[0]
    assert [user["id"] for user in users] == [created[0]["id"]]
    print(f"{backend}: {dict(answers)}")  # noqa: T201  # the closing note quotes these


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
