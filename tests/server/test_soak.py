"""A bounded soak: 4 clients mixing reads, writes, bad requests and bursts past the write
limit, against 2 workers on SQLite. USERS_SOAK_SECONDS sets its length (10 s in `make test`, 3 s
in `make check`; the closing note of the operations issue quotes a 60 s run:
`USERS_SOAK_SECONDS=60 pytest -s -k soak`)."""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from tests.support.profile import scaled
from tests.support.servers import serve

SECONDS = float(os.environ.get("USERS_SOAK_SECONDS") or scaled(10, 3))
CLIENTS = 4


class Client:
    """One client with its own key and its own users; it knows what each should look like."""

    def __init__(self, http: httpx.Client, number: int) -> None:
        self.http = http
        self.statuses: Counter[int] = Counter()
        self.users: dict[int, tuple[dict[str, Any], str]] = {}
        """Each user this client made: its last acknowledged body and ETag."""
        self.deleted: set[int] = set()
        self.names = (f"c{number}n{n}" for n in itertools.count())

    def send(self, method: str, path: str, **options: Any) -> httpx.Response:
        response = self.http.request(method, path, **options)
        self.statuses[response.status_code] += 1
        assert response.status_code < 500, response.text
        return response

    def run(self, until: float) -> None:
        for step in itertools.count():
            if time.monotonic() >= until:
                return
            if step % 40 == 39:
                for _ in range(30):  # a burst past the write limit
                    self.create()
            elif step % 5 == 0 or not self.users:
                self.create()
            elif step % 5 == 1:
                self.update()
            elif step % 5 == 2:
                self.read()
            elif step % 5 == 3:
                self.send_bad_requests()
            elif step % 10 == 4:
                self.delete()
            else:
                assert self.send("GET", "/users", params={"limit": 5}).status_code == 200

    def create(self) -> None:
        response = self.send("POST", "/users", json={"username": next(self.names)})
        assert response.status_code in (201, 429), response.text
        if response.status_code == 201:
            self.users[response.json()["id"]] = (response.json(), response.headers["etag"])

    def update(self) -> None:
        user_id, (_, etag) = next(iter(self.users.items()))
        response = self.send(
            "PUT",
            f"/users/{user_id}",
            json={"username": next(self.names)},
            headers={"If-Match": etag},
        )
        assert response.status_code in (200, 429), response.text
        if response.status_code == 200:
            self.users[user_id] = (response.json(), response.headers["etag"])

    def read(self) -> None:
        user_id, (body, _) = next(reversed(self.users.items()))
        response = self.send("GET", f"/users/{user_id}")
        assert (response.status_code, response.json()) == (200, body)

    def delete(self) -> None:
        user_id, (_, etag) = next(iter(self.users.items()))
        response = self.send("DELETE", f"/users/{user_id}", headers={"If-Match": etag})
        assert response.status_code in (204, 429), response.text
        if response.status_code == 204:
            del self.users[user_id]
            self.deleted.add(user_id)

    def send_bad_requests(self) -> None:
        assert self.send("PUT", "/users/1", json={}).status_code in (400, 429)
        assert self.send("GET", "/users/abc").status_code == 404
        anonymous = self.http.build_request("POST", "/users", json={"username": "x"})
        del anonymous.headers["authorization"]
        response = self.http.send(anonymous)
        self.statuses[response.status_code] += 1
        assert response.status_code == 401


def test_a_soak_ends_with_no_5xx_no_lost_write_and_every_request_counted(
    tmp_path: Path,
) -> None:
    keys = {"USERS_API_KEYS": ",".join(f"key{n}" for n in range(CLIENTS))}
    with (
        serve(tmp_path, "--workers", "2", "--rate-limit-writes", "20/second", env=keys) as server,
        ExitStack() as stack,
    ):
        clients = [
            Client(
                stack.enter_context(
                    httpx.Client(
                        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer key{n}"}
                    )
                ),
                n,
            )
            for n in range(CLIENTS)
        ]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            list(pool.map(lambda client: client.run(started + SECONDS), clients))
        elapsed = time.monotonic() - started
        metrics = httpx.get(f"{server.url}/metrics").text.splitlines()

        for client in clients:
            for user_id, (body, _) in client.users.items():
                assert client.http.get(f"/users/{user_id}").json() == body
            for user_id in client.deleted:
                assert client.http.get(f"/users/{user_id}").status_code == 404

    statuses = sum((client.statuses for client in clients), Counter[int]())
    sent = sum(statuses.values())
    counted = sum(
        float(line.rpartition(" ")[2])
        for line in metrics
        if line.startswith("users_http_requests_total{")
        and 'operation="check_health"' not in line  # the start-up probes
    )
    kept = sum(len(client.users) for client in clients)
    sys.stdout.write(
        f"\nsoak: {sent} requests in {elapsed:.0f} s ({sent / elapsed:.0f}/s), "
        f"statuses {dict(sorted(statuses.items()))}, {kept} users checked byte for byte, "
        f"{sum(len(client.deleted) for client in clients)} deletions checked, "
        f"metrics counted {counted:.0f}\n"
    )
    assert not [status for status in statuses if status >= 500]
    assert statuses[429] > 0
    assert counted == sent
