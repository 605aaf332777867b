"""ETags made from a user's version, and the If-Match / If-None-Match lists that name them."""

from __future__ import annotations

from users_api.store import User


def etag(user: User) -> str:
    return f'"{user.version}"'


def versions_in(header: str | None) -> frozenset[int] | None:
    """The versions a conditional header names; None when there is no condition (absent or `*`).

    Weak tags (`W/"1"`) and tags this server never issued name no version.
    """
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        if len(tag) > 2 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
            versions.add(int(tag[1:-1]))
    return frozenset(versions)


def none_match(header: str | None, user: User) -> bool:
    """Whether If-None-Match names the user's current ETag (weak comparison, RFC 9110 13.1.2)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag(user) in tags
