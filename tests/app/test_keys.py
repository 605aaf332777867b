"""API keys: the key file, scopes per operation, public reads, and `users-api keys new`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from tests.support.api import assert_problem
from users_api.app import create_app
from users_api.auth import KeyFileError, load_keys, read_key_file
from users_api.cli import main
from users_api.handlers.problem_types import INSUFFICIENT_SCOPE
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store.memory import MemoryStore

READER, WRITER = "reader-secret", "writer-secret"
SAME_IN_CAPITALS = hashlib.sha256(b"same").hexdigest().upper()
KEYS_NEW = ["keys", "new"]
"""In process, as `main` runs it: a process apiece took a second or two of the suite."""


def sha256(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    path.write_text(
        "# name     scopes        key\n"
        f"dashboard  users:read    {sha256(READER)}\n"
        "\n"
        f"backend    users:write   {sha256(WRITER)}\n"
    )
    return path


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(params=APP_FLAVOURS)
def client(request: pytest.FixtureRequest, key_file: Path) -> TestClient:
    settings = Settings(api_keys_file=str(key_file), app=request.param, validate_responses=True)
    client = create_app(settings, store=MemoryStore()).test_client(client=("127.0.0.1", 50000))
    client.post("/users", json={"username": "cosmo"}, headers=bearer(WRITER))
    return client


def test_a_key_file_names_each_key_with_its_scopes_and_keeps_only_digests(key_file: Path) -> None:
    keys = read_key_file(key_file)
    assert [(key.name, sorted(key.scopes)) for key in keys] == [
        ("dashboard", ["users:read"]),
        ("backend", ["users:write"]),
    ]
    assert keys[0].digest == hashlib.sha256(READER.encode()).digest()
    assert sorted(keys[1].granted) == ["users:read", "users:write"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a users:read", "expected NAME SCOPES DIGEST"),
        (f"a users:read {sha256('k')} extra", "expected NAME SCOPES DIGEST"),
        (f"a users:admin {sha256('k')}", "scopes are users:read and users:write"),
        (f"a , {sha256('k')}", "scopes are users:read and users:write"),
        (f"a/b users:read {sha256('k')}", "a name is 1-64 of"),
        (f"none users:read {sha256('k')}", "a name is 1-64 of"),
        ("a users:read sha256:abc", "a key is given as sha256: and its 64 hex digits"),
        # Typos of a digest, and a key itself: none may become a key that works as typed.
        *(
            (f"a users:read {typo}", "a key is given as sha256:")
            for typo in (
                sha256("k").replace("sha256:", "sha265:"),
                sha256("k").replace("sha256:", "SHA256:"),
                sha256("k").replace("sha256:", "sha256;"),
                sha256("k").replace("sha256:", "sha-256:"),
                sha256("k").removeprefix("sha256:"),
                "x",
                "a-plain-key-of-reasonable-length-but-still-a-secret",
            )
        ),
    ],
)
def test_a_bad_key_file_line_is_refused_by_its_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# keys\nfine users:read {sha256('x')}\n{line}\n")
    with pytest.raises(KeyFileError, match=f"{path}, line 3: {message}"):
        read_key_file(path)


def test_a_digest_in_capitals_is_the_same_digest(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"a users:read sha256:{sha256('k')[7:].upper()}\n")
    assert read_key_file(path)[0].digest == hashlib.sha256(b"k").digest()


def test_a_key_name_used_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"a users:read {sha256('k1')}\na users:write {sha256('k2')}\n")
    with pytest.raises(KeyFileError, match="a key name is used twice: a"):
        load_keys(str(path), ())


@pytest.mark.parametrize(
    ("lines", "plain"),
    [
        (f"ro users:read {sha256('same')}\nrw users:write sha256:{SAME_IN_CAPITALS}\n", ()),
        (f"ro users:read {sha256('same')}\n", ("same",)),
    ],
)
def test_one_key_listed_twice_is_refused_whatever_its_scopes(
    tmp_path: Path, lines: str, plain: tuple[str, ...]
) -> None:
    """Else it would get the scopes of whichever line came last."""
    path = tmp_path / "keys"
    path.write_text(lines)
    with pytest.raises(KeyFileError, match="one key is listed twice, as ro and"):
        load_keys(str(path), plain)


def test_a_key_file_may_start_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_bytes(f"\ufeffa users:read {sha256('k1')}\n".encode())
    assert [key.name for key in read_key_file(path)] == ["a"]


def test_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read the key file"):
        load_keys(str(tmp_path / "nowhere"), ())


def test_a_read_key_reads(client: TestClient) -> None:
    assert client.get("/users", headers=bearer(READER)).status_code == 200
    assert client.get("/users/1", headers=bearer(READER)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("post", "/users", {"username": "x"}), ("put", "/users/1", {"username": "x"})],
)
def test_a_read_key_that_writes_gets_403_naming_the_scope(
    client: TestClient, method: str, path: str, body: dict[str, str]
) -> None:
    response = client.request(method, path, json=body, headers=bearer(READER))
    problem = assert_problem(response, 403, INSUFFICIENT_SCOPE)
    assert problem["detail"] == "This API key lacks the scope users:write."
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="users:write"'
    )


def test_a_refused_key_is_named_in_the_metrics(client: TestClient) -> None:
    client.post("/users", json={"username": "x"}, headers=bearer(READER))
    scraped = client.get("/metrics").text
    assert 'key="dashboard",method="POST",operation="create_user",status="403"' in scraped


def test_a_read_key_cannot_delete(client: TestClient) -> None:
    assert_problem(client.delete("/users/1", headers=bearer(READER)), 403)
    assert client.get("/users/1", headers=bearer(READER)).status_code == 200


def test_a_write_key_writes_and_reads(client: TestClient) -> None:
    assert client.put("/users/1", json={"username": "x"}, headers=bearer(WRITER)).status_code == 200
    assert client.get("/users/1", headers=bearer(WRITER)).json()["username"] == "x"
    assert client.delete("/users/1", headers=bearer(WRITER)).status_code == 204


@pytest.mark.parametrize("path", ["/users", "/users/1"])
@pytest.mark.parametrize("key", [None, "unknown", sha256(READER)])
def test_a_read_without_a_known_key_gets_401(client: TestClient, path: str, key: str) -> None:
    response = client.get(path, headers=bearer(key) if key else {})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


WRITES = [
    ("POST", "/users", {"username": "kramer"}),
    ("PUT", "/users/1", {"username": "kramer"}),
    ("DELETE", "/users/1", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
@pytest.mark.parametrize("key", [None, "unknown", sha256(WRITER)])
def test_a_write_without_a_known_key_gets_401_and_changes_nothing(
    client: TestClient, method: str, path: str, body: dict[str, str] | None, key: str | None
) -> None:
    response = client.request(method, path, json=body, headers=bearer(key) if key else {})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    users = client.get("/users", headers=bearer(READER)).json()["items"]
    assert [(user["id"], user["username"]) for user in users] == [(1, "cosmo")]


def test_the_probes_the_spec_and_the_console_need_no_key(client: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/openapi.yaml", "/ui/"):
        assert client.get(path).status_code == 200, path


def test_public_reads_open_list_and_get_but_not_writes(key_file: Path) -> None:
    settings = Settings(api_keys_file=str(key_file), public_reads=True)
    client = create_app(settings, store=MemoryStore()).test_client()
    assert_problem(client.post("/users", json={"username": "x"}), 401)
    client.post("/users", json={"username": "x"}, headers=bearer(WRITER))
    assert client.get("/users").json()["items"][0]["username"] == "x"
    assert client.get("/users/1").status_code == 200
    assert client.get("/users/1", headers=bearer(READER)).status_code == 200
    assert_problem(client.put("/users/1", json={"username": "y"}), 401)
    assert_problem(client.delete("/users/1"), 401)
    assert_problem(client.delete("/users/1", headers=bearer(READER)), 403)


@pytest.mark.parametrize("path", ["/users", "/users/1"])
@pytest.mark.parametrize("key", ["not-a-key", sha256(READER)])
def test_public_reads_still_refuse_a_key_they_do_not_know(
    key_file: Path, path: str, key: str
) -> None:
    settings = Settings(api_keys_file=str(key_file), public_reads=True)
    client = create_app(settings, store=MemoryStore()).test_client()
    client.post("/users", json={"username": "x"}, headers=bearer(WRITER))
    assert_problem(client.get(path, headers=bearer(key)), 401)


def test_a_non_ascii_key_works_as_clients_send_it() -> None:
    """curl and httpx send a header's text as UTF-8."""
    client = create_app(Settings(api_keys=("clé-secrète",)), store=MemoryStore()).test_client()
    utf8 = {"Authorization": "Bearer clé-secrète".encode()}
    assert client.get("/users", headers=utf8).status_code == 200  # type: ignore[dict-item]


def test_keys_new_prints_a_key_once_and_the_line_that_makes_it_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*KEYS_NEW, "--name", "ci", "--scopes", "users:read"]) == 0
    key_line, file_line = capsys.readouterr().out.splitlines()
    key = key_line.removeprefix("key:  ")
    line = file_line.removeprefix("line: ")
    assert line == f"ci users:read {sha256(key)}"
    assert key not in line
    (tmp_path / "keys").write_text(line + "\n")
    settings = Settings(api_keys_file=str(tmp_path / "keys"))
    client = create_app(settings, store=MemoryStore()).test_client()
    assert client.get("/users", headers=bearer(key)).status_code == 200
    assert_problem(client.post("/users", json={"username": "x"}, headers=bearer(key)), 403)


def test_two_new_keys_differ(capsys: pytest.CaptureFixture[str]) -> None:
    command = [*KEYS_NEW, "--name", "a", "--scopes", "users:write"]
    printed = []
    for _ in range(2):
        assert main(command) == 0
        printed.append(capsys.readouterr().out)
    first, second = printed
    assert first.splitlines()[0] != second.splitlines()[0]


def test_serve_refuses_a_key_file_with_a_typo_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"ok users:read {sha256('k')}\nbad users:write sha265:{'0' * 64}\n")
    assert main(["serve", "--api-keys-file", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"users-api: error: {path}, line 2: a key is given as sha256: and its 64 hex digits,"
        " as `users-api keys new` prints it\n"
    )
