"""Connexion's classes where they did, on every request, work that is needed once or nowhere.

Its app classes: for every request, stock Connexion 3.3 builds the operation's chain anew: a
decorator object, a URI parser, and parameter and response decorators that read the handler's
signature with `inspect` (connexion#2045). An operation is fixed for the app's life, so these
build the chain on the operation's first request, when Connexion's operation context is there,
and keep it; the handler's arguments are bound by `HandlerArguments`, which is built, and
checks the handler against its operation, when the API is added. Connexion has no setting for
its operation class, so each app class is subclassed down to it: app, then its ASGI app, then
its API, then its operation.

Its Swagger UI middleware: it ran every request through the console's router first.
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
from connexion.lifecycle import ConnexionRequest, WSGIRequest
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.uri_parsing import AbstractURIParser
from starlette.types import Receive, Scope, Send
from werkzeug.exceptions import HTTPException

from users_api.arguments import HandlerArguments

CONSOLE_PATH = "/ui"


class _ChainBuiltOnce(BaseDecorator):
    """A decorator of one operation's handler that builds its chain once, binding the
    handler's arguments with `HandlerArguments` where Connexion's parameter decorator was."""

    def __init__(self, arguments: HandlerArguments, **options: Any) -> None:
        super().__init__(**options)
        self.handler_arguments = arguments
        self._chain: Callable[..., Any] | None = None

    @functools.cached_property
    def uri_parser(self) -> AbstractURIParser:
        return super().uri_parser  # type: ignore[no-any-return]

    def decorate(self, function: Callable[..., Any]) -> Callable[..., Any]:
        """`BaseDecorator.decorate`'s chain, for the operation's handler, built on its first
        request (when Connexion's operation context is there) and kept."""
        if self._chain is None:
            called = self._call_with_arguments(self._sync_async_decorator(function))
            responses = self._response_decorator_cls(
                framework=self.framework, jsonifier=self.jsonifier
            )
            self._chain = responses(called)
        return self._chain

    def _call_with_arguments(self, function: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError


class _FlaskDecorator(_ChainBuiltOnce, FlaskDecorator):
    def _call_with_arguments(self, function: Callable[..., Any]) -> Callable[..., Any]:
        arguments = self.handler_arguments

        def call(request: WSGIRequest) -> Any:
            # As `AsyncApp` does: the body Connexion validated as JSON, whatever the media type.
            body = request.get_json(force=True) if arguments.body else None
            return function(**arguments.of(request, body))

        return call


class _StarletteDecorator(_ChainBuiltOnce, StarletteDecorator):
    def _call_with_arguments(self, function: Callable[..., Any]) -> Callable[..., Any]:
        arguments = self.handler_arguments

        async def call(request: ConnexionRequest) -> Any:
            body = await request.json() if arguments.body else None
            return await function(**arguments.of(request, body))

        return call


class _FlaskOperation(FlaskOperation):
    arguments: HandlerArguments

    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        decorator = _FlaskDecorator(
            self.arguments, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        return decorator(self._fn)


class _AsyncOperation(AsyncOperation):
    arguments: HandlerArguments

    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        decorator = _StarletteDecorator(
            self.arguments, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        return decorator(self._fn)


class _FlaskApi(FlaskApi):
    def make_operation(self, operation: Any) -> _FlaskOperation:
        made: _FlaskOperation = _FlaskOperation.from_operation(  # type: ignore[assignment]
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        made.arguments = HandlerArguments(operation, operation.function)
        return made


class _AsyncApi(AsyncApi):
    def make_operation(self, operation: Any) -> _AsyncOperation:
        made: _AsyncOperation = _AsyncOperation.from_operation(  # type: ignore[assignment]
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )
        made.arguments = HandlerArguments(operation, operation.function)
        return made


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


class _ConsoleOnItsPath(SwaggerUIMiddleware):
    """Swagger UI's router, asked only about the console's own paths, not on every request."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONSOLE_PATH):
            await self.app(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def middlewares() -> list[Any]:
    """Connexion's own, in its order, for one app to add to (`BEFORE_SWAGGER` finds no place)."""
    return [
        _ConsoleOnItsPath if middleware is SwaggerUIMiddleware else middleware
        for middleware in ConnexionMiddleware.default_middlewares
    ]
