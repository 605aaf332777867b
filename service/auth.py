"""Bearer API keys: writes need `Authorization: Bearer <key>` with one of the app's keys."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Iterable
from typing import Any

from connexion.security import BearerSecurityHandler


class ApiKeyBearer(BearerSecurityHandler):
    """Checks bearer tokens against a set of keys, in constant time.

    Installed through Connexion's `security_map`: the keys belong to one app, which a
    function named by the spec's `x-bearerInfoFunc` could not know.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [key.encode() for key in keys]

    def _resolve_func(self, security_scheme: dict[str, Any]) -> Callable[[str], Any]:
        return self._token_info

    def _token_info(self, token: str) -> dict[str, str] | None:
        presented = token.encode()
        matched = False
        for key in self._keys:  # no early exit: every key is compared every time
            matched |= hmac.compare_digest(presented, key)
        return {"sub": "api-key"} if matched else None


def security_map(keys: Iterable[str]) -> dict[str, Callable[[], ApiKeyBearer]]:
    return {"bearer": functools.partial(ApiKeyBearer, tuple(keys))}
