"""`users-api`: run the service, and look after its database."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
import tempfile
from dataclasses import fields, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, NoReturn

import uvicorn
from tqdm import tqdm

from users_api.app import create_app
from users_api.auth import (
    SCOPES,
    ApiKey,
    digest,
    key_file_line,
    new_key,
    parse_name,
    parse_scopes,
)
from users_api.logs import FORMATS, log_config
from users_api.metrics import MULTIPROCESS_DIR
from users_api.settings import APP_FLAVOURS, SQLITE_SYNCHRONOUS, Settings, SettingsError
from users_api.store import MigrationRefused, StoreUnavailable, UnknownStoreURL, UserStore
from users_api.store.memory import MemoryStore
from users_api.store.sql import SQLStore
from users_api.transfer import ImportRejected, export_users, import_users

DEMO_USERNAMES = ("cosmo", "elaine", "george", "jerry")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "keys":
        _new_key(args.name, args.scopes)
        return 0
    try:
        settings = _settings(args)
        store = settings.open_store()
    except (SettingsError, UnknownStoreURL) as error:
        _refuse(str(error))
    if args.command != "serve" and not isinstance(store, SQLStore):
        _refuse(f"{args.command} needs a sqlite:// or postgresql:// store, not memory://")
    try:
        if args.command == "migrate":
            assert isinstance(store, SQLStore)
            _say(f"The database is at schema revision {store.migrate()}.")
        elif args.command == "export":
            _say(f"Exported {asyncio.run(export_users(store, args.file))} users to {args.file}.")
        elif args.command == "import":
            asyncio.run(store.prepare())
            _say(f"Imported {_import(store, args.file)} users from {args.file}.")
        else:
            _serve(settings, store, demo=args.demo)
    except StoreUnavailable as error:
        _say(f"The store is unavailable: {error.reason}")
        return 1
    except MigrationRefused as refused:
        _say(f"The schema was not migrated: {refused}")
        return 1
    except ImportRejected as rejected:
        _say("\n".join([*rejected.errors, str(rejected)]))
        return 1
    except OSError as error:
        _say(str(error))
        return 1
    finally:
        asyncio.run(store.close())
    return 0


def _serve(settings: Settings, store: UserStore, *, demo: bool) -> None:
    if settings.workers > 1 and isinstance(store, MemoryStore):
        _refuse("the memory:// store lives in one process: it cannot serve --workers > 1")
    try:
        keys = settings.load_keys()
    except SettingsError as error:
        _refuse(str(error))
    if not keys and not demo:
        _refuse(
            "no API key: list keys in a file (--api-keys-file, USERS_API_KEYS_FILE; "
            "`users-api keys new` makes one), or try it with --demo"
        )
    _refuse_a_port_in_use(settings)
    try:
        asyncio.run(_prepare(store, demo=demo))
    except StoreUnavailable as error:
        _say(f"The store is unavailable ({error.reason}); /readyz answers 503 until it is up.")
    demo_key = None if keys else new_key()
    if demo_key:
        keys = [ApiKey("demo", frozenset(SCOPES), digest(demo_key))]
        _say(f"Demo key, every scope, this run only:  Authorization: Bearer {demo_key}")
    _say(f"Swagger console: http://{settings.host}:{settings.port}/ui/")
    # uvicorn finishes in-flight requests on SIGTERM, then raises the signal again: make that
    # second one a clean exit, since stopping on request is success.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = uvicorn_options(settings)
    if settings.workers == 1:
        uvicorn.run(create_app(settings, store=store, keys=keys), **server)
        return
    # Each worker process builds its own app and store from the same settings, and writes its
    # metrics where /metrics, in any worker, can add them up.
    asyncio.run(store.close())
    with tempfile.TemporaryDirectory(prefix="users-api-") as run:
        if demo_key:  # the workers read the demo key's digest, as from any key file
            key_file = Path(run, "demo-key")
            key_file.write_text(key_file_line("demo", SCOPES, demo_key) + "\n")
            settings = replace(settings, api_keys_file=str(key_file))
        os.environ.update(settings.to_env())
        os.environ[MULTIPROCESS_DIR] = str(Path(run, "metrics"))
        Path(run, "metrics").mkdir()
        uvicorn.run("users_api.app:create_app", factory=True, workers=settings.workers, **server)


async def _prepare(store: UserStore, *, demo: bool) -> None:
    """Migrate the schema before any worker serves; with `demo`, fill an empty store."""
    await store.prepare()
    if demo and not await store.list(after=0, limit=1):
        for username in DEMO_USERNAMES:
            await store.create(username=username)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How `serve` runs uvicorn, whatever the number of workers."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": log_config(settings.log_format),
        "access_log": False,  # users_api.telemetry logs each request, with its operation
        "server_header": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # The client's address from X-Forwarded-For, only when a listed proxy sent it.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }


def _new_key(name: str, scopes: frozenset[str]) -> None:
    """A fresh key, shown once, and the key file's line for it, which holds only its digest."""
    key = new_key()
    _say("Give the key to its client; add the line to the key file. The key is not kept.")
    sys.stdout.write(f"key:  {key}\nline: {key_file_line(name, scopes, key)}\n")


def _refuse_a_port_in_use(settings: Settings) -> None:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        socket.create_server((settings.host, settings.port), family=family).close()
    except OSError as error:
        _refuse(f"cannot listen on {settings.host}:{settings.port}: {error.strerror}")


def _import(store: UserStore, path: Path) -> int:
    """The import, with a progress bar on stderr for a file of a megabyte or more."""
    size = path.stat().st_size
    with tqdm(
        total=size, unit="B", unit_scale=True, desc="import", disable=size < 1_000_000
    ) as progress:
        return asyncio.run(import_users(store, path, on_read=progress.update))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="users-api", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('users-api')}")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store",
        dest="store_url",
        help="store URL: sqlite:///PATH, postgresql://USER@HOST:PORT/DB or memory:// "
        "(USERS_STORE_URL; sqlite:///data/users.db)",
    )
    store.add_argument(
        "--pool-size",
        type=int,
        help="database connections per process; a request that finds none free waits "
        "(USERS_POOL_SIZE; 5)",
    )
    store.add_argument(
        "--sqlite-synchronous",
        type=str.upper,
        choices=SQLITE_SYNCHRONOUS,
        help="FULL: a write is on disk when acknowledged; NORMAL: faster, but a power cut "
        "may lose the last writes (USERS_SQLITE_SYNCHRONOUS; FULL)",
    )
    store.add_argument(
        "--sqlite-busy-timeout-ms",
        type=int,
        help="how long a write waits for another process's write before it answers 503 "
        "(USERS_SQLITE_BUSY_TIMEOUT_MS; 5000)",
    )
    store.add_argument(
        "--store-timeout-ms",
        type=int,
        help="how long a request waits on the database, connecting and queuing for a "
        "connection included, before it answers 503 (USERS_STORE_TIMEOUT_MS; 5000)",
    )
    store.add_argument(
        "--idempotency-retention-hours",
        type=int,
        help="how long a create's Idempotency-Key is remembered: a retry within it gets the "
        "first answer (USERS_IDEMPOTENCY_RETENTION_HOURS; 24)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        parents=[store],
        help="run the service",
        description="Run the service. Each flag overrides its USERS_* environment variable.",
    )
    serve.add_argument("--host", help="address to listen on (USERS_HOST; 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (USERS_PORT; 8080)")
    serve.add_argument("--workers", type=int, help="worker processes (USERS_WORKERS; 1)")
    serve.add_argument(
        "--api-keys-file",
        metavar="FILE",
        help="the API keys, a line each: NAME SCOPES sha256:DIGEST (USERS_API_KEYS_FILE; "
        "for development, USERS_API_KEYS takes plain keys, comma-separated, with every scope). "
        "Never give a key on the command line, where ps shows it",
    )
    serve.add_argument(
        "--public-reads",
        action="store_true",
        default=None,
        help="let clients without a key list and get users (USERS_PUBLIC_READS; off)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        help="largest request body accepted (USERS_MAX_BODY_BYTES; 16384)",
    )
    serve.add_argument(
        "--validate-responses",
        action="store_true",
        default=None,
        help="check every response against the spec; slow, for debugging "
        "(USERS_VALIDATE_RESPONSES; off)",
    )
    serve.add_argument(
        "--app",
        choices=APP_FLAVOURS,
        help="Connexion's AsyncApp or its FlaskApp, over the same handlers (USERS_APP; async)",
    )
    serve.add_argument(
        "--log-format",
        choices=FORMATS,
        help="json: a line of JSON per event; text: for a person (USERS_LOG_FORMAT; auto: "
        "text on a terminal, json otherwise)",
    )
    serve.add_argument(
        "--rate-limit-writes",
        metavar="LIMITS",
        help="writes allowed per API key, like 50/second or 50/second;1000/hour "
        "(USERS_RATE_LIMIT_WRITES; 1000/second)",
    )
    serve.add_argument(
        "--rate-limit-requests",
        metavar="LIMITS",
        help="requests allowed per client address (USERS_RATE_LIMIT_REQUESTS; 5000/second)",
    )
    serve.add_argument(
        "--rate-limit-storage",
        metavar="URL",
        help="where the counts live: memory:// (per process) or redis://HOST:PORT "
        "(shared by workers and instances) (USERS_RATE_LIMIT_STORAGE; memory://)",
    )
    serve.add_argument(
        "--rate-limit-timeout-ms",
        type=int,
        help="how long a request waits for the rate limits' storage; past it, or when it "
        "fails, the request passes unlimited, and is counted (USERS_RATE_LIMIT_TIMEOUT_MS; 250)",
    )
    serve.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="let browser scripts from this origin call the API, like https://app.example.com; "
        "repeat for more (USERS_CORS_ORIGINS, comma-separated; none)",
    )
    serve.add_argument(
        "--shutdown-grace-seconds",
        type=int,
        help="on SIGTERM, how long requests in flight may take to finish "
        "(USERS_SHUTDOWN_GRACE_SECONDS; 30)",
    )
    serve.add_argument(
        "--metrics-network",
        dest="metrics_networks",
        action="append",
        metavar="NETWORK",
        help="clients that may read /metrics, like 10.0.0.0/8; to others it is a 404; repeat "
        "for more (USERS_METRICS_NETWORKS, comma-separated; 127.0.0.1/32,::1/128)",
    )
    serve.add_argument(
        "--trusted-proxy",
        dest="trusted_proxies",
        action="append",
        metavar="NETWORK",
        help="a load balancer whose X-Forwarded-For names the client; repeat for more "
        "(USERS_TRUSTED_PROXIES, comma-separated; none: the peer's address is the client's)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="add example users to an empty store, and without a key configured, make one up "
        "with every scope for this run",
    )
    commands.add_parser(
        "migrate",
        parents=[store],
        help="bring the database's schema to this version (serve does it too)",
    )
    export = commands.add_parser(
        "export", parents=[store], help="write every user to FILE, one JSON object a line"
    )
    export.add_argument("file", type=Path, metavar="FILE")
    import_ = commands.add_parser(
        "import",
        parents=[store],
        help="add the users in FILE (as export writes them) in one transaction; "
        "any bad line, and nothing is added",
    )
    import_.add_argument("file", type=Path, metavar="FILE")
    keys = commands.add_parser("keys", help="make API keys").add_subparsers(
        dest="action", required=True
    )
    new = keys.add_parser(
        "new", help="print a new key once, and the key file's line for it (only its digest)"
    )
    new.add_argument("--name", required=True, type=_key_name, help="what logs call the key")
    new.add_argument(
        "--scopes",
        required=True,
        type=_scopes,
        help="users:read, users:write (which may read too), or both, comma-separated",
    )
    return parser


def _scopes(text: str) -> frozenset[str]:
    try:
        return parse_scopes(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _key_name(name: str) -> str:
    try:
        return parse_name(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


SETTINGS = {field.name for field in fields(Settings)}


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, with each flag given on the command line put over them."""
    given: dict[str, Any] = {
        name: tuple(value) if isinstance(value, list) else value
        for name, value in vars(args).items()
        if name in SETTINGS and value is not None
    }
    return replace(Settings.from_env(), **given)


def _refuse(reason: str) -> NoReturn:
    """Stop before doing anything, with one line and exit status 2, as for a bad flag."""
    _say(f"users-api: error: {reason}")
    raise SystemExit(2)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
