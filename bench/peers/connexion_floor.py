"""The floor of each Connexion app class: one constant user for GET and PUT /users/{user_id},
through a spec that declares nothing to validate or authorize, by sync handlers as the
project's are (an `AsyncApp` runs them in its thread pool).

No service built on that class can serve these two operations for less CPU than this; the
bench shows how far above it the project and the stock peer are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import connexion

from bench.fill import sample_users

USER = next(sample_users(1))


def get_user(user_id: str) -> dict[str, Any]:
    return USER


def update_user(user_id: str, body: Any) -> dict[str, Any]:
    return USER


flask_app = connexion.FlaskApp(__name__, specification_dir=Path(__file__).parent)
flask_app.add_api("connexion_floor.yaml")
async_app = connexion.AsyncApp(__name__, specification_dir=Path(__file__).parent)
async_app.add_api("connexion_floor.yaml")
