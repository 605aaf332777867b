"""What each handler is called with: exactly the parameters its operation declares.

Connexion's parameter decorator works this out anew on every request (the operation's
parameter lists, their defaults, which of them the handler takes): a quarter of a GET. An
operation is fixed for the app's life, so this works it out once, and checks it at start.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, cast

from connexion.context import context
from connexion.decorators.parameter import pythonic
from connexion.operations import AbstractOperation
from connexion.utils import coerce_type

INJECTED = frozenset({"store"})
"""Handler parameters the app supplies itself (see `StoreResolver`), not the request."""
CALLER = "token_info"
"""The handler parameter that gets what Connexion's security put in the request's context of
its API key (`users_api.auth`: `sub`, its name; `client`, its digest)."""


class HandlerMismatch(Exception):
    """A handler whose parameters are not the ones its operation declares."""


class HandlerArguments:
    """The arguments of one operation's handler, from a Connexion request.

    Each path, query and header parameter the operation declares comes under its Python name
    (`If-Match` is `if_match`), coerced to its schema's type as Connexion coerces it; a query
    parameter that is absent gets its schema's default, or none; the JSON body comes as `body`
    (or the operation's `x-body-name`), and the API key's `token_info` to a handler that takes
    it. Connexion's validation has passed them all already.
    """

    def __init__(self, operation: AbstractOperation, handler: Callable[..., Any]) -> None:
        self.operation_id = operation.operation_id
        self.path: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self.query: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self.headers: dict[str, str] = {}
        self.defaults: dict[str, Any] = {}
        for parameter in operation.parameters:
            name, argument = parameter["name"], pythonic(parameter["name"])
            if parameter["in"] == "path":
                self.path[name] = argument, parameter
            elif parameter["in"] == "query":
                self.query[name] = argument, parameter
                if "default" in parameter.get("schema", {}):
                    self.defaults[argument] = parameter["schema"]["default"]
            elif parameter["in"] == "header":
                self.headers[argument] = name
        self.body = pythonic(operation.body_name("")) if operation.is_request_body_defined else None
        self.caller = CALLER in inspect.signature(handler).parameters
        self._check(handler)

    def of(self, request: Any, body: Any) -> dict[str, Any]:
        """The handler's arguments for `request`, whose JSON body is `body`."""
        arguments = dict(self.defaults)
        # Each of the request's tables is parsed on first use: only what the operation declares.
        if self.path:
            path = request.path_params
            for name, (argument, parameter) in self.path.items():
                arguments[argument] = coerce_type(parameter, path[name], "path", name)
        if self.query:
            query = request.query_params
            for name, (argument, parameter) in self.query.items():
                if name in query:
                    arguments[argument] = coerce_type(parameter, query[name], "query", name)
        if self.headers:
            headers = request.headers
            for argument, name in self.headers.items():
                arguments[argument] = headers.get(name)
        if self.body is not None:
            arguments[self.body] = body
        if self.caller:
            arguments[CALLER] = cast(dict[str, Any], context).get(CALLER)  # a proxy to one
        return arguments

    def _check(self, handler: Callable[..., Any]) -> None:
        """Refuse, at start, a handler that takes a parameter the operation does not declare
        (it would always get its default) or ignores one it does."""
        taken = set(inspect.signature(handler).parameters) - INJECTED - {CALLER}
        declared = {
            *(argument for argument, _ in self.path.values()),
            *(argument for argument, _ in self.query.values()),
            *self.headers,
            *([self.body] if self.body else []),
        }
        if taken != declared:
            raise HandlerMismatch(
                f"{self.operation_id}: the handler takes {sorted(taken)}, "
                f"the operation declares {sorted(declared)}"
            )
