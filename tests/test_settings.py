"""Settings from USERS_* variables, and the command line over them."""

from __future__ import annotations

import pytest

from users_api.cli import _parser, _settings
from users_api.settings import Settings, SettingsError


def test_defaults_need_no_environment() -> None:
    assert Settings.from_env({}) == Settings()


def test_environment_variables_set_each_field() -> None:
    environ = {
        "USERS_HOST": "0.0.0.0",
        "USERS_PORT": "9000",
        "USERS_STORE_URL": "memory://",
        "USERS_API_KEYS": "old, new,",
        "USERS_MAX_BODY_BYTES": "1024",
        "USERS_VALIDATE_RESPONSES": "true",
        "USERS_POOL_SIZE": "12",
        "USERS_SQLITE_SYNCHRONOUS": "NORMAL",
        "USERS_SQLITE_BUSY_TIMEOUT_MS": "250",
        "USERS_APP": "async",
    }
    settings = Settings.from_env(environ)
    assert (settings.host, settings.port, settings.max_body_bytes) == ("0.0.0.0", 9000, 1024)
    assert (settings.pool_size, settings.sqlite_synchronous) == (12, "NORMAL")
    assert settings.sqlite_busy_timeout_ms == 250
    assert settings.api_keys == ("old", "new")
    assert settings.validate_responses is True
    assert settings.app == "async"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"USERS_PORT": "eighty"}, "USERS_PORT must be a whole number"),
        ({"USERS_WORKERS": "0"}, "workers must be at least 1"),
        ({"USERS_IDEMPOTENCY_RETENTION_HOURS": "0"}, "idempotency_retention_hours must be 1 to"),
        (
            {"USERS_IDEMPOTENCY_RETENTION_HOURS": "100000000"},
            "idempotency_retention_hours must be 1 to 87840, not 100000000",
        ),
        ({"USERS_VALIDATE_RESPONSES": "maybe"}, "must be true or false"),
        ({"USERS_POOL_SIZE": "0"}, "pool_size must be at least 1"),
        ({"USERS_SQLITE_SYNCHRONOUS": "OFF"}, "sqlite_synchronous must be FULL or NORMAL"),
        ({"USERS_SQLITE_BUSY_TIMEOUT_MS": "-1"}, "sqlite_busy_timeout_ms must be 0 or more"),
        ({"USERS_APP": "django"}, "app must be flask or async, not 'django'"),
    ],
)
def test_a_bad_environment_value_is_refused_by_name(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(environ)


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERS_PORT", "9000")
    monkeypatch.setenv("USERS_METRICS_NETWORKS", "10.0.0.0/8")
    args = _parser().parse_args(
        ["serve", "--port", "9001", "--metrics-network", "a::/64", "--metrics-network", "::1"]
    )
    settings = _settings(args)
    assert settings.port == 9001
    assert settings.metrics_networks == ("a::/64", "::1")


def test_store_flags_apply_to_every_command() -> None:
    for command in (["serve"], ["migrate"], ["import", "users.jsonl"]):
        args = _parser().parse_args(
            [*command, "--store", "sqlite:///x.db", "--sqlite-synchronous", "normal"]
        )
        settings = _settings(args)
        assert (settings.store_url, settings.sqlite_synchronous) == ("sqlite:///x.db", "NORMAL")


def test_app_flag_chooses_the_flavour() -> None:
    assert _settings(_parser().parse_args(["serve", "--app", "async"])).app == "async"


def test_unset_flags_keep_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USERS_PORT", "9000")
    assert _settings(_parser().parse_args(["serve"])).port == 9000


def test_to_env_round_trips_through_from_env() -> None:
    settings = Settings(
        port=9000, api_keys=("a", "b"), validate_responses=True, workers=2, app="async"
    )
    assert Settings.from_env(settings.to_env()) == settings
