"""The seed lesson's way: plain Flask, the users in a list, each found by a linear scan.

Served as the seed served it, by gunicorn with one sync worker. The checks match what the
contract asks of GET and PUT /users/{id}: a bearer key on PUT, and a JSON object body with
exactly a `username` of 1 to 64 characters matching the spec's pattern.
"""

from __future__ import annotations

import hmac
import os
import re
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from bench.fill import sample_users

USERNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
API_KEY = os.environ["BENCH_API_KEY"]

users: list[dict[str, Any]] = list(sample_users(int(os.environ["BENCH_USERS"])))
app = Flask(__name__)


def find_user(user_id: int) -> dict[str, Any] | None:
    for user in users:
        if user["id"] == user_id:
            return user
    return None


@app.get("/users/<int:user_id>")
def get_user(user_id: int) -> tuple[Response, int]:
    user = find_user(user_id)
    if user is None:
        return jsonify(error=f"User {user_id} does not exist."), 404
    return jsonify(user), 200


@app.put("/users/<int:user_id>")
def update_user(user_id: int) -> tuple[Response, int]:
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if not hmac.compare_digest(presented.encode(), API_KEY.encode()):
        return jsonify(error="A valid API key is needed."), 401
    body: Any = request.get_json(silent=True)
    if not valid_user_write(body):
        return jsonify(error="The request body is invalid."), 400
    user = find_user(user_id)
    if user is None:
        return jsonify(error=f"User {user_id} does not exist."), 404
    user["username"] = body["username"]
    user["updated_at"] = datetime.now(UTC).isoformat()
    return jsonify(user), 200


def valid_user_write(body: Any) -> bool:
    if not isinstance(body, dict) or set(body) != {"username"}:
        return False
    username = body["username"]
    return isinstance(username, str) and len(username) <= 64 and bool(USERNAME.match(username))
