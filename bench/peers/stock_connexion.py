"""Stock Connexion 3.3: a `FlaskApp`, its spec added with `add_api`, handlers over a dict, as
Connexion's documentation sets one up. Served by uvicorn, as `connexion run` serves it."""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import connexion

from bench.fill import sample_users

API_KEY = os.environ["BENCH_API_KEY"]

users: dict[int, dict[str, Any]] = {
    user["id"]: user for user in sample_users(int(os.environ["BENCH_USERS"]))
}


def token_info(token: str) -> dict[str, str] | None:
    return {"sub": "api-key"} if hmac.compare_digest(token.encode(), API_KEY.encode()) else None


def get_user(user_id: int) -> Any:
    user = users.get(user_id)
    if user is None:
        return {"detail": f"User {user_id} does not exist."}, 404
    return user


def update_user(user_id: int, body: dict[str, str]) -> Any:
    user = users.get(user_id)
    if user is None:
        return {"detail": f"User {user_id} does not exist."}, 404
    user["username"] = body["username"]
    user["updated_at"] = datetime.now(UTC).isoformat()
    return user


app = connexion.FlaskApp(__name__, specification_dir=Path(__file__).parent)
app.add_api("stock_connexion.yaml")
