"""ETags made from a user's version, and the If-Match / If-None-Match lists that name them."""

from __future__ import annotations

import re

from users_api.store import MAX_VERSION, User

ISSUED = re.compile(r"[1-9][0-9]{0,9}")
"""The digits of a tag this server issues: a version, in ASCII, without leading zeros."""


def etag(user: User) -> str:
    return f'"{user.version}"'


def versions_in(header: str | None) -> frozenset[int] | None:
    """The versions a conditional header names; None when there is no condition (absent or `*`).

    The spec's pattern has made the header a list of entity tags. Weak tags (`W/"1"`) and tags
    this server never issued (`"x"`, `"01"`, a version beyond any a user can reach) name none.
    """
    if header is None or header.strip() == "*":
        return None
    versions = set()
    for tag in header.split(","):
        tag = tag.strip()
        digits = tag[1:-1] if len(tag) > 2 and tag[0] == tag[-1] == '"' else ""
        if ISSUED.fullmatch(digits) and int(digits) <= MAX_VERSION:
            versions.add(int(digits))
    return frozenset(versions)


def none_match(header: str | None, user: User) -> bool:
    """Whether If-None-Match names the user's current ETag (weak comparison, RFC 9110 13.1.2)."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag(user) in tags
