"""Binds each operation's handler to the app's store and to the headers it reads."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, cast

from connexion import request
from connexion.lifecycle import ConnexionRequest
from connexion.resolver import Resolver

from users_api.store import UserStore


class StoreResolver(Resolver):
    """Resolves operationIds as Connexion does, then binds the handler to one store.

    Connexion passes a handler its path, query and body parameters. Its keyword-only
    arguments get the rest: `store`, and each other one the request header of that name
    (`if_match` gets `If-Match`), which the spec declares and Connexion has validated.
    """

    def __init__(self, store: UserStore) -> None:
        super().__init__()
        self._store = store

    def resolve_function_from_operation_id(self, operation_id: str) -> Callable[..., Any]:
        handler = super().resolve_function_from_operation_id(operation_id)
        return _bind(handler, self._store)


def _bind(handler: Callable[..., Any], store: UserStore) -> Callable[..., Any]:
    parameters = inspect.signature(handler).parameters
    stores = {"store": store} if "store" in parameters else {}
    headers = {
        name: name.replace("_", "-")
        for name, parameter in parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY and name != "store"
    }

    @functools.wraps(handler)  # Connexion reads the handler's own signature through this
    def bound(**arguments: Any) -> Any:
        received = cast(ConnexionRequest, request).headers
        for name, header in headers.items():
            arguments[name] = received.get(header)
        return handler(**arguments, **stores)

    return bound
