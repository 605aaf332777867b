"""What an operator relies on, in process: request ids, rate limits, CORS, headers, metrics."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.support.api import API_KEY, AUTH, assert_problem, client_with
from tests.support.faults import proxy_to
from users_api.app import create_app
from users_api.arguments import HandlerMismatch
from users_api.handlers import users as users_handlers
from users_api.settings import APP_FLAVOURS, Settings
from users_api.store import User, UserStore
from users_api.store.memory import MemoryStore
from users_api.validation import SpecSchema


@pytest.fixture
def client() -> TestClient:
    return client_with(store=MemoryStore())


# Request ids


def test_a_sane_request_id_is_echoed_and_names_the_problem(client: TestClient) -> None:
    response = client.get("/users/42", headers=AUTH | {"X-Request-ID": "checkout-7.a_b"})
    assert response.headers["X-Request-ID"] == "checkout-7.a_b"
    assert assert_problem(response, 404)["instance"] == "urn:request:checkout-7.a_b"


@pytest.mark.parametrize("sent", ["", "has space", "x" * 129, "semi;colon", "a/b"])
def test_any_other_request_id_is_replaced_by_a_new_one(client: TestClient, sent: str) -> None:
    response = client.get("/users", headers=AUTH | {"X-Request-ID": sent})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/healthz", 200),
        ("post", "/users", 401),
        ("patch", "/users", 405),
        ("get", "/x", 404),
    ],
)
def test_every_response_carries_a_fresh_request_id(
    client: TestClient, method: str, path: str, status: int
) -> None:
    first, second = (client.request(method, path) for _ in range(2))
    assert first.status_code == status
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


# Rate limits


def test_writes_over_the_limit_get_429_with_retry_after_and_ratelimit_headers() -> None:
    client = client_with(store=MemoryStore(), rate_limit_writes="3/minute")
    for n in range(3):
        assert client.post("/users", json={"username": f"u{n}"}, headers=AUTH).status_code == 201
    refused = client.post("/users", json={"username": "u3"}, headers=AUTH)
    assert "per 1 minute from this API key" in assert_problem(refused, 429)["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]


def test_the_write_limit_is_per_key_and_spares_reads() -> None:
    client = client_with(store=MemoryStore(), rate_limit_writes="1/minute")
    assert client.post("/users", json={"username": "a"}, headers=AUTH).status_code == 201
    assert client.post("/users", json={"username": "b"}, headers=AUTH).status_code == 429
    other = {"Authorization": "Bearer other-key"}
    assert client.post("/users", json={"username": "b"}, headers=other).status_code == 201
    assert client.get("/users", headers=AUTH).status_code == 200


@pytest.mark.parametrize("spelling", ["Bearer\t{}", "bearer  {}", "BEARER {}", "Bearer \t{}"])
def test_every_spelling_the_key_check_accepts_counts_against_the_write_limit(
    spelling: str,
) -> None:
    client = client_with(store=MemoryStore(), rate_limit_writes="1/minute")
    headers = {"Authorization": spelling.format(API_KEY)}
    assert client.post("/users", json={"username": "a"}, headers=headers).status_code == 201
    assert_problem(client.post("/users", json={"username": "b"}, headers=AUTH), 429)


def test_requests_over_the_address_limit_get_429_but_probes_do_not() -> None:
    client = client_with(store=MemoryStore(), rate_limit_requests="2/minute")
    assert [client.get("/users", headers=AUTH).status_code for _ in range(3)] == [200, 200, 429]
    assert (
        "from this client address"
        in assert_problem(client.get("/users/1", headers=AUTH), 429)["detail"]
    )
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200


def test_metrics_asked_from_outside_its_networks_count_against_the_limit() -> None:
    client = client_with(store=MemoryStore(), address="10.1.2.3", rate_limit_requests="2/minute")
    assert [client.get("/metrics").status_code for _ in range(3)] == [404, 404, 429]


def test_instances_sharing_redis_share_the_limit() -> None:
    key = f"key-{uuid.uuid4().hex}"
    settings = Settings(
        api_keys=(key,),
        rate_limit_writes="2/minute",
        rate_limit_storage="redis://127.0.0.1:6379",
    )
    auth = {"Authorization": f"Bearer {key}"}
    # Each client keeps one event loop for its requests, as a server does; Redis clients bind
    # to theirs.
    with (
        create_app(settings, store=MemoryStore()).test_client() as first,
        create_app(settings, store=MemoryStore()).test_client() as second,
    ):
        statuses = [
            instance.post("/users", json={"username": f"u{n}"}, headers=auth).status_code
            for n, instance in enumerate([first, second, first, second])
        ]
    assert statuses == [201, 201, 429, 429]


@pytest.mark.parametrize("fault", ["down", "stalled"])
def test_with_redis_down_or_stalled_requests_pass_unlimited_soon_and_are_counted(
    fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    key = f"key-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {key}"}
    with proxy_to(6379) as redis:
        settings = Settings(
            api_keys=(key,),
            rate_limit_writes="1/minute",
            rate_limit_storage=f"redis://127.0.0.1:{redis.port}",
            rate_limit_timeout_ms=200,
        )
        app = create_app(settings, store=MemoryStore())
        with app.test_client(client=("127.0.0.1", 50000)) as client:
            assert client.post("/users", json={"username": "a"}, headers=auth).status_code == 201
            assert client.post("/users", json={"username": "b"}, headers=auth).status_code == 429
            if fault == "down":
                redis.process.kill()
            else:
                redis.stall()
            started = time.monotonic()
            statuses = [
                client.post("/users", json={"username": f"u{n}"}, headers=auth).status_code
                for n in range(5)
            ]
            elapsed = time.monotonic() - started
            counted = metric(client, "users_rate_limit_storage_failures_total")
    assert statuses == [201] * 5
    assert elapsed < 3 * 5 * 0.2, elapsed  # each waited the timeout at most: 3 times that
    assert counted == 5
    warnings = [r for r in caplog.records if r.getMessage().startswith("rate limits are off")]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


# CORS


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/users/1",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type, if-match",
        },
    )


def test_cors_is_off_by_default(client: TestClient) -> None:
    assert "access-control-allow-origin" not in preflight(client, "https://app.example").headers
    response = client.get("/users", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_an_allowed_origin_passes_preflight_and_reads_the_etag() -> None:
    store = MemoryStore()
    user = asyncio.run(store.create(username="cosmo"))
    client = client_with(store=store, cors_origins=("https://app.example",))
    allowed = preflight(client, "https://app.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "PUT" in allowed.headers["access-control-allow-methods"]
    response = client.get(f"/users/{user.id}", headers={"Origin": "https://app.example"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "ETag" in response.headers["access-control-expose-headers"]


def test_an_allowed_origin_may_send_and_read_the_headers_the_spec_declares() -> None:
    client = client_with(store=MemoryStore(), cors_origins=("https://app.example",))
    allowed = client.options(
        "/users",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert allowed.status_code == 200
    refused = client.get("/users", headers={"Origin": "https://app.example"})
    exposed = refused.headers["access-control-expose-headers"].split(", ")
    assert {"WWW-Authenticate", "X-Request-ID", "Retry-After", "Location"} <= set(exposed)


def test_another_origin_fails_preflight() -> None:
    client = client_with(store=MemoryStore(), cors_origins=("https://app.example",))
    refused = preflight(client, "https://evil.example")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


# Response headers


def test_user_responses_are_revalidated_privately_and_nothing_is_sniffed(
    client: TestClient,
) -> None:
    for path in ("/users", "/users/42"):
        response = client.get(path, headers=AUTH)
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    health = client.get("/healthz")
    assert health.headers["X-Content-Type-Options"] == "nosniff"
    assert "cache-control" not in health.headers


# Garbage collection


def test_while_serving_what_the_app_built_is_out_of_the_collectors_full_passes() -> None:
    app = create_app(Settings(api_keys=(API_KEY,)), store=MemoryStore())
    with app.test_client() as client:  # runs the app's lifespan
        assert client.get("/users", headers=AUTH).status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


def test_while_serving_requests_do_not_set_off_the_collectors_young_passes() -> None:
    default = gc.get_threshold()
    app = create_app(Settings(api_keys=(API_KEY,)), store=MemoryStore())
    with app.test_client() as client:
        young = gc.get_stats()[0]["collections"]
        for _ in range(300):
            assert client.get("/users", headers=AUTH).status_code == 200
        assert gc.get_stats()[0]["collections"] == young
    assert gc.get_threshold() == default


# Metrics and the log


def metric(client: TestClient, name: str, **labels: str) -> float:
    """A sample's value from /metrics, 0 if there is none."""
    wanted = ",".join(f'{label}="{value}"' for label, value in sorted(labels.items()))
    for line in client.get("/metrics").text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == (f"{name}{{{wanted}}}" if labels else name):
            return float(value)
    return 0.0


def test_metrics_count_requests_by_operation_and_status(client: TestClient) -> None:
    client.post("/users", json={"username": "cosmo"}, headers=AUTH)
    for _ in range(3):
        client.get("/users/1", headers=AUTH)
    client.get("/users/99", headers=AUTH)
    client.get("/nowhere", headers=AUTH)
    count, key = "users_http_requests_total", "USERS_API_KEYS[1]"
    assert metric(client, count, operation="get_user", method="GET", status="200", key=key) == 3
    assert metric(client, count, operation="get_user", method="GET", status="404", key=key) == 1
    assert metric(client, count, operation="create_user", method="POST", status="201", key=key) == 1
    assert metric(client, count, operation="none", method="GET", status="404", key="none") == 1
    latency = "users_http_request_duration_seconds_count"
    assert metric(client, latency, operation="get_user") == 4
    assert metric(client, "users_store_errors_total", error="UserNotFound") == 1
    assert metric(client, "users_http_requests_in_flight") == 0


def test_metrics_name_a_key_by_its_name_never_the_key() -> None:
    client = client_with(store=MemoryStore())
    client.get("/users", headers={"Authorization": "Bearer other-key"})
    client.get("/users", headers={"Authorization": "Bearer wrong-key"})
    scraped = client.get("/metrics").text
    assert 'key="USERS_API_KEYS[2]"' in scraped
    assert "other-key" not in scraped
    assert "wrong-key" not in scraped


@pytest.mark.parametrize("address", ["10.1.2.3", "127.0.0.2", "::2", "testclient"])
def test_metrics_do_not_exist_for_a_client_outside_the_metrics_networks(address: str) -> None:
    client = client_with(store=MemoryStore(), address=address, metrics_networks=("127.0.0.1",))
    problem = assert_problem(client.get("/metrics"), 404)
    assert problem["title"] == "Not Found"
    assert "users_http_requests_total" not in client.get("/metrics").text


def test_metrics_answer_a_client_in_a_listed_network() -> None:
    client = client_with(store=MemoryStore(), address="10.1.2.3", metrics_networks=("10.0.0.0/8",))
    assert "users_http_requests_total" in client.get("/metrics").text


class FailingStore(MemoryStore):
    def get(self, user_id: int) -> User:
        raise RuntimeError("disk on fire: secret-detail")


def access_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The access log's lines written so far by an app whose log format is JSON."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [line for line in lines if line["logger"] == "users.access"]


def test_a_500_logs_its_traceback_at_error_but_shows_none(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    client = client_with(store=FailingStore(), log_format="json")
    response = client.get("/users/1", headers=AUTH)
    problem = assert_problem(response, 500)
    assert "secret-detail" not in response.text
    assert "Traceback" not in response.text
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert any(record.exc_info and "secret-detail" in str(record.exc_info[1]) for record in errors)
    access = [(line["level"], line["message"]) for line in access_lines(capsys)]
    assert access == [("ERROR", "GET /users/{user_id} 500")]
    assert problem["instance"] == f"urn:request:{response.headers['X-Request-ID']}"


def test_only_auth_failures_among_4xx_log_at_warning(capsys: pytest.CaptureFixture[str]) -> None:
    client = client_with(store=MemoryStore(), log_format="json")
    client.get("/users/99", headers=AUTH)
    client.post("/users", json={"username": "cosmo"}, headers={"Authorization": "Bearer wrong"})
    levels = {line["message"]: line["level"] for line in access_lines(capsys)}
    assert levels == {"GET /users/{user_id} 404": "INFO", "POST /users 401": "WARNING"}


class BrokenPipe(io.StringIO):
    """A stdout whose reader has gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_stdout_that_cannot_be_written_loses_the_access_line_not_the_request(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdout", BrokenPipe())
    for _ in range(2):  # the connection, kept alive, answers the next request too
        assert client.get("/users", headers=AUTH).status_code == 200


# Handlers and their operations


async def update_user_misspelling_a_header(
    user_id: int, body: dict[str, str], *, store: UserStore, if_mach: str | None = None
) -> Any:
    raise AssertionError("never called")


async def update_user_ignoring_if_match(
    user_id: int, body: dict[str, str], *, store: UserStore
) -> Any:
    raise AssertionError("never called")


@pytest.mark.parametrize("app_flavour", APP_FLAVOURS)
@pytest.mark.parametrize(
    ("handler", "taken"),
    [
        (update_user_misspelling_a_header, "['body', 'if_mach', 'user_id']"),
        (update_user_ignoring_if_match, "['body', 'user_id']"),
    ],
)
def test_a_handler_that_disagrees_with_its_operation_stops_the_app_at_start(
    monkeypatch: pytest.MonkeyPatch, app_flavour: str, handler: Any, taken: str
) -> None:
    monkeypatch.setattr(users_handlers, "update_user", handler)
    app = create_app(Settings(api_keys=(API_KEY,), app=app_flavour), store=MemoryStore())
    with pytest.raises(HandlerMismatch) as refused, app.test_client():
        pass  # Connexion builds its operations as the app starts
    assert str(refused.value) == (
        f"update_user: the handler takes {taken}, "
        "the operation declares ['body', 'if_match', 'user_id']"
    )


# What an app builds goes with it


@pytest.mark.parametrize("flavour", APP_FLAVOURS)
def test_compiled_schemas_go_with_their_app(flavour: str) -> None:
    def compiled_alive() -> int:
        gc.collect()
        return sum(isinstance(thing, SpecSchema) for thing in gc.get_objects())

    before = compiled_alive()
    for _ in range(3):
        client = client_with(store=MemoryStore(), app=flavour)
        assert client.put("/users/1", json={"username": ""}, headers=AUTH).status_code == 400
        assert compiled_alive() > before  # this app's body and path schemas
        del client
    assert compiled_alive() == before
