"""The in-memory store: for tests and demos. It lives in one process and dies with it."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from users_api.store import (
    DEFAULT_OPTIONS,
    MAX_ID,
    IdempotencyKey,
    IdempotencyKeyReused,
    IdsExhausted,
    PreconditionFailed,
    StoreOptions,
    User,
    UserIdTaken,
    UsernameTaken,
    UserNotFound,
    UsersTaken,
    next_version,
)


class MemoryStore:
    """Answers on the caller's event loop, never awaiting anything. One lock around every read
    and write, never held across an await, keeps it safe for callers on several threads (each
    with its loop) too, and makes a conditional write check and write in one step. Lookups by
    id and by username are O(1); a page is O(log n + limit)."""

    def __init__(self, options: StoreOptions = DEFAULT_OPTIONS) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, User] = {}
        self._ids_by_name: dict[str, int] = {}
        self._ordered_ids: list[int] = []
        self._last_id = 0
        self._retention = timedelta(hours=options.idempotency_retention_hours)
        self._created_once: dict[tuple[str, str], tuple[str, User]] = {}
        """Each idempotency key's fingerprint and the user it created, oldest first."""

    async def create(self, *, username: str) -> User:
        with self._lock:
            return self._create(username)

    async def create_once(self, *, username: str, key: IdempotencyKey) -> tuple[User, bool]:
        """Never in flight: the lock makes each call one step."""
        with self._lock:
            self._forget_expired_keys()
            if (found := self._created_once.get((key.owner, key.key))) is not None:
                fingerprint, user = found
                if fingerprint != key.fingerprint:
                    raise IdempotencyKeyReused()
                return user, True
            user = self._create(username)
            self._created_once[key.owner, key.key] = key.fingerprint, user
            return user, False

    async def get(self, user_id: int) -> User:
        with self._lock:
            return self._current(user_id, None)

    async def list(self, *, after: int, limit: int, username: str | None = None) -> list[User]:
        with self._lock:
            if username is not None:
                user_id = self._ids_by_name.get(username.lower())
                ids = [user_id] if user_id is not None and user_id > after else []
            else:
                start = bisect.bisect_right(self._ordered_ids, after)
                ids = self._ordered_ids[start : start + limit]
            return [self._users[user_id] for user_id in ids]

    async def update(
        self, user_id: int, *, username: str, expected_versions: Collection[int] | None = None
    ) -> User:
        with self._lock:
            user = self._current(user_id, expected_versions)
            if username.lower() != user.username.lower():
                self._claim(username)
                del self._ids_by_name[user.username.lower()]
                self._ids_by_name[username.lower()] = user_id
            updated = replace(
                user,
                username=username,
                updated_at=datetime.now(UTC),
                version=next_version(user.version),
            )
            self._users[user_id] = updated
            return updated

    async def delete(
        self, user_id: int, *, expected_versions: Collection[int] | None = None
    ) -> None:
        with self._lock:
            user = self._current(user_id, expected_versions)
            del self._users[user_id]
            del self._ids_by_name[user.username.lower()]
            del self._ordered_ids[bisect.bisect_left(self._ordered_ids, user_id)]

    async def add_all(
        self, users: Iterable[User], *, last_id: int = 0, check_only: bool = False
    ) -> int:
        with self._lock:
            added: dict[int, User] = {}
            ids_by_name: dict[str, int] = {}
            taken = UsersTaken()
            for place, user in enumerate(users):
                name = user.username.lower()
                holder = self._ids_by_name.get(name, ids_by_name.get(name))
                if user.id in self._users or user.id in added:
                    taken.add(place, UserIdTaken(user.id))
                    continue
                if holder is not None:
                    taken.add(place, UsernameTaken(user.username, holder))
                    continue
                added[user.id] = replace(
                    user,
                    created_at=user.created_at.astimezone(UTC),
                    updated_at=user.updated_at.astimezone(UTC),
                )
                ids_by_name[name] = user.id
            if taken.count:
                raise taken
            if check_only:
                return len(added)
            self._users.update(added)
            self._ids_by_name.update(ids_by_name)
            self._ordered_ids = sorted([*self._ordered_ids, *added])
            self._last_id = max(self._last_id, *added, last_id)
            return len(added)

    async def last_id(self) -> int:
        with self._lock:
            return self._last_id

    async def prepare(self) -> None:
        pass

    async def check(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _create(self, username: str) -> User:
        """Call with the lock held."""
        if self._last_id >= MAX_ID:
            raise IdsExhausted()
        self._claim(username)
        self._last_id += 1
        now = datetime.now(UTC)
        user = User(self._last_id, username, now, now, version=1)
        self._users[user.id] = user
        self._ids_by_name[username.lower()] = user.id
        self._ordered_ids.append(user.id)
        return user

    def _forget_expired_keys(self) -> None:
        """Drop the keys older than the retention, which are the first; call with the lock held."""
        expired = datetime.now(UTC) - self._retention
        while self._created_once:
            oldest = next(iter(self._created_once))
            if self._created_once[oldest][1].created_at > expired:
                return
            del self._created_once[oldest]

    def _current(self, user_id: int, expected_versions: Collection[int] | None) -> User:
        """The user, if it exists and its version is expected; call with the lock held."""
        user = self._users.get(user_id)
        if user is None:
            raise UserNotFound(user_id)
        if expected_versions is not None and user.version not in expected_versions:
            raise PreconditionFailed(user_id)
        return user

    def _claim(self, username: str) -> None:
        """Refuse a username another user has; call with the lock held."""
        if (holder := self._ids_by_name.get(username.lower())) is not None:
            raise UsernameTaken(username, holder)
