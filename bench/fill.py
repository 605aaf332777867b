"""The users every server starts with: `user1` ... `userN`, the same for the service and peers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CREATED_AT = "2026-01-01T00:00:00+00:00"


def sample_users(count: int) -> Iterator[dict[str, Any]]:
    """Users as the spec's `User` schema shows them, ids 1 to `count`."""
    for user_id in range(1, count + 1):
        yield {
            "id": user_id,
            "username": f"user{user_id}",
            "created_at": CREATED_AT,
            "updated_at": CREATED_AT,
        }


def write_users_file(path: Path, count: int) -> None:
    """The users as JSON lines, as `users-api export` writes them and `import` reads them."""
    with path.open("w", encoding="utf-8") as sink:
        sink.writelines(json.dumps(user) + "\n" for user in sample_users(count))
