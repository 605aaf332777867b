"""API keys: each has a name and scopes, and is known only by its SHA-256 digest.

A key file lists one key a line, `NAME SCOPES DIGEST`, where DIGEST is `sha256:` and the key's
SHA-256 in hex, so the file holds no secret; any other line is refused by its number:

    # name     scopes                  key
    backend    users:read,users:write  sha256:0b64...e1
    dashboard  users:read              sha256:9f3a...07

`users:write` may read too. `users-api keys new` makes a key and prints its line.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connexion.exceptions import OAuthResponseProblem, ProblemException
from connexion.lifecycle import ConnexionRequest
from connexion.security import BearerSecurityHandler

from users_api.connexion_adapter import NO_CREDENTIALS, operation_id

READ = "users:read"
WRITE = "users:write"
SCOPES = (READ, WRITE)
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DIGEST = re.compile(r"sha256:([0-9a-fA-F]{64})")


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
    """SHA-256 of the key's UTF-8, the bytes curl and httpx send for it."""
    return hashlib.sha256(key.encode()).digest()


def presented_digest(token: str) -> bytes:
    """SHA-256 of the bytes a client sent: HTTP headers reach us decoded as latin-1."""
    return hashlib.sha256(token.encode("latin-1")).digest()


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


def load_keys(key_file: str, plain: Iterable[str]) -> list[ApiKey]:
    """The keys of `key_file` (if named), then the `plain` ones (`USERS_API_KEYS`, for
    development: every scope, numbered names); `KeyFileError` if one is bad."""
    keys = read_key_file(Path(key_file)) if key_file else []
    keys += [
        ApiKey(f"USERS_API_KEYS[{number}]", frozenset(SCOPES), digest(key))
        for number, key in enumerate(plain, start=1)
    ]
    _refuse_duplicates(keys)
    return keys


def _refuse_duplicates(keys: Sequence[ApiKey]) -> None:
    """A name used twice would blur the logs; a key listed twice would get whichever scopes
    came last. Raises KeyFileError for either."""
    names = Counter(key.name for key in keys)
    if duplicates := sorted(name for name, count in names.items() if count > 1):
        raise KeyFileError(f"a key name is used twice: {', '.join(duplicates)}")
    seen: dict[bytes, str] = {}
    for key in keys:
        if (first := seen.setdefault(key.digest, key.name)) != key.name:
            raise KeyFileError(f"one key is listed twice, as {first} and {key.name}")


def parse_name(name: str) -> str:
    """A key's name; raises ValueError unless it is 1-64 of A-Z a-z 0-9 . _ - (and not `none`,
    which the metrics use for requests without a key)."""
    if not NAME.fullmatch(name) or name == "none":
        raise ValueError(f"a name is 1-64 of A-Z a-z 0-9 . _ - (not none), not {name!r}")
    return name


def _key(line: str) -> ApiKey:
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("expected NAME SCOPES DIGEST, separated by spaces")
    name, scopes, key = parts
    parse_name(name)
    stored = DIGEST.fullmatch(key)
    if not stored:
        # A typo must not turn the digest into a key that works as typed.
        raise ValueError(
            "a key is given as sha256: and its 64 hex digits, as `users-api keys new` prints it"
        )
    return ApiKey(name, parse_scopes(scopes), bytes.fromhex(stored[1]))


class ApiKeyBearer(BearerSecurityHandler):
    """Checks a bearer key against the app's keys, and its scopes against the operation's.

    Installed through Connexion's `security_map`: the keys belong to one app, which a
    function named by the spec's `x-bearerInfoFunc` could not know. The scope an operation
    needs is its `x-scope` (OpenAPI 3.0 keeps a bearer scheme's list of scopes empty):
    `scopes` maps each operationId to it. The operations in `public` take requests without a
    key; a key sent to them is still checked.
    """

    def __init__(
        self, keys: Sequence[ApiKey], scopes: Mapping[str, str], public: frozenset[str]
    ) -> None:
        self._keys = {key.digest: key for key in keys}
        self._scopes = scopes
        self._public = public

    def get_fn(
        self, security_scheme: dict[str, Any], required_scopes: Sequence[str] | None
    ) -> Callable[[ConnexionRequest], Any]:
        """The check of every operation that names this scheme. (Connexion's own reads its
        token function's signature on every request; `required_scopes` is empty here.)"""
        return self._verify

    def _verify(self, request: ConnexionRequest) -> Any:
        """The key's name and scopes; 401 for an unknown key, 403 for a missing scope.

        The key's name goes into the request's context, where the access log and the metrics
        find it, refused or not.
        """
        scheme, token = self.get_auth_header_value(request)
        operation = operation_id(request.scope) or ""
        if scheme is None and operation in self._public:
            return {"scope": [READ]}
        if scheme != "bearer":
            return NO_CREDENTIALS
        # Looked up by digest: what a lookup's timing could tell is about the digest, not the key.
        found = self._keys.get(presented_digest(token))
        if found is None:
            raise OAuthResponseProblem(detail="Provided token is not valid")
        request.context["user"] = found.name
        needed = self._scopes.get(operation)
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
    keys: Sequence[ApiKey], scopes: Mapping[str, str], *, public_reads: bool
) -> dict[str, Callable[[], ApiKeyBearer]]:
    """With `public_reads`, the operations that need only `users:read` take requests without a
    key."""
    public = frozenset(op for op, scope in scopes.items() if public_reads and scope == READ)
    return {"bearer": functools.partial(ApiKeyBearer, tuple(keys), scopes, public)}
