"""Every reach into Connexion's internals, and nothing else: each a named piece that says which
of its behaviours it changes and why. `tests/unit/test_connexion_adapter.py` fails, naming the
piece, when a Connexion upgrade moves what one relies on.

The rest of the service uses Connexion through its documented extension points only.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import connexion
import connexion.utils
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.datastructures import MediaTypeDict
from connexion.decorators.response import AsyncResponseDecorator
from connexion.frameworks.starlette import Starlette as StarletteFramework
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.operations import AbstractOperation
from connexion.security import NO_VALUE
from connexion.utils import is_nullable
from connexion.validators import (
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    TextResponseBodyValidator,
)
from starlette.types import Receive, Scope, Send

# 1. AsyncApp's operations call their handler directly.
#
# For every request, stock `AsyncOperation.fn` builds a new decorator chain whose parameter
# decorator reads the handler's signature with `inspect` and parses the request's parameters
# and body again (connexion#2045). The resolver's handlers take their arguments themselves
# (`StoreResolver`), so the chain is only the response decorator, built once. Connexion has no
# setting for its operation class: the app's ASGI app is given an API class that makes these.


class _DirectOperation(AsyncOperation):
    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        respond = AsyncResponseDecorator(
            framework=StarletteFramework,  # type: ignore[type-abstract]
            jsonifier=self.jsonifier,
        )
        return respond(self._fn)


class _DirectApi(AsyncApi):
    def make_operation(self, operation: Any) -> AsyncOperation:
        return _DirectOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


def call_operations_directly(app: connexion.AbstractApp) -> None:
    """For an `AsyncApp`, before its API is added; `FlaskApp` keeps Connexion's own chain."""
    if isinstance(app, connexion.AsyncApp):
        app._middleware_app.api_cls = _DirectApi


# 2. The console's router is asked only about the console's paths.
#
# Connexion's Swagger UI middleware runs every request through the console's router first.

CONSOLE_PATH = "/ui"


class _ConsoleOnItsPath(SwaggerUIMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(CONSOLE_PATH):
            await self.app(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def middlewares() -> list[Any]:
    """Connexion's own middlewares, in its order, with the console's router on its path and
    request validation set up once per operation (piece 6)."""
    ours: dict[type, type] = {
        SwaggerUIMiddleware: _ConsoleOnItsPath,
        RequestValidationMiddleware: _ValidationSetUpOnceMiddleware,
    }
    return [
        ours.get(middleware, middleware) for middleware in ConnexionMiddleware.default_middlewares
    ]


# 3. Which operation, and which API key, a request is for.
#
# Connexion's router names the operation in the scope's extensions, and its security puts the
# accepted key's name in the request's context; neither is documented, nor is the value a key
# check returns for "no key of this scheme". The key check needs the operation (each
# operation's scope is its `x-scope`), the access log and metrics both.

NO_CREDENTIALS = NO_VALUE
"""What a security handler's check returns for a request that carries none of its scheme."""


def operation_id(scope: Scope) -> str | None:
    """The operationId of the operation the router matched, without its module; None if none."""
    routed = scope.get("extensions", {}).get(ROUTING_CONTEXT) or {}
    found: str | None = routed.get("operation_id")
    return found.rpartition(".")[2] if found else None


def follow_routing(scope: Scope) -> None:
    """Let `operation_id(scope)` see, once the request is answered, which operation the router
    matched: it records that in the extensions of its copy of the scope, shared with this one."""
    scope.setdefault("extensions", {})


def name_operation(scope: Scope, operation: str) -> None:
    """Name the operation for a request answered before Connexion's router sees it."""
    scope.setdefault("extensions", {})[ROUTING_CONTEXT] = {"operation_id": operation}


def key_name(scope: Scope) -> str | None:
    """The name of the API key the request was accepted, or refused a scope, with."""
    found: str | None = (scope.get("extensions", {}).get("connexion_context") or {}).get("user")
    return found


# 4. Path-level parameters are moved into each operation of the spec Connexion is given.
#
# Connexion appends a path item's parameters to its operation's own list in place
# (`self._parameters += path_parameters`) each time one of its middlewares builds the
# operation, so each would be validated once per middleware. The spec served to clients stays
# as written.

METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def spec_for_connexion(spec: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(spec)
    for item in document["paths"].values():
        shared = item.pop("parameters", [])
        for method, operation in item.items():
            if method in METHODS:
                operation["parameters"] = [*operation.get("parameters", []), *shared]
    return document


# 5. The body validators' steps, as hooks.
#
# Connexion's JSON body validator parses with `json.loads` (a body that is not UTF-8, is nested
# too deeply or holds a number too long escapes as a 500) and reports only the first failing
# field. Its documented extension point is a validator class; the steps to change are its
# `_parse` and `_validate`, and the schema its `_schema`. The body, once parsed, is left in the
# scope's extensions, which the handler's scope shares, so that the handler need not parse it
# again.

PARSED_BODY = "users_api.body"


class BodyValidator(JSONRequestBodyValidator):
    """Connexion's request body validator, whose subclass says how to `parse` the raw body
    and how to `check` it against the operation's schema (raising a problem for either)."""

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        body = self.parse(b"".join([chunk async for chunk in stream]))
        scope["extensions"][PARSED_BODY] = body
        return body

    def _validate(self, body: Any) -> None:
        self.check(body, self._schema)

    def parse(self, raw: bytes) -> Any:
        raise NotImplementedError

    def check(self, body: Any, schema: dict[str, Any]) -> None:
        raise NotImplementedError


def parsed_body(scope: Scope) -> Any:
    """The request's body as the body validator parsed it; None if it had none to parse."""
    return scope["extensions"].get(PARSED_BODY)


class _ResponseBodyValidator(JSONResponseBodyValidator):
    def wrap_send(self, send: Send) -> Send:
        """A HEAD's response has no body to hold to its GET's schema (Flask drops it)."""
        return send if self._scope["method"] == "HEAD" else super().wrap_send(send)


def validator_map(parameter: type[Any], body: type[BodyValidator]) -> dict[str, Any]:
    """Connexion's `validator_map`: `body` for JSON bodies, and responses held to the spec."""
    return {
        "parameter": parameter,
        "body": MediaTypeDict({"*/*json": body}),
        "response": MediaTypeDict(
            {"*/*json": _ResponseBodyValidator, "text/plain": TextResponseBodyValidator}
        ),
    }


# 6. Request validation set up once per operation.
#
# For every request, stock `RequestValidationOperation` builds the operation's URI parser (twice
# for a body) and parameter validator, and finds the body's schema, its nullability and its
# validator by media type through `fnmatch`, four times over. None of it depends on the request
# but its media type, so it is built once, and once for each media type the operation names.
# (Stock's warning about an operation of several media types is logged then, not per request.)


_GUESSED_FOR_NO_BODY = "application/octet-stream"
"""Stock's media type for a request without Content-Type to an operation without a body."""


class _ValidationSetUpOnce(RequestValidationOperation):
    """Stock's request validation, its parsers and validators built once per operation."""

    _validator_map: dict[str, Any]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        if mime_type in self._body_validators:
            body_validator = self._body_validators[mime_type]
        else:
            self.validate_mime_type(mime_type)  # 415 for a type the operation does not consume
            body_validator = self._body_validator(mime_type)
        if body_validator is not None:
            validator = body_validator(encoding=encoding)
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)

    @functools.cached_property
    def _parameter_validator(self) -> Any:
        return self._validator_map["parameter"](
            self._operation.parameters,
            uri_parser=self._uri_parser,
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )

    @functools.cached_property
    def _uri_parser(self) -> Any:
        operation = self._operation
        return operation.uri_parser_class(operation.parameters, operation.body_definition())

    @functools.cached_property
    def _body_validators(self) -> dict[str, Callable[..., Any] | None]:
        """By each media type the operation consumes, as the spec names it, or by the type
        stock guesses for a request that sends none when it consumes none (any other type,
        and a range's members, are looked up per request)."""
        consumes = self._operation.consumes or [_GUESSED_FOR_NO_BODY]
        return {media: self._body_validator(media) for media in consumes}

    def _body_validator(self, mime_type: str) -> Callable[..., Any] | None:
        """The body's validator for `mime_type`, short of the request's encoding; None if the
        operation has no schema for it, or no validator is registered for the type."""
        operation = self._operation
        schema = operation.body_schema(mime_type)
        validator = self._validator_map["body"].get(mime_type) if schema else None
        if validator is None:
            return None
        return functools.partial(
            validator,
            schema=schema,
            required=operation.request_body.get("required", False),
            nullable=is_nullable(operation.body_definition(mime_type)),
            strict_validation=self.strict_validation,
            uri_parser=self._uri_parser,
        )


class _ValidationSetUpOnceApi(RequestValidationAPI):
    def make_operation(self, operation: AbstractOperation) -> RequestValidationOperation:
        return _ValidationSetUpOnce(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class _ValidationSetUpOnceMiddleware(RequestValidationMiddleware):
    api_cls = _ValidationSetUpOnceApi


# 7. Connexion's lookup of a Content-Type header, without its `typing` generics.
#
# `connexion.utils.extract_content_type`, which request validation and the response decorator
# call for every request, spells three `typing` generics (`Collection[Tuple[Union[...]]]`) on
# each call, which cost more than the lookup itself. Its callers look it up in its module on
# each call, so the same lookup without them, put there, is what they call.

STOCK_CONTENT_TYPE_LOOKUP = connexion.utils.extract_content_type
"""Connexion's own, kept for the test that holds piece 7 to it."""


def _content_type(headers: list[tuple[bytes, bytes]] | dict[str, str]) -> str | None:
    """The first Content-Type among an ASGI scope's headers, or a handler's dict of them."""
    pairs: Iterable[tuple[bytes | str, bytes | str]] = (
        headers.items() if isinstance(headers, dict) else headers
    )
    for name, value in pairs:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if name.lower() == "content-type":
            return value.decode("latin-1") if isinstance(value, bytes) else value
    return None


connexion.utils.extract_content_type = _content_type
