"""A client that openapi-python-client generates from openapi/users.yaml, used on a real server.

It is generated into a temporary folder that goes on `sys.path` for this module: nothing is
installed or committed. What the generator names things comes from the spec: operationIds
become functions (`update_user`), schema names become models (`UserWrite`).
"""

from __future__ import annotations

import datetime
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from tests.support.api import API_KEY
from tests.support.servers import Server, serve
from users_api.app import SPEC

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "users_api_client"
OPERATIONS = ("list_users", "create_user", "get_user", "update_user", "delete_user")


@dataclass
class Generation:
    returncode: int
    output: str


@pytest.fixture(scope="module")
def generation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generation]:
    """Runs the generator once; its package is importable while this module's tests run.

    Its post-generation hooks run `ruff` (a test dependency), found beside the generator.
    """
    folder = tmp_path_factory.mktemp("generated")
    command = [str(GENERATOR), "generate", "--path", str(SPEC), "--meta", "none"]
    result = subprocess.run(
        [*command, "--output-path", str(folder / PACKAGE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ['PATH']}"},
    )
    sys.path.insert(0, str(folder))
    try:
        yield Generation(result.returncode, result.stdout + result.stderr)
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if name.partition(".")[0] == PACKAGE]:
            del sys.modules[name]


def generated(generation: Generation, name: str) -> ModuleType:
    assert generation.returncode == 0, generation.output
    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with serve(tmp_path, "--store", "memory://") as running:
        yield running


@pytest.fixture
def client(generation: Generation, server: Server) -> Iterator[Any]:
    """The generated client holding the key, as writes need; closed after the test."""
    authenticated = generated(generation, "client").AuthenticatedClient
    with authenticated(base_url=server.url, token=API_KEY) as client:
        yield client


@pytest.fixture
def public(generation: Generation, server: Server) -> Iterator[Any]:
    """The generated client without a key."""
    with generated(generation, "client").Client(base_url=server.url) as client:
        yield client


@pytest.fixture
def models(generation: Generation) -> ModuleType:
    return generated(generation, "models")


@pytest.fixture
def users(generation: Generation) -> SimpleNamespace:
    """The generated operations of the `users` tag: `users.update_user.sync_detailed(...)`."""
    return SimpleNamespace(
        **{name: generated(generation, f"api.users.{name}") for name in OPERATIONS}
    )


def create(users: SimpleNamespace, client: Any, models: ModuleType, username: str) -> Any:
    response = users.create_user.sync_detailed(
        client=client, body=models.UserWrite(username=username)
    )
    assert response.status_code == 201, response.content
    return response.parsed


def test_the_generator_prints_no_warning(generation: Generation) -> None:
    """Only its `Generating <folder>` line: a warning means a piece of the client is missing."""
    lines = [line for line in generation.output.splitlines() if line.strip()]
    assert generation.returncode == 0
    assert len(lines) == 1, generation.output
    assert lines[0].startswith("Generating ")


def test_the_generated_names_read_like_the_spec(generation: Generation) -> None:
    models = generated(generation, "models")
    assert {"User", "UserWrite", "UserPage", "Problem", "ValidationIssue"} <= set(models.__all__)
    for operation in OPERATIONS:
        assert callable(generated(generation, f"api.users.{operation}").sync_detailed)


def test_each_operation_parses_its_answer_into_its_model(
    users: SimpleNamespace, client: Any, models: ModuleType
) -> None:
    """What the client adds over HTTP: each success parsed into the spec's model (the statuses
    themselves are tests/app/test_users_api.py's)."""
    response = users.create_user.sync_detailed(
        client=client, body=models.UserWrite(username="cosmo")
    )
    assert response.status_code == 201
    created = response.parsed
    assert isinstance(created, models.User)
    assert (created.username, created.id) == ("cosmo", 1)
    assert isinstance(created.created_at, datetime.datetime)
    assert (response.headers["location"], response.headers["etag"]) == ("/users/1", '"1"')

    read = users.get_user.sync_detailed(created.id, client=client)
    assert (read.status_code, read.parsed, read.headers["etag"]) == (200, created, '"1"')

    updated = users.update_user.sync_detailed(
        created.id, client=client, body=models.UserWrite(username="kramer")
    )
    assert updated.status_code == 200
    assert isinstance(updated.parsed, models.User)
    assert (updated.parsed.id, updated.parsed.username) == (created.id, "kramer")
    assert updated.headers["etag"] == '"2"'

    deleted = users.delete_user.sync_detailed(created.id, client=client)
    assert (deleted.status_code, deleted.parsed) == (204, None)
    assert users.get_user.sync_detailed(created.id, client=client).status_code == 404


def test_list_walks_every_page_with_the_cursor(
    users: SimpleNamespace, client: Any, models: ModuleType
) -> None:
    names = ["cosmo", "elaine", "george", "jerry", "kramer"]
    for name in names:
        create(users, client, models, name)

    pages = [users.list_users.sync(client=client, limit=2)]
    while pages[-1].next_cursor is not None:
        pages.append(users.list_users.sync(client=client, limit=2, cursor=pages[-1].next_cursor))

    assert [[user.username for user in page.items] for page in pages] == [
        names[0:2],
        names[2:4],
        names[4:],
    ]
    assert all(isinstance(page, models.UserPage) for page in pages)


def test_each_problem_is_parsed_as_a_problem_with_its_fields(
    users: SimpleNamespace, client: Any, public: Any, models: ModuleType
) -> None:
    """401, 400, 404, 409 and 412, each parsed into the spec's Problem, its fields read."""
    cosmo = create(users, client, models, "cosmo")
    elaine = create(users, client, models, "elaine")

    def put(user_id: int, username: str, **options: Any) -> Any:
        body = models.UserWrite(username=username)
        return users.update_user.sync_detailed(user_id, client=client, body=body, **options)

    unauthorized = users.get_user.sync_detailed(cosmo.id, client=public)
    invalid = put(cosmo.id, "no spaces")
    missing = put(999, "kramer")
    taken = put(elaine.id, "COSMO")
    read = users.get_user.sync_detailed(cosmo.id, client=client)
    put(cosmo.id, "kramer")
    stale = put(cosmo.id, "newman", if_match=read.headers["etag"])

    answers = [unauthorized, invalid, missing, taken, stale]
    assert [answer.status_code for answer in answers] == [401, 400, 404, 409, 412]
    assert all(isinstance(answer.parsed, models.Problem) for answer in answers)
    assert unauthorized.parsed.title == "Unauthorized"
    assert [issue.pointer for issue in invalid.parsed.errors] == ["/username"]
    assert missing.parsed.detail == "User 999 does not exist."
    assert (taken.parsed.type_, taken.parsed.title) == ("/problems/username-taken", "Conflict")
    assert users.get_user.sync(cosmo.id, client=client).username == "kramer"
