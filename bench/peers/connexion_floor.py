"""The floor of each Connexion app class: one constant user for GET and PUT /users/{user_id},
through a spec that declares nothing to validate or authorize. `flask_app` and `async_app`
call sync handlers (an `AsyncApp` runs them in its thread pool); `async_app_coroutines` calls
`async def` handlers, as the project's are, on its event loop.

No service built on that class can serve these two operations for less CPU than this; the
bench shows how far above it the project and the stock peer are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import connexion
from connexion.resolver import Resolver

from bench.fill import sample_users

USER = next(sample_users(1))


def get_user(user_id: str) -> dict[str, Any]:
    return USER


def update_user(user_id: str, body: Any) -> dict[str, Any]:
    return USER


async def get_user_coroutine(user_id: str) -> dict[str, Any]:
    return USER


async def update_user_coroutine(user_id: str, body: Any) -> dict[str, Any]:
    return USER


COROUTINES = {"get_user": get_user_coroutine, "update_user": update_user_coroutine}

flask_app = connexion.FlaskApp(__name__, specification_dir=Path(__file__).parent)
flask_app.add_api("connexion_floor.yaml")
async_app = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent)
async_app.add_api("connexion_floor.yaml")
async_app_coroutines = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent)
async_app_coroutines.add_api(
    "connexion_floor.yaml",
    resolver=Resolver(lambda operation_id: COROUTINES[operation_id.rpartition(".")[2]]),
)
