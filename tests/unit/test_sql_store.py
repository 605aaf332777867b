"""What the SQL store adds to the contract: its migrations, its settings, and a busy database."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, func, insert, inspect, make_url, select, text, update

from tests.support.api import AUTH, assert_problem
from tests.support.profile import scaled
from tests.support.stores import (
    POSTGRES_URL,
    Blocking,
    fresh_store_url,
    migrated,
    postgres_schema,
    sql_engine,
)
from users_api.app import create_app
from users_api.cli import main
from users_api.handlers.users import present
from users_api.settings import Settings
from users_api.store import (
    IdempotencyKey,
    StoreOptions,
    StoreUnavailable,
    User,
    UsernameTaken,
    sql,
)
from users_api.store.memory import MemoryStore
from users_api.store.migrations import MIGRATION_LOCK, head
from users_api.store.sql import SQLStore


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'users.db'}"


@pytest.fixture
def write_lock(tmp_path: Path, sqlite_url: str) -> Iterator[None]:
    """Another process's write transaction, held on the database for the whole test."""
    SQLStore(sqlite_url).migrate()
    other = sqlite3.connect(tmp_path / "users.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield
    other.rollback()
    other.close()


@pytest.mark.usefixtures("write_lock")
def test_a_write_that_stays_busy_past_the_timeout_raises_store_unavailable(
    sqlite_url: str,
) -> None:
    store = SQLStore(sqlite_url, StoreOptions(sqlite_busy_timeout_ms=300))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="unavailable") as raised:
        asyncio.run(store.create(username="cosmo"))
    assert time.monotonic() - started >= 0.3
    assert raised.value.reason == "database is locked"


@pytest.mark.usefixtures("write_lock")
def test_writers_queued_behind_a_busy_database_each_give_up_in_bounded_time(
    sqlite_url: str,
) -> None:
    """This process's writers take turns; each waits at most the timeout for its turn and at
    most the timeout for SQLite's lock, and is told the database is locked."""
    store = SQLStore(sqlite_url, StoreOptions(sqlite_busy_timeout_ms=300))
    started = time.monotonic()
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda name: _create(store, name), ["a1", "b2", "c3"]))
    assert outcomes == ["database is locked"] * 3
    assert time.monotonic() - started < 3 * 0.6


@pytest.mark.usefixtures("write_lock")
def test_a_read_is_not_queued_behind_writers_waiting_for_the_write_lock(sqlite_url: str) -> None:
    """More writers wait than the pool has connections; a read still answers at once."""
    store = SQLStore(sqlite_url, StoreOptions(pool_size=2, sqlite_busy_timeout_ms=1000))

    async def writers_then_a_read() -> tuple[list[BaseException | User], float]:
        writes = [asyncio.ensure_future(store.create(username=f"w{n}")) for n in range(6)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await store.list(after=0, limit=10)
        read = time.monotonic() - started
        return await asyncio.gather(*writes, return_exceptions=True), read

    outcomes, read = asyncio.run(writers_then_a_read())
    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes)
    assert read < 1.0 / 3  # queued behind a writer, it would wait out the busy timeout
    asyncio.run(store.close())


def test_a_closed_store_refuses_calls_as_unavailable(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url)
    asyncio.run(store.close())
    with pytest.raises(StoreUnavailable):
        asyncio.run(store.get(1))


def _create(store: SQLStore, username: str) -> str:
    try:
        asyncio.run(store.create(username=username))
    except StoreUnavailable as error:
        return error.reason
    return "created"


@pytest.mark.usefixtures("write_lock")
def test_a_busy_database_answers_503_with_retry_after(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url, StoreOptions(sqlite_busy_timeout_ms=100))
    client = create_app(Settings(api_keys=("test-key",)), store=store).test_client()
    response = client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    # readers are not blocked by a writer
    assert client.get("/users", headers=AUTH).status_code == 200


@pytest.mark.parametrize(("setting", "pragma"), [("FULL", 2), ("NORMAL", 1)])
def test_sqlite_synchronous_follows_the_setting(sqlite_url: str, setting: str, pragma: int) -> None:
    store = SQLStore(sqlite_url, StoreOptions(sqlite_synchronous=setting))
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == pragma
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_the_postgresql_pool_opens_at_most_pool_size_connections() -> None:
    """400 reads at once on one event loop (a server's) take turns on 3 connections."""
    name = f"pool-{uuid.uuid4().hex[:8]}"
    with postgres_schema() as url:
        store = migrated(f"{url}&application_name={name}", pool_size=3)
        engine = sql_engine(url)

        def opened() -> int | None:
            with engine.connect() as connection:
                return connection.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                    {"name": name},
                ).scalar()

        async def many_reads() -> int | None:
            user = await store.create(username="cosmo")
            await asyncio.gather(*(store.get(user.id) for _ in range(400)))
            count = await asyncio.to_thread(opened)
            await store.close()
            return count

        assert asyncio.run(many_reads()) == 3
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_started_together_apply_once(tmp_path: Path, backend: str) -> None:
    with fresh_store_url(backend, tmp_path) as url:
        command = [sys.executable, "-m", "users_api.cli", "migrate", "--store", url]
        together = scaled(4, 2)
        runs = [
            subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(together)
        ]
        outputs = [run.communicate(timeout=60)[1] for run in runs]
        assert [run.returncode for run in runs] == [0] * together, outputs
        assert all(f"schema revision {head()}." in output for output in outputs)
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            revisions = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert revisions.all() == [(head(),)]
        engine.dispose()


def test_a_user_reads_back_the_same_from_every_store_whatever_postgresqls_time_zone(
    tmp_path: Path,
) -> None:
    """PostgreSQL's session answers in New York time here; every store renders UTC, to the
    microsecond, in one format (`present` is what responses and exports show)."""
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # no microseconds: six digits anyway
    user = User(7, "cosmo", moment, moment + timedelta(microseconds=120), version=3)
    with (
        fresh_store_url("sqlite", tmp_path) as sqlite,
        fresh_store_url("postgresql", tmp_path) as postgresql,
    ):
        new_york = postgresql.replace("options=", "options=-cTimeZone%3DAmerica/New_York%20")
        stores = {
            "memory": MemoryStore(),
            "sqlite": migrated(sqlite),
            "postgresql": migrated(new_york),
        }
        engine = sql_engine(new_york)
        with engine.connect() as connection:
            assert connection.execute(text("SHOW TimeZone")).scalar() == "America/New_York"
        engine.dispose()
        shown = {}
        for backend, store in stores.items():
            asyncio.run(store.add_all([user]))
            shown[backend] = present(asyncio.run(store.get(7)))
            asyncio.run(store.close())
    assert shown["memory"] == shown["sqlite"] == shown["postgresql"]
    assert shown["postgresql"]["created_at"] == "2026-01-02T03:04:05.000000+00:00"
    assert shown["postgresql"]["updated_at"] == "2026-01-02T03:04:05.000120+00:00"


@pytest.fixture
def turkish_database() -> Iterator[str]:
    """A database of its own whose default collation is ICU's Turkish, where lower('I') is a
    dotless i."""
    name = f"test_tr_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        make_url(POSTGRES_URL).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(
            text(
                f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8' "
                "LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR'"
            )
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_usernames_are_unique_ignoring_case_whatever_the_database_collation(
    turkish_database: str,
) -> None:
    store = migrated(turkish_database)
    engine = sql_engine(turkish_database)
    with engine.connect() as connection:  # the collation would split IVAN from ivan
        assert connection.execute(text("SELECT lower('IVAN') <> 'ivan'")).scalar()
    engine.dispose()
    blocking = Blocking(store)
    ivan = blocking.create(username="IVAN")
    with pytest.raises(UsernameTaken):
        blocking.create(username="ivan")
    assert blocking.list(after=0, limit=10, username="ivan") == [ivan]
    blocking.close()


def test_a_request_never_migrates_the_schema_and_gets_503_saying_so(sqlite_url: str) -> None:
    """Nothing prepared this store (the app's start would): its database is still empty."""
    client = create_app(Settings(api_keys=("test-key",)), store=SQLStore(sqlite_url)).test_client()
    problem = assert_problem(client.post("/users", json={"username": "cosmo"}, headers=AUTH), 503)
    assert problem["detail"] == "The user store's schema is not up to date yet; retry shortly."
    assert client.get("/readyz").status_code == 503
    engine = create_engine(sqlite_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_the_app_migrates_its_store_as_it_starts(sqlite_url: str) -> None:
    app = create_app(Settings(api_keys=("test-key",)), store=SQLStore(sqlite_url))
    with app.test_client() as client:  # runs the app's lifespan
        deadline = time.monotonic() + 5
        while (status := client.get("/readyz").status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 200
        assert client.post("/users", json={"username": "cosmo"}, headers=AUTH).status_code == 201


@contextmanager
def migration_lock(backend: str, url: str) -> Iterator[None]:
    """Another process's hold on what a migration must take first."""
    if backend == "postgresql":
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as connection:
            connection.execute(text(f"SELECT pg_advisory_lock({MIGRATION_LOCK})"))
            yield
        engine.dispose()
    else:
        other = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        other.execute("PRAGMA journal_mode=WAL")  # as the service opens it
        other.execute("BEGIN IMMEDIATE")
        yield
        other.rollback()
        other.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_migration_waits_for_a_lock_in_bounded_time_then_says_why(
    tmp_path: Path, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bound = ["--sqlite-busy-timeout-ms" if backend == "sqlite" else "--store-timeout-ms", "500"]
    with fresh_store_url(backend, tmp_path) as url, migration_lock(backend, url):
        started = time.monotonic()
        assert main(["migrate", "--store", url, *bound]) == 1
        waited = time.monotonic() - started
    assert 0.5 <= waited < 3
    assert "the schema migration waited 500 ms for a lock" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_idempotency_keys_past_their_retention_are_forgotten_and_dropped(
    tmp_path: Path, backend: str
) -> None:
    key = IdempotencyKey("backend", "once", "fingerprint-a")
    with fresh_store_url(backend, tmp_path) as url:
        store = migrated(url, idempotency_retention_hours=1)
        engine = sql_engine(url)
        blocking = Blocking(store)
        blocking.create_once(username="cosmo", key=key)
        blocking.create_once(username="elaine", key=replace(key, key="another"))
        with engine.begin() as connection:  # both keys are now two hours old
            two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
            connection.execute(update(sql.idempotency_keys).values(created_at=two_hours_ago))
        # Forgotten: the key may name another create now.
        again = replace(key, fingerprint="fingerprint-b")
        assert blocking.create_once(username="george", key=again)[1] is False
        with engine.connect() as connection:
            kept = connection.execute(select(sql.idempotency_keys.c.key)).scalars().all()
        assert kept == ["once"]  # the new one; the other expired key was dropped
        blocking.close()
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_keyed_creates_forget_expired_keys_faster_than_they_add_keys(
    tmp_path: Path, backend: str
) -> None:
    """A backlog of expired keys (a day of traffic once the retention passes) shrinks under a
    client that keeps creating with keys and deleting what it made: keys never pile up."""
    backlog, creates = scaled(3000, 600), scaled(400, 80)  # each create forgets up to ten
    with fresh_store_url(backend, tmp_path) as url:
        store = migrated(url, idempotency_retention_hours=1)
        engine = sql_engine(url)
        blocking = Blocking(store)
        aged = datetime.now(UTC) - timedelta(hours=2)
        with engine.begin() as connection:
            connection.execute(
                insert(sql.idempotency_keys),
                [
                    {
                        "owner": "backend",
                        "key": f"aged-{n}",
                        "fingerprint": "f",
                        "user_id": n,
                        "username": f"u{n}",
                        "created_at": aged,
                    }
                    for n in range(backlog)
                ],
            )
        kept = []
        for n in range(creates):
            key = IdempotencyKey("backend", f"fresh-{n}", "fingerprint")
            user, _ = blocking.create_once(username=f"user{n}", key=key)
            blocking.delete(user.id)
            if n % (creates // 4) == creates // 4 - 1:
                kept.append(_keys_kept(engine))
        assert max(kept) < backlog  # never more than before the run
        assert kept[-1] == creates  # the expired are gone, the fresh all kept
        blocking.close()
        engine.dispose()


def _keys_kept(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(select(func.count()).select_from(sql.idempotency_keys)).scalar_one()
        )


def test_a_schema_from_a_later_release_is_served_as_it_is(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A rolling deploy: the next release migrated the database; this one still serves."""
    migrated(sqlite_url).engine.dispose()
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    store = SQLStore(sqlite_url)
    assert store.migrate() == "0099"  # nothing to do, and nothing it does not know
    assert Blocking(store).create(username="cosmo").id == 1
    assert "a later release's: serving from it" in caplog.text
    asyncio.run(store.close())


def test_export_never_migrates_the_database(
    tmp_path: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--store", sqlite_url, str(tmp_path / "users.jsonl")]) == 1
    assert "run `users-api migrate`" in capsys.readouterr().err
    engine = create_engine(sqlite_url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()


def test_a_migration_that_would_merge_two_names_is_refused_naming_them(
    turkish_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under the Turkish collation 1.0 let IVAN and ivan both in; in "C" they are one name."""
    engine = create_engine(turkish_database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(files("users_api.store.migrations")))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        for name in ("IVAN", "ivan"):
            connection.execute(
                text(
                    "INSERT INTO users (username, created_at, updated_at, version) "
                    "VALUES (:name, now(), now(), 1)"
                ),
                {"name": name},
            )
    assert main(["migrate", "--store", turkish_database]) == 1
    assert "usernames that differ only in case: IVAN and ivan" in capsys.readouterr().err
    with engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert revision == "0001"


def test_a_create_whose_id_is_taken_is_a_retry_never_a_taken_name() -> None:
    """The sequence hands out an id that a row added with its own id holds: the create is
    unavailable (503, retry), never told that a name nobody holds is taken."""
    moment = datetime.now(UTC)
    with postgres_schema() as url:
        store = migrated(url)
        engine = sql_engine(url)
        with engine.begin() as connection:  # past the sequence's back
            row = {"id": 1, "username": "cosmo", "created_at": moment, "updated_at": moment}
            connection.execute(insert(sql.users).values(row | {"version": 1}))
        engine.dispose()
        blocking = Blocking(store)
        with pytest.raises(StoreUnavailable, match="unavailable"):
            blocking.create(username="elaine")
        assert blocking.create(username="elaine").id == 2  # the retry takes the next id
        blocking.close()


def test_creates_beside_a_postgresql_import_go_on_past_its_last_id() -> None:
    """While an import's transaction is open, fresh names are created at once with ids past the
    file's `last_id`, and a name it brings is a prompt 503: never a 409 for a name nobody holds,
    nor a wait for the import."""
    with postgres_schema() as url:
        blocking = Blocking(migrated(url, timeout_ms=3000))
        blocking.create(username="before")  # id 1: the sequence would hand out 2 next
        halfway, creates_done = threading.Event(), threading.Event()

        def lines() -> Iterator[User]:
            moment = datetime(2025, 1, 2, tzinfo=UTC)
            for n in range(2, 1500):
                if n == 1002:  # the first 1,000 are inserted, not committed
                    halfway.set()
                    creates_done.wait(timeout=20)
                yield User(n, f"user{n}", moment, moment, version=1)

        with ThreadPoolExecutor(max_workers=6) as pool:
            importing = pool.submit(blocking.add_all, lines(), last_id=3000)
            assert halfway.wait(timeout=20)
            started = time.monotonic()
            names = ["cosmo", "elaine", "george", "kramer", "user5"]  # user5 is the import's
            outcomes = list(pool.map(_outcome_of_create, [blocking] * 5, names))
            answered = time.monotonic() - started
            creates_done.set()
            assert importing.result(timeout=20) == 1498
        assert outcomes[-1] == "unavailable"
        assert all(isinstance(outcome, int) and outcome > 3000 for outcome in outcomes[:-1]), (
            outcomes
        )
        assert answered < 2.5
        blocking.close()


def _outcome_of_create(store: Blocking, username: str) -> int | str:
    """The new user's id, or what kind of refusal."""
    try:
        return store.create(username=username).id
    except UsernameTaken:
        return "taken"
    except StoreUnavailable:
        return "unavailable"
