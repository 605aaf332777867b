"""What `users_api.connexion_adapter` relies on in Connexion's internals: each test names the piece
it guards, so that an upgrade that moves one fails here, plainly, before anywhere else."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
from typing import Any

import connexion
import connexion.utils
import pytest
import yaml
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.decorators.response import AsyncResponseDecorator
from connexion.exceptions import ProblemException
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.response_validation import ResponseValidationOperation
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.security import SecurityHandlerFactory
from connexion.spec import Specification
from connexion.validators import AbstractRequestBodyValidator, AbstractResponseBodyValidator
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from tests.support.profile import scaled
from users_api import connexion_adapter
from users_api.app import SPEC, create_app
from users_api.connexion_adapter import spec_for_connexion
from users_api.settings import Settings
from users_api.store.memory import MemoryStore
from users_api.validation import StrictURIParser, validator_map


def test_piece_1_async_operations_are_made_by_the_asgi_apps_api_class() -> None:
    """`call_operations_directly` sets `AsyncApp._middleware_app.api_cls`, whose
    `make_operation` makes each operation, whose `fn` its `__call__` awaits for a response."""
    app = connexion.AsyncApp(__name__)
    assert app._middleware_app.api_cls is AsyncApi, "AsyncApp no longer has this ASGI app"
    assert "make_operation" in vars(AsyncApi), "AsyncApi no longer makes its operations"
    assert "self.fn()" in inspect.getsource(AsyncOperation.__call__), "the call moved"
    assert set(inspect.signature(AsyncResponseDecorator).parameters) == {"framework", "jsonifier"}


def test_piece_1_the_async_app_calls_each_handler_through_the_direct_operation() -> None:
    app = create_app(Settings(api_keys=("k",), app="async"), store=MemoryStore())
    with app.test_client():  # Connexion builds its APIs as the app starts
        apis = app._middleware_app.apis  # type: ignore[attr-defined]
    operations = [op for each in apis.values() for api in each for op in api.operations.values()]
    assert operations, "the ASGI app no longer lists its APIs' operations"
    assert {type(op) for op in operations} == {connexion_adapter._DirectOperation}


def test_piece_2_the_swagger_ui_middleware_is_one_of_connexions_defaults() -> None:
    assert SwaggerUIMiddleware in ConnexionMiddleware.default_middlewares
    assert connexion_adapter._ConsoleOnItsPath in connexion_adapter.middlewares()


def test_piece_3_the_router_names_the_operation_and_security_the_key() -> None:
    """The metrics read both: the operation id under `ROUTING_CONTEXT`, the key's name in
    Connexion's context."""
    app = create_app(Settings(api_keys=("k",)), store=MemoryStore())
    client = app.test_client(client=("127.0.0.1", 50000))
    client.get("/users", headers={"Authorization": "Bearer k"})
    scraped = client.get("/metrics").text
    assert 'operation="list_users"' in scraped, "the router no longer names the operation"
    assert 'key="USERS_API_KEYS[1]"' in scraped, "security no longer names the accepted key"
    assert ROUTING_CONTEXT == "connexion_routing"


def test_piece_3_the_router_names_the_operation_to_a_scope_sent_without_extensions() -> None:
    """uvicorn's scopes carry no `extensions`: `follow_routing` gives the access log's scope the
    dict that the router's copy of it writes into."""
    app = create_app(Settings(api_keys=("k",)), store=MemoryStore())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/users",
        "raw_path": b"/users",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer k")],
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: Any) -> None:
        pass

    asyncio.run(app(scope, receive, send))
    scraped = app.test_client(client=("127.0.0.1", 50000)).get("/metrics").text
    assert 'operation="list_users"' in scraped, "the router's record no longer reaches the log"


def test_piece_3_a_scheme_not_sent_is_connexions_no_value() -> None:
    """`NO_CREDENTIALS` tells Connexion's security to try the next scheme, or answer 401."""
    source = inspect.getsource(SecurityHandlerFactory.verify_security)
    assert "if token_info is not NO_VALUE:" in source, "security no longer reads NO_VALUE"
    assert connexion_adapter.NO_CREDENTIALS is connexion.security.NO_VALUE


def test_piece_4_connexion_still_appends_path_parameters_to_its_operations() -> None:
    """If an upgrade stops doing so, `spec_for_connexion` can go."""
    from connexion.operations import OpenAPIOperation

    assert "self._parameters += path_parameters" in inspect.getsource(OpenAPIOperation)


@pytest.mark.parametrize("flavour", ["async", "flask"])
def test_the_handlers_run_the_same_on_both_app_classes(flavour: str) -> None:
    client = create_app(Settings(api_keys=("k",), app=flavour), store=MemoryStore()).test_client()
    headers = {"Authorization": "Bearer k"}
    created = client.post("/users", json={"username": "cosmo"}, headers=headers)
    assert created.status_code == 201
    updated = client.put(
        "/users/1",
        json={"username": "kramer"},
        headers=headers | {"If-Match": created.headers["ETag"]},
    )
    assert (updated.status_code, updated.json()["username"]) == (200, "kramer")
    listed = client.get("/users?limit=1&username=KRAMER", headers=headers)
    assert [user["id"] for user in listed.json()["items"]] == [1]


def test_piece_5_the_request_body_is_parsed_then_validated_in_the_steps_it_hooks() -> None:
    """`BodyValidator` replaces `_parse` and `_validate` and reads `_schema`; the response
    validator for HEAD reads `_scope`."""
    receive = inspect.getsource(AbstractRequestBodyValidator.wrap_receive)
    assert "await self._parse(stream(), scope=scope)" in receive, "the body parse step moved"
    assert "self._validate(body)" in receive, "the body validation step moved"
    assert "self._schema = schema" in inspect.getsource(AbstractRequestBodyValidator.__init__)
    assert "self._scope = scope" in inspect.getsource(AbstractResponseBodyValidator.__init__)
    assert "def wrap_send" in inspect.getsource(AbstractResponseBodyValidator)


STOCK_REQUEST_VALIDATION = {
    RequestValidationOperation.__call__: (
        "af472716211911b942041310f56e3fef4c450a9010c1c1d4c1cab2d16b80e248"
    ),
    RequestValidationAPI.make_operation: (
        "55b32cb8b0ab229eedb57e573397f76bcb9ad3d217206d1fa06afb766db89026"
    ),
}
"""SHA-256 of the source of each method of Connexion's that piece 6 copies."""


def test_piece_6_request_validation_takes_the_steps_the_set_up_once_operation_takes() -> None:
    """Piece 6 takes stock's steps with what it built once: when an upgrade changes them,
    compare the two, follow the change, then update the digest."""
    for method, digest in STOCK_REQUEST_VALIDATION.items():
        source = inspect.getsource(method)
        assert hashlib.sha256(source.encode()).hexdigest() == digest, (
            f"{method.__qualname__} changed: piece 6 of connexion_adapter copies it"
        )
    assert RequestValidationMiddleware in ConnexionMiddleware.default_middlewares
    assert RequestValidationMiddleware.api_cls is RequestValidationAPI
    assert connexion_adapter._ValidationSetUpOnceMiddleware in connexion_adapter.middlewares()


@functools.cache
def _validation_apis() -> tuple[Any, Any, list[Any]]:
    """Connexion's stock request validation and piece 6 over the service's spec, and what the
    app after them is handed: each request's body, as parsed, and headers."""
    passed: list[Any] = []

    async def next_app(scope: Scope, receive: Receive, send: Send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        passed.append((body, connexion_adapter.parsed_body(scope), scope["headers"]))

    spec = Specification.load(spec_for_connexion(yaml.safe_load(SPEC.read_text())))
    options: dict[str, Any] = {
        "next_app": next_app,
        "strict_validation": True,
        "validator_map": validator_map(),
        "uri_parser_class": StrictURIParser,
    }
    stock = RequestValidationAPI(spec, **options)
    ours = connexion_adapter._ValidationSetUpOnceApi(spec, **options)
    return stock, ours, passed


MEDIA_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/JSON",
        "Application/Json; charset=UTF-8",
        "application/merge-patch+json",
        "application/*",
        "text/plain",
        "*/*",
        "",
    ]
)
BODIES = st.sampled_from(
    [b"", b'{"username": "kramer"}', b'{"username": 7}', b"null", b"[]", b"{", "é".encode()]
)
PATH_VALUES = st.sampled_from(["1", "x", "01", "-1", "", "9" * 40, "1.5", "ids-exhausted"])
QUERIES = st.sampled_from(
    ["", "limit=5", "limit=-1", "limit=x", "bogus=1", "cursor=abc", "limit=5&limit=6"]
)


@settings(max_examples=scaled(1000, 150), deadline=None)
@given(
    operation=st.sampled_from(sorted(_validation_apis()[0].operations)),
    path_value=PATH_VALUES,
    query=QUERIES,
    media=st.none() | MEDIA_TYPES,
    body=BODIES,
    condition=st.sampled_from([None, ("if-match", '"1"'), ("idempotency-key", "k" * 300)]),
)
def test_piece_6_answers_every_request_as_connexions_own_validation_does(
    operation: str,
    path_value: str,
    query: str,
    media: str | None,
    body: bytes,
    condition: tuple[str, str] | None,
) -> None:
    """The same request to stock validation and to piece 6: the same problem, or the same
    body, parsed body and headers handed on."""
    stock, ours, passed = _validation_apis()
    headers = [(b"content-length", str(len(body)).encode())]
    headers += [] if media is None else [(b"content-type", media.encode())]
    headers += [] if condition is None else [(condition[0].encode(), condition[1].encode())]
    outcomes = []
    for api in (stock, ours):
        validate = api.operations[operation]
        scope = {
            "type": "http",
            "method": validate._operation.method.upper(),
            "path": "/",
            "query_string": query.encode(),
            "headers": list(headers),
            "path_params": {"user_id": path_value, "problem_type": path_value},
            "extensions": {},
        }
        passed.clear()
        try:
            asyncio.run(validate(scope, _receiving(body), _never_sent))
            outcomes.append(("passed", *passed))
        except ProblemException as problem:
            outcomes.append(("refused", problem.status, problem.detail, problem.ext))
    assert outcomes[1] == outcomes[0]


def test_piece_6_a_request_without_a_media_type_finds_its_body_check_set_up() -> None:
    """Stock's guess for a request that sends no Content-Type is among what piece 6 built
    once, for every operation: else each such request sets its body check up again."""
    for operation in _validation_apis()[1].operations.values():
        guessed, _ = operation.extract_content_type([])
        assert guessed in operation._body_validators, operation._operation.operation_id


def _receiving(body: bytes) -> Receive:
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


async def _never_sent(message: Message) -> None:
    raise AssertionError("request validation answered itself")


def test_piece_7_connexions_callers_find_the_content_type_lookup_in_its_module() -> None:
    """Piece 7 replaces the function in `connexion.utils`: when an upgrade changes it, compare
    the two, follow the change, then update the digest."""
    stock = inspect.getsource(connexion_adapter.STOCK_CONTENT_TYPE_LOOKUP)
    assert hashlib.sha256(stock.encode()).hexdigest() == (
        "cf05b8c47077bb9b3b21acc64089324161bc22fb888f87d73e410bd2b75b776c"
    ), "connexion.utils.extract_content_type changed: piece 7 of connexion_adapter replaces it"
    assert connexion.utils.extract_content_type is connexion_adapter._content_type
    callers = [
        RequestValidationOperation.extract_content_type,
        ResponseValidationOperation.extract_content_type,
        AsyncResponseDecorator._infer_content_type,
    ]
    for caller in callers:
        assert "utils.extract_content_type(headers)" in inspect.getsource(caller), (
            f"{caller.__qualname__} no longer looks the lookup up in connexion.utils"
        )


HEADER_NAMES = st.sampled_from(
    ["content-type", "Content-Type", "CONTENT-TYPE", "content-typ", "x-content-type", "etag"]
)
HEADER_VALUES = st.text(st.characters(max_codepoint=0xFF), max_size=8)


@settings(max_examples=scaled(500, 100), deadline=None)
@given(
    pairs=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
    as_dict=st.booleans(),
)
def test_piece_7_finds_what_connexions_lookup_finds(
    pairs: list[tuple[str, str]], as_dict: bool
) -> None:
    """A handler's headers (a dict of text) or a scope's (pairs of latin-1 bytes)."""
    headers: Any = (
        dict(pairs)
        if as_dict
        else [(name.encode("latin-1"), value.encode("latin-1")) for name, value in pairs]
    )
    stock = connexion_adapter.STOCK_CONTENT_TYPE_LOOKUP(headers)
    assert connexion_adapter._content_type(headers) == stock
