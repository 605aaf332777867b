"""The contract every store backend keeps; each test runs against each backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.profile import scaled
from tests.support.stores import Blocking, fresh_store
from users_api.handlers.etags import etag, versions_in
from users_api.store import (
    MAX_ID,
    MAX_VERSION,
    IdempotencyKey,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    IdsExhausted,
    PreconditionFailed,
    User,
    UserIdTaken,
    UsernameTaken,
    UserNotFound,
    UsersTaken,
    next_version,
)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Blocking]:
    with fresh_store(request.param, tmp_path) as store:
        blocking = Blocking(store)
        yield blocking
        blocking.close()


def test_create_allocates_increasing_ids_and_version_1(backend: Blocking) -> None:
    first = backend.create(username="cosmo")
    second = backend.create(username="elaine")
    assert first.id >= 1
    assert second.id > first.id
    assert first.version == second.version == 1
    assert first.created_at == first.updated_at


def test_get_returns_what_create_returned(backend: Blocking) -> None:
    user = backend.create(username="Cosmo")
    assert backend.get(user.id) == user


def test_get_unknown_id_raises_user_not_found(backend: Blocking) -> None:
    with pytest.raises(UserNotFound):
        backend.get(1)


def test_usernames_are_unique_ignoring_case(backend: Blocking) -> None:
    backend.create(username="Cosmo")
    with pytest.raises(UsernameTaken):
        backend.create(username="cOSMO")


def test_list_pages_by_id_after_a_cursor(backend: Blocking) -> None:
    users = [backend.create(username=f"user{n}") for n in range(5)]
    assert backend.list(after=0, limit=2) == users[:2]
    assert backend.list(after=users[1].id, limit=2) == users[2:4]
    assert backend.list(after=users[4].id, limit=2) == []


def test_list_filters_by_username_ignoring_case(backend: Blocking) -> None:
    backend.create(username="cosmo")
    elaine = backend.create(username="Elaine")
    assert backend.list(after=0, limit=10, username="ELAINE") == [elaine]
    assert backend.list(after=elaine.id, limit=10, username="elaine") == []
    assert backend.list(after=0, limit=10, username="newman") == []


def test_update_changes_the_username_and_bumps_the_version(backend: Blocking) -> None:
    user = backend.create(username="cosmo")
    updated = backend.update(user.id, username="kramer")
    assert (updated.id, updated.username, updated.version) == (user.id, "kramer", 2)
    assert updated.created_at == user.created_at
    assert updated.updated_at >= user.updated_at
    assert backend.get(user.id) == updated


def test_update_frees_the_old_username(backend: Blocking) -> None:
    user = backend.create(username="cosmo")
    backend.update(user.id, username="kramer")
    backend.create(username="Cosmo")


def test_update_to_a_taken_username_raises_and_changes_nothing(backend: Blocking) -> None:
    backend.create(username="cosmo")
    elaine = backend.create(username="elaine")
    with pytest.raises(UsernameTaken):
        backend.update(elaine.id, username="COSMO")
    assert backend.get(elaine.id) == elaine


def test_update_unknown_id_raises_user_not_found(backend: Blocking) -> None:
    with pytest.raises(UserNotFound):
        backend.update(1, username="cosmo")


def test_conditional_update_applies_only_to_an_expected_version(backend: Blocking) -> None:
    user = backend.create(username="cosmo")
    with pytest.raises(PreconditionFailed):
        backend.update(user.id, username="kramer", expected_versions={2, 3})
    assert backend.get(user.id) == user
    assert backend.update(user.id, username="kramer", expected_versions={1}).version == 2


def test_conditional_delete_applies_only_to_an_expected_version(backend: Blocking) -> None:
    user = backend.create(username="cosmo")
    with pytest.raises(PreconditionFailed):
        backend.delete(user.id, expected_versions=set())
    backend.delete(user.id, expected_versions={1})
    with pytest.raises(UserNotFound):
        backend.get(user.id)


def test_delete_unknown_id_raises_user_not_found(backend: Blocking) -> None:
    with pytest.raises(UserNotFound):
        backend.delete(1)


def test_ids_are_never_reused_after_a_delete(backend: Blocking) -> None:
    first = backend.create(username="cosmo")
    second = backend.create(username="elaine")
    backend.delete(second.id)
    assert backend.create(username="george").id > second.id > first.id


def test_racing_creates_of_one_username_make_exactly_one_user(backend: Blocking) -> None:
    def attempt(n: int) -> bool:
        try:
            backend.create(username="Cosmo" if n % 2 else "cosmo")
        except UsernameTaken:
            return False
        return True

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(attempt, range(32))) == 1


def test_racing_conditional_updates_lose_no_update(backend: Blocking) -> None:
    """Read-modify-write with a version check, retried on conflict: every success counts."""
    user = backend.create(username="n0")

    def increment(_: int) -> None:
        while True:
            current = backend.get(user.id)
            count = int(current.username[1:])
            try:
                backend.update(
                    user.id, username=f"n{count + 1}", expected_versions={current.version}
                )
                return
            except PreconditionFailed:
                continue

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(increment, range(200)))
    assert backend.get(user.id).username == "n200"


def imported(user_id: int, username: str) -> User:
    """A user as an export file has it: its own id and timestamps."""
    created = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return User(user_id, username, created, created.replace(year=2026), version=7)


def test_add_all_keeps_ids_timestamps_and_versions(backend: Blocking) -> None:
    cosmo, elaine = imported(5, "cosmo"), replace(imported(3, "elaine"), version=1)
    assert backend.add_all(iter([cosmo, elaine])) == 2
    assert backend.list(after=0, limit=10) == [elaine, cosmo]
    assert backend.update(5, username="cosmo", expected_versions={7}).version == 8


def test_ids_added_are_never_handed_out_again(backend: Blocking) -> None:
    backend.add_all([imported(1500, "cosmo")])
    assert backend.create(username="elaine").id > 1500


@pytest.mark.parametrize(
    ("existing", "added", "error"),
    [
        ("cosmo", [imported(2, "elaine"), imported(1, "newman")], UserIdTaken),
        ("cosmo", [imported(2, "elaine"), imported(3, "COSMO")], UsernameTaken),
        (None, [imported(2, "elaine"), imported(2, "newman")], UserIdTaken),
        (None, [imported(2, "elaine"), imported(3, "Elaine")], UsernameTaken),
    ],
    ids=["id-in-store", "name-in-store", "id-twice", "name-twice"],
)
def test_add_all_with_a_clash_adds_none(
    backend: Blocking, existing: str | None, added: list[User], error: type[Exception]
) -> None:
    before = [backend.create(username=existing)] if existing else []
    with pytest.raises(UsersTaken) as taken:
        backend.add_all(added)
    assert [(place, type(clash)) for place, clash in taken.value.named] == [(1, error)]
    assert backend.list(after=0, limit=10) == before


def test_add_all_names_every_user_it_cannot_add(backend: Blocking) -> None:
    """Past the first clash too, case-only ones included; a clashing user takes nothing."""
    backend.add_all([imported(n, f"user{n}") for n in range(1, 4)])
    added = [
        imported(1, "cosmo"),  # the id is taken
        imported(10, "elaine"),
        imported(2, "ELAINE"),  # the id is taken: "ELAINE" stays free for none
        imported(11, "USER3"),  # the name, but for case
        imported(12, "Elaine"),  # the name of the user 2 places before
        imported(10, "george"),  # that user's id
        *(imported(n, f"user{n}") for n in range(20, 1100)),  # past a batch's 1,000
        imported(1200, "user1099"),
    ]
    for check_only in (True, False):
        with pytest.raises(UsersTaken) as taken:
            backend.add_all(added, check_only=check_only)
        assert taken.value.count == 6
        assert [(place, str(clash)) for place, clash in taken.value.named] == [
            (0, "User 1 exists already."),
            (2, "User 2 exists already."),
            (3, "The username 'USER3' is taken."),
            (4, "The username 'Elaine' is taken."),
            (5, "User 10 exists already."),
            (len(added) - 1, "The username 'user1099' is taken."),
        ]
        assert [clash.holder for _, clash in taken.value.named[2:4]] == [3, 10]  # type: ignore[union-attr]
    assert len(backend.list(after=0, limit=100)) == 3


def test_add_all_checking_only_adds_nothing(backend: Blocking) -> None:
    assert backend.add_all([imported(5, "cosmo")], last_id=40, check_only=True) == 1
    assert backend.list(after=0, limit=10) == []
    assert backend.create(username="cosmo").id == 1


def test_add_all_adds_none_when_its_input_fails_midway(backend: Blocking) -> None:
    def users() -> Iterator[User]:
        yield from (imported(n, f"user{n}") for n in range(1, 2500))
        raise ValueError("line 2500 is bad")

    with pytest.raises(ValueError, match="line 2500"):
        backend.add_all(users())
    assert backend.list(after=0, limit=10) == []


def test_a_reachable_store_passes_check(backend: Blocking) -> None:
    backend.check()


# Creates with an idempotency key

KEY = IdempotencyKey("backend", "k-1", "fingerprint-a")


def test_a_create_repeated_with_its_key_returns_the_user_it_created(backend: Blocking) -> None:
    created, replayed = backend.create_once(username="cosmo", key=KEY)
    assert not replayed
    backend.update(created.id, username="kramer")  # what happens to it later is not replayed
    assert backend.create_once(username="cosmo", key=KEY) == (created, True)
    backend.delete(created.id)
    assert backend.create_once(username="cosmo", key=KEY) == (created, True)
    assert backend.list(after=0, limit=10) == []


def test_a_key_repeated_with_another_body_is_refused(backend: Blocking) -> None:
    backend.create_once(username="cosmo", key=KEY)
    with pytest.raises(IdempotencyKeyReused):
        backend.create_once(username="elaine", key=replace(KEY, fingerprint="fingerprint-b"))
    assert [user.username for user in backend.list(after=0, limit=10)] == ["cosmo"]


def test_each_client_key_has_keys_of_its_own(backend: Blocking) -> None:
    cosmo, _ = backend.create_once(username="cosmo", key=KEY)
    elaine, replayed = backend.create_once(username="elaine", key=replace(KEY, owner="other"))
    assert (elaine.username, replayed) == ("elaine", False)
    assert elaine.id != cosmo.id


def test_a_create_that_failed_keeps_nothing_and_its_retry_runs_again(backend: Blocking) -> None:
    holder = backend.create(username="cosmo")
    with pytest.raises(UsernameTaken):
        backend.create_once(username="cosmo", key=KEY)
    backend.delete(holder.id)
    created, replayed = backend.create_once(username="cosmo", key=KEY)
    assert (created.username, replayed) == ("cosmo", False)


def test_racing_repeats_of_one_key_create_one_user(backend: Blocking) -> None:
    """Each repeat gets the one user, or (PostgreSQL) is told the first is still running."""

    def attempt(_: int) -> tuple[int, bool] | str:
        try:
            user, replayed = backend.create_once(username="cosmo", key=KEY)
        except IdempotencyKeyInUse:
            return "in use"
        return user.id, replayed

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(attempt, range(32)))
    answered = [outcome for outcome in outcomes if outcome != "in use"]
    assert [replayed for _, replayed in answered].count(False) == 1
    assert {user_id for user_id, _ in answered} == {backend.list(after=0, limit=10)[0].id}


def test_add_all_keeps_the_instant_of_a_time_in_any_zone(backend: Blocking) -> None:
    in_paris = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=1)))
    backend.add_all([replace(imported(1, "cosmo"), created_at=in_paris, updated_at=in_paris)])
    kept = backend.get(1)
    assert (kept.created_at, kept.updated_at) == (in_paris, in_paris)  # the same instant
    assert kept.created_at.utcoffset() == timedelta(0)


def test_last_id_counts_deleted_users_and_add_all_moves_past_another_stores(
    backend: Blocking,
) -> None:
    assert backend.last_id() == 0
    for name in ("cosmo", "elaine", "george"):
        backend.create(username=name)
    backend.delete(3)
    assert backend.last_id() == 3  # the deleted user's id is handed out no more
    backend.add_all([imported(10, "newman")], last_id=40)  # another store had handed out 40
    assert backend.create(username="jerry").id > 40
    assert backend.last_id() > 40


def test_add_all_of_no_user_still_moves_past_last_id(backend: Blocking) -> None:
    backend.add_all([], last_id=7)
    assert backend.create(username="cosmo").id > 7


def test_a_pager_following_the_cursor_misses_no_user_created_meanwhile(
    backend: Blocking,
) -> None:
    """Writers create while a client pages on from its last cursor, then once more after they
    stop: every acknowledged user was on some page. (On PostgreSQL an id is handed out at the
    INSERT and seen at the COMMIT, so without care a cursor passes a lower id committed later.)"""
    created: list[int] = []
    stop = threading.Event()
    deadline = time.monotonic() + 20
    each, least = scaled(250, 60), scaled(400, 100)  # creates per writer; fewest acknowledged

    def write(writer: int) -> None:
        for n in range(each):
            if stop.is_set() or time.monotonic() > deadline:
                return
            created.append(backend.create(username=f"w{writer}n{n}").id)

    seen: set[int] = set()
    cursor = 0

    def page_on() -> bool:
        """One page after the cursor; whether it had any user."""
        nonlocal cursor
        page = backend.list(after=cursor, limit=50)
        seen.update(user.id for user in page)
        cursor = page[-1].id if page else cursor
        return bool(page)

    with ThreadPoolExecutor(max_workers=8) as writers:
        running = [writers.submit(write, writer) for writer in range(8)]
        while not all(job.done() for job in running):
            page_on()
        stop.set()
        for job in running:
            job.result()
    while page_on():  # the writers are done: page on to the end
        assert time.monotonic() < deadline + 10
    missed = sorted(set(created) - seen)
    assert (len(created) >= least, missed) == (True, [])


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(version=st.integers(1, MAX_VERSION) | st.integers(MAX_VERSION - 2, MAX_VERSION))
@example(version=MAX_VERSION)
def test_every_version_moves_on_to_one_that_if_match_takes(backend: Blocking, version: int) -> None:
    """Past the largest version a write comes round to 1: never an overflow, never a tag that
    no `If-Match` can name."""
    user_id = backend.last_id() + 1
    backend.add_all([replace(imported(user_id, f"user{user_id}"), version=version)])
    user = backend.get(user_id)
    for _ in range(2):
        user = backend.update(user_id, username=user.username, expected_versions=matching(user))
        assert 1 <= user.version <= MAX_VERSION
        assert backend.get(user_id) == user
    assert user.version == next_version(next_version(version)) != version


def matching(user: User) -> frozenset[int] | None:
    """The versions `If-Match` with the user's ETag names."""
    versions = versions_in(etag(user))
    assert versions == {user.version}
    return versions


def test_no_create_passes_the_largest_id_and_a_refused_one_writes_nothing(
    backend: Blocking,
) -> None:
    backend.add_all([], last_id=MAX_ID - 1)
    last = backend.create(username="cosmo")
    assert last.id == MAX_ID
    for _ in range(2):
        with pytest.raises(IdsExhausted):
            backend.create(username="elaine")
        with pytest.raises(IdsExhausted):
            backend.create_once(username="elaine", key=KEY)
    assert backend.list(after=0, limit=10) == [last]
    assert backend.last_id() == MAX_ID  # an export of the store still imports
    assert backend.update(last.id, username="kramer").id == MAX_ID
