"""Idempotent creates across real servers: a repeat while the first is in flight, and retries
across two workers and a restart (tests/app/test_idempotency.py has the rest, in process)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, create_engine, text

from tests.support.api import API_KEY, AUTH, assert_problem
from tests.support.servers import LOAD, serve, wait_for
from tests.support.stores import fresh_store_url, postgres_schema
from users_api.handlers.problem_types import IDEMPOTENCY_KEY_IN_USE
from users_api.store.postgres import TAKE_CREATE_TURN

KEY = '"8e03978e-40d5-43e8-bc93-6894a57f9324"'


def keyed(key: str = KEY, api_key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Idempotency-Key": key}


def test_a_repeat_while_the_first_is_in_flight_gets_409_then_its_outcome(tmp_path: Path) -> None:
    """PostgreSQL: another session holds the creates' turn, so the first create waits inside its
    transaction, holding its key."""
    name = f"repeat-{uuid.uuid4().hex[:8]}"  # the server's sessions, in pg_stat_activity
    with (
        postgres_schema() as url,
        serve(tmp_path, "--store", f"{url}&application_name={name}") as server,
    ):
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        post = lambda: httpx.post(  # noqa: E731
            f"{server.url}/users",
            json={"username": "cosmo"},
            headers=keyed(api_key=API_KEY),
            timeout=30,
        )
        # The watcher in autocommit: each look at pg_stat_activity is a fresh one.
        with engine.connect() as blocker, engine.connect() as watcher:
            watcher.execution_options(isolation_level="AUTOCOMMIT")
            blocker.execute(text(TAKE_CREATE_TURN))
            with ThreadPoolExecutor(1) as pool:
                first = pool.submit(post)
                wait_for(
                    lambda: _waiting_for_a_lock(watcher, name) == 1, "the first create to wait"
                )
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
                    f"{url}/users", json={"username": "cosmo"}, headers=keyed(api_key=API_KEY)
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
            users = httpx.get(f"{server.url}/users", headers=AUTH).json()["items"]
        with serve(tmp_path / "again", "--store", url) as restarted:
            after_restart = until_created(restarted.url)
    assert answers["201 first"] == 1, answers
    assert answers["201 true"] == 32, answers  # 31 repeats, and the one after the restart
    assert len({json.dumps(answer, sort_keys=True) for answer in created}) == 1
    assert after_restart == created[0]
    assert [user["id"] for user in users] == [created[0]["id"]]
    print(f"{backend}: {dict(answers)}")  # noqa: T201  # the closing note quotes these


def _waiting_for_a_lock(connection: Connection, name: str) -> int:
    """How many of the sessions named `name` wait for a lock."""
    waiting = connection.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE application_name = :name AND wait_event_type = 'Lock'"
        ),
        {"name": name},
    )
    return int(waiting.scalar_one())
