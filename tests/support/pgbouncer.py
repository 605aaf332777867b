"""A real PgBouncer (Debian's) in transaction pooling mode on a free loopback port, in front of
the tests' PostgreSQL, and a database of its own behind it (PgBouncer 1.18 passes no
`options`, so no per-test search_path: a database per test instead)."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

from tests.support.servers import free_port, running, wait_for
from tests.support.stores import POSTGRES_URL

PGBOUNCER = "/usr/sbin/pgbouncer"


@contextmanager
def postgres_database() -> Iterator[str]:
    """The name of a fresh database on the tests' PostgreSQL, dropped afterwards."""
    name = f"test_pgb_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


@contextmanager
def pgbouncer(*, pool_size: int = 4) -> Iterator[int]:
    """A running PgBouncer in transaction mode, each database with `pool_size` server
    connections; yields its port. It refuses to run as root: then it runs as `postgres`, from
    a folder that user can read."""
    target = make_url(POSTGRES_URL)
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    folder.chmod(0o755)
    (folder / "users.txt").write_text(f'"{target.username}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.host} port={target.port or 5432}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {pool_size}\nmax_client_conn = 200\n"
        # Settings sent at connecting (the store's statement_timeout, the migrations' options),
        # which PgBouncer cannot pass on to a server connection that others share.
        "ignore_startup_parameters = statement_timeout,options,extra_float_digits\n"
    )
    for file in folder.iterdir():
        file.chmod(0o644)
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postgres"]
    try:
        with running(command):
            wait_for(
                lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() is None,
                "PgBouncer",
                seconds=10,
            )
            yield port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def through(port: int, database: str) -> str:
    """The URL of `database` through PgBouncer on `port`."""
    url = make_url(POSTGRES_URL).set(port=port, database=database)
    return url.render_as_string(hide_password=False)
