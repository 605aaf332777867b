"""Connexion's two app classes, with each operation's handler chain built once, not per request.

For every request, stock Connexion 3.3 builds the operation's chain anew: a decorator object,
a URI parser, and parameter and response decorators that read the handler's signature with
`inspect` (connexion#2045). An operation is fixed for the app's life, so these build the chain
on the operation's first request, when Connexion's operation context is there, and keep it.
Connexion has no setting for its operation class, so each app class is subclassed down to it:
app, then its ASGI app, then its API, then its operation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import connexion
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.apps.flask import FlaskApi, FlaskASGIApp, FlaskOperation
from connexion.decorators import FlaskDecorator, StarletteDecorator
from connexion.decorators.main import BaseDecorator
from connexion.uri_parsing import AbstractURIParser
from werkzeug.exceptions import HTTPException


class _ChainBuiltOnce(BaseDecorator):
    """A decorator of one operation's handler that builds its inner chain once."""

    @functools.cached_property
    def uri_parser(self) -> AbstractURIParser:
        return super().uri_parser  # type: ignore[no-any-return]

    def decorate(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return self._chain(function)

    @functools.cache  # noqa: B019 -- one entry, for the one handler; lives as long as the app
    def _chain(self, function: Callable[..., Any]) -> Callable[..., Any]:
        return super().decorate(function)


class _FlaskDecorator(_ChainBuiltOnce, FlaskDecorator):
    pass


class _StarletteDecorator(_ChainBuiltOnce, StarletteDecorator):
    pass


class _FlaskOperation(FlaskOperation):
    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        decorator = _FlaskDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)
        return decorator(self._fn)


class _AsyncOperation(AsyncOperation):
    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        decorator = _StarletteDecorator(
            pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        return decorator(self._fn)


class _FlaskApi(FlaskApi):
    def make_operation(self, operation: Any) -> _FlaskOperation:
        return _FlaskOperation.from_operation(  # type: ignore[return-value]
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class _AsyncApi(AsyncApi):
    def make_operation(self, operation: Any) -> _AsyncOperation:
        return _AsyncOperation.from_operation(  # type: ignore[return-value]
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class _FlaskASGIApp(FlaskASGIApp):
    def add_api(self, specification: Any, *, name: str | None = None, **kwargs: Any) -> _FlaskApi:
        api = _FlaskApi(specification, **kwargs)
        self.app.register_blueprint(api.blueprint, **({"name": name} if name else {}))
        return api


class _AsyncASGIApp(AsyncASGIApp):
    api_cls = _AsyncApi


class FlaskApp(connexion.FlaskApp):
    def __init__(self, import_name: str, **options: Any) -> None:
        """What `connexion.FlaskApp.__init__` does, around an ASGI app of its own."""
        self._middleware_app = _FlaskASGIApp(import_name, {})
        connexion.AbstractApp.__init__(self, import_name, **options)
        self.app = self._middleware_app.app
        self.app.register_error_handler(HTTPException, self._http_exception)


class AsyncApp(connexion.AsyncApp):
    def __init__(self, import_name: str, **options: Any) -> None:
        """What `connexion.AsyncApp.__init__` does, around an ASGI app of its own."""
        self._middleware_app = _AsyncASGIApp()
        connexion.AbstractApp.__init__(self, import_name, **options)
