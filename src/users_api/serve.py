"""`users-api serve`: the store prepared, the keys read once, then uvicorn with one worker or
several."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from users_api.app import create_app
from users_api.auth import SCOPES, ApiKey, KeyFileError, digest, key_file_line, load_keys, new_key
from users_api.logs import log_config, resolved_format
from users_api.metrics import MULTIPROCESS_DIR
from users_api.settings import Settings, SettingsError
from users_api.store import StoreUnavailable, UserStore
from users_api.store.memory import MemoryStore
from users_api.workers import RUN_DIR

DEMO_USERNAMES = ("cosmo", "elaine", "george", "jerry")


def serve(settings: Settings, store: UserStore, *, demo: bool) -> None:
    if settings.workers > 1 and isinstance(store, MemoryStore):
        raise SettingsError(
            "the memory:// store lives in one process: it cannot serve --workers > 1"
        )
    # Once, so that every line of every worker takes the same format.
    settings = replace(settings, log_format=resolved_format(settings.log_format))
    try:
        keys = load_keys(settings.api_keys_file, settings.api_keys)
    except KeyFileError as error:
        raise SettingsError(str(error)) from None
    if not keys and not demo:
        raise SettingsError(
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
        os.environ[RUN_DIR] = run
        os.environ[MULTIPROCESS_DIR] = str(Path(run, "metrics"))
        Path(run, "metrics").mkdir()
        # users_api.workers stops each worker when this process dies, and cleans up after it.
        factory = "users_api.workers:create_app"
        uvicorn.run(factory, factory=True, workers=settings.workers, **server)


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
        "access_log": False,  # middleware.access_log logs each request, with its operation
        "server_header": False,
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds,
        # The client's address from X-Forwarded-For, only when a listed proxy sent it.
        "proxy_headers": bool(settings.trusted_proxies),
        "forwarded_allow_ips": list(settings.trusted_proxies),
    }


def _refuse_a_port_in_use(settings: Settings) -> None:
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    try:
        socket.create_server((settings.host, settings.port), family=family).close()
    except OSError as error:
        raise SettingsError(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror}"
        ) from None


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
