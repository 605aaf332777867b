"""One client address cannot take every connection nginx has (deploy/nginx/): a process holds
10,000 connections to nginx from 127.0.0.2, each sending half of a request's headers and opened
again as soon as nginx drops it, while a normal client on 127.0.0.1 is answered, each time, in
under a second. Real nginx in front of a real instance, on loopback; the figures go to
artifacts/connection-flood.json."""

from __future__ import annotations

import json
import multiprocessing
import resource
import selectors
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import AUTH
from tests.support.installed import CHECKOUT
from tests.support.nginx import HTTP_SOCKET, nginx
from tests.support.servers import free_port, serve, wait_for

FLOOD = 10_000
"""The connections the flooding address holds (each opened again when nginx drops it)."""
CAP = 2048
NORMAL_CLIENT_LINGERING = 5
"""Connections one address may hold (deploy/nginx/users-api.stream.conf)."""
FLOODER, CLIENT = "127.0.0.2", "127.0.0.1"
HALF_A_REQUEST = b"GET /users/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bear"
FLOOD_SECONDS = 90.0
"""How long the flood runs at most, should the test not stop it first."""
BOUND = 1.0
"""Seconds in which the normal client is answered, each time."""
ATTEMPTS, WINDOW = 40, 12.0
"""The normal client's requests, each on a new connection, spread over the window (which spans
a client_header_timeout, when nginx drops the connections held); each given up after 3 BOUNDs."""
REPORT = CHECKOUT / "artifacts" / "connection-flood.json"
COUNTS = ("sockets", "connects", "held", "dropped")
"""The flood's counts: sockets it has (FLOOD, once all are made), connects completed, connections
held now (connected, not yet dropped), and drops (each followed by a new connection)."""
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux's number


def test_one_address_holding_10000_connections_leaves_others_answered_at_once(
    tmp_path: Path,
) -> None:
    _allow_open_files(FLOOD + 2_000)  # the flood's process inherits the limit
    port = free_port()
    with serve(tmp_path / "instance", port=port) as instance:
        created = httpx.post(f"{instance.url}/users", json={"username": "cosmo"}, headers=AUTH)
        assert created.status_code == 201
        with (
            nginx(tmp_path / "nginx", free_port(), (port, port)) as url,
            _flood(int(url.rpartition(":")[2])) as counts,
        ):
            wait_for(lambda: counts()["connects"] >= FLOOD, "the flood to connect", seconds=60)
            before = counts()
            outcomes = _normal_client(f"{url}/users/1")
            after = counts()
            handed_on = _connections_to(tmp_path / "nginx" / HTTP_SOCKET)
    answered = [seconds for outcome, seconds in outcomes if outcome == "200"]
    report = {
        "flood": {"address": FLOODER, "connections": FLOOD, "before": before, "after": after},
        "connections_handed_to_the_http_server": handed_on,
        "normal_client": {
            "address": CLIENT,
            "attempts": len(outcomes),
            "answered": len(answered),
            "slowest_answer_s": round(max(answered, default=0), 3),
            "outcomes": [[outcome, round(seconds, 3)] for outcome, seconds in outcomes],
        },
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    # The flood was on all along: all its sockets made, and nginx dropping and it reopening.
    assert before["sockets"] == after["sockets"] == FLOOD, report
    assert after["connects"] > before["connects"], report
    assert all(outcome == "200" and seconds < BOUND for outcome, seconds in outcomes), report
    # ... and the flood's address held all it may: the cap's worth of connections, no more (the
    # normal client's last few may not have closed yet).
    assert CAP - 100 <= handed_on <= CAP + NORMAL_CLIENT_LINGERING, report


def _connections_to(path: Path) -> int:
    """The connections open to the Unix socket at `path` (the HTTP server's side of each)."""
    lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    # Num RefCount Protocol Flags Type St Inode Path; St 03 is connected.
    return sum(1 for line in lines if line.split()[5:8:2] == ["03", str(path)])


def _normal_client(url: str) -> list[tuple[str, float]]:
    """GET `url` from CLIENT, each time on a new connection, as a new client would: the status
    (or the transport error) and the seconds each took."""
    outcomes: list[tuple[str, float]] = []
    start = time.monotonic()
    for attempt in range(ATTEMPTS):
        time.sleep(max(0.0, start + attempt * WINDOW / ATTEMPTS - time.monotonic()))  # its pace
        transport = httpx.HTTPTransport(local_address=CLIENT)
        with httpx.Client(transport=transport, headers=AUTH, timeout=3 * BOUND) as client:
            started = time.monotonic()
            try:
                outcome = str(client.get(url).status_code)
            except httpx.TransportError as error:
                outcome = type(error).__name__
            outcomes.append((outcome, time.monotonic() - started))
    return outcomes


@contextmanager
def _flood(port: int) -> Iterator[Callable[[], dict[str, int]]]:
    """A process flooding nginx's `port` from FLOODER (`_hold`), stopped on the way out; yields a
    function that reads its counts."""
    context = multiprocessing.get_context("spawn")
    shared = context.Array("q", len(COUNTS), lock=False)
    process = context.Process(target=_hold, args=(port, FLOOD, FLOOD_SECONDS, shared))
    process.start()

    def counts() -> dict[str, int]:
        assert process.is_alive(), f"the flood exited {process.exitcode}"
        return dict(zip(COUNTS, shared[:], strict=True))

    try:
        yield counts
    finally:
        process.kill()
        process.join(timeout=30)


def _hold(port: int, count: int, seconds: float, shared: Any) -> None:
    """Hold `count` connections from FLOODER to 127.0.0.1:`port`, each having sent half of a
    request's headers; one that nginx drops, or that fails to connect, is opened again at once.
    Stops after `seconds`. Its counts (COUNTS) go to `shared`."""
    selector = selectors.DefaultSelector()
    counts = dict.fromkeys(COUNTS, 0)

    def connect() -> None:
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)  # port chosen at connect
        sock.bind((FLOODER, 0))
        sock.connect_ex(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_WRITE, "connecting")

    def reopen(sock: socket.socket) -> None:
        selector.unregister(sock)
        sock.close()
        connect()

    for _ in range(count):
        connect()
        counts["sockets"] += 1
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if key.data == "connecting":
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    reopen(sock)
                    continue
                counts["connects"] += 1
                try:
                    sock.send(HALF_A_REQUEST)
                except OSError:
                    counts["dropped"] += 1
                    reopen(sock)
                    continue
                counts["held"] += 1
                selector.modify(sock, selectors.EVENT_READ, "held")
                continue
            try:
                if sock.recv(65536):
                    continue  # nginx's answer (a 408, say): its end follows
            except OSError:
                pass
            counts["held"] -= 1
            counts["dropped"] += 1
            reopen(sock)
        shared[:] = [counts[name] for name in COUNTS]


def _allow_open_files(needed: int) -> None:
    """Raise this process's soft limit on open files to `needed`, and the hard one if it must
    (as root); the processes it starts inherit them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        hard = needed
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
