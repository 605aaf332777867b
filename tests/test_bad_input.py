"""Bad input gets a 4xx problem saying what is wrong, never a 500, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from httpx import Response
from starlette.testclient import TestClient

from tests.conftest import AUTH, assert_problem
from users_api.store import UserStore

JSON = {"Content-Type": "application/json"}
Put = Callable[..., Response]


@pytest.fixture
def put(client: TestClient, store: UserStore) -> Iterator[Put]:
    """PUTs raw bytes to an existing user; afterwards the store must hold what it held."""
    user = asyncio.run(store.create(username="cosmo"))
    before = asyncio.run(store.list(after=0, limit=100))

    def send(content: bytes | Iterator[bytes], headers: dict[str, str] = JSON) -> Response:
        return client.put(f"/users/{user.id}", content=content, headers=AUTH | headers)

    yield send
    assert asyncio.run(store.list(after=0, limit=100)) == before


def test_a_json_body_without_content_type_returns_415(put: Put) -> None:
    assert_problem(put(b'{"username": "kramer"}', headers={}), 415)


def test_a_text_plain_body_returns_415(put: Put) -> None:
    assert_problem(put(b'{"username": "kramer"}', headers={"Content-Type": "text/plain"}), 415)


def test_malformed_json_returns_400(put: Put) -> None:
    problem = assert_problem(put(b'{"username": '), 400)
    assert "not JSON" in problem["detail"]


def test_bytes_that_are_not_utf8_return_400(put: Put) -> None:
    assert_problem(put(b'{"username": "\xff\xfe"}'), 400)


def test_a_lone_surrogate_returns_400(put: Put) -> None:
    assert_problem(put(b'{"username": "ok", "\\ud800": 1}'), 400)


def test_json_nested_5000_deep_returns_400(put: Put) -> None:
    problem = assert_problem(put(b"[" * 5000 + b"]" * 5000), 400)
    assert "nested too deeply" in problem["detail"]


def test_an_empty_body_returns_400(put: Put) -> None:
    assert_problem(put(b""), 400)


@pytest.mark.parametrize("body", [b"null", b"[]", b'"kramer"', b"42"])
def test_a_body_that_is_not_an_object_returns_400(put: Put, body: bytes) -> None:
    assert_problem(put(body), 400)


def test_every_failing_field_is_listed(put: Put) -> None:
    problem = assert_problem(put(b'{"username": 5, "id": 1, "email": "x"}'), 400)
    assert problem["errors"] == [
        {"pointer": "/email", "message": "'email' is not an allowed property"},
        {"pointer": "/id", "message": "'id' is not an allowed property"},
        {"pointer": "/username", "message": "5 is not of type 'string'"},
    ]


@pytest.mark.parametrize(
    "username", ["", "a" * 65, "-cosmo", "cosmo.", "co smo", "cösmo", "cosmo\\n"]
)
def test_an_invalid_username_returns_400_pointing_at_it(put: Put, username: str) -> None:
    problem = assert_problem(put(f'{{"username": "{username}"}}'.encode()), 400)
    assert {error["pointer"] for error in problem["errors"]} == {"/username"}


def test_a_trailing_newline_does_not_pass_a_pattern_that_ends_in_dollar(put: Put) -> None:
    """JSON Schema patterns are ECMA 262: `$` is the end of the text, not before a last newline."""
    problem = assert_problem(put(b'{"username": "cosmo\\n"}'), 400)
    assert problem["errors"] == [
        {
            "pointer": "/username",
            "message": '"cosmo\\n" does not match "^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$"',
        }
    ]


def test_a_cursor_with_a_trailing_newline_returns_400(client: TestClient) -> None:
    problem = assert_problem(client.get("/users", params={"cursor": "20\n"}, headers=AUTH), 400)
    assert [error["parameter"] for error in problem["errors"]] == ["cursor"]


def test_a_body_over_the_limit_returns_413_by_content_length(put: Put) -> None:
    body = b'{"username": "' + b"a" * 17_000 + b'"}'
    problem = assert_problem(put(body), 413)
    assert "16384 bytes" in problem["detail"]


def test_a_chunked_body_over_the_limit_returns_413_by_counting(put: Put) -> None:
    chunks = iter([b'{"username": "', *[b"a" * 1024] * 17, b'"}'])
    assert_problem(put(chunks), 413)


def test_a_chunked_body_within_the_limit_is_accepted(client: TestClient, store: UserStore) -> None:
    user = asyncio.run(store.create(username="cosmo"))
    chunks = iter([b'{"username": ', b'"kramer"}'])
    response = client.put(f"/users/{user.id}", content=chunks, headers=AUTH | JSON)
    assert response.status_code == 200
    assert asyncio.run(store.get(user.id)).username == "kramer"


def test_a_content_length_that_is_not_a_number_returns_400(put: Put) -> None:
    assert_problem(put(b"{}", headers=JSON | {"Content-Length": "abc"}), 400)


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**63), str(2**64), "9" * 40])
def test_an_integer_user_id_out_of_range_returns_400(client: TestClient, user_id: str) -> None:
    problem = assert_problem(client.get(f"/users/{user_id}", headers=AUTH), 400)
    assert [error["parameter"] for error in problem["errors"]] == ["user_id"]  # once


@pytest.mark.parametrize("user_id", ["abc", "1.5", "1e3"])
def test_a_user_id_that_is_not_an_integer_matches_no_path_and_returns_404(
    client: TestClient, user_id: str
) -> None:
    assert_problem(client.get(f"/users/{user_id}", headers=AUTH), 404)


def test_the_largest_int64_user_id_is_valid_and_not_found(client: TestClient) -> None:
    assert_problem(client.get(f"/users/{2**63 - 1}", headers=AUTH), 404)
