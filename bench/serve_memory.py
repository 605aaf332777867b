"""`users-api serve --store memory://` with the store filled from a JSON-lines file first.

A memory store lives inside the server's process, so nothing outside it can fill it, and a
million POSTs would measure the POSTs. This does what `users-api serve` does with one worker
(`create_app`, then `uvicorn.run`, settings from `USERS_*`) after filling the store with the
same code `users-api import` uses. Bench-only: the service itself cannot preload a memory store.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import replace
from pathlib import Path

import uvicorn

from users_api.app import create_app
from users_api.serve import uvicorn_options
from users_api.settings import Settings
from users_api.store.memory import MemoryStore
from users_api.transfer import import_users


def main(users_file: str) -> None:
    settings = replace(Settings.from_env(), store_url="memory://")
    store = MemoryStore()
    asyncio.run(import_users(store, Path(users_file)))
    uvicorn.run(create_app(settings, store=store), **uvicorn_options(settings))


if __name__ == "__main__":
    main(sys.argv[1])
