"""Problems a program can branch on: each kind has its own `type`, documented in the spec and
explained by a page at that URI; `about:blank` only where nothing more specific is meant."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import yaml
from starlette.testclient import TestClient

from tests.support.api import AUTH, assert_problem
from users_api.app import SPEC
from users_api.handlers.problem_types import (
    CONTENT_TOO_LARGE,
    PRECONDITION_FAILED,
    PROBLEM_TYPES,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    USER_NOT_FOUND,
    USERNAME_TAKEN,
    VALIDATION,
)


def test_each_kind_of_problem_is_answered_with_its_type_and_title(client: TestClient) -> None:
    cosmo = client.post("/users", json={"username": "cosmo"}, headers=AUTH).json()
    elaine = client.post("/users", json={"username": "elaine"}, headers=AUTH).json()
    put = client.put
    answers = {
        VALIDATION: put("/users/1", json={"username": ""}, headers=AUTH),
        UNAUTHORIZED: client.get("/users"),
        USER_NOT_FOUND: client.get("/users/42", headers=AUTH),
        USERNAME_TAKEN: put(f"/users/{elaine['id']}", json={"username": "COSMO"}, headers=AUTH),
        PRECONDITION_FAILED: put(
            "/users/1", json={"username": "k"}, headers=AUTH | {"If-Match": '"9"'}
        ),
        CONTENT_TOO_LARGE: put("/users/1", content=b" " * 20_000, headers=AUTH),
        UNSUPPORTED_MEDIA_TYPE: put(
            "/users/1", content=b"x", headers=AUTH | {"Content-Type": "text/plain"}
        ),
    }
    for kind, response in answers.items():
        assert_problem(response, kind.status, kind)
    taken = answers[USERNAME_TAKEN].json()
    assert taken["holder"] == f"/users/{cosmo['id']}"  # a writer may read it
    assert client.get(taken["holder"], headers=AUTH).json()["username"] == "cosmo"


def test_about_blank_is_left_for_what_has_no_kind_of_its_own(client: TestClient) -> None:
    """A path the API does not have, and a method a path does not take: titled by status."""
    no_route = assert_problem(client.get("/users/1/friends", headers=AUTH), 404)
    no_method = assert_problem(client.patch("/users/1", headers=AUTH), 405)
    too_long = assert_problem(client.get("/users?" + "x" * 5000, headers=AUTH), 414)
    assert (no_route["type"], no_route["title"]) == ("about:blank", "Not Found")
    assert (no_method["type"], no_method["title"]) == ("about:blank", "Method Not Allowed")
    assert (too_long["type"], too_long["title"]) == ("about:blank", "URI Too Long")


def test_every_type_resolves_to_a_page_that_explains_it(client: TestClient) -> None:
    for kind in PROBLEM_TYPES.values():
        page = client.get(urljoin("http://testserver/users/1", kind.uri))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert f"<h1>{kind.slug}</h1>" in page.text
        assert f"HTTP status {kind.status}, {kind.title}." in page.text
    assert_problem(client.get("/problems/no-such-kind"), 400, VALIDATION)


def test_the_spec_documents_every_kind_as_the_service_answers_it() -> None:
    """The table in the `Problem` schema's `type` and the page's enum are the catalogue."""
    spec = yaml.safe_load(SPEC.read_text())
    table = spec["components"]["schemas"]["Problem"]["properties"]["type"]["description"]
    rows = re.findall(r"^\| `(/problems/[a-z-]+)` \| (\d+) \| ([^|]+) \| ([^|]+) \|$", table, re.M)
    assert rows == [
        (kind.uri, str(kind.status), kind.title, kind.meaning) for kind in PROBLEM_TYPES.values()
    ]
    page = spec["paths"]["/problems/{problem_type}"]["get"]
    assert page["parameters"][0]["schema"]["enum"] == list(PROBLEM_TYPES)


def test_each_problem_example_in_the_spec_shows_its_kinds_type_and_title() -> None:
    examples = list(_problem_examples(yaml.safe_load(SPEC.read_text())))
    assert len(examples) >= 14
    for example in examples:
        kind = PROBLEM_TYPES.get(example["type"].removeprefix("/problems/"))
        if kind is None:
            assert example["type"] == "about:blank"
            continue
        assert (example["title"], example["status"]) == (kind.title, kind.status)


def _problem_examples(node: Any) -> Iterator[dict[str, Any]]:
    """Every example of an `application/problem+json` body, wherever the spec gives one."""
    if isinstance(node, dict):
        problem = node.get("application/problem+json", {})
        if "example" in problem:
            yield problem["example"]
        for named in problem.get("examples", {}).values():
            yield named["value"]
        for value in node.values():
            yield from _problem_examples(value)
    elif isinstance(node, list):
        for value in node:
            yield from _problem_examples(value)
