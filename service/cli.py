"""`users-api`: the service's command line."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
from dataclasses import replace
from typing import Any

import uvicorn

from service.app import create_app
from service.settings import Settings, SettingsError
from store import UnknownStoreURL, open_store
from store.memory import MemoryStore

DEMO_USERNAMES = ("cosmo", "elaine", "george", "jerry")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
        store = open_store(settings.store_url)
    except (SettingsError, UnknownStoreURL) as error:
        parser.error(str(error))
    if settings.workers > 1 and isinstance(store, MemoryStore):
        parser.error("the memory:// store lives in one process: it cannot serve --workers > 1")
    if args.demo and not store.list(after=0, limit=1):
        for username in DEMO_USERNAMES:
            store.create(username=username)
    if not settings.api_keys:
        settings = replace(settings, api_keys=(secrets.token_urlsafe(24),))
        _say(f"No API key configured; writes need:  Authorization: Bearer {settings.api_keys[0]}")
    _say(f"Swagger console: http://{settings.host}:{settings.port}/ui/")
    # uvicorn finishes in-flight requests on SIGTERM, then raises the signal again: make that
    # second one a clean exit, since stopping on request is success.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if settings.workers == 1:
        uvicorn.run(create_app(settings, store=store), host=settings.host, port=settings.port)
        return 0
    # Each worker process builds its own app and store from the same settings.
    store.close()
    os.environ.update(settings.to_env())
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="users-api", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the service",
        description="Run the service. Each flag overrides its USERS_* environment variable.",
    )
    serve.add_argument("--host", help="address to listen on (USERS_HOST; 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (USERS_PORT; 8080)")
    serve.add_argument(
        "--store",
        dest="store_url",
        help="store URL: sqlite:///PATH, postgresql://USER@HOST:PORT/DB or memory:// "
        "(USERS_STORE_URL; sqlite:///data/users.db)",
    )
    serve.add_argument("--workers", type=int, help="worker processes (USERS_WORKERS; 1)")
    serve.add_argument(
        "--api-key",
        dest="api_keys",
        action="append",
        help="a key that may write; repeat to rotate keys (USERS_API_KEYS, comma-separated; "
        "without any, one is made up and printed at start)",
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
    serve.add_argument("--demo", action="store_true", help="add example users to an empty store")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """The environment's settings, with each flag given on the command line put over them."""
    given: dict[str, Any] = {
        name: tuple(value) if name == "api_keys" else value
        for name, value in vars(args).items()
        if name not in {"command", "demo"} and value is not None
    }
    return replace(Settings.from_env(), **given)


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
