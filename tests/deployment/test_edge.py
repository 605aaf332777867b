"""What nginx in front (deploy/nginx/users-api.conf) does that uvicorn cannot: slow and idle
clients are dropped without holding the service, and huge or numerous headers are refused with
431 before they are read to the end. On loopback, with a real instance behind a real nginx."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.api import AUTH
from tests.support.nginx import nginx
from tests.support.servers import free_port, serve

SLOW_CLIENTS = 2000
SHORTER = {"client_header_timeout": "2s", "keepalive_timeout": "2s"}
"""The file's 10 s and 30 s, shortened so that a test sees them end."""


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[str]:
    """nginx's address, in front of one instance."""
    port = free_port()
    with serve(tmp_path / "instance", port=port) as instance:
        created = httpx.post(f"{instance.url}/users", json={"username": "cosmo"}, headers=AUTH)
        assert created.status_code == 201
        with nginx(tmp_path / "nginx", free_port(), (port, port), shorter=SHORTER) as url:
            yield url


def test_with_2000_slow_clients_holding_connections_a_normal_client_is_answered_at_once(
    edge: str,
) -> None:
    host, port = edge.removeprefix("http://").split(":")
    with ExitStack() as stack:
        slow = []
        for _ in range(SLOW_CLIENTS):
            connection = stack.enter_context(socket.create_connection((host, int(port))))
            connection.sendall(b"GET /users/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bear")
            slow.append(connection)
        with httpx.Client() as client:
            started = time.monotonic()
            response = client.get(f"{edge}/users/1", headers=AUTH)
            seconds = time.monotonic() - started
        assert response.status_code == 200
        assert seconds < 1.0, seconds
        time.sleep(2.5)  # past client_header_timeout
        still_open = sum(1 for connection in slow if _open(connection))
    assert still_open == 0


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(edge: str) -> None:
    host, port = edge.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(2.5)
        assert not _open(connection)


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Repeated: 1\r\n" * 300_000,  # numerous: 4.5 MB of them
        b"X-Huge: " + b"a" * 300_000_000 + b"\r\n",  # one line of 300 MB
    ],
    ids=["300000-headers", "a-300-MB-header"],
)
def test_huge_or_numerous_headers_are_refused_with_431_before_they_are_read(
    edge: str, headers: bytes
) -> None:
    host, port = edge.removeprefix("http://").split(":")
    request = b"GET /users/1 HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        sent = [0]

        def send() -> None:
            view = memoryview(request)
            try:
                while sent[0] < len(view):
                    sent[0] += connection.send(view[sent[0] : sent[0] + 65536])
            except OSError:
                pass  # nginx answered and closed: the rest is never read

        sender = threading.Thread(target=send)
        started = time.monotonic()
        sender.start()
        answer = connection.recv(4096)
        seconds = time.monotonic() - started
        with contextlib.suppress(OSError):  # nginx may have closed it first
            connection.shutdown(socket.SHUT_RDWR)
        sender.join()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"application/problem+json" in answer
    assert seconds < 1.0, seconds
    if len(request) > 100_000_000:
        assert sent[0] < len(request) // 10  # what loopback's buffers took, not the request


def _open(connection: socket.socket) -> bool:
    """Whether the peer still holds the connection open (no end of stream, no reset)."""
    connection.settimeout(0.01)
    try:
        while chunk := connection.recv(4096):  # an answer (408), then the end
            del chunk
        return False
    except TimeoutError:
        return True
    except OSError:
        return False
