"""`users-api migrate`, `export` and `import`, as an operator runs them, and `serve`'s refusal of
a bad setting."""

from __future__ import annotations

import asyncio
import functools
import json
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.api import API_KEY, AUTH, assert_problem
from tests.support.profile import scaled
from tests.support.stores import Blocking, fresh_store_url, migrated, postgres_schema
from users_api.app import create_app
from users_api.cli import main
from users_api.handlers.problem_types import IDS_EXHAUSTED
from users_api.settings import Settings
from users_api.store import MAX_ID, MAX_VERSION, User, open_store
from users_api.store.memory import MemoryStore
from users_api.store.migrations import head
from users_api.store.postgres import PostgresStore
from users_api.store.sql import SQLStore
from users_api.transfer import (
    LONGEST_MESSAGE,
    QUOTED,
    SHOWN_ERRORS,
    ImportRejected,
    import_users,
)

CREATED = "2026-11-28T13:42:03.123456+00:00"
LAST_5 = '{"last_id": 5}'


def line(user_id: int, username: str, **changes: object) -> str:
    record = {"id": user_id, "username": username, "created_at": CREATED, "updated_at": CREATED}
    return json.dumps(record | changes)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'users.db'}"


def test_migrate_creates_the_schema_and_is_idempotent(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--store", sqlite_url]) == 0
    assert main(["migrate", "--store", sqlite_url]) == 0
    assert capsys.readouterr().err.count(f"schema revision {head()}.") == 2


def test_migrate_reports_an_unreachable_database_with_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", "--store", "postgresql://postgres@127.0.0.1:1/test"]) == 1
    assert "The store is unavailable: connection failed" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["migrate", "export", "import"])
def test_database_commands_refuse_the_memory_store(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--store", "memory://"] + ([] if command == "migrate" else ["users.jsonl"])
    assert main(args) == 2
    assert "needs a sqlite:// or postgresql:// store" in capsys.readouterr().err


def test_export_then_import_moves_every_user_from_sqlite_to_postgresql(
    tmp_path: Path, sqlite_url: str
) -> None:
    source = Blocking(migrated(sqlite_url))
    # Three of export's pages (1,000 users each), the last one part full, each user with times
    # of its own; added in one transaction, where 2,500 creates took 2-3 s.
    created = datetime(2026, 1, 2, tzinfo=UTC)
    source.add_all(
        User(
            n, f"user{n}", created + timedelta(seconds=n), created + timedelta(minutes=n), n % 7 + 1
        )
        for n in range(1, 2501)
    )
    source.delete(2)
    users = source.list(after=0, limit=5000)
    exported = tmp_path / "users.jsonl"

    assert main(["export", "--store", sqlite_url, str(exported)]) == 0
    with postgres_schema() as url:
        assert main(["import", "--store", url, str(exported)]) == 0
        target = Blocking(PostgresStore(url))
        moved = target.list(after=0, limit=5000)
        assert [(u.id, u.username, u.created_at, u.updated_at, u.version) for u in users] == [
            (u.id, u.username, u.created_at, u.updated_at, u.version) for u in moved
        ]
        assert target.create(username="newcomer").id > users[-1].id
        target.close()
    source.close()


def test_an_etag_taken_before_a_move_is_as_stale_after_it(tmp_path: Path, sqlite_url: str) -> None:
    source = Blocking(migrated(sqlite_url))
    source.create(username="cosmo")  # a client keeps its ETag, "1"
    source.update(1, username="kramer")  # "2"
    exported = tmp_path / "users.jsonl"
    assert main(["export", "--store", sqlite_url, str(exported)]) == 0
    assert json.loads(exported.read_text().splitlines()[0])["version"] == 2
    with postgres_schema() as url:
        assert main(["import", "--store", url, str(exported)]) == 0
        store = PostgresStore(url)
        client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
        put = functools.partial(client.put, "/users/1", json={"username": "newman"})
        assert put(headers=AUTH | {"If-Match": '"1"'}).status_code == 412  # no lost update
        assert client.get("/users/1", headers=AUTH | {"If-None-Match": '"1"'}).status_code == 200
        assert client.get("/users/1", headers=AUTH | {"If-None-Match": '"2"'}).status_code == 304
        assert put(headers=AUTH | {"If-Match": '"2"'}).headers["ETag"] == '"3"'
        asyncio.run(store.close())
    source.close()


def test_no_id_is_handed_out_again_after_a_move_not_even_a_deleted_users(
    tmp_path: Path, sqlite_url: str
) -> None:
    source = Blocking(migrated(sqlite_url))
    for name in ("cosmo", "elaine", "lastone"):
        source.create(username=name)
    source.delete(3)  # a client may still hold /users/3
    exported = tmp_path / "users.jsonl"
    assert main(["export", "--store", sqlite_url, str(exported)]) == 0
    assert exported.read_text().splitlines()[-1] == '{"last_id": 3}'
    with postgres_schema() as url:
        assert main(["import", "--store", url, str(exported)]) == 0
        target = Blocking(PostgresStore(url))
        assert target.create(username="somebodyelse").id > 3
        target.close()
    source.close()


def test_import_of_what_is_not_a_file_says_so(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "--store", sqlite_url, str(tmp_path)]) == 1
    assert "is not a file (import reads it more than once)" in capsys.readouterr().err


def test_import_takes_as_long_as_its_file_whatever_the_store_timeout(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_STORE_TIMEOUT_MS", "1")  # a request's bound, not an import's
    source = tmp_path / "users.jsonl"
    source.write_text("".join(line(n, f"user{n}") + "\n" for n in range(1, 5001)))
    assert main(["import", "--store", sqlite_url, str(source)]) == 0
    assert len(Blocking(SQLStore(sqlite_url)).list(after=4990, limit=100)) == 10


def test_import_names_every_bad_line_and_imports_nothing(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text(
        "\n".join(
            [
                line(1, "cosmo"),
                "{not json",
                line(3, "elaine!"),
                line(4, "george", created_at="2026-11-28"),
                "",
                line(6, "jerry", admin=True),
                line(7, "newman"),
                "[" * 30_000 + "]" * 30_000,
            ]
        )
        + "\n"
    )
    assert main(["import", "--store", sqlite_url, str(source)]) == 1
    errors = capsys.readouterr().err.splitlines()
    numbers = [error.split(":")[0] for error in errors[:-1]]
    assert numbers == ["line 2", "line 3", "line 4", "line 6", "line 8"]
    assert "/username" in errors[1]
    assert "/created_at" in errors[2]
    assert "'admin' was unexpected" in errors[3]
    assert errors[4] == "line 8: nested too deeply"
    assert errors[-1] == "5 bad line(s); nothing was imported"
    assert Blocking(SQLStore(sqlite_url)).list(after=0, limit=10) == []


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (line(2**63, "cosmo"), "/id: 9223372036854775808 is greater than the maximum"),
        (line(2**53, "cosmo"), "/id: 9007199254740992 is greater than the maximum"),
        (line(2**70, "cosmo"), "/id: 1180591620717411303424 is greater than the maximum"),
        (
            line(1, "cosmo", created_at="9999-12-31T23:59:59-01:00"),
            "/created_at: '9999-12-31T23:59:59-01:00' is outside years 1 to 9999 in UTC",
        ),
        (
            line(1, "cosmo", updated_at="0001-01-01T00:00:00+01:00"),
            "/updated_at: '0001-01-01T00:00:00+01:00' is outside years 1 to 9999 in UTC",
        ),
    ],
)
def test_import_names_an_id_or_a_time_out_of_range_as_a_bad_line(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str], record: str, message: str
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text(record + "\n")
    assert main(["import", "--store", sqlite_url, str(source)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[0].startswith(f"line 1: {message}")
    assert errors[-1] == "1 bad line(s); nothing was imported"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([line(10, "elaine"), line(11, "COSMO")], "line 2: The username 'COSMO' is taken."),
        (
            [line(10, "elaine"), line(11, "COSMO"), '{"last_id": 11}'],
            "line 2: The username 'COSMO' is taken.",
        ),
        ([line(1, "elaine")], "line 1: User 1 exists already."),
        (
            [line(10, "elaine"), line(11, "newman"), line(12, "Elaine")],
            "line 3: The username 'Elaine' is taken. (user 10 has it)",
        ),
        (
            [line(10, "elaine"), LAST_5, line(11, "newman")],
            "line 2: last_id belongs on the last line",
        ),
        ([line(19, "elaine"), LAST_5], "line 2: last_id 5 is below the id 19"),
        ([line(10, "elaine"), '{"last_id": -1}'], "line 2: last_id is a whole number from 0"),
        ([line(10, "elaine"), '{"last_id": false}'], "line 2: last_id is a whole number from 0"),
    ],
    ids=[
        "name-in-store",
        "name-in-store-in-an-export",
        "id-in-store",
        "name-twice-in-file",
        "last-id-not-last",
        "last-id-below-an-id",
        "last-id-not-an-id",
        "last-id-not-a-number",
    ],
)
def test_import_of_a_line_it_cannot_keep_names_the_line_and_imports_nothing(
    tmp_path: Path,
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    message: str,
) -> None:
    store = migrated(sqlite_url)
    cosmo = asyncio.run(store.create(username="cosmo"))
    source = tmp_path / "users.jsonl"
    source.write_text("\n".join(lines) + "\n")
    assert main(["import", "--store", sqlite_url, str(source)]) == 1
    assert message in capsys.readouterr().err
    assert asyncio.run(store.list(after=0, limit=10)) == [cosmo]


def test_import_shows_a_progress_bar_on_a_large_file(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text("".join(line(n, f"user{n}") + "\n" for n in range(1, 10_001)))
    assert source.stat().st_size > 1_000_000
    assert main(["import", "--store", sqlite_url, str(source)]) == 0
    err = capsys.readouterr().err
    assert "import: 100%" in err
    assert "Imported 10000 users" in err


def test_import_of_a_small_file_shows_no_progress_bar(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text(line(1, "cosmo") + "\n")
    assert main(["import", "--store", sqlite_url, str(source)]) == 0
    assert capsys.readouterr().err == f"Imported 1 users from {source}.\n"


def test_import_of_a_missing_file_fails_with_a_message(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "--store", sqlite_url, str(tmp_path / "missing.jsonl")]) == 1
    assert "No such file or directory" in capsys.readouterr().err


def test_two_exports_to_one_file_at_once_both_finish_and_leave_one_whole_file(
    tmp_path: Path, sqlite_url: str
) -> None:
    created = datetime(2026, 1, 2, tzinfo=UTC)
    store = Blocking(migrated(sqlite_url))
    store.add_all(User(n, f"user{n}", created, created, 1) for n in range(1, 3001))
    exported = tmp_path / "users.jsonl"
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(
            pool.map(lambda _: main(["export", "--store", sqlite_url, str(exported)]), range(2))
        )
    assert outcomes == [0, 0]
    assert len(exported.read_text().splitlines()) == 3000 + 1  # and the last id
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".partial")]
    store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_user_imported_at_the_largest_version_stays_writable_and_exportable(
    tmp_path: Path, backend: str
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text(line(1, "cosmo", version=MAX_VERSION) + "\n")
    with fresh_store_url(backend, tmp_path) as url:
        assert main(["import", "--store", url, str(source)]) == 0
        store = open_store(url)
        client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
        tag = client.get("/users/1", headers=AUTH).headers["ETag"]
        for expected in (f'"{MAX_VERSION}"', '"1"', '"2"'):
            assert tag == expected
            put = client.put(
                "/users/1", json={"username": "cosmo"}, headers=AUTH | {"If-Match": tag}
            )
            assert put.status_code == 200, put.text
            tag = put.headers["ETag"]
        asyncio.run(store.close())
        exported = tmp_path / "again.jsonl"
        assert main(["export", "--store", url, str(exported)]) == 0
    assert main(["import", "--store", f"sqlite:///{tmp_path / 'again.db'}", str(exported)]) == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_after_an_import_at_the_largest_id_a_create_is_refused_and_writes_nothing(
    tmp_path: Path, backend: str
) -> None:
    source = tmp_path / "users.jsonl"
    source.write_text(f'{{"last_id": {MAX_ID}}}\n')
    with fresh_store_url(backend, tmp_path) as url:
        assert main(["import", "--store", url, str(source)]) == 0
        store = open_store(url)
        client = create_app(Settings(api_keys=(API_KEY,)), store=store).test_client()
        for headers in (AUTH, AUTH | {"Idempotency-Key": "k1"}, AUTH):
            refused = client.post("/users", json={"username": "cosmo"}, headers=headers)
            assert_problem(refused, 507, IDS_EXHAUSTED)
        assert client.get("/users", headers=AUTH).json()["items"] == []
        asyncio.run(store.close())
        exported = tmp_path / "again.jsonl"
        assert main(["export", "--store", url, str(exported)]) == 0
    assert exported.read_text() == source.read_text()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_import_names_every_line_it_cannot_keep_in_one_run(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ids the store has, a name taken but for case, a bad line, and a name twice: all at once."""
    source = tmp_path / "users.jsonl"
    lines = [line(1, "elaine"), line(2, "george"), "{not json", line(4, "COSMO")]
    lines += [line(n, f"user{n}") for n in range(5, 1500)] + [line(1500, "USER5"), LAST_5]
    source.write_text("\n".join(lines) + "\n")
    with fresh_store_url(backend, tmp_path) as url:
        store = Blocking(migrated(url))
        before = [store.create(username=name) for name in ("cosmo", "kramer")]
        assert main(["import", "--store", url, str(source)]) == 1
        assert capsys.readouterr().err.splitlines() == [
            "line 1: User 1 exists already.",
            "line 2: User 2 exists already.",
            "line 3: not JSON: Expecting property name enclosed in double quotes at column 2",
            "line 4: The username 'COSMO' is taken. (user 1 has it)",
            "line 1500: The username 'USER5' is taken. (user 5 has it)",
            "line 1501: last_id 5 is below the id 1500",
            "6 bad line(s); nothing was imported",
        ]
        assert store.list(after=0, limit=10) == before
        store.close()


def test_import_names_the_first_lines_it_cannot_keep_and_counts_the_rest(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Blocking(migrated(sqlite_url))
    store.add_all(
        [User(n, f"user{n}", datetime.now(UTC), datetime.now(UTC), 1) for n in range(1, 3001)]
    )
    source = tmp_path / "users.jsonl"
    source.write_text("".join(line(n, f"other{n}") + "\n" for n in range(1, 3001)))
    assert main(["import", "--store", sqlite_url, str(source)]) == 1
    errors = capsys.readouterr().err.splitlines()
    assert errors[:SHOWN_ERRORS] == [f"line {n}: User {n} exists already." for n in range(1, 21)]
    assert errors[SHOWN_ERRORS:] == [
        f"... and 2980 more (an import names the first {SHOWN_ERRORS} lines it cannot keep)",
        "3000 bad line(s); nothing was imported",
    ]
    store.close()


def test_import_quotes_no_more_than_a_prefix_of_a_huge_value(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "users.jsonl"
    huge, long = "x" * 50_000_000, "y" * 60_000 + "!"
    source.write_text("\n".join([line(1, huge), line(2, long), line(3, "cosmo")]) + "\n")
    assert main(["import", "--store", sqlite_url, str(source)]) == 1
    said = capsys.readouterr().err.splitlines()
    errors = [text for text in said if text and "import:" not in text]  # no progress bar
    assert errors[0] == "line 1: longer than 65536 bytes, as no user's line is"
    assert errors[1].startswith(f'line 2: /username: "{"y" * QUOTED}..." ')
    assert errors[2] == "2 bad line(s); nothing was imported"
    assert max(map(len, said)) < 1000


@settings(max_examples=scaled(60, 10), deadline=None)
@given(
    field=st.sampled_from(["id", "username", "created_at", "version", None]),
    value=st.text(min_size=QUOTED, max_size=5000).map(lambda text: text + " ")  # never valid
    | st.integers(min_value=10**QUOTED, max_value=10**4000)
    | st.lists(st.text(max_size=20), min_size=20, max_size=500),
)
def test_what_import_says_of_a_line_quotes_only_a_prefix_of_its_values(
    field: str | None, value: object
) -> None:
    record = json.loads(line(1, "cosmo"))
    if field is None:  # an unexpected property, named by the value
        record[str(value)] = 1
    else:
        record[field] = value
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "users.jsonl"
        source.write_text(json.dumps(record) + "\n")
        with pytest.raises(ImportRejected) as rejected:
            asyncio.run(import_users(MemoryStore(), source))
    [said] = rejected.value.errors
    assert len(said) <= len("line 1: ") + LONGEST_MESSAGE + len("...")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "memory://", "--workers", "2"], "cannot serve --workers > 1"),
        (["--store", "redis://x"], "unknown store URL 'redis://x'"),
        (["--port", "70000"], "'--port': 70000 is not in the range 0<=x<=65535"),
        (["--max-body-bytes", "0"], "'--max-body-bytes': 0 is not in the range x>=1"),
        (["--metrics-network", "localhost"], "an address or network is like 10.0.0.0/8"),
        (["--trusted-proxy", "10.0.0.0/33"], "an address or network is like 10.0.0.0/8"),
        (["--app", "django"], "'django' is not one of 'async', 'flask'"),
        (["--rate-limit-writes=-5/second"], "'--rate-limit-writes'"),
        (["--rate-limit-requests", "lots"], "'--rate-limit-requests'"),
        (["--rate-limit-storage", "mysql://x"], "expected memory:// or redis://HOST:PORT"),
        (["--cors-origin", "example.com"], "a CORS origin is like https://example.com"),
        (["--log-format", "xml"], "'xml' is not one of 'auto', 'json', 'text'"),
        (["--shutdown-grace-seconds=-1"], "-1 is not in the range x>=0"),
        (["--api-keys-file", "/nonexistent"], "cannot read the key file /nonexistent"),
    ],
)
def test_a_bad_setting_exits_2_with_a_message_not_a_traceback(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process: `main`'s return is the exit status (tests/server/test_server.py runs the
    command for a missing key and a port in use), and a process apiece took 14 s."""
    assert main(["serve", *args]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("users-api: error: ") and message in line
