"""What each handler is called with: exactly the parameters its operation declares, read from
the request that Connexion has validated, whichever app class serves it."""

from __future__ import annotations

import inspect
import keyword
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

INJECTED = frozenset({"store"})
"""Handler parameters the app supplies itself (see `StoreResolver`), not the request."""
CALLER = "token_info"
"""The handler parameter that gets what the key check put in the request's context of its API
key (`users_api.auth`: `sub`, its name; `client`, its digest)."""
BODY = "body"


class HandlerMismatch(Exception):
    """A handler whose parameters are not the ones its operation declares."""


def pythonic(name: str) -> str:
    """A parameter's Python name: `If-Match` is `if_match`."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", re.sub(r"([a-z])([A-Z])", r"\1_\2", name)).lower()
    return f"{name}_" if keyword.iskeyword(name) else name


class HandlerArguments:
    """The arguments of one operation's handler.

    Each path, query and header parameter the operation declares comes under its Python name,
    an integer as an `int`; a query parameter that is absent gets its schema's default, or
    none; the JSON body comes as `body`, and the API key's `token_info` to a handler that
    takes it.
    """

    def __init__(self, operation: Mapping[str, Any], handler: Callable[..., Any]) -> None:
        """Refuses, at start, a handler that takes a parameter the operation does not declare (it
        would always get its default) or ignores one it does."""
        self.path: dict[str, tuple[str, bool]] = {}
        self.query: dict[str, tuple[str, bool]] = {}
        self.headers: dict[bytes, str] = {}
        self.defaults: dict[str, Any] = {}
        self.body = "requestBody" in operation
        declared = {BODY} if self.body else set()
        for parameter in operation.get("parameters", []):
            name, argument = parameter["name"], pythonic(parameter["name"])
            integer = parameter.get("schema", {}).get("type") == "integer"
            if parameter["in"] == "path":
                self.path[name] = argument, integer
            elif parameter["in"] == "query":
                self.query[name] = argument, integer
                if "default" in parameter.get("schema", {}):
                    self.defaults[argument] = parameter["schema"]["default"]
            elif parameter["in"] == "header":
                self.headers[name.lower().encode()] = argument
            else:  # a cookie: not read, so no handler may take it
                continue
            declared.add(argument)
        taken = set(inspect.signature(handler).parameters) - INJECTED
        self.caller = CALLER in taken
        if taken - {CALLER} != declared:
            raise HandlerMismatch(
                f"{operation['operationId']}: the handler takes {sorted(taken - {CALLER})}, "
                f"the operation declares {sorted(declared)}"
            )

    def of(self, scope: Scope, body: Any, caller: Any) -> dict[str, Any]:
        """The handler's arguments for the request `scope`, whose JSON body is `body`, from
        the client `caller`."""
        arguments = dict(self.defaults)
        if self.path:
            path = scope["path_params"]
            for name, (argument, integer) in self.path.items():
                arguments[argument] = int(path[name]) if integer else path[name]
        if self.query and scope["query_string"]:
            # The last of a repeated parameter, as Connexion's validator read it.
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"), True))
            for name, (argument, integer) in self.query.items():
                if name in query:
                    arguments[argument] = int(query[name]) if integer else query[name]
        if self.headers:
            for argument in self.headers.values():
                arguments[argument] = None
            for name, value in scope["headers"]:
                if name in self.headers:
                    arguments[self.headers[name]] = value.decode("latin-1")
        if self.body:
            arguments[BODY] = body
        if self.caller:
            arguments[CALLER] = caller
        return arguments
