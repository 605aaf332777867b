"""The /users operations."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from users_api.handlers.etags import etag, none_match, versions_in
from users_api.store import IdempotencyKey, User, UserStore

Response = tuple[Any, int, dict[str, str]]
JSON = {"Content-Type": "application/json"}


def present(user: User) -> dict[str, Any]:
    """A user as the spec's `User` schema shows it."""
    return {
        "id": user.id,
        "username": user.username,
        "created_at": timestamp(user.created_at),
        "updated_at": timestamp(user.updated_at),
    }


def timestamp(moment: datetime) -> str:
    """One format on every store: UTC, to the microsecond (`2026-11-28T13:42:03.120000+00:00`)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


async def list_users(
    limit: int = 20, cursor: str | None = None, username: str | None = None, *, store: UserStore
) -> Response:
    """A page of users after `cursor`; one more is fetched to know whether a next page exists."""
    users = await store.list(after=int(cursor or 0), limit=limit + 1, username=username)
    page = users[:limit]
    next_cursor = str(page[-1].id) if len(users) > limit else None
    body = {"items": [present(user) for user in page], "next_cursor": next_cursor}
    return body, 200, dict(JSON)


async def create_user(
    body: dict[str, str],
    *,
    store: UserStore,
    token_info: dict[str, Any],
    idempotency_key: str | None = None,
) -> Response:
    """An idempotency key is its client's own: `client` names the request's API key."""
    if idempotency_key is None:
        created, replayed = await store.create(username=body["username"]), False
    else:
        key = IdempotencyKey(token_info["client"], idempotency_key, fingerprint(body))
        created, replayed = await store.create_once(username=body["username"], key=key)
    headers = {"Location": f"/users/{created.id}", "ETag": etag(created)} | JSON
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return present(created), 201, headers


def fingerprint(body: dict[str, str]) -> str:
    """The body's digest, however its JSON was spaced or ordered."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


async def get_user(user_id: int, *, store: UserStore, if_none_match: str | None = None) -> Response:
    user = await store.get(user_id)
    if none_match(if_none_match, user):
        return None, 304, {"ETag": etag(user)} | JSON
    return present(user), 200, {"ETag": etag(user)} | JSON


async def update_user(
    user_id: int, body: dict[str, str], *, store: UserStore, if_match: str | None = None
) -> Response:
    user = await store.update(
        user_id, username=body["username"], expected_versions=versions_in(if_match)
    )
    return present(user), 200, {"ETag": etag(user)} | JSON


async def delete_user(user_id: int, *, store: UserStore, if_match: str | None = None) -> Response:
    await store.delete(user_id, expected_versions=versions_in(if_match))
    return None, 204, {}
