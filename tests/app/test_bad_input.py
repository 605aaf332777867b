"""Bad input gets a 4xx problem saying what is wrong, never a 500, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from connexion import AbstractApp
from httpx import Response
from starlette.testclient import TestClient

from tests.support.api import AUTH, assert_problem
from users_api.handlers.problem_types import VALIDATION
from users_api.store import User, UserStore

JSON = {"Content-Type": "application/json"}
Put = Callable[..., Response]


@pytest.fixture
def client(kept_app: AbstractApp) -> TestClient:
    """Nothing here reads what an app keeps across tests: one app per flavour serves them all."""
    return kept_app.test_client(client=("127.0.0.1", 50000))


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


@pytest.mark.parametrize("user_id", ["0", "-1", str(2**53), str(2**63), "9" * 40, "9" * 4000])
def test_an_integer_user_id_out_of_range_returns_400(client: TestClient, user_id: str) -> None:
    problem = assert_problem(client.get(f"/users/{user_id}", headers=AUTH), 400)
    assert [error["parameter"] for error in problem["errors"]] == ["user_id"]  # once


@pytest.mark.parametrize("user_id", ["abc", "1.5", "1e3"])
def test_a_user_id_that_is_not_an_integer_matches_no_path_and_returns_404(
    client: TestClient, user_id: str
) -> None:
    assert_problem(client.get(f"/users/{user_id}", headers=AUTH), 404)


def test_the_largest_id_a_javascript_number_holds_is_valid_and_not_found(
    client: TestClient,
) -> None:
    assert_problem(client.get(f"/users/{2**53 - 1}", headers=AUTH), 404)


# Numbers too long for Python, and integers as only ASCII digits spell them


@pytest.mark.parametrize("path", ["/users/" + "9" * 5000, "/users?limit=" + "9" * 5000])
def test_a_request_target_over_4096_bytes_returns_414(client: TestClient, path: str) -> None:
    assert_problem(client.get(path, headers=AUTH), 414)


@pytest.mark.parametrize("digits", [1001, 4299, 4301, 10_000])
def test_a_body_number_of_more_than_1000_digits_returns_400(put: Put, digits: int) -> None:
    body = b'{"username": "kramer", "n": ' + b"9" * digits + b"}"
    problem = assert_problem(put(body), 400)
    assert problem["detail"] == "The request body holds a number of more than 1000 digits."


@pytest.mark.parametrize("depth", [500, 900, 950, 980, 990, 1000, 5000])
def test_deep_nesting_with_an_escape_returns_400_at_every_depth(put: Put, depth: int) -> None:
    body = b'{"username": "kramer", "x": ' + b"[" * depth + b'"\\u00e9"' + b"]" * depth + b"}"
    assert_problem(put(body), 400)


@pytest.mark.parametrize(
    "limit", [" 5", "5 ", "+5", "5_0", "0x5", "\u0665", "\uff15", "5.0", "1" * 1001, "1" * 4000]
)
def test_a_limit_that_is_not_ascii_digits_returns_400_naming_it(
    client: TestClient, limit: str
) -> None:
    problem = assert_problem(client.get("/users", params={"limit": limit}, headers=AUTH), 400)
    assert [error["parameter"] for error in problem["errors"]] == ["limit"]


@pytest.mark.parametrize("query", ["usernme=kramer", "limit[]=5", "Limit=5", "cursor=0&page=2"])
def test_a_query_parameter_the_operation_does_not_declare_returns_400_naming_it(
    client: TestClient, query: str
) -> None:
    problem = assert_problem(client.get(f"/users?{query}", headers=AUTH), 400)
    declared = {"limit", "cursor", "username"}
    named = [error["parameter"] for error in problem["errors"]]
    assert named and not declared & set(named)


def test_every_cursor_the_service_hands_out_it_accepts(
    client: TestClient, store: UserStore
) -> None:
    asyncio.run(store.add_all([_imported(2**53 - 2), _imported(2**53 - 1)]))
    first = client.get("/users", params={"limit": 1}, headers=AUTH).json()
    second = client.get("/users", params={"limit": 1, "cursor": first["next_cursor"]}, headers=AUTH)
    assert second.status_code == 200, second.text
    assert [user["id"] for user in second.json()["items"]] == [2**53 - 1]


# Conditional headers: a list of entity tags, or a 400


def conditional(
    client: TestClient, store: UserStore, method: str, header: str, value: str | bytes
) -> tuple[User, Response]:
    """A request to a new user with one conditional header; a PUT renames the user."""
    user = asyncio.run(store.create(username="cosmo"))
    response = client.request(
        method,
        f"/users/{user.id}",
        json={"username": "kramer"} if method == "PUT" else None,
        headers=AUTH | {header: value},
    )
    return user, response


@pytest.mark.parametrize(
    "tag",
    [
        '"9223372036854775808"',
        '"2147483648"',
        '"99999999999"',
        '"01"',
        '"x"',
        'W/"1"',
        '"1,2"',
        '"1,"',
    ],
)
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_an_if_match_naming_no_version_ever_issued_returns_412(
    client: TestClient, store: UserStore, tag: str, method: str
) -> None:
    user, response = conditional(client, store, method, "If-Match", tag)
    assert_problem(response, 412)
    assert asyncio.run(store.get(user.id)) == user


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        '"1',
        "1",
        "W/1",
        '"1" "2"',
        '*, "1"',
        '"a"b"',
        'W/ "1"',
        "",
        '"\u00b2"',
        '"\u0665"',
    ],
)
@pytest.mark.parametrize("header", ["If-Match", "If-None-Match"])
def test_a_conditional_header_that_is_not_a_list_of_entity_tags_returns_400_naming_it(
    client: TestClient, store: UserStore, header: str, value: str
) -> None:
    method = "PUT" if header == "If-Match" else "GET"
    # UTF-8, as a client might send it
    user, response = conditional(client, store, method, header, value.encode())
    problem = assert_problem(response, 400)
    assert [error["parameter"] for error in problem["errors"]] == [header]
    assert asyncio.run(store.get(user.id)) == user


@pytest.mark.parametrize("value", ['"1"', ' "1" ', '"9", "1"', 'W/"1", "1"', '"1",,'])
def test_a_well_formed_if_match_naming_the_current_version_passes(
    client: TestClient, store: UserStore, value: str
) -> None:
    _, response = conditional(client, store, "PUT", "If-Match", value)
    assert response.status_code == 200, response.text


# Framing


@pytest.mark.parametrize("content_type", ["APPLICATION/JSON", "Application/Json; Charset=UTF-8"])
def test_a_media_type_in_capitals_is_json(
    client: TestClient, store: UserStore, content_type: str
) -> None:
    user = asyncio.run(store.create(username="cosmo"))
    response = client.put(
        f"/users/{user.id}",
        content=b'{"username": "kramer"}',
        headers=AUTH | {"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text
    assert asyncio.run(store.get(user.id)).username == "kramer"


@pytest.mark.parametrize("body", [b'{"username": 5}', b'{"username": "ok", "extra": 1}', b"[]"])
def test_a_bad_body_in_a_media_type_in_capitals_is_a_400(
    client: TestClient, store: UserStore, body: bytes
) -> None:
    """The media type is case-insensitive; its body is validated like any other."""
    headers = AUTH | {"Content-Type": "APPLICATION/JSON"}
    assert_problem(client.post("/users", content=body, headers=headers), 400, VALIDATION)
    assert asyncio.run(store.list(after=0, limit=10)) == []


def test_two_content_types_return_400(client: TestClient, store: UserStore) -> None:
    user = asyncio.run(store.create(username="cosmo"))
    headers = [("Content-Type", "application/json")] * 2 + list(AUTH.items())
    response = client.put(f"/users/{user.id}", content=b'{"username": "kramer"}', headers=headers)
    assert_problem(response, 400)
    assert asyncio.run(store.get(user.id)) == user


@pytest.mark.parametrize("path", ["/users/1/", "/users//1", "//users/1", "/users/", "//healthz"])
def test_a_path_with_an_empty_segment_returns_404_not_a_redirect(
    client: TestClient, store: UserStore, path: str
) -> None:
    asyncio.run(store.create(username="cosmo"))
    response = client.get(f"http://testserver{path}", headers=AUTH, follow_redirects=False)
    assert_problem(response, 404)
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users"),
        ("GET", "/users/1"),
        ("HEAD", "/users/1"),
        ("DELETE", "/users/1"),
        ("GET", "/readyz"),
        ("GET", "/problems/validation"),
    ],
)
@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_a_body_sent_to_an_operation_that_takes_none_returns_400(
    client: TestClient, store: UserStore, method: str, path: str, content_type: str | None
) -> None:
    asyncio.run(store.create(username="cosmo"))
    headers = AUTH | ({"Content-Type": content_type} if content_type else {})
    response = client.request(method, path, content=b'{"username": "x"}', headers=headers)
    assert response.status_code == 400
    if method != "HEAD":
        problem = assert_problem(response, 400, VALIDATION)
        assert problem["detail"] == "This operation takes no request body."
    assert asyncio.run(store.list(after=0, limit=5))  # the DELETE did not happen


def test_an_empty_body_on_an_operation_that_takes_none_is_no_body(client: TestClient) -> None:
    assert client.get("/users", headers=AUTH | {"Content-Length": "0"}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_liveness_probe_answers_before_it_reads_a_body(client: TestClient, method: str) -> None:
    assert client.request(method, "/healthz", content=b"x" * 100_000).status_code == 200


def test_a_header_sent_on_two_lines_is_read_as_one_list_by_both_app_classes(
    client: TestClient,
) -> None:
    """RFC 9110, section 5.3: `If-Match: "1"` and `If-Match: "2"` are `If-Match: "1", "2"`."""
    client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    client.put("/users/1", json={"username": "kramer"}, headers=AUTH)  # now at "2"
    match = [*AUTH.items(), ("If-Match", '"1"'), ("If-Match", '"2"')]
    none_match = [*AUTH.items(), ("If-None-Match", '"1"'), ("If-None-Match", '"3"')]
    matched = client.put("/users/1", json={"username": "newman"}, headers=match)
    unchanged = client.get("/users/1", headers=none_match)
    assert (matched.status_code, unchanged.status_code) == (200, 304)


def test_a_body_sent_to_a_path_the_api_lacks_is_still_a_404(client: TestClient) -> None:
    response = client.request("GET", "/nowhere", content=b"{}", headers=AUTH)
    assert_problem(response, 404)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_metrics_answer_only_get(client: TestClient, method: str) -> None:
    response = client.request(method, "/metrics")
    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET"


def _imported(user_id: int) -> User:
    now = datetime.now(UTC)
    return User(id=user_id, username=f"u{user_id}", created_at=now, updated_at=now, version=1)
