"""The app factory: the spec, its handlers bound to a store, and the error shape around them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from connexion import AbstractApp, AsyncApp, FlaskApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from starlette.routing import compile_path

from service.auth import security_map
from service.framing import BodilessResponses, RequestBodyGuard
from service.problems import install_error_handlers
from service.resolver import StoreResolver
from service.served_spec import ServeSpecAsWritten
from service.settings import Settings
from service.validation import VALIDATOR_MAP
from store import UserStore

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "users.yaml"
APP_CLASSES: dict[str, type[AbstractApp]] = {"flask": FlaskApp, "async": AsyncApp}
"""Both run the same sync handlers; `AsyncApp` calls them in a thread pool."""


def create_app(settings: Settings | None = None, *, store: UserStore | None = None) -> AbstractApp:
    """A users service over `store`, or over the store that `settings.store_url` names."""
    settings = settings or Settings.from_env()
    store = store or settings.open_store()
    spec = yaml.safe_load(SPEC.read_text())
    app = APP_CLASSES[settings.app](
        __name__,
        resolver=StoreResolver(store),
        validator_map=VALIDATOR_MAP,
        security_map=security_map(settings.api_keys),
    )
    app.add_middleware(BodilessResponses, position=MiddlewarePosition.BEFORE_EXCEPTION)
    app.add_middleware(ServeSpecAsWritten, position=MiddlewarePosition.BEFORE_CONTEXT, spec=SPEC)
    app.add_middleware(
        RequestBodyGuard,
        position=MiddlewarePosition.BEFORE_SWAGGER,
        max_bytes=settings.max_body_bytes,
    )
    app.add_api(
        spec,
        validate_responses=settings.validate_responses,
        swagger_ui_options=SwaggerUIOptions(serve_spec=False),
    )
    install_error_handlers(app, allowed_methods=_allowed_methods(spec["paths"]))
    return app


def _allowed_methods(paths: Mapping[str, Mapping[str, Any]]) -> Callable[[str], list[str]]:
    """The methods the spec gives a request path, for a 405's `Allow` header."""
    routes = [
        (compile_path(template)[0], [method.upper() for method in item if method in _METHODS])
        for template, item in paths.items()
    ]

    def allowed(path: str) -> list[str]:
        return next((methods for pattern, methods in routes if pattern.match(path)), [])

    return allowed


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
