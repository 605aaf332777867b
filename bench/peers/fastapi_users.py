"""FastAPI + pydantic, async handlers over a dict: the same GET and PUT, the same checks
(a bearer key on PUT; exactly a `username` of 1 to 64 characters matching the pattern)."""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, StringConstraints

from bench.fill import sample_users

API_KEY = os.environ["BENCH_API_KEY"]

Username = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"
    ),
]
UserId = Annotated[int, Path(ge=1)]


class UserWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username


class User(BaseModel):
    id: int
    username: Username
    created_at: datetime
    updated_at: datetime


users: dict[int, User] = {
    user.id: user for user in map(User.model_validate, sample_users(int(os.environ["BENCH_USERS"])))
}
bearer = HTTPBearer()
app = FastAPI(title="Users (FastAPI peer)")


def require_key(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> None:
    if not hmac.compare_digest(credentials.credentials.encode(), API_KEY.encode()):
        raise HTTPException(401, "A valid API key is needed.")


def existing(user_id: int) -> User:
    user = users.get(user_id)
    if user is None:
        raise HTTPException(404, f"User {user_id} does not exist.")
    return user


@app.get("/users/{user_id}")
async def get_user(user_id: UserId) -> User:
    return existing(user_id)


@app.put("/users/{user_id}", dependencies=[Depends(require_key)])
async def update_user(user_id: UserId, body: UserWrite) -> User:
    updated = existing(user_id).model_copy(
        update={"username": body.username, "updated_at": datetime.now(UTC)}
    )
    users[user_id] = updated
    return updated
