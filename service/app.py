"""The app factory: the spec, its handlers bound to a store, and the error shape around them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from connexion import FlaskApp
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from flask import Response
from starlette.routing import compile_path

from service.auth import security_map
from service.framing import BodilessResponses, RequestBodyGuard
from service.problems import install_error_handlers
from service.resolver import StoreResolver
from service.settings import Settings
from service.validation import VALIDATOR_MAP
from store import UserStore

SPEC = Path(__file__).resolve().parent.parent / "openapi" / "users.yaml"


def create_app(settings: Settings | None = None, *, store: UserStore | None = None) -> FlaskApp:
    """A users service over `store`, or over the store that `settings.store_url` names."""
    settings = settings or Settings.from_env()
    store = store or settings.open_store()
    spec = yaml.safe_load(SPEC.read_text())
    app = FlaskApp(
        __name__,
        resolver=StoreResolver(store),
        validator_map=VALIDATOR_MAP,
        security_map=security_map(settings.api_keys),
    )
    app.add_middleware(BodilessResponses, position=MiddlewarePosition.BEFORE_EXCEPTION)
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
    _serve_spec_as_written(app)
    install_error_handlers(app, allowed_methods=_allowed_methods(spec["paths"]))
    return app


def _serve_spec_as_written(app: FlaskApp) -> None:
    """/openapi.json and /openapi.yaml are the repo's document itself, which the console reads.

    Connexion's own copy inlines every `$ref` (a client generated from it gets a model per
    response instead of `User`) and rewrites `servers`.
    """
    text = SPEC.read_text()
    as_json = json.dumps(yaml.safe_load(text))
    app.add_url_rule(
        "/openapi.json", "openapi_json", lambda: Response(as_json, mimetype="application/json")
    )
    app.add_url_rule("/openapi.yaml", "openapi_yaml", lambda: Response(text, mimetype="text/yaml"))


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
