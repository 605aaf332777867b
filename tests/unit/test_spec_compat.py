"""openapi/users.yaml against the last released version of itself (tests/support/spec_compat.py).

Each release leaves a copy of the spec in openapi/released/<version>.yaml (not packaged: the
wheel holds openapi/users.yaml alone). The current spec may add to the newest copy, never break
it. The cases below mutate a copy of the release, to show what the check reports and what it
lets through.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.spec_compat import breaking_changes
from users_api.app import SPEC

RELEASED = Path(__file__).resolve().parents[2] / "openapi" / "released"

Spec = dict[str, Any]
Change = Callable[[Spec], None]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def load(path: Path) -> Spec:
    document: Spec = yaml.safe_load(path.read_text())
    return document


@pytest.fixture(scope="module")
def released() -> Spec:
    """The newest released copy."""
    return load(max(RELEASED.glob("*.yaml"), key=lambda path: version(path.stem)))


def changed(spec: Spec, *changes: Change) -> Spec:
    document = copy.deepcopy(spec)
    for change in changes:
        change(document)
    return document


def schemas(spec: Spec) -> Spec:
    schemas: Spec = spec["components"]["schemas"]
    return schemas


def parameters(spec: Spec) -> Spec:
    parameters: Spec = spec["components"]["parameters"]
    return parameters


def operation(spec: Spec, path: str, method: str) -> Spec:
    found: Spec = spec["paths"][path][method]
    return found


def test_the_spec_breaks_nothing_of_the_last_release(released: Spec) -> None:
    assert breaking_changes(released, load(SPEC)) == []


def test_each_released_copy_is_named_by_its_version_and_none_is_newer_than_the_spec() -> None:
    copies = sorted(RELEASED.glob("*.yaml"))
    assert copies
    assert [load(path)["info"]["version"] for path in copies] == [path.stem for path in copies]
    current = version(load(SPEC)["info"]["version"])
    assert all(version(path.stem) <= current for path in copies)


def test_a_spec_that_changed_since_its_last_release_has_a_newer_version(released: Spec) -> None:
    """Else two different contracts would go by one version."""
    spec = load(SPEC)
    if spec != released:
        assert version(spec["info"]["version"]) > version(released["info"]["version"])


def narrow_username(spec: Spec) -> None:
    schemas(spec)["Username"]["maxLength"] = 32


def remove_the_limit_parameter(spec: Spec) -> None:
    operation(spec, "/users", "get")["parameters"].remove({"$ref": "#/components/parameters/Limit"})


def remove_delete(spec: Spec) -> None:
    del spec["paths"]["/users/{user_id}"]["delete"]


def require_an_email(spec: Spec) -> None:
    schemas(spec)["UserWrite"]["properties"]["email"] = {"type": "string", "format": "email"}
    schemas(spec)["UserWrite"]["required"].append("email")


def remove_created_at(spec: Spec) -> None:
    del schemas(spec)["User"]["properties"]["created_at"]
    schemas(spec)["User"]["required"].remove("created_at")


@pytest.mark.parametrize(
    ("change", "breaks"),
    [
        pytest.param(
            narrow_username,
            [
                "GET /users query parameter username: maxLength 64 → 32",
                "POST /users request body: username maxLength 64 → 32",
                "PUT /users/{user_id} request body: username maxLength 64 → 32",
            ],
            id="maxLength 64 to 32",
        ),
        pytest.param(
            remove_the_limit_parameter,
            ["GET /users: query parameter limit removed"],
            id="removed parameter",
        ),
        pytest.param(
            remove_delete,
            ["DELETE /users/{user_id}: operation removed"],
            id="removed operation",
        ),
        pytest.param(
            require_an_email,
            [
                "POST /users request body: new required field email",
                "PUT /users/{user_id} request body: new required field email",
            ],
            id="new required request field",
        ),
        pytest.param(
            remove_created_at,
            [
                "GET /users response 200: field items[].created_at removed",
                "POST /users response 201: field created_at removed",
                "GET /users/{user_id} response 200: field created_at removed",
                "PUT /users/{user_id} response 200: field created_at removed",
            ],
            id="removed response field",
        ),
    ],
)
def test_the_issues_cases_are_breaking(released: Spec, change: Change, breaks: list[str]) -> None:
    assert breaking_changes(released, changed(released, change)) == breaks


def add_a_header(spec: Spec, name: str, *, required: bool) -> None:
    """A header parameter on POST /users."""
    operation(spec, "/users", "post").setdefault("parameters", []).append(
        {"name": name, "in": "header", "required": required, "schema": {"type": "string"}}
    )


def list_as_json_lines_only(spec: Spec) -> None:
    content = operation(spec, "/users", "get")["responses"]["200"]["content"]
    content["application/jsonl"] = content.pop("application/json")


@pytest.mark.parametrize(
    ("change", "breaks"),
    [
        pytest.param(
            lambda spec: schemas(spec)["Username"].update(minLength=3),
            [
                "GET /users query parameter username: minLength 1 → 3",
                "POST /users request body: username minLength 1 → 3",
                "PUT /users/{user_id} request body: username minLength 1 → 3",
            ],
            id="minLength raised",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Limit"]["schema"].update(maximum=50),
            ["GET /users query parameter limit: maximum 100 → 50"],
            id="maximum lowered",
        ),
        pytest.param(
            lambda spec: parameters(spec)["UserId"]["schema"].update(minimum=10),
            [
                "GET /users/{user_id} path parameter user_id: minimum 1 → 10",
                "PUT /users/{user_id} path parameter user_id: minimum 1 → 10",
                "DELETE /users/{user_id} path parameter user_id: minimum 1 → 10",
            ],
            id="minimum raised, on a path's parameter",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Cursor"]["schema"].update(pattern="^[0-9]{1,4}$"),
            [
                "GET /users query parameter cursor: pattern '^(0|[1-9][0-9]{0,15})$' → "
                "'^[0-9]{1,4}$'"
            ],
            id="pattern changed",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Limit"]["schema"].update(type="string"),
            ["GET /users query parameter limit: type 'integer' → 'string'"],
            id="type changed",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Limit"].update(required=True),
            ["GET /users query parameter limit: now required"],
            id="parameter made required",
        ),
        pytest.param(
            lambda spec: add_a_header(spec, "X-Tenant", required=True),
            ["POST /users: new required header parameter X-Tenant"],
            id="new required parameter",
        ),
        pytest.param(
            lambda spec: spec["paths"].pop("/readyz"),
            ["/readyz: path removed"],
            id="removed path",
        ),
        pytest.param(
            lambda spec: operation(spec, "/users/{user_id}", "get")["responses"].pop("304"),
            ["GET /users/{user_id}: response 304 removed"],
            id="removed response status",
        ),
        pytest.param(
            list_as_json_lines_only,
            ["GET /users response 200: content type application/json removed"],
            id="removed response content type",
        ),
        pytest.param(
            lambda spec: operation(spec, "/users", "post")["responses"]["201"]["headers"].pop(
                "Location"
            ),
            ["POST /users response 201: header Location removed"],
            id="removed response header",
        ),
        pytest.param(
            lambda spec: schemas(spec)["UserPage"]["properties"]["items"].update(type="object"),
            ["GET /users response 200: items type 'array' → 'object'"],
            id="response field's type changed",
        ),
        pytest.param(
            lambda spec: schemas(spec)["User"]["required"].remove("updated_at"),
            [
                "GET /users response 200: field items[].updated_at no longer required",
                "POST /users response 201: field updated_at no longer required",
                "GET /users/{user_id} response 200: field updated_at no longer required",
                "PUT /users/{user_id} response 200: field updated_at no longer required",
            ],
            id="response field made optional",
        ),
    ],
)
def test_narrowing_or_removing_is_breaking(
    released: Spec, change: Change, breaks: list[str]
) -> None:
    assert breaking_changes(released, changed(released, change)) == breaks


def test_an_enum_value_removed_from_a_request_is_breaking(released: Spec) -> None:
    def order(values: list[str]) -> Change:
        return lambda spec: operation(spec, "/users", "get")["parameters"].append(
            {"name": "order", "in": "query", "schema": {"type": "string", "enum": values}}
        )

    before = changed(released, order(["id", "username"]))
    after = changed(released, order(["id"]))

    assert breaking_changes(before, after) == [
        "GET /users query parameter order: enum value 'username' removed"
    ]


def add_an_idempotency_key(spec: Spec) -> None:
    """Optional, as the issue plans it for POST /users."""
    add_a_header(spec, "Idempotency-Key", required=False)


def add_a_422(spec: Spec) -> None:
    operation(spec, "/users", "post")["responses"]["422"] = {
        "description": "The key was used with another body.",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def add_a_problem_type(spec: Spec) -> None:
    problem = schemas(spec)["Problem"]
    problem["properties"]["type"]["description"] += " `urn:problem:idempotency-key-reused` too."
    problem["properties"]["type"]["format"] = "uri-reference"  # in a response: no client breaks


def reword_descriptions(spec: Spec) -> None:
    for node in [
        operation(spec, "/users", "get"),
        parameters(spec)["Limit"],
        schemas(spec)["User"],
        spec["components"]["responses"]["NotFound"],
    ]:
        node["description"] = f"Reworded: {node['description']}"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(add_an_idempotency_key, id="new optional parameter"),
        pytest.param(
            lambda spec: schemas(spec)["UserWrite"]["properties"].update(
                nickname={"type": "string", "maxLength": 10}
            ),
            id="new optional request field",
        ),
        pytest.param(
            lambda spec: schemas(spec)["User"]["properties"].update(email={"type": "string"}),
            id="new response field",
        ),
        pytest.param(
            lambda spec: schemas(spec)["UserWrite"]["required"].remove("username"),
            id="request field made optional",
        ),
        pytest.param(
            lambda spec: spec["paths"]["/users/{user_id}"].update(
                patch=copy.deepcopy(operation(spec, "/users/{user_id}", "put"))
            ),
            id="new operation",
        ),
        pytest.param(add_a_422, id="new response status"),
        pytest.param(
            lambda spec: schemas(spec)["Username"].update(maxLength=128, minLength=0),
            id="wider lengths",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Limit"]["schema"].update(maximum=500, minimum=0),
            id="wider bounds",
        ),
        pytest.param(
            lambda spec: parameters(spec)["Cursor"]["schema"].pop("pattern"),
            id="pattern removed",
        ),
        pytest.param(reword_descriptions, id="descriptions"),
        pytest.param(add_a_problem_type, id="new problem type"),
    ],
)
def test_additions_and_widening_pass(released: Spec, change: Change) -> None:
    assert breaking_changes(released, changed(released, change)) == []


def test_the_planned_additions_pass_together(released: Spec) -> None:
    """An optional Idempotency-Key on POST /users, a new problem type and a 422 response."""
    planned = changed(released, add_an_idempotency_key, add_a_422, add_a_problem_type)
    assert breaking_changes(released, planned) == []


def test_a_recursive_schema_is_compared_without_looping() -> None:
    """A tree: each node's children are nodes. The check follows the `$ref` once per place."""

    def spec(max_length: int) -> Spec:
        node = {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": max_length},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            },
        }
        body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Node"}}}}
        return {
            "paths": {"/trees": {"post": {"requestBody": body, "responses": {}}}},
            "components": {"schemas": {"Node": node}},
        }

    assert breaking_changes(spec(64), spec(64)) == []
    assert breaking_changes(spec(64), spec(32)) == [
        "POST /trees request body: name maxLength 64 → 32"
    ]
