"""A database that stalls, goes down or loses its file under a running server: fast 503s with
`Retry-After`, never a hang and never a 500; the liveness probe is not held up by any of it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import OperationalError

from tests.support.api import API_KEY, AUTH, assert_problem
from tests.support.faults import Proxy, proxy_to
from tests.support.profile import scaled
from tests.support.servers import Server, requests_in_flight, serve, wait_for
from tests.support.stores import migrated, postgres_schema, sql_engine
from users_api.app import create_app
from users_api.handlers.problem_types import UNAVAILABLE, WRITE_OUTCOME_UNKNOWN
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store import StoreUnavailable, WriteOutcomeUnknown, postgres
from users_api.store.sql import CHECK_EVERY_SECONDS, CHECK_TIMEOUT_SECONDS, SQLStore

TIMEOUT_MS = 1000


@contextmanager
def serving_through_a_proxy(
    tmp_path: Path, flavour: str, timeout_ms: int = TIMEOUT_MS
) -> Iterator[tuple[Server, Proxy]]:
    """A server over PostgreSQL, reached through a proxy the test can stall or kill."""
    with postgres_schema() as url:
        database = make_url(url)
        with proxy_to(database.port or 5432) as proxy:
            through = database.set(port=proxy.port).render_as_string(hide_password=False)
            store = ("--store", through, "--store-timeout-ms", str(timeout_ms))
            with serve(tmp_path, *store, "--app", flavour) as server:
                created = httpx.post(
                    f"{server.url}/users", json={"username": "cosmo"}, headers=AUTH
                )
                assert created.status_code == 201
                yield server, proxy


def timed(request: httpx.Request) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        response = client.send(request)
    return response, time.monotonic() - started


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_with_postgresql_stalled_every_request_gets_a_503_within_the_timeout(
    tmp_path: Path, flavour: str
) -> None:
    with serving_through_a_proxy(tmp_path, flavour) as (server, proxy):
        proxy.stall()
        # More requests in flight than the pool has connections (5); a Request object apiece,
        # since httpx writes to one as it sends it.
        requests = [
            request
            for _ in range(5)
            for request in (
                httpx.Request("GET", f"{server.url}/users/1", headers=AUTH),
                httpx.Request("PUT", f"{server.url}/users/1", json={"username": "x"}, headers=AUTH),
                httpx.Request("POST", f"{server.url}/users", json={"username": "y"}, headers=AUTH),
                httpx.Request("GET", f"{server.url}/users", headers=AUTH),
            )
        ]
        with ThreadPoolExecutor(len(requests)) as clients:
            answers = list(clients.map(timed, requests))
        for response, seconds in answers:
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            # Bounded, not hung: FlaskApp's 10 WSGI threads answer 20 stalled requests in two
            # waves of one timeout each; three times that leaves room for a loaded machine.
            assert seconds < 3 * 2 * TIMEOUT_MS / 1000, seconds
        ready, seconds = timed(httpx.Request("GET", f"{server.url}/readyz"))
        assert ready.status_code == 503
        assert seconds < CHECK_TIMEOUT_SECONDS * 3, seconds
        assert "the database did not answer within 1000 ms" in server.output()
        proxy.resume()
        assert _eventually_ok(server), "the service did not recover when the database did"


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_with_postgresql_stalled_the_probes_answer_at_once(tmp_path: Path, flavour: str) -> None:
    # The stuck requests wait 6 s (4.5 s in `make check`) for the database: a probe queued
    # behind them would take that long, one answered at once a small part of it (a third is
    # the bound), and readiness its own check's second (3 s with the margin).
    stuck_ms = scaled(6000, 4500)
    with (
        serving_through_a_proxy(tmp_path, flavour, stuck_ms) as (server, proxy),
        ExitStack() as stack,
    ):
        proxy.stall()
        # As many as FlaskApp has WSGI threads (10), twice the pool's connections (5): every one
        # held, and all answered in one wave (15 made Flask's a second wave, 6 s more).
        stuck = [httpx.Request("GET", f"{server.url}/users/1", headers=AUTH) for _ in range(10)]
        # Every client is made first: making one loads TLS certificates, which took over a
        # second on a loaded machine, time the probe would be charged or the stuck ones spread.
        senders = [stack.enter_context(httpx.Client(timeout=30)) for _ in stuck]
        probe = stack.enter_context(httpx.Client(timeout=30))
        with ThreadPoolExecutor(len(stuck)) as clients:
            before = requests_in_flight(server)
            sent = zip(senders, stuck, strict=True)
            in_flight = [clients.submit(client.send, request) for client, request in sent]
            wait_for(
                lambda: requests_in_flight(server) >= before + len(stuck),
                "the stuck requests to reach the server",
                seconds=stuck_ms / 1000 - 1,
            )
            started = time.monotonic()
            alive = probe.get(f"{server.url}/healthz")
            seconds = time.monotonic() - started
            assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
            assert seconds < stuck_ms / 1000 / 3, seconds
            # Not queued behind the stuck requests: within the readiness check's own second.
            started = time.monotonic()
            ready = probe.get(f"{server.url}/readyz")
            seconds = time.monotonic() - started
            assert ready.status_code == 503
            assert seconds < CHECK_TIMEOUT_SECONDS * 3, seconds
            assert all(future.result().status_code == 503 for future in in_flight)
        proxy.resume()


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_with_postgresql_gone_requests_get_503_at_once(tmp_path: Path, flavour: str) -> None:
    # At once: in a third of the store timeout, which a refused connection need not wait out.
    timeout_ms = 3000
    with serving_through_a_proxy(tmp_path, flavour, timeout_ms) as (server, proxy):
        proxy.process.kill()
        proxy.process.wait()
        for _ in range(3):
            response, seconds = timed(httpx.Request("GET", f"{server.url}/users/1", headers=AUTH))
            assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
            assert seconds < timeout_ms / 1000 / 3, seconds


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
@pytest.mark.parametrize("fault", ["removed", "replaced"])
def test_with_its_sqlite_file_removed_or_replaced_writes_and_readiness_get_503(
    tmp_path: Path, flavour: str, fault: str
) -> None:
    database = tmp_path / "users.db"
    with serve(tmp_path, "--store", f"sqlite:///{database}", "--app", flavour) as server:
        created = httpx.post(f"{server.url}/users", json={"username": "cosmo"}, headers=AUTH)
        assert created.status_code == 201
        database.unlink()
        if fault == "replaced":
            database.write_bytes(b"")
        write = httpx.post(f"{server.url}/users", json={"username": "kramer"}, headers=AUTH)
        update = httpx.put(f"{server.url}/users/1", json={"username": "x"}, headers=AUTH)
        # Readiness asks again once its last answer is a second old.
        wait_for(
            lambda: httpx.get(f"{server.url}/readyz").status_code == 503,
            "readiness to see the file gone",
            seconds=CHECK_EVERY_SECONDS * 10,
        )
        ready = httpx.get(f"{server.url}/readyz")
    for response in (write, update, ready):
        assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert "was removed or replaced" in server.output()
    assert "Traceback" not in server.output()


def test_readiness_asks_the_database_at_most_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}")
    asked: list[float] = []
    ask = store._ask
    monkeypatch.setattr(store, "_ask", lambda: (asked.append(time.monotonic()), ask())[1])

    async def probe_often() -> None:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            await store.check()
            await asyncio.sleep(0.01)

    asyncio.run(probe_often())
    # At 0 s, 1 s and 2 s; a loop starved by a loaded machine may have missed the last, and an
    # ask's thread may start late, so a gap is a second give or take that (a store asking at
    # every probe would ask every 10 ms).
    assert 2 <= len(asked) <= 3, asked
    gaps = [later - earlier for earlier, later in itertools.pairwise(asked)]
    assert all(gap > CHECK_EVERY_SECONDS / 2 for gap in gaps), gaps
    asyncio.run(store.close())


def test_a_failed_readiness_answer_stands_until_the_next_ask(tmp_path: Path) -> None:
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}")
    asyncio.run(store.check())
    (tmp_path / "users.db").unlink()
    time.sleep(CHECK_EVERY_SECONDS)
    for _ in range(3):
        with pytest.raises(StoreUnavailable) as refused:
            asyncio.run(store.check())
        assert "removed or replaced" in refused.value.reason
    asyncio.run(store.close())


def _eventually_ok(server: Server) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/users/1", headers=AUTH, timeout=5).status_code == 200:
            return True
        time.sleep(0.2)
    return False


def test_a_write_answered_503_for_its_deadline_is_not_applied_after_it(tmp_path: Path) -> None:
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}", timeout_ms=200)
    asyncio.run(store.check())
    turn = store._writers
    assert turn is not None
    turn.acquire()  # another writer holds SQLite's turn past the deadline
    threading.Timer(0.5, turn.release).start()
    with pytest.raises(StoreUnavailable) as refused:
        asyncio.run(store.create(username="cosmo"))
    assert "did not answer within 200 ms" in refused.value.reason
    assert not isinstance(refused.value, WriteOutcomeUnknown)  # "nothing was changed" holds
    time.sleep(0.8)  # the write got its turn after the caller was told 503
    assert asyncio.run(store.list(after=0, limit=10)) == []
    asyncio.run(store.close())


def test_a_write_cut_short_before_it_commits_is_rolled_back(tmp_path: Path) -> None:
    """As at the end of the shutdown grace, when uvicorn cancels what is still running."""
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}")
    turn = store._writers
    assert turn is not None
    turn.acquire()  # another writer holds SQLite's turn
    threading.Timer(0.5, turn.release).start()

    async def cut_short() -> None:
        write = asyncio.create_task(store.create(username="cosmo"))
        await asyncio.sleep(0.1)
        write.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await write

    asyncio.run(cut_short())
    time.sleep(0.8)  # the write got its turn after its request was cut short
    assert asyncio.run(store.list(after=0, limit=10)) == []
    asyncio.run(store.close())


def test_a_connection_lost_in_commit_on_sqlite_has_rolled_back(tmp_path: Path) -> None:
    """A COMMIT that fails on SQLite has rolled back: plainly unavailable."""
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}")

    def lost(_: object) -> None:
        raise OperationalError("COMMIT", {}, Exception("server closed the connection"))

    event.listen(store.engine, "commit", lost)
    client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    assert_problem(response, 503, UNAVAILABLE)
    asyncio.run(store.close())


def test_a_sqlite_write_whose_commit_outlasts_its_deadline_is_of_unknown_outcome(
    tmp_path: Path,
) -> None:
    """The commit itself stalls past the deadline: the client cannot be told nothing changed."""
    store = migrated(f"sqlite:///{tmp_path / 'users.db'}", timeout_ms=200)
    event.listen(store.engine, "commit", lambda _: time.sleep(0.5))
    client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    problem = assert_problem(response, 503, WRITE_OUTCOME_UNKNOWN)
    assert "may or may not have been made" in problem["detail"]
    time.sleep(0.6)  # the commit went through after the answer, as the answer allowed
    assert [user.username for user in asyncio.run(store.list(after=0, limit=10))] == ["cosmo"]
    asyncio.run(store.close())


@contextmanager
def creates_held_back(url: str) -> Iterator[Connection]:
    """Another session holding the lock that each PostgreSQL create takes: a create sent now
    waits inside its statement, as long as this is held. In autocommit, so that each look at
    pg_stat_activity is a fresh one."""
    engine = sql_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"SELECT pg_advisory_lock({postgres.CREATE_TURN})"))
        yield connection
        connection.execute(text(f"SELECT pg_advisory_unlock({postgres.CREATE_TURN})"))
    engine.dispose()


def waiting_backend(connection: Connection, name: str) -> int | None:
    """The server process of the store's connection (by its application_name) while it waits
    for a lock; None while none does."""
    found = connection.execute(
        text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
            "AND wait_event_type = 'Lock'"
        ),
        {"name": name},
    ).scalar()
    return None if found is None else int(found)


def test_a_postgresql_connection_lost_during_a_write_leaves_its_outcome_unknown() -> None:
    """The write was sent, then its connection died: the server may have committed it."""
    name = f"lost-{uuid.uuid4().hex[:8]}"
    with postgres_schema() as url:
        store = migrated(f"{url}&application_name={name}")
        client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
        with creates_held_back(url) as other, ThreadPoolExecutor(1) as background:
            sent = background.submit(
                client.post, "/users", json={"username": "cosmo"}, headers=AUTH
            )
            deadline = time.monotonic() + 10
            while (pid := waiting_backend(other, name)) is None:
                assert time.monotonic() < deadline, "the create never reached the database"
                time.sleep(0.02)
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            response = sent.result(timeout=10)
        assert_problem(response, 503, WRITE_OUTCOME_UNKNOWN)
        asyncio.run(store.close())


def test_a_postgresql_write_that_outlasts_its_deadline_is_of_unknown_outcome() -> None:
    """Sent, then held inside the database past the deadline: the client cannot be told nothing
    changed, and the store serves on once the database does."""
    with postgres_schema() as url:
        store = migrated(url, timeout_ms=500)
        client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
        with creates_held_back(url):
            started = time.monotonic()
            response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
            answered = time.monotonic() - started
        problem = assert_problem(response, 503, WRITE_OUTCOME_UNKNOWN)
        assert "may or may not have been made" in problem["detail"]
        assert answered < 0.5 * 3
        retried = client.post("/users", json={"username": "elaine"}, headers=AUTH)
        assert retried.status_code == 201, retried.text
        asyncio.run(store.close())


def test_readiness_is_not_claimed_while_the_first_ask_is_still_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLStore(f"sqlite:///{tmp_path / 'users.db'}")
    monkeypatch.setattr(store, "_ask", lambda: time.sleep(0.5))

    async def probe_twice() -> BaseException | None:
        first = asyncio.create_task(store.check())
        await asyncio.sleep(0.1)
        try:
            await store.check()
        except StoreUnavailable as error:
            return error
        finally:
            await first
        return None

    refused = asyncio.run(probe_twice())
    assert isinstance(refused, StoreUnavailable)
    assert refused.reason == "not checked yet"
    asyncio.run(store.close())
