"""Every status of every operation, through the HTTP interface."""

from __future__ import annotations

from typing import Any

import pytest
from connexion import AbstractApp
from starlette.testclient import TestClient

from tests.support.api import AUTH, assert_problem
from users_api.app import create_app
from users_api.settings import Settings
from users_api.store import UserStore


@pytest.fixture
def client(kept_app: AbstractApp) -> TestClient:
    """Nothing here reads what an app keeps across tests: one app per flavour serves them all."""
    return kept_app.test_client(client=("127.0.0.1", 50000))


def create(client: TestClient, username: str) -> dict[str, Any]:
    response = client.post("/users", json={"username": username}, headers=AUTH)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


# The seed's three cases first.


def test_put_returns_200_and_the_updated_user(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]
    assert response.json()["username"] == "kramer"
    assert client.get(f"/users/{user['id']}", headers=AUTH).json()["username"] == "kramer"


def test_put_without_username_returns_400_naming_the_field(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.put(f"/users/{user['id']}", json={}, headers=AUTH)
    problem = assert_problem(response, 400)
    assert problem["errors"] == [
        {"pointer": "/username", "message": "'username' is a required property"}
    ]


def test_put_unknown_user_returns_404_problem(client: TestClient) -> None:
    response = client.put("/users/42", json={"username": "kramer"}, headers=AUTH)
    problem = assert_problem(response, 404)
    assert problem["detail"] == "User 42 does not exist."
    assert problem["instance"] == f"urn:request:{response.headers['X-Request-ID']}"


# PUT


def test_put_changes_the_etag_and_keeps_the_id_and_created_at(client: TestClient) -> None:
    user = create(client, "cosmo")
    before = client.get(f"/users/{user['id']}", headers=AUTH)
    after = client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=AUTH)
    assert after.headers["etag"] != before.headers["etag"]
    assert after.json()["created_at"] == user["created_at"]
    assert after.json()["updated_at"] >= user["updated_at"]


def test_put_with_an_id_in_the_body_returns_400_and_changes_nothing(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.put(f"/users/{user['id']}", json={"id": 99, "username": "x"}, headers=AUTH)
    problem = assert_problem(response, 400)
    assert problem["errors"] == [{"pointer": "/id", "message": "'id' is not an allowed property"}]
    assert client.get(f"/users/{user['id']}", headers=AUTH).json() == user


def test_put_invalid_username_returns_400_saying_why(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.put(f"/users/{user['id']}", json={"username": "-bad-"}, headers=AUTH)
    problem = assert_problem(response, 400)
    [error] = problem["errors"]  # type: ignore[misc]
    assert error["pointer"] == "/username"
    assert "does not match" in error["message"]


def test_put_taken_username_returns_409_whatever_its_case(client: TestClient) -> None:
    create(client, "Cosmo")
    user = create(client, "elaine")
    response = client.put(f"/users/{user['id']}", json={"username": "cOSMO"}, headers=AUTH)
    assert_problem(response, 409)


def test_put_may_change_only_the_case_of_the_own_username(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.put(f"/users/{user['id']}", json={"username": "Cosmo"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["username"] == "Cosmo"


def test_put_with_the_current_etag_in_if_match_returns_200(client: TestClient) -> None:
    user = create(client, "cosmo")
    etag = client.get(f"/users/{user['id']}", headers=AUTH).headers["etag"]
    headers = AUTH | {"If-Match": etag}
    response = client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=headers)
    assert response.status_code == 200


def test_put_with_a_stale_if_match_returns_412_and_changes_nothing(client: TestClient) -> None:
    user = create(client, "cosmo")
    stale = client.get(f"/users/{user['id']}", headers=AUTH).headers["etag"]
    client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=AUTH)
    headers = AUTH | {"If-Match": stale}
    response = client.put(f"/users/{user['id']}", json={"username": "newman"}, headers=headers)
    assert_problem(response, 412)
    assert client.get(f"/users/{user['id']}", headers=AUTH).json()["username"] == "kramer"


def test_put_with_if_match_star_updates_an_existing_user(client: TestClient) -> None:
    user = create(client, "cosmo")
    headers = AUTH | {"If-Match": "*"}
    response = client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=headers)
    assert response.status_code == 200


# POST


def test_post_returns_201_with_location_and_etag(client: TestClient) -> None:
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    assert response.status_code == 201
    user = response.json()
    assert response.headers["location"] == f"/users/{user['id']}"
    assert (
        response.headers["etag"]
        == client.get(response.headers["location"], headers=AUTH).headers["etag"]
    )
    assert user["username"] == "cosmo"


def test_post_keeps_the_username_as_given(client: TestClient) -> None:
    assert create(client, "CoSmO")["username"] == "CoSmO"


def test_post_taken_username_in_another_case_returns_409(client: TestClient) -> None:
    create(client, "Cosmo")
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    problem = assert_problem(response, 409)
    assert "cosmo" in str(problem["detail"])


def test_a_rotated_pair_of_keys_both_work(store: UserStore) -> None:
    client = create_app(Settings(api_keys=("old", "new")), store=store).test_client()
    for key in ("old", "new"):
        response = client.post(
            "/users", json={"username": key}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 201


def test_ids_are_never_reused_after_a_delete(client: TestClient) -> None:
    first = create(client, "cosmo")
    client.delete(f"/users/{first['id']}", headers=AUTH)
    assert create(client, "elaine")["id"] > first["id"]  # type: ignore[operator]


# GET one


def test_get_returns_the_user_with_its_etag(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.get(f"/users/{user['id']}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == user
    assert response.headers["etag"].startswith('"')


def test_get_with_the_current_etag_in_if_none_match_returns_304(client: TestClient) -> None:
    user = create(client, "cosmo")
    etag = client.get(f"/users/{user['id']}", headers=AUTH).headers["etag"]
    response = client.get(f"/users/{user['id']}", headers=AUTH | {"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert "content-type" not in response.headers


def test_get_with_an_old_etag_in_if_none_match_returns_200(client: TestClient) -> None:
    user = create(client, "cosmo")
    etag = client.get(f"/users/{user['id']}", headers=AUTH).headers["etag"]
    client.put(f"/users/{user['id']}", json={"username": "kramer"}, headers=AUTH)
    response = client.get(f"/users/{user['id']}", headers=AUTH | {"If-None-Match": etag})
    assert response.status_code == 200


def test_get_unknown_user_returns_404(client: TestClient) -> None:
    assert_problem(client.get("/users/1", headers=AUTH), 404)


# GET list


def test_list_pages_through_every_user_in_id_order(client: TestClient) -> None:
    ids = [create(client, f"user{n}")["id"] for n in range(5)]
    seen: list[object] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/users", params=params, headers=AUTH).json()
        seen += [user["id"] for user in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids


def test_list_defaults_to_20_per_page(client: TestClient) -> None:
    for n in range(21):
        create(client, f"user{n}")
    page = client.get("/users", headers=AUTH).json()
    assert len(page["items"]) == 20
    assert page["next_cursor"] == str(page["items"][-1]["id"])


def test_list_last_full_page_has_no_next_cursor(client: TestClient) -> None:
    create(client, "cosmo")
    create(client, "elaine")
    assert client.get("/users", params={"limit": "2"}, headers=AUTH).json()["next_cursor"] is None


def test_list_cursor_past_the_end_returns_an_empty_page(client: TestClient) -> None:
    create(client, "cosmo")
    page = client.get("/users", params={"cursor": "9007199254740991"}, headers=AUTH).json()
    assert page == {"items": [], "next_cursor": None}


def test_list_filters_by_username_ignoring_case(client: TestClient) -> None:
    create(client, "Cosmo")
    create(client, "elaine")
    page = client.get("/users", params={"username": "COSMO"}, headers=AUTH).json()
    assert [user["username"] for user in page["items"]] == ["Cosmo"]


def test_list_with_limit_and_cursor_out_of_range_lists_both_failures(client: TestClient) -> None:
    problem = assert_problem(
        client.get("/users", params={"limit": "101", "cursor": "x"}, headers=AUTH), 400
    )
    assert [error["parameter"] for error in problem["errors"]] == ["limit", "cursor"]  # type: ignore[attr-defined]


def test_list_with_limit_zero_returns_400(client: TestClient) -> None:
    assert_problem(client.get("/users", params={"limit": "0"}, headers=AUTH), 400)


# DELETE


def test_delete_returns_204_and_the_user_is_gone(client: TestClient) -> None:
    user = create(client, "cosmo")
    response = client.delete(f"/users/{user['id']}", headers=AUTH)
    assert response.status_code == 204
    assert response.content == b""
    assert "content-type" not in response.headers
    assert_problem(client.get(f"/users/{user['id']}", headers=AUTH), 404)


def test_delete_frees_the_username(client: TestClient) -> None:
    user = create(client, "cosmo")
    client.delete(f"/users/{user['id']}", headers=AUTH)
    create(client, "COSMO")


def test_delete_unknown_user_returns_404(client: TestClient) -> None:
    assert_problem(client.delete("/users/7", headers=AUTH), 404)


def test_delete_with_a_stale_if_match_returns_412_and_keeps_the_user(client: TestClient) -> None:
    user = create(client, "cosmo")
    headers = AUTH | {"If-Match": '"999"'}
    assert_problem(client.delete(f"/users/{user['id']}", headers=headers), 412)
    assert client.get(f"/users/{user['id']}", headers=AUTH).status_code == 200


# Around the resource


def test_healthz_returns_200(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_an_unsupported_method_returns_405_with_every_allowed_method(client: TestClient) -> None:
    response = client.patch("/users/1", json={"username": "x"}, headers=AUTH)
    assert_problem(response, 405)
    assert sorted(response.headers["allow"].split(", ")) == ["DELETE", "GET", "HEAD", "PUT"]


def test_head_is_answered_where_get_is_with_its_headers_and_no_body(client: TestClient) -> None:
    user = create(client, "cosmo")
    got = client.get(f"/users/{user['id']}", headers=AUTH)
    head = client.head(f"/users/{user['id']}", headers=AUTH)
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["ETag"] == got.headers["ETag"]
    assert client.head("/users", headers=AUTH).status_code == 200
    assert client.head("/users/999", headers=AUTH).status_code == 404


def test_an_unknown_path_returns_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/nowhere", headers=AUTH), 404)


def test_the_spec_and_the_console_are_served(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["info"]["title"] == "Users API"
    assert "swagger-ui" in client.get("/ui/").text
