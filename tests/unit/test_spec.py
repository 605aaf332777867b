"""The contract itself: complete enough to read, try and generate from, and served as written.

`make lint-spec` runs openapi-spec-validator and Redocly over the same file; these are the
properties those linters do not check.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from connexion.json_schema import Draft4RequestValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from starlette.testclient import TestClient

from users_api.app import SPEC, create_app
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store import MAX_VERSION, open_store

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SPEC_URI = "urn:users-api"

Spec = dict[str, Any]


@pytest.fixture(scope="module")
def spec() -> Spec:
    document: Spec = yaml.safe_load(SPEC.read_text())
    return document


@pytest.fixture(scope="module", params=APP_FLAVOURS)
def served(request: pytest.FixtureRequest) -> TestClient:
    settings = Settings(api_keys=("k",), app=request.param)
    return create_app(settings, store=open_store("memory://")).test_client()


def operations(spec: Spec) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def resolve(spec: Spec, node: dict[str, Any]) -> dict[str, Any]:
    """The node a local `$ref` points at, or the node itself."""
    while "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def examples(node: Any, pointer: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every example in the document: (where it is, the pointer to its schema, its value).

    In OpenAPI 3.0 an `example` sits on a parameter, header or media type, beside the `schema`
    it must fit, or on a schema itself; `examples` holds named Example objects beside a `schema`.
    """
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from examples(item, f"{pointer}/{index}")
        return
    if not isinstance(node, dict):
        return
    schema = f"{pointer}/schema" if "schema" in node else pointer
    if "example" in node:
        yield f"{pointer}/example", schema, node["example"]
    for name, named in node.get("examples", {}).items():
        yield f"{pointer}/examples/{name}", schema, named["value"]
    for key, value in node.items():
        if key not in ("example", "examples"):
            escaped = key.replace("~", "~0").replace("/", "~1")
            yield from examples(value, f"{pointer}/{escaped}")


def example_errors(spec: Spec) -> list[str]:
    """Each example that does not validate, as Connexion validates: Draft 4 with `nullable`,
    formats checked."""
    registry: Registry[Any] = Registry().with_resource(
        SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4)
    )
    errors = []
    for where, schema, value in examples(spec):
        validator = Draft4RequestValidator(
            {"$ref": f"{SPEC_URI}#{schema}"},
            registry=registry,
            format_checker=Draft4RequestValidator.FORMAT_CHECKER,
        )
        errors += [f"{where}: {error.message}" for error in validator.iter_errors(value)]
    return errors


def test_every_example_validates_against_its_schema(spec: Spec) -> None:
    assert len(list(examples(spec))) >= 20
    assert example_errors(spec) == []


@pytest.mark.parametrize(
    ("pointer", "value", "message"),
    [
        ("components/schemas/User/example/id", "one", "'one' is not of type 'integer'"),
        ("components/schemas/User/example/created_at", "yesterday", "is not a 'date-time'"),
        ("components/parameters/Limit/example", 101, "101 is greater than the maximum of 100"),
        ("components/schemas/UserWrite/example/username", "-x", "does not match"),
        ("components/schemas/UserPage/example/next_cursor", 2, "2 is not of type 'string'"),
    ],
)
def test_a_wrong_example_is_caught(spec: Spec, pointer: str, value: Any, message: str) -> None:
    """The check above can fail: types, formats, bounds and `$ref`'d patterns are enforced."""
    broken = copy.deepcopy(spec)
    *parents, last = pointer.split("/")
    node = broken
    for part in parents:
        node = node[part]
    node[last] = value
    errors = example_errors(broken)
    assert len(errors) == 1, errors
    assert message in errors[0]


def test_every_schema_has_an_example(spec: Spec) -> None:
    schemas = spec["components"]["schemas"]
    assert [name for name, schema in schemas.items() if "example" not in schema] == []


def test_every_response_with_a_body_has_an_example(spec: Spec) -> None:
    """On the media type or on its schema: Swagger UI shows either."""
    responses = [
        (f"{method.upper()} {path} {status}", response)
        for path, method, operation in operations(spec)
        for status, response in operation["responses"].items()
    ]
    missing = [
        f"{where} {media_type}"
        for where, response in responses
        for media_type, content in resolve(spec, response).get("content", {}).items()
        if "example" not in content and "example" not in resolve(spec, content["schema"])
    ]
    assert len(responses) >= 20
    assert missing == []


def test_every_operation_has_an_id_summary_description_and_a_declared_tag(spec: Spec) -> None:
    declared = {tag["name"] for tag in spec["tags"]}
    incomplete = [
        f"{method.upper()} {path}"
        for path, method, operation in operations(spec)
        if not all(operation.get(key) for key in ("operationId", "summary", "description"))
        or not operation.get("tags")
        or not set(operation["tags"]) <= declared
    ]
    assert incomplete == []


def test_every_operation_documents_the_errors_its_input_can_cause(spec: Spec) -> None:
    """400 wherever there is input to reject, 401 wherever a key is needed, 404 under an id,
    413 and 415 wherever there is a body. /healthz takes no input, so it has none."""
    undocumented = []
    for path, method, operation in operations(spec):
        has_body = "requestBody" in operation
        expected = set()
        if has_body or operation.get("parameters") or spec["paths"][path].get("parameters"):
            expected.add("400")
        if operation.get("security", spec.get("security")):
            expected.add("401")
        if "{" in path:
            expected.add("404")
        if has_body:
            expected |= {"413", "415"}
        missing = expected - set(operation["responses"])
        undocumented += [f"{method.upper()} {path} {status}" for status in sorted(missing)]
    assert undocumented == []


def test_every_operation_needs_a_key_with_its_scope_but_the_probes_and_problem_pages(
    spec: Spec,
) -> None:
    """A key is the default (the top-level `security`), so an operation added later is closed
    until it says otherwise. Each names its scope in `x-scope`, as OpenAPI 3.0 keeps a bearer
    scheme's scope list empty, and documents its 401 and 403."""
    assert spec["security"] == [{"bearerAuth": []}]
    needs = {
        f"{method.upper()} {path}": (operation.get("security"), operation.get("x-scope"))
        for path, method, operation in operations(spec)
    }
    assert needs == {
        "GET /users": (None, "users:read"),
        "POST /users": (None, "users:write"),
        "GET /users/{user_id}": (None, "users:read"),
        "PUT /users/{user_id}": (None, "users:write"),
        "DELETE /users/{user_id}": (None, "users:write"),
        "GET /healthz": ([], None),
        "GET /readyz": ([], None),
        "GET /problems/{problem_type}": ([], None),
    }
    for path, method, operation in operations(spec):
        if "x-scope" in operation:
            assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"


def test_openapi_json_is_the_repo_document(served: TestClient, spec: Spec) -> None:
    """Nothing added, nothing missing, `$ref`s and `servers` as written."""
    response = served.get("/openapi.json")
    assert response.headers["content-type"] == "application/json"
    assert response.json() == spec


def test_openapi_yaml_is_the_repo_file_byte_for_byte(served: TestClient) -> None:
    response = served.get("/openapi.yaml")
    assert response.headers["content-type"].startswith("text/yaml")
    assert response.text == SPEC.read_text()


def test_the_served_document_is_read_only(served: TestClient) -> None:
    response = served.post("/openapi.json", json={})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_the_etag_is_bounded_as_the_stores_bound_versions(spec: Spec) -> None:
    """The ETag header says where versions end, and its pattern takes every one of them."""
    etag = spec["components"]["headers"]["ETag"]
    assert f'`"{MAX_VERSION}"`' in " ".join(etag["description"].split())
    assert re.fullmatch(etag["schema"]["pattern"], f'"{MAX_VERSION}"')
