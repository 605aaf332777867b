"""API keys: each has a name and scopes, and is known only by its SHA-256 digest.

A key file lists one key a line, `NAME SCOPES KEY`, where KEY is `sha256:` and the key's digest
in hex (so the file holds no secret), or the key itself:

    # name     scopes                  key
    backend    users:read,users:write  sha256:0b64...e1
    dashboard  users:read              sha256:9f3a...07

`users:write` may read too. `users-api keys new` makes a key and prints its line.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connexion.exceptions import OAuthResponseProblem, ProblemException
from connexion.lifecycle import ConnexionRequest
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.security import NO_VALUE, BearerSecurityHandler

READ = "users:read"
WRITE = "users:write"
SCOPES = (READ, WRITE)
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


class KeyFileError(ValueError):
    """A key file the service cannot use; the message names the line."""


@dataclass(frozen=True)
class ApiKey:
    name: str
    """What the access log and the metrics call the key; never the key itself."""
    scopes: frozenset[str]
    digest: bytes
    """SHA-256 of the key."""

    @property
    def granted(self) -> frozenset[str]:
        """The scopes the key may use: a writer may read."""
        return self.scopes | {READ} if WRITE in self.scopes else self.scopes


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_file_line(name: str, scopes: Iterable[str], key: str) -> str:
    """The key file's line for `key`: its digest, not the key."""
    return f"{name} {','.join(sorted(scopes))} sha256:{digest(key).hex()}"


def parse_scopes(text: str) -> frozenset[str]:
    """`users:read,users:write`; raises ValueError for an empty list or an unknown scope."""
    scopes = frozenset(scope.strip() for scope in text.split(",") if scope.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise ValueError(f"scopes are {' and '.join(SCOPES)}, comma-separated, not {text!r}")
    return scopes


def read_key_file(path: Path) -> list[ApiKey]:
    """The keys in a key file; `KeyFileError` names the first bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileError(f"cannot read the key file {path}: {error}") from None
    keys: list[ApiKey] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(_key(line))
        except ValueError as error:
            raise KeyFileError(f"{path}, line {number}: {error}") from None
    return keys


def refuse_duplicates(keys: Sequence[ApiKey]) -> None:
    """A name used twice would blur the logs; a key listed twice would get whichever scopes
    came last. Raises KeyFileError for either."""
    names = [key.name for key in keys]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise KeyFileError(f"a key name is used twice: {', '.join(duplicates)}")
    by_digest: dict[bytes, list[str]] = {}
    for key in keys:
        by_digest.setdefault(key.digest, []).append(key.name)
    if twice := [names for names in by_digest.values() if len(names) > 1]:
        raise KeyFileError(f"one key is listed twice, as {' and '.join(twice[0])}")


def plain_keys(keys: Iterable[str]) -> list[ApiKey]:
    """Keys given as they are (`USERS_API_KEYS`, for development): every scope, numbered names."""
    return [
        ApiKey(f"USERS_API_KEYS[{number}]", frozenset(SCOPES), digest(key))
        for number, key in enumerate(keys, start=1)
    ]


def parse_name(name: str) -> str:
    """A key's name; raises ValueError unless it is 1-64 of A-Z a-z 0-9 . _ - (and not `none`,
    which the metrics use for requests without a key)."""
    if not NAME.fullmatch(name) or name == "none":
        raise ValueError(f"a name is 1-64 of A-Z a-z 0-9 . _ - (not none), not {name!r}")
    return name


def _key(line: str) -> ApiKey:
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("expected NAME SCOPES KEY, separated by spaces")
    name, scopes, key = parts
    parse_name(name)
    stored = DIGEST.fullmatch(key)
    if key.startswith("sha256:") and not stored:
        raise ValueError("a digest is sha256: and 64 lowercase hex digits")
    return ApiKey(name, parse_scopes(scopes), bytes.fromhex(stored[1]) if stored else digest(key))


class ApiKeyBearer(BearerSecurityHandler):
    """Checks a bearer key against the app's keys, and its scopes against the operation's.

    Installed through Connexion's `security_map`: the keys belong to one app, which a
    function named by the spec's `x-bearerInfoFunc` could not know. The scope an operation
    needs is its `x-scope` (OpenAPI 3.0 keeps a bearer scheme's list of scopes empty):
    `scopes` maps each operationId to it.
    """

    def __init__(self, keys: Sequence[ApiKey], scopes: Mapping[str, str]) -> None:
        self._keys = keys
        self._scopes = scopes

    def get_fn(
        self, security_scheme: dict[str, Any], required_scopes: Sequence[str] | None
    ) -> Callable[[ConnexionRequest], Any]:
        """The check of every operation that names this scheme. (Connexion's own would read its
        token function's signature with `inspect` on every request, to learn which arguments
        it takes: some 14% of a GET. `required_scopes` is empty: the scope is the `x-scope`.)"""
        return self._verify

    def _verify(self, request: ConnexionRequest) -> Any:
        scheme, token = self.get_auth_header_value(request)
        if scheme != "bearer":
            return NO_VALUE
        info = self._token_info(token, request)
        if info is None:
            raise OAuthResponseProblem(detail="Provided token is not valid")
        return info

    def _token_info(self, token: str, request: ConnexionRequest) -> dict[str, Any] | None:
        """The key's name and scopes; None (401) for an unknown key; 403 for a missing scope.

        The key's name goes into the request's context, where the access log and the metrics
        find it, refused or not.
        """
        presented = digest(token)
        found = None
        for key in self._keys:  # every key is compared every time, in constant time
            if hmac.compare_digest(presented, key.digest):
                found = key
        if found is None:
            return None
        request.context["user"] = found.name
        operation = request.scope["extensions"][ROUTING_CONTEXT]["operation_id"]
        needed = self._scopes.get(operation.rpartition(".")[2])
        if needed is not None and needed not in found.granted:
            raise ProblemException(
                status=403,
                detail=f"This API key lacks the scope {needed}.",
                headers={
                    "WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'
                },
            )
        # `client` names the key for what a client keeps of its own (its idempotency keys): its
        # digest, which no renaming or reordering of the key list changes.
        return {"sub": found.name, "scope": sorted(found.granted), "client": found.digest.hex()}


def security_map(
    keys: Sequence[ApiKey], scopes: Mapping[str, str]
) -> dict[str, Callable[[], ApiKeyBearer]]:
    return {"bearer": functools.partial(ApiKeyBearer, tuple(keys), scopes)}
