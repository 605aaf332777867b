"""What `users_api.connexion_adapter` relies on in Connexion's internals: each test names the piece
it guards, so that an upgrade that moves one fails here, plainly, before anywhere else."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import json
import re
from typing import Any
from unittest.mock import patch

import connexion
import pytest
from connexion.apps.asynchronous import AsyncApi, AsyncOperation
from connexion.decorators.response import AsyncResponseDecorator
from connexion.middleware import ConnexionMiddleware
from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.request_validation import (
    RequestValidationAPI,
    RequestValidationMiddleware,
    RequestValidationOperation,
)
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.security import SecurityHandlerFactory
from connexion.validators import AbstractRequestBodyValidator, AbstractResponseBodyValidator
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.profile import scaled
from users_api import connexion_adapter
from users_api.app import create_app
from users_api.connexion_adapter import _ValidationSetUpOnce as ValidationSetUpOnce
from users_api.settings import Settings
from users_api.store.memory import MemoryStore


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


STOCK_REQUEST_VALIDATION = "af472716211911b942041310f56e3fef4c450a9010c1c1d4c1cab2d16b80e248"
"""SHA-256 of `RequestValidationOperation.__call__`'s source in the Connexion piece 6 follows."""


def test_piece_6_request_validation_takes_the_steps_the_set_up_once_operation_takes() -> None:
    """`_ValidationOnce.__call__` takes stock's steps with what it built once: when an upgrade
    changes them, compare the two, follow the change, then update the digest."""
    source = inspect.getsource(RequestValidationOperation.__call__)
    assert hashlib.sha256(source.encode()).hexdigest() == STOCK_REQUEST_VALIDATION, (
        "RequestValidationOperation.__call__ changed: piece 6 of connexion_adapter copies it"
    )
    assert RequestValidationMiddleware in ConnexionMiddleware.default_middlewares
    assert RequestValidationMiddleware.api_cls is RequestValidationAPI
    assert "make_operation" in vars(RequestValidationAPI), "the API no longer makes them"
    assert connexion_adapter._ValidationSetUpOnce in connexion_adapter.middlewares()


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("text/plain", 415),  # a type the operation does not consume, looked up per request
        (None, 415),
    ],
)
def test_piece_6_a_body_is_validated_by_its_media_type_on_every_request(
    content_type: str | None, status: int
) -> None:
    """Each request is held to its own media type, whatever the one before it sent."""
    client = create_app(Settings(api_keys=("k",)), store=MemoryStore()).test_client()
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    assert client.post("/users", content=b'{"username": "cosmo"}', headers=headers).is_success
    for _ in range(2):  # the first request sets up the operation; the second finds it set up
        bad = client.put("/users/1", content=b'{"username": 7}', headers=headers)
        assert bad.status_code == 400
        sent = {"Authorization": "Bearer k"} | (
            {"Content-Type": content_type} if content_type else {}
        )
        answer = client.put("/users/1", content=b'{"username": "kramer"}', headers=sent)
        assert answer.status_code == status, answer.text


MEDIA_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "application/JSON",
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


@functools.cache
def _twins() -> tuple[Any, Any]:
    """An app with Connexion's stock request validation and one with piece 6, both fed every
    request alike, so that their stores go through the same states."""
    ours = connexion_adapter.middlewares()
    stock = [RequestValidationMiddleware if m is ValidationSetUpOnce else m for m in ours]
    clients = []
    for middlewares in (stock, ours):
        with patch("users_api.app.middlewares", lambda chosen=middlewares: chosen):
            client = create_app(Settings(api_keys=("k",)), store=MemoryStore()).test_client()
        client.post("/users", json={"username": "cosmo"}, headers={"Authorization": "Bearer k"})
        clients.append(client)
    return clients[0], clients[1]


@settings(max_examples=scaled(300, 60), deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]),
            st.sampled_from(["/users", "/users/1", "/users/2"]),
            st.none() | MEDIA_TYPES,
            BODIES,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_piece_6_answers_every_request_as_connexions_own_validation_does(
    requests: list[tuple[str, str, str | None, bytes]],
) -> None:
    for method, path, media, body in requests:
        headers = {"Authorization": "Bearer k"} | ({} if media is None else {"Content-Type": media})
        stock, ours = (
            _answer(client.request(method, path, content=body, headers=headers))
            for client in _twins()
        )
        assert ours == stock, (method, path, media, body)


def _answer(response: Any) -> tuple[int, str]:
    """The status and body, without what differs between two apps: times and request ids."""
    body = response.json() if response.content else None
    if isinstance(body, dict):
        body.pop("instance", None)
    return response.status_code, re.sub(r'"[0-9-]{10}T[^"]*"', "TIME", json.dumps(body))
