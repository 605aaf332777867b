"""The app factory: the spec, its handlers bound to a store, and the error shape around them."""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from importlib.resources import files
from typing import Any

import connexion
import orjson
import yaml
from asgi_correlation_id import CorrelationIdMiddleware
from connexion import AbstractApp
from connexion.json_schema import resolve_refs
from connexion.jsonifier import Jsonifier
from connexion.middleware import MiddlewarePosition
from connexion.options import SwaggerUIOptions
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path

from users_api.auth import ApiKey, load_keys, security_map
from users_api.connexion_adapter import (
    CONSOLE_PATH,
    METHODS,
    call_operations_directly,
    middlewares,
    spec_for_connexion,
)
from users_api.logs import AccessLines
from users_api.metrics import Metrics
from users_api.middleware.access_log import AccessLog
from users_api.middleware.cut_short import CutShort
from users_api.middleware.metrics_endpoint import MetricsEndpoint
from users_api.middleware.probes import Probes
from users_api.middleware.rate_limits import Limiter, RateLimits
from users_api.middleware.request_body import RequestBody
from users_api.middleware.request_headers import RequestHeaders
from users_api.middleware.request_target import RequestTarget
from users_api.middleware.response_headers import ResponseHeaders
from users_api.middleware.served_spec import ServeSpecAsWritten
from users_api.problems import install_error_handlers
from users_api.resolver import StoreResolver
from users_api.settings import Settings
from users_api.store import (
    MigrationRefused,
    StoreUnavailable,
    UserStore,
    open_store,
)
from users_api.validation import StrictURIParser, validator_map

SPEC = files("users_api.openapi").joinpath("users.yaml")
"""The contract, shipped inside the package (the repo's `openapi/users.yaml`)."""
APP_CLASSES: dict[str, type[AbstractApp]] = {
    "async": connexion.AsyncApp,
    "flask": connexion.FlaskApp,
}
"""Both run the same `async def` handlers: `AsyncApp` on its event loop, `FlaskApp` on a loop
that each of its WSGI threads keeps (see `StoreResolver`)."""
PREPARE_RETRY_SECONDS = 5
"""How often a store that could not be prepared at start is tried again."""
YOUNG_THRESHOLD = 50_000
"""Objects allocated, less those freed, before the collector's youngest pass (700 by
default): above what 64 requests in flight hold."""

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    store: UserStore | None = None,
    keys: Sequence[ApiKey] | None = None,
    at_shutdown: Callable[[], None] | None = None,
) -> AbstractApp:
    """A users service over `store`, or over the store that `settings.store_url` names, that
    takes `keys`, or those `settings` lists; `at_shutdown` runs last as it stops."""
    settings = settings or Settings.from_env()
    store = store or open_store(settings.store_url, settings.store_options)
    text = SPEC.read_text()
    # libyaml's loader: the pure-Python one took most of an app's build time.
    spec = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    connexion_spec = spec_for_connexion(spec)
    operations = _operations(connexion_spec)
    operations_at = _operations_at(operations)
    by_id = {op["operationId"]: op for item in operations.values() for op in item.values()}
    templates = {
        op["operationId"]: template for template, item in operations.items() for op in item.values()
    }
    metrics = Metrics()
    limiter = Limiter(settings.rate_limit_storage, timeout_ms=settings.rate_limit_timeout_ms)
    resolver = StoreResolver(store, by_id, in_thread_loops=settings.app == "flask")

    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        # At shutdown each of these runs, last first, whichever fails before it.
        async with AsyncExitStack() as shutdown:
            if at_shutdown:
                shutdown.callback(at_shutdown)
            shutdown.callback(metrics.close)
            shutdown.callback(limiter.close)
            shutdown.push_async_callback(store.close)
            shutdown.callback(resolver.close)
            shutdown.callback(gc.unfreeze)
            shutdown.callback(gc.set_threshold, *gc.get_threshold())
            shutdown.push_async_callback(_stop, asyncio.create_task(_prepared(store)))
            # What the app built lives as long as it: out of the collector's full passes, which
            # walked all of it every few seconds, each pass a pause in a request's p99.
            gc.collect()
            gc.freeze()
            # A request has some 600 objects alive at its peak, so at the default threshold
            # (700) the collector walked the requests in flight every few requests, finding
            # nearly nothing: their objects go when the request does.
            gc.set_threshold(YOUNG_THRESHOLD)
            yield

    app = APP_CLASSES[settings.app](
        __name__,
        resolver=resolver,
        validator_map=validator_map(),
        security_map=security_map(
            load_keys(settings.api_keys_file, settings.api_keys) if keys is None else keys,
            {name: op["x-scope"] for name, op in by_id.items() if "x-scope" in op},
            public_reads=settings.public_reads,
        ),
        lifespan=lifespan,
        middlewares=middlewares(),
    )
    call_operations_directly(app)

    cors = {"allow_origins": settings.cors_origins, **_cors(operations)}
    # Outermost first. Those before Connexion's exception handling see, and shape, every
    # response, errors included; those after it have their refusals answered as problems; the
    # last sees only what Connexion routed and let through.
    outside, inside = MiddlewarePosition.BEFORE_EXCEPTION, MiddlewarePosition.BEFORE_ROUTING
    layers: list[tuple[Any, MiddlewarePosition, dict[str, Any]]] = [
        # Every response and log line carries the request's id, the client's if well formed.
        (
            CorrelationIdMiddleware,
            outside,
            # Nothing reads the request's header again: the id is in a context variable.
            {
                "validator": REQUEST_ID.fullmatch,
                "generator": new_request_id,
                "update_request_header": False,
            },
        ),
        # Browser scripts from the operator's origins may call the API (when there are some).
        *([(CORSMiddleware, outside, cors)] if settings.cors_origins else []),
        # No response is sniffed or shared-cached; none without a body has a Content-Type.
        (ResponseHeaders, outside, {}),
        # /metrics answers the operator's networks only, and is neither logged nor counted.
        (MetricsEndpoint, outside, {"metrics": metrics, "networks": settings.metrics_networks}),
        # Every other request leaves one access line and its metrics, whatever answered it.
        (
            AccessLog,
            outside,
            {
                "lines": AccessLines(settings.log_format),
                "metrics": metrics,
                "templates": templates,
            },
        ),
        # A request still running when the shutdown grace ends is answered 503, not dropped.
        (CutShort, outside, {}),
        # The probes are answered on the event loop, ahead of anything a request can queue on.
        (Probes, inside, {"store": store}),
        # A client, or an API key's writes, past its rate is answered 429 before any work.
        (
            RateLimits,
            inside,
            {
                "writes": settings.rate_limit_writes,
                "requests": settings.rate_limit_requests,
                "limiter": limiter,
                "on_storage_failure": metrics.unlimited.inc,
            },
        ),
        # Targets no operation could serve (too long, control characters, empty segments).
        (RequestTarget, inside, {}),
        # Headers sent on several lines are read as one by everyone; one media type, lowercased.
        (RequestHeaders, inside, {}),
        # The body: bounded, only where the operation takes one, typed, and exactly framed.
        (
            RequestBody,
            inside,
            {"max_bytes": settings.max_body_bytes, "operations_at": operations_at},
        ),
        # /openapi.json and /openapi.yaml are the spec as written, not Connexion's copy.
        (ServeSpecAsWritten, MiddlewarePosition.BEFORE_CONTEXT, {"text": text, "document": spec}),
    ]
    for middleware, position, options in layers:
        app.add_middleware(middleware, position=position, **options)
    app.add_api(
        connexion_spec,
        validate_responses=settings.validate_responses,
        strict_validation=True,  # a query parameter the operation does not declare is a 400
        uri_parser_class=StrictURIParser,  # type: ignore[arg-type]  # a class, as documented
        jsonifier=OrjsonJsonifier(),
        swagger_ui_options=SwaggerUIOptions(serve_spec=False, swagger_ui_path=CONSOLE_PATH),
    )
    install_error_handlers(
        app,
        operations_at=operations_at,
        on_store_error_seen=lambda error: metrics.store_errors.labels(type(error).__name__).inc(),
    )
    return app


async def _prepared(store: UserStore) -> None:
    """The store prepared (its schema migrated) as the app starts; if its database cannot be
    reached yet, tried again every `PREPARE_RETRY_SECONDS` while requests get 503."""
    while True:
        try:
            await store.prepare()
            return
        except StoreUnavailable as error:
            logger.warning(
                "store not ready: %s; trying again in %d s", error.reason, PREPARE_RETRY_SECONDS
            )
            await asyncio.sleep(PREPARE_RETRY_SECONDS)
        except Exception as error:  # a refused migration says why; anything else, its traceback
            logger.error(
                "store not prepared: %s; requests get 503 until `users-api migrate` succeeds",
                error,
                exc_info=not isinstance(error, MigrationRefused),
            )
            return


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
"""An `X-Request-ID` the service takes from a client; any other, it replaces with its own."""


class OrjsonJsonifier(Jsonifier):
    """Response bodies written by orjson, compact and in UTF-8: a tenth of the json module's
    time. (FlaskApp's own jsonifier would indent them.)"""

    def dumps(self, data: Any, **_: Any) -> str:
        return orjson.dumps(data).decode() + "\n"


def new_request_id() -> str:
    """32 hex digits (the shape of `uuid4().hex`) from `random`'s generator, seeded from the
    system's at start and again in a forked child: `uuid4` makes a system call for each, and a
    request id labels a request, it guards nothing."""
    return f"{random.getrandbits(128):032x}"


Operations = dict[str, dict[str, dict[str, Any]]]
"""Each operation of the spec, its `$ref`s resolved, by path template and then by method (in
capitals, as requests name it)."""


def _operations(connexion_spec: Mapping[str, Any]) -> Operations:
    paths = resolve_refs(connexion_spec)["paths"]
    return {
        template: {method.upper(): op for method, op in item.items() if method in METHODS}
        for template, item in paths.items()
    }


def _cors(operations: Operations) -> dict[str, list[str]]:
    """What a browser script on an allowed origin may do: call the spec's methods, send its key,
    its body's type and the spec's header parameters, and read the spec's response headers and
    the request id."""
    methods: list[str] = []
    sent, read = ["Authorization", "Content-Type"], ["X-Request-ID"]
    for item in operations.values():
        methods += item
        for operation in item.values():
            sent += [p["name"] for p in operation.get("parameters", []) if p["in"] == "header"]
            for response in operation["responses"].values():
                read += response.get("headers", {})
    return {
        "allow_methods": sorted(set(methods)),
        "allow_headers": list(dict.fromkeys(sent)),
        "expose_headers": list(dict.fromkeys(read)),
    }


def _operations_at(operations: Operations) -> Callable[[str], Mapping[str, Any]]:
    """The operations at a request path, by method, as the router matches them (none for a path
    it does not know); HEAD is the GET."""
    routes = [
        (compile_path(template)[0], {**item, "HEAD": item["GET"]} if "GET" in item else item)
        for template, item in operations.items()
    ]

    def operations_at(path: str) -> Mapping[str, Any]:
        return next((item for pattern, item in routes if pattern.match(path)), {})

    return operations_at
