"""The variants the benchmark measures, and how each is started as a real process."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
API_KEY = "bench-key"
UNLIMITED = "1000000/second"

PROJECT_SCENARIOS = ("get", "put", "list", "list-deep", "post")
PEER_SCENARIOS = ("get", "put")
"""The peers implement the two operations the issue compares: GET and PUT /users/{id}."""

STORES = {
    # name: (store URL scheme, --sqlite-synchronous)
    "memory": ("memory", None),
    "sqlite-full": ("sqlite", "FULL"),
    "sqlite-normal": ("sqlite", "NORMAL"),
    "postgres": ("postgresql", None),
}
PEERS = {
    "fastapi": "bench.peers.fastapi_users:app",
    "stock-connexion": "bench.peers.stock_connexion:app",
    "seed-flask": "bench.peers.seed_flask:app",
    "floor-flask": "bench.peers.connexion_floor:flask_app",
    "floor-async": "bench.peers.connexion_floor:async_app",
    "floor-async-def": "bench.peers.connexion_floor:async_app_coroutines",
    "fastapi-asyncpg": "bench.peers.fastapi_asyncpg:app",
    "flask-psycopg": "bench.peers.flask_psycopg:app",
    "floor-asyncpg": "bench.peers.connexion_floor_asyncpg:app",
}
POSTGRES_PEERS = ("fastapi-asyncpg", "flask-psycopg", "floor-asyncpg")
"""Peers over the service's table in PostgreSQL: skipped, as its variants are, without it."""


@dataclass(frozen=True)
class Variant:
    """One server to measure: the project (`app`, `store`, `workers`) or a peer (`peer`)."""

    name: str
    app: str = ""
    store: str = ""
    workers: int = 1
    peer: str = ""
    root: Path = ROOT
    """The source tree the server runs from (an earlier commit's, for a baseline twin)."""
    bin: Path = BIN
    """The environment's scripts it runs with."""

    @property
    def scenarios(self) -> tuple[str, ...]:
        return PEER_SCENARIOS if self.peer else PROJECT_SCENARIOS


def all_variants() -> list[Variant]:
    """Both app flavours over every store with 1 and 2 workers (memory: 1 only), then peers."""
    project = [
        Variant(f"{app}-{store}-{workers}w", app=app, store=store, workers=workers)
        for workers in (1, 2)
        for app in ("flask", "async")
        for store in STORES
        if not (store == "memory" and workers > 1)
    ]
    peers = [
        Variant(peer, peer=peer, store="postgres" if peer in POSTGRES_PEERS else "")
        for peer in PEERS
    ]
    return [*project, *peers]


@dataclass(frozen=True)
class Pinning:
    """Which CPUs the server and the load generator run on."""

    server: str
    load: str

    @property
    def shared(self) -> bool:
        return bool(set(self.server.split(",")) & set(self.load.split(",")))


def pinning(workers: int) -> Pinning:
    """One CPU per worker from the lowest; wrk on the next free one, or on the last if none is
    free (a 2-worker server on a 2-CPU machine shares a CPU with wrk, and says so)."""
    cpus = sorted(os.sched_getaffinity(0))
    server = cpus[: min(workers, len(cpus))]
    load = cpus[len(server)] if len(cpus) > len(server) else cpus[-1]
    return Pinning(",".join(map(str, server)), str(load))


@dataclass
class Server:
    variant: Variant
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[psutil.Process]:
        """The server's process and every process under it (uvicorn's or gunicorn's workers)."""
        parent = psutil.Process(self.process.pid)
        return [parent, *parent.children(recursive=True)]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the whole tree so far."""
        total = 0.0
        for process in self.tree():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def postgres_replies(self, port: int) -> dict[int, int]:
        """The data segments each of the tree's connections to PostgreSQL (at `port`) has
        received, by local port (`ss`'s count): PostgreSQL sends a reply at once, in one
        segment while it is under its 8 KB send buffer, so their growth is the round trips."""
        local = set()
        for process in self.tree():
            try:
                connections = process.net_connections(kind="tcp")
            except psutil.NoSuchProcess:
                continue
            local |= {c.laddr.port for c in connections if c.raddr and c.raddr.port == port}
        return {
            socket_port: replies
            for socket_port, replies in postgres_sockets(port).items()
            if socket_port in local
        }

    def rss_bytes(self) -> int:
        total = 0
        for process in self.tree():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total


class Data:
    """The users every server starts with: a JSON-lines file and, filled from it when first
    needed, a SQLite database that each SQLite variant gets a copy of and a PostgreSQL schema
    that the PostgreSQL variants share (they are never measured at the same time)."""

    def __init__(self, workdir: Path, users_file: Path, postgres_url: str, pool_size: int) -> None:
        self.workdir = workdir
        self.users_file = users_file
        self.users = count_lines(users_file)
        self.postgres_url = postgres_url
        self.pool_size = pool_size
        """Connections per process, the service's and the PostgreSQL peers' alike."""
        self.postgres_schema = f"bench_{uuid.uuid4().hex[:12]}"
        self._sqlite_template: Path | None = None
        self._postgres_filled = False

    def store_url(self, variant: Variant) -> str:
        scheme = STORES[variant.store][0]
        if scheme == "memory":
            return "memory://"
        if scheme == "sqlite":
            database = self.workdir / f"{variant.name}.db"
            shutil.copyfile(self._filled_sqlite(), database)
            return f"sqlite:///{database}"
        return self._filled_postgres()

    def _filled_sqlite(self) -> Path:
        if self._sqlite_template is None:
            template = self.workdir / "template.db"
            import_users(f"sqlite:///{template}", self.users_file)
            self._sqlite_template = template
        return self._sqlite_template

    def _filled_postgres(self) -> str:
        url = f"{self.postgres_url}?options=-csearch_path%3D{self.postgres_schema}"
        if not self._postgres_filled:
            self._postgres(f"CREATE SCHEMA {self.postgres_schema}")
            self._postgres_filled = True
            import_users(url, self.users_file)
        return url

    def drop(self) -> None:
        if self._postgres_filled:
            self._postgres(f"DROP SCHEMA {self.postgres_schema} CASCADE")

    def _postgres(self, statement: str) -> None:
        engine = _engine(self.postgres_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text(statement))
        engine.dispose()


def postgres_reachable(url: str) -> bool:
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return True
    except OperationalError:
        return False
    finally:
        engine.dispose()


def postgres_port(url: str) -> int:
    return make_url(url).port or 5432


def postgres_sockets(port: int) -> dict[int, int]:
    """Every established connection to `port` on this machine: its local port, and the data
    segments it has received."""
    listing = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sockets, local = {}, None
    for line in listing.splitlines():
        if not line[:1].isspace():  # the addresses; the next line is the socket's counts
            local = int(line.split()[2].rpartition(":")[2])
        elif local is not None:
            received = re.search(r"\bdata_segs_in:(\d+)", line)
            sockets[local] = int(received[1]) if received else 0
    return sockets


def _engine(url: str, **options: Any) -> Engine:
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), **options)


def import_users(store_url: str, users_file: Path) -> None:
    """`users-api import`, as an operator fills a database."""
    subprocess.run(
        [BIN / "users-api", "import", users_file, "--store", store_url],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def command(variant: Variant, data: Data, port: int) -> tuple[list[str], dict[str, str]]:
    """The command line and extra environment that start `variant` on `port`."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    environ = {"BENCH_USERS": str(data.users), "BENCH_API_KEY": API_KEY}
    if variant.peer in POSTGRES_PEERS:
        environ["BENCH_POSTGRES_URL"] = data.store_url(variant)
        environ["BENCH_POOL_SIZE"] = str(data.pool_size)
    if variant.peer in ("seed-flask", "flask-psycopg"):
        gunicorn = [str(BIN / "gunicorn"), "--workers", "1", "--bind", f"127.0.0.1:{port}"]
        if variant.peer == "flask-psycopg":  # threads, so that requests share its pool
            gunicorn += ["--threads", "8"]
        return [*gunicorn, PEERS[variant.peer]], environ
    if variant.peer:
        return [str(BIN / "uvicorn"), *address, PEERS[variant.peer]], environ
    settings = {
        "USERS_APP": variant.app,
        "USERS_API_KEYS": API_KEY,
        "USERS_WORKERS": str(variant.workers),
        "USERS_POOL_SIZE": str(data.pool_size),
        # Rate limiting stays on, as users run it, but never refuses the load generator.
        "USERS_RATE_LIMIT_WRITES": UNLIMITED,
        "USERS_RATE_LIMIT_REQUESTS": UNLIMITED,
    }
    if variant.store == "memory":
        # Settings as `users-api serve` reads them; see bench/serve_memory.py for why.
        environ = {"USERS_HOST": "127.0.0.1", "USERS_PORT": str(port), **settings}
        return [
            str(variant.bin / "python"),
            "-m",
            "bench.serve_memory",
            str(data.users_file),
        ], environ
    synchronous = STORES[variant.store][1]
    store = ["--store", data.store_url(variant)]
    if synchronous:
        store += ["--sqlite-synchronous", synchronous]
    return [str(variant.bin / "users-api"), "serve", *address, *store], settings


def count_lines(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for _ in lines)


@contextmanager
def running(variant: Variant, data: Data, logs: Path) -> Iterator[Server]:
    """`variant` listening on a free loopback port, pinned to its CPUs; stopped on the way out."""
    port = free_port()
    argv, environ = command(variant, data, port)
    log = logs / f"{variant.name}.log"
    cpus = pinning(variant.workers).server
    with log.open("wb") as sink:
        # stdout is the service's access log: written as users run it, but not kept.
        process = subprocess.Popen(
            ["taskset", "-c", cpus, *argv],
            cwd=variant.root,
            env={**os.environ, **environ},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    server = Server(variant, f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until_up(server, timeout=60 + data.users / 5_000)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_up(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.variant.name} exited:\n{server.log.read_text()}")
        try:
            with urllib.request.urlopen(read_request(f"{server.url}/users/1"), timeout=2):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{server.variant.name} did not answer in {timeout:.0f} s")


def check_answers(server: Server, scenarios: list[str]) -> None:
    """One request per scenario must succeed before any is timed: a fast 401 is no result."""
    requests = {
        "get": read_request(f"{server.url}/users/1"),
        "put": write_request("PUT", f"{server.url}/users/1", "user1"),
        "list": read_request(f"{server.url}/users?limit=20"),
        "list-deep": read_request(f"{server.url}/users?limit=20&cursor=1"),
        "post": write_request("POST", f"{server.url}/users", f"check-{uuid.uuid4().hex[:8]}"),
    }
    for scenario in scenarios:
        with urllib.request.urlopen(requests[scenario], timeout=10) as response:
            if not 200 <= response.status < 300:
                raise RuntimeError(f"{server.variant.name} {scenario}: {response.status}")


def read_request(url: str) -> urllib.request.Request:
    """Reads need the key too; the peers, whose reads are public, ignore it."""
    return urllib.request.Request(url, headers={"Authorization": f"Bearer {API_KEY}"})


def write_request(method: str, url: str, username: str) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        method=method,
        data=json.dumps({"username": username}).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
