"""`users-api serve` as a user runs it: a real process on a loopback port."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import make_url

from tests.support.api import API_KEY, AUTH, assert_problem
from tests.support.faults import proxy_to
from tests.support.profile import scaled
from tests.support.servers import (
    LOAD,
    USERS_API,
    Server,
    assert_the_seeds_put_answers_200_400_and_404,
    free_port,
    requests_in_flight,
    serve,
    wait_for,
    wait_until_up,
)
from tests.support.stores import fresh_store_url, postgres_schema
from users_api.app import PREPARE_RETRY_SECONDS
from users_api.auth import key_file_line
from users_api.settings import APP_FLAVOURS
from users_api.store.sql import CHECK_EVERY_SECONDS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A server of this test's own, for one that stops it or reads all of its log."""
    with serve(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that only ask it and read their own lines of its log (by their
    X-Request-ID): a start costs a second or two, more than such a test."""
    with serve(tmp_path_factory.mktemp("shared-server")) as running:
        yield running


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_the_seeds_put_answers_200_400_and_404_over_http(tmp_path: Path, flavour: str) -> None:
    with serve(tmp_path, "--app", flavour) as server:
        assert_the_seeds_put_answers_200_400_and_404(server)


def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(server: Server) -> None:
    body = b'{"username": "cosmo"}'
    before = requests_in_flight(server)
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer "
            + API_KEY.encode()
            + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5]
        )
        wait_for(lambda: requests_in_flight(server) > before, "the POST to be in flight")
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(body[5:])
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 201 "), response
    assert server.process.wait(timeout=15) == 0


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_sigterm_waits_no_longer_than_the_grace_period_then_closes_the_store(
    tmp_path: Path, flavour: str
) -> None:
    with serve(tmp_path, "--shutdown-grace-seconds", "1", "--app", flavour, *LOAD) as running:
        httpx.post(f"{running.url}/users", json={"username": "cosmo"}, headers=AUTH)
        assert (tmp_path / "users.db-wal").exists()
        before = requests_in_flight(running)
        with socket.create_connection(("127.0.0.1", int(running.url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(  # a request whose body never arrives
                b"POST /users HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            wait_for(lambda: requests_in_flight(running) > before, "the POST to be in flight")
            stopping = time.monotonic()
            running.process.send_signal(signal.SIGTERM)
            assert running.process.wait(timeout=15) == 0
            answer = sock.recv(65536)
        assert 1 <= time.monotonic() - stopping < 5
        # Cut short by the end of the grace: a problem to retry, not uvicorn's bare 500.
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"retry-after: 1" in answer.lower()
        assert b"application/problem+json" in answer
        assert "Traceback" not in running.output()
    # The last connection to close checkpoints SQLite's log into the database and removes it.
    assert not (tmp_path / "users.db-wal").exists()


def log_lines(server: Server) -> list[dict[str, Any]]:
    """The JSON lines the server has written so far (a line still being written left out)."""
    written = server.output().rpartition("\n")[0]
    return [json.loads(line) for line in written.splitlines() if line.startswith("{")]


def wait_for_lines(server: Server, count: int, what: str, **fields: Any) -> list[dict[str, Any]]:
    """At least `count` JSON lines with these fields: the server logs a request after answering
    it, so its line may not be written yet when the client has the answer."""

    def matching() -> list[dict[str, Any]]:
        return [line for line in log_lines(server) if fields.items() <= line.items()]

    wait_for(lambda: len(matching()) >= count, what, seconds=10)
    return matching()


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_a_path_cannot_forge_a_text_log_line_or_drive_the_terminal(
    tmp_path: Path, flavour: str
) -> None:
    with serve(tmp_path, "--app", flavour, "--log-format", "text") as running:
        host, port = running.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as connection:
            forged = "\n2026-11-29 INFO [-] users.access: GET /forged 200\x1b[31m\x9b"
            target = "/nowhere" + quote(forged)
            connection.sendall(
                f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
            )
            assert connection.recv(64).startswith(b"HTTP/1.1 404")
        wait_for(lambda: "nowhere" in running.output().rpartition("\n")[0], "the 404's access line")
        log = running.output()
    (line,) = [line for line in log.splitlines() if "nowhere" in line]
    assert "\\x0a2026-11-29 INFO [-] users.access: GET /forged 200\\x1b[31m\\x9b 404" in line
    assert not any(line.startswith("2026-11-29 INFO [-]") for line in log.splitlines())
    assert "\x1b" not in log


def test_each_request_logs_one_json_line_naming_its_operation_never_a_key(
    shared_server: Server,
) -> None:
    server = shared_server
    created = httpx.post(
        f"{server.url}/users",
        json={"username": "cosmo"},
        headers={**AUTH, "X-Request-ID": "trace-1"},
    )
    httpx.get(
        f"{server.url}/users/{created.json()['id']}", headers=AUTH | {"X-Request-ID": "trace-2"}
    )
    httpx.put(
        f"{server.url}/users/1",
        json={"username": "x"},
        headers={"Authorization": "Bearer leaked-k3y", "X-Request-ID": "trace-3"},
    )
    for request_id in ("trace-1", "trace-2", "trace-3"):
        wait_for_lines(server, 1, f"{request_id}'s access line", request_id=request_id)
    access = {
        line["request_id"]: line for line in log_lines(server) if line["logger"] == "users.access"
    }
    assert access["trace-1"] | {"time": "", "duration_ms": 0} == {
        "time": "",
        "level": "INFO",
        "logger": "users.access",
        "message": "POST /users 201",
        "request_id": "trace-1",
        "method": "POST",
        "path": "/users",
        "operation": "create_user",
        "status": 201,
        "duration_ms": 0,
        "response_bytes": len(created.content),
        "client": "127.0.0.1",
        "key": "USERS_API_KEYS[1]",
    }
    assert access["trace-2"]["path"] == "/users/{user_id}"
    assert access["trace-2"]["operation"] == "get_user"
    assert 0 < access["trace-2"]["duration_ms"] < 5000
    assert (access["trace-3"]["status"], access["trace-3"]["level"]) == (401, "WARNING")
    assert API_KEY not in server.output()
    assert "leaked-k3y" not in server.output()
    assert not [line for line in log_lines(server) if "color_message" in line]  # uvicorn's ANSI


def test_a_path_that_matches_no_operation_is_in_its_json_line_once(shared_server: Server) -> None:
    server = shared_server
    path = "/nowhere/" + "x" * 2000  # what a client sends is in the line once, however long
    assert httpx.get(f"{server.url}{path}", headers={"X-Request-ID": "typo"}).status_code == 404
    wait_for(lambda: "typo" in server.output(), "the access line")
    (line,) = [text for text in server.output().splitlines() if '"typo"' in text]
    assert line.count("x" * 2000) == 1
    logged = json.loads(line)
    assert (logged["message"], logged["path"]) == ("GET (no operation) 404", path)
    assert logged["operation"] is None


def test_responses_carry_no_server_banner(shared_server: Server) -> None:
    assert "server" not in httpx.get(f"{shared_server.url}/users", headers=AUTH).headers


def test_metrics_add_up_every_workers_requests(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2", *LOAD) as running:
        with httpx.Client(base_url=running.url) as client:
            for n in range(60):
                client.get(f"/users/{n + 1}", headers=AUTH)
            for n in range(20):
                client.post("/users", json={"username": f"u{n}"}, headers=AUTH)
        samples = httpx.get(f"{running.url}/metrics").text.splitlines()
    counts = [
        float(line.rpartition(" ")[2])
        for line in samples
        if line.startswith("users_http_requests_total{")
    ]
    # wait_until_up's probes of /healthz count too
    health = sum(
        float(line.rpartition(" ")[2])
        for line in samples
        if line.startswith("users_http_requests_total{") and 'operation="check_health"' in line
    )
    assert sum(counts) - health == 80


def test_workers_stop_with_a_killed_master_freeing_the_port_and_their_folder(
    tmp_path: Path,
) -> None:
    temp = tmp_path / "temp"  # where serve makes the workers' folder
    temp.mkdir()
    grace = ("--shutdown-grace-seconds", "5")
    with serve(tmp_path, "--workers", "2", *grace, env={"TMPDIR": str(temp)}) as running:
        port = int(running.url.rsplit(":", 1)[1])
        master = running.process.pid
        # The master, two workers, and multiprocessing's resource tracker.
        assert len(_living(group=master)) == 4, running.output()
        assert list(temp.iterdir())
        running.process.kill()
        running.process.wait()
        # A worker finishes what it was answering first, within the grace period.
        wait_for(lambda: not _living(group=master), "the workers to exit", seconds=30)
        wait_for(lambda: _free(port), "the port to be free", seconds=15)
        assert not list(temp.iterdir()), running.output()
    with serve(tmp_path / "again", port=port) as again:
        assert httpx.get(f"{again.url}/healthz").status_code == 200


def _living(group: int) -> list[int]:
    """The processes of a process group, zombies left out (nothing here may reap them)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # it exited while being read
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _free(port: int) -> bool:
    socket.create_server(("127.0.0.1", port)).close()
    return True


def test_serve_without_a_key_refuses_to_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("USERS_")}
    command = [*USERS_API, "serve", "--store", f"sqlite:///{tmp_path / 'users.db'}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=environ)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("users-api: error: no API key: list keys in a file (--api-keys-file")


def test_demo_without_a_key_makes_one_up_on_stderr_never_in_the_log(tmp_path: Path) -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("USERS_")}
    port = free_port()
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    command = [*USERS_API, "serve", "--demo", "--port", str(port)]
    command += ["--store", f"sqlite:///{tmp_path / 'users.db'}", "--log-format", "json"]
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, env=environ)
    server = Server(process, f"http://127.0.0.1:{port}", stderr)
    try:
        wait_until_up(server)
        key = re.search(
            r"Demo key, every scope, this run only:  Authorization: Bearer (\S+)",
            stderr.read_text(),
        )
        assert key, stderr.read_text()
        headers = {"Authorization": f"Bearer {key[1]}"}
        users = httpx.get(f"{server.url}/users", headers=headers).json()["items"]
        assert [user["username"] for user in users] == ["cosmo", "elaine", "george", "jerry"]
        assert (
            httpx.put(f"{server.url}/users/1", json={"username": "x"}, headers=headers).status_code
            == 200
        )
        assert httpx.get(f"{server.url}/users").status_code == 401
        # The server logs a request after answering it: its line may not be written yet.
        wait_for(lambda: '"status":401' in stdout.read_text(), "the 401's access line")
    finally:
        process.kill()
        process.wait()
    logged = [json.loads(line) for line in stdout.read_text().splitlines()]
    access = [line for line in logged if line["logger"] == "users.access"]
    assert {line["key"] for line in access if line["path"].startswith("/users")} == {"demo", None}
    assert stderr.read_text().count(key[1]) == 1
    assert key[1] not in stdout.read_text()


def test_the_access_log_names_the_key_from_a_key_file(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text(key_file_line("ops-dashboard", ["users:read"], "s3cret"))
    environ = {"USERS_API_KEYS": "", "USERS_API_KEYS_FILE": str(tmp_path / "keys")}
    with serve(tmp_path, env=environ) as server:
        response = httpx.get(f"{server.url}/users", headers={"Authorization": "Bearer s3cret"})
        assert response.status_code == 200
        (line,) = wait_for_lines(server, 1, "the list's access line", operation="list_users")
    assert line["key"] == "ops-dashboard"
    assert "s3cret" not in server.output()


def test_only_a_trusted_proxys_x_forwarded_for_names_the_client(tmp_path: Path) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9"}
    with serve(tmp_path, "--trusted-proxy", "127.0.0.2") as server:
        proxy = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        with proxy:
            proxy.get(f"{server.url}/healthz", headers=forwarded)
            assert proxy.get(f"{server.url}/metrics", headers=forwarded).status_code == 404
            # From 127.0.0.2 itself too: /metrics answers loopback's 127.0.0.1 only.
            assert_problem(proxy.get(f"{server.url}/metrics"), 404)
        httpx.get(f"{server.url}/healthz", headers=forwarded)  # from 127.0.0.1: not trusted
        assert httpx.get(f"{server.url}/metrics", headers=forwarded).status_code == 200

        def healthz_clients() -> list[str]:
            return [line["client"] for line in log_lines(server) if line.get("path") == "/healthz"]

        # The start-up probes log /healthz too: wait for the last two to be these requests'.
        wanted = ["203.0.113.9", "127.0.0.1"]
        with suppress(AssertionError):
            wait_for(lambda: healthz_clients()[-2:] == wanted, "both /healthz lines", seconds=10)
        clients = healthz_clients()
    assert clients[-2:] == wanted


def test_a_port_in_use_exits_2_with_a_message(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        command = [*USERS_API, "serve", "--port", port]
        command += ["--store", f"sqlite:///{tmp_path / 'users.db'}"]
        environ = {**os.environ, "USERS_API_KEYS": "k1"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=environ)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with serve(tmp_path) as first:
        created = httpx.post(f"{first.url}/users", json={"username": "cosmo"}, headers=AUTH)
        first.process.send_signal(signal.SIGTERM)
        first.process.wait(timeout=15)
    with serve(tmp_path) as second:
        kept = httpx.get(f"{second.url}/users/{created.json()['id']}", headers=AUTH)
    assert kept.json() == created.json()


def increment_with_if_match(url: str, clients: int, increments: int) -> int:
    """Read-modify-write a counter kept in a username from many threads, retrying on 412.

    Returns how many PUTs succeeded; with no lost update, the counter equals that.
    """

    def work(_: int) -> int:
        successes = 0
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
            while successes < increments:
                current = client.get("/users/1", headers=AUTH)
                count = int(current.json()["username"][1:])
                response = client.put(
                    "/users/1",
                    json={"username": f"n{count + 1}"},
                    headers={"If-Match": current.headers["etag"]},
                )
                assert response.status_code in (200, 412), response.text
                successes += response.status_code == 200
        return successes

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return sum(pool.map(work, range(clients)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_lose_no_update_under_if_match(tmp_path: Path, backend: str) -> None:
    with ExitStack() as stack:
        store = stack.enter_context(fresh_store_url(backend, tmp_path))
        server = stack.enter_context(serve(tmp_path, "--store", store, "--workers", "2", *LOAD))
        httpx.post(f"{server.url}/users", json={"username": "n0"}, headers=AUTH)
        # 8 clients racing on one user; `make check` has each make 8 increments, not 25.
        increments = scaled(25, 8)
        successes = increment_with_if_match(server.url, clients=8, increments=increments)
        final = httpx.get(f"{server.url}/users/1", headers=AUTH).json()["username"]
    assert successes == 8 * increments
    assert final == f"n{successes}"


def test_readyz_answers_503_until_the_database_is_reachable_then_200(tmp_path: Path) -> None:
    port = free_port()
    with postgres_schema() as url:
        database = make_url(url)
        unreachable = database.set(port=port).render_as_string(hide_password=False)
        with serve(tmp_path, "--store", unreachable) as server:
            assert "The store is unavailable" in server.output()
            assert httpx.get(f"{server.url}/healthz").status_code == 200
            not_ready = httpx.get(f"{server.url}/readyz")
            write = httpx.post(f"{server.url}/users", json={"username": "cosmo"}, headers=AUTH)
            assert (not_ready.status_code, not_ready.headers["retry-after"]) == (503, "1")
            assert (write.status_code, write.headers["retry-after"]) == (503, "1")
            with proxy_to(database.port or 5432, port=port):
                # The schema is migrated by the start's next try, not by a request.
                wait_for(
                    lambda: httpx.get(f"{server.url}/readyz").status_code == 200,
                    "readiness",
                    seconds=PREPARE_RETRY_SECONDS + CHECK_EVERY_SECONDS + 2,
                )
                assert "store not ready" in server.output()
                write = httpx.post(f"{server.url}/users", json={"username": "cosmo"}, headers=AUTH)
                assert write.status_code == 201


def test_every_acknowledged_create_survives_sigkill(tmp_path: Path) -> None:
    acknowledged: list[dict[str, object]] = []
    with serve(tmp_path, *LOAD) as running:

        def write() -> None:
            with httpx.Client(base_url=running.url, headers=AUTH, timeout=5) as client:
                for n in range(100_000):
                    try:
                        response = client.post("/users", json={"username": f"u{n}"})
                    except httpx.TransportError:
                        return
                    assert response.status_code == 201
                    acknowledged.append(response.json())

        with ThreadPoolExecutor(max_workers=1) as pool:
            writer = pool.submit(write)
            wait_for(lambda: len(acknowledged) > 50 or writer.done(), "acknowledged creates")
            running.process.kill()
            writer.result()
    assert len(acknowledged) > 10
    with serve(tmp_path) as restarted:
        for user in acknowledged:
            assert httpx.get(f"{restarted.url}/users/{user['id']}", headers=AUTH).json() == user
    with sqlite3.connect(tmp_path / "users.db") as database:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_a_client_that_leaves_mid_body_is_logged_as_499_not_as_a_server_error(
    server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 30\r\n\r\n" + b'{"user'
        )
    wait_for_lines(server, 1, "the POST's access line", logger="users.access", method="POST")
    access = [line for line in log_lines(server) if line["logger"] == "users.access"]
    posts = [(line["status"], line["level"]) for line in access if line["method"] == "POST"]
    assert posts == [(499, "INFO")]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'status="500"' not in metrics
