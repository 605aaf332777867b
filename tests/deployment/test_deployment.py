"""The README's production topology, on loopback: nginx with deploy/nginx/users-api.conf in front
of two instances of the installed wheel (2 workers each) over one PostgreSQL and one Redis, a
load through nginx while one instance is stopped with SIGTERM (then started again) and the other
is killed with SIGKILL, and Prometheus scraping both. Its figures go to artifacts/deployment.json.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import API_KEY, AUTH
from tests.support.installed import CHECKOUT, Installed
from tests.support.nginx import nginx
from tests.support.servers import Server, free_port, running, serve, wait_for
from tests.support.stores import postgres_schema
from users_api.auth import SCOPES, key_file_line
from users_api.handlers.problem_types import CONTENT_TOO_LARGE

PROMETHEUS = Path("/usr/bin/prometheus")
REDIS = "redis://127.0.0.1:6379"
KEY_NAME = "load-test"
REPORT = CHECKOUT / "artifacts" / "deployment.json"
PROBLEM = "application/problem+json"


@dataclass
class Tally:
    """What one load thread saw: each outcome by status code or transport error."""

    outcomes: Counter[str] = field(default_factory=Counter)
    created: list[dict[str, Any]] = field(default_factory=list)
    failed_creates: dict[str, float] = field(default_factory=dict)
    """The username of each POST that got no 201, and when."""
    increments: list[str] = field(default_factory=list)
    """The username each PUT answered 200 set: `c<k>-<n>`, a counter moved on to n. Two alike
    would be a lost update: two writers both moved the same version on."""
    failures: list[tuple[float, str]] = field(default_factory=list)

    def saw(self, kind: str, outcome: str, started: float) -> None:
        self.outcomes[f"{kind} {outcome}"] += 1
        if not outcome.startswith(("2", "3", "412")):
            self.failures.append((round(time.monotonic() - started, 2), f"{kind} {outcome}"))


@contextmanager
def prometheus(folder: Path, targets: list[str]) -> Iterator[str]:
    assert PROMETHEUS.exists(), "prometheus is missing: apt-get install prometheus (.ci/run does)"
    folder.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "users-api", "static_configs": [{"targets": targets}]}],
    }
    (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    command = [
        str(PROMETHEUS),
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(command, folder / "prometheus.log"):
        yield f"http://127.0.0.1:{port}"


def load_counted(server: Server) -> float:
    """The requests an instance counted with the load's key, from its /metrics."""
    families = text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "users_http_requests_total" and sample.labels["key"] == KEY_NAME
    )


def assert_nginx_guards_the_instances(url: str, instances: list[Server]) -> None:
    """What deploy/nginx/users-api.conf is there for: /metrics hidden, its own limits as
    problems, and the client's address its own, whatever X-Forwarded-For it sends."""
    hidden = httpx.get(f"{url}/metrics")
    assert (hidden.status_code, hidden.headers["content-type"]) == (404, PROBLEM)
    too_large = httpx.post(f"{url}/users", content=b"x" * 20_000, headers=AUTH)
    assert (too_large.status_code, too_large.headers["content-type"]) == (413, PROBLEM)
    assert too_large.json()["type"] == CONTENT_TOO_LARGE.uri  # as the instances answer it
    assert too_large.json()["title"] == CONTENT_TOO_LARGE.title
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Request-ID": "forged-xff"}
    assert httpx.get(f"{url}/healthz", headers=forged).status_code == 200
    time.sleep(0.2)
    lines = [
        json.loads(line)
        for server in instances
        for line in server.output().splitlines()
        if line.startswith("{") and '"forged-xff"' in line
    ]
    assert [line["client"] for line in lines] == ["127.0.0.1"]


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


class Load:
    """Reads, If-Match increments and creates through nginx from several threads, until stopped."""

    def __init__(self, url: str, user_ids: list[int], counters: list[int]) -> None:
        self.url, self.user_ids, self.counters = url, user_ids, counters
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.tallies: list[Tally] = []
        workers: list[Callable[[Tally], None]] = [self.read] * 4 + [self.create] * 2
        workers += [lambda tally, user=user: self.increment(tally, user) for user in counters * 2]
        self.threads = [threading.Thread(target=self._run, args=(work,)) for work in workers]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, work: Callable[[Tally], None]) -> None:
        tally = Tally()
        self.tallies.append(tally)
        work(tally)

    def _send(self, client: httpx.Client, tally: Tally, kind: str, *args: Any, **kw: Any) -> Any:
        try:
            response = client.request(*args, **kw)
        except httpx.TransportError as error:
            tally.saw(kind, type(error).__name__, self.started)
            return None
        tally.saw(kind, str(response.status_code), self.started)
        return response

    def read(self, tally: Tally) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=10) as client:
            while not self.stop.is_set():
                self._send(client, tally, "GET", "GET", f"/users/{random.choice(self.user_ids)}")
                self._send(client, tally, "LIST", "GET", "/users", params={"limit": 10})

    def create(self, tally: Tally) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=10) as client:
            while not self.stop.is_set():
                name = f"n{threading.get_ident()}-{tally.outcomes.total()}"
                response = self._send(
                    client, tally, "POST", "POST", "/users", json={"username": name}
                )
                if response is not None and response.status_code == 201:
                    tally.created.append(response.json())
                else:
                    tally.failed_creates[name] = round(time.monotonic() - self.started, 2)

    def increment(self, tally: Tally, user: int) -> None:
        """Read-modify-write of a counter kept in the username (`c<k>-<n>`), under If-Match."""
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=10) as client:
            while not self.stop.is_set():
                current = self._send(client, tally, "GET", "GET", f"/users/{user}")
                if current is None or current.status_code != 200:
                    continue
                counter, _, count = current.json()["username"].rpartition("-")
                headers = {"If-Match": current.headers["etag"]}
                body = {"username": f"{counter}-{int(count) + 1}"}
                response = self._send(
                    client, tally, "PUT", "PUT", f"/users/{user}", json=body, headers=headers
                )
                if response is not None and response.status_code == 200:
                    tally.increments.append(body["username"])

    def total(self) -> Tally:
        total = Tally()
        for tally in self.tallies:
            total.outcomes += tally.outcomes
            total.created += tally.created
            total.failed_creates |= tally.failed_creates
            total.increments += tally.increments
            total.failures += tally.failures
        total.failures.sort()
        return total


def test_two_instances_behind_nginx_lose_nothing_when_one_stops_and_one_is_killed(
    installed: Installed, tmp_path: Path
) -> None:
    (tmp_path / "keys").write_text(key_file_line(KEY_NAME, SCOPES, API_KEY))
    ports = (free_port(), free_port())
    timeline: list[tuple[float, str]] = []

    def instance(name: str, port: int, store: str) -> Any:
        return serve(
            tmp_path / f"{name}-{len(timeline)}",
            "--store", store, "--workers", "2", "--rate-limit-storage", REDIS,
            "--trusted-proxy", "127.0.0.1", "--shutdown-grace-seconds", "5",
            command=[str(installed.users_api)],
            env={"USERS_API_KEYS": "", "USERS_API_KEYS_FILE": str(tmp_path / "keys")},
            cwd=installed.outside,
            port=port,
        )  # fmt: skip

    with ExitStack() as stack:
        store = stack.enter_context(postgres_schema())
        first: Server = stack.enter_context(instance("a", ports[0], store))
        second: Server = stack.enter_context(instance("b", ports[1], store))
        url = stack.enter_context(nginx(tmp_path / "nginx", free_port(), ports))
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
            user_ids = [
                client.post("/users", json={"username": f"u{n}"}).json()["id"] for n in range(20)
            ]
            counters = [
                client.post("/users", json={"username": f"c{n}-0"}).json()["id"] for n in range(2)
            ]
        assert_nginx_guards_the_instances(url, [first, second])

        with Load(url, user_ids, counters) as load:

            def happened(event: str) -> None:
                timeline.append((round(time.monotonic() - load.started, 2), event))

            time.sleep(2)
            happened("SIGTERM instance a")
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(timeout=20) == 0
            happened("instance a exited 0")
            time.sleep(1)
            first = stack.enter_context(instance("a", ports[0], store))
            happened("instance a up again")
            time.sleep(2)
            happened("SIGKILL instance b")
            os.killpg(second.process.pid, signal.SIGKILL)
            time.sleep(3)
            happened("load stopped")
        total = load.total()
        second = stack.enter_context(instance("b", ports[1], store))

        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
            lost_creates = [
                user for user in total.created if client.get(f"/users/{user['id']}").json() != user
            ]
            # A create that failed on its way back may still have been made: count those.
            listed = client.get("/users", params={"limit": 100, "cursor": str(max(user_ids))})
            names = {user["username"] for user in listed.json()["items"]}
            cursor = listed.json()["next_cursor"]
            while cursor:
                listed = client.get("/users", params={"limit": 100, "cursor": cursor})
                names |= {user["username"] for user in listed.json()["items"]}
                cursor = listed.json()["next_cursor"]
            counted = sum(
                int(client.get(f"/users/{user}").json()["username"].rpartition("-")[2])
                for user in counters
            )

        scraped = {
            server.url.removeprefix("http://"): load_counted(server) for server in (first, second)
        }
        targets = [server.url.removeprefix("http://") for server in (first, second)]
        prometheus_url = stack.enter_context(prometheus(tmp_path / "prometheus", targets))
        wait_for(
            lambda: (
                sorted(sample["value"][1] for sample in query(prometheus_url, "up")) == ["1", "1"]
            ),
            "Prometheus to scrape both instances",
        )
        promql = f'sum by (instance) (users_http_requests_total{{key="{KEY_NAME}"}})'
        scraped_by_prometheus = {
            sample["metric"]["instance"]: float(sample["value"][1])
            for sample in query(prometheus_url, promql)
        }

    made_anyway = {name: at for name, at in total.failed_creates.items() if name in names}
    report = {
        "timeline": timeline,
        "requests": total.outcomes.total(),
        "outcomes": dict(sorted(total.outcomes.items())),
        "failed": total.failures,
        "failed_creates_made_all_the_same": made_anyway,
        "acknowledged_creates": len(total.created),
        "lost_creates": len(lost_creates),
        "acknowledged_increments": len(total.increments),
        "counted_increments": counted,
        "lost_updates": len(total.increments) - len(set(total.increments)),
        "requests_counted_by_each_instance": scraped,
        "prometheus_sum_by_instance": scraped_by_prometheus,
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")

    reads = sum(n for outcome, n in total.outcomes.items() if outcome.startswith(("GET", "LIST")))
    assert len(total.created) > 50 and len(total.increments) > 50 and reads > 200, report
    assert lost_creates == [], report
    assert len(set(total.increments)) == len(total.increments), report  # no lost update
    assert counted >= len(total.increments), report
    # Requests fail only as an instance goes: nginx takes the others to the instance left.
    stopped, killed = (at for at, event in timeline if event.startswith(("SIGTERM", "SIGKILL")))
    after_stop = [what for at, what in total.failures if stopped <= at <= stopped + 1]
    after_kill = [what for at, what in total.failures if killed <= at <= killed + 1]
    assert len(after_stop) + len(after_kill) == len(total.failures), report
    # SIGTERM: a request that reached the stopping instance's socket as it closed is refused
    # unread; nginx sends it on, but for a POST (it retries no POST it sent): a 502, and the
    # user was not made, so the client may simply retry.
    assert all(what == "POST 502" for what in after_stop), report
    assert not [at for at in made_anyway.values() if stopped <= at <= stopped + 1], report
    # SIGKILL: at most what was in flight on the killed instance: a response it had begun, or
    # a POST; one per load thread at most.
    assert len(after_kill) <= len(load.threads), report
    # Prometheus holds what each instance counted of the load's requests (and its checks).
    assert scraped_by_prometheus == scraped and all(scraped.values()), report
