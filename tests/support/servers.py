"""`users-api serve` as an operator runs it: a real process on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.api import API_KEY, AUTH

LOAD = ("--rate-limit-writes", "100000/second")
"""For the tests that hammer the server on purpose: no normal client writes this fast."""
USERS_API = (sys.executable, "-m", "users_api.cli")
"""The command, from this checkout's virtual environment."""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(
    tmp_path: Path,
    *args: str,
    command: Sequence[str] = USERS_API,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    port: int | None = None,
) -> Iterator[Server]:
    """A running `users-api serve`; killed on the way out with any workers it started (its
    own process group: killing only the parent would leave them holding database connections).

    `env` is added to this process's environment, which gets `USERS_API_KEYS` unless it is set.
    """
    port = port or free_port()
    tmp_path.mkdir(exist_ok=True)
    log = tmp_path / "server.log"
    if "--store" not in args:
        args = ("--store", f"sqlite:///{tmp_path / 'users.db'}", *args)
    environ = {**os.environ, "USERS_API_KEYS": API_KEY, **(env or {})}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*command, "serve", "--port", str(port), *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environ,
            cwd=cwd,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_up(server)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def assert_the_seeds_put_answers_200_400_and_404(server: Server) -> None:
    created = httpx.post(f"{server.url}/users", json={"username": "cosmo"}, headers=AUTH)
    user_url = f"{server.url}/users/{created.json()['id']}"

    ok = httpx.put(user_url, json={"username": "kramer"}, headers=AUTH)
    bad = httpx.put(user_url, json={}, headers=AUTH)
    missing = httpx.put(f"{server.url}/users/999", json={"username": "kramer"}, headers=AUTH)

    assert (ok.status_code, ok.json()["username"]) == (200, "kramer")
    assert (bad.status_code, bad.headers["content-type"]) == (400, "application/problem+json")
    assert bad.json()["errors"][0]["pointer"] == "/username"
    assert missing.status_code == 404


def wait_until_up(server: Server) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {server.output()}")
        try:
            httpx.get(f"{server.url}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"server did not start: {server.output()}")


@contextmanager
def running(command: list[str], log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own, its output in `log` (or nowhere); killed on the way
    out, with whatever it started."""
    with log.open("wb") if log else open(os.devnull, "wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def requests_in_flight(server: Server) -> float:
    """How many requests the server is answering now, by its /metrics (this scrape included)."""
    for line in httpx.get(f"{server.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("users_http_requests_in_flight "):
            return float(line.rpartition(" ")[2])
    raise AssertionError("/metrics has no users_http_requests_in_flight")


def wait_for(check: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with suppress(httpx.TransportError, OSError):
            if check():
                return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
