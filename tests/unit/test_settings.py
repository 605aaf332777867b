"""Settings: each declared once in `Settings`, read from its flag, else its USERS_* variable."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from users_api.cli import main, users_api
from users_api.settings import SERVE, Settings, options, variable

SETTINGS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No `USERS_*` setting in the environment but those the test sets."""
    for name in Settings.__dataclass_fields__:
        monkeypatch.delenv(variable(name), raising=False)
    return monkeypatch


def test_defaults_need_no_environment(environ: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings()


def test_environment_variables_set_each_field(environ: pytest.MonkeyPatch) -> None:
    variables = {
        "USERS_HOST": "0.0.0.0",
        "USERS_PORT": "9000",
        "USERS_STORE_URL": "memory://",
        "USERS_API_KEYS": "old, new,",
        "USERS_MAX_BODY_BYTES": "1024",
        "USERS_VALIDATE_RESPONSES": "true",
        "USERS_POOL_SIZE": "12",
        "USERS_SQLITE_SYNCHRONOUS": "normal",
        "USERS_SQLITE_BUSY_TIMEOUT_MS": "250",
        "USERS_METRICS_NETWORKS": "10.0.0.0/8, ::1",
        "USERS_APP": "flask",
    }
    for name, value in variables.items():
        environ.setenv(name, value)
    settings = Settings.from_env()
    assert (settings.host, settings.port, settings.max_body_bytes) == ("0.0.0.0", 9000, 1024)
    assert (settings.pool_size, settings.sqlite_synchronous) == (12, "NORMAL")
    assert settings.sqlite_busy_timeout_ms == 250
    assert settings.api_keys == ("old", "new")
    assert settings.metrics_networks == ("10.0.0.0/8", "::1")
    assert settings.validate_responses is True
    assert settings.app == "flask"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("USERS_PORT", "eighty", "'USERS_PORT': 'eighty' is not a valid integer"),
        ("USERS_WORKERS", "0", "'USERS_WORKERS': 0 is not in the range x>=1"),
        ("USERS_IDEMPOTENCY_RETENTION_HOURS", "0", "'USERS_IDEMPOTENCY_RETENTION_HOURS': 0"),
        ("USERS_IDEMPOTENCY_RETENTION_HOURS", "100000000", "1<=x<=87840"),
        ("USERS_VALIDATE_RESPONSES", "maybe", "'USERS_VALIDATE_RESPONSES': 'maybe' is not"),
        ("USERS_SQLITE_SYNCHRONOUS", "OFF", "'USERS_SQLITE_SYNCHRONOUS': 'OFF' is not one of"),
        ("USERS_APP", "django", "'USERS_APP': 'django' is not one of 'async', 'flask'"),
        ("USERS_RATE_LIMIT_WRITES", "lots", "'USERS_RATE_LIMIT_WRITES': "),
        ("USERS_METRICS_NETWORKS", "10.0.0.0/8,localhost", "not 'localhost'"),
        ("USERS_STORE_URL", "sqlite:/tmp/x.db", "unknown store URL 'sqlite:/tmp/x.db'"),
    ],
)
def test_a_bad_variable_is_refused_by_name(
    environ: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    environ.setenv(name, value)
    with pytest.raises(click.BadParameter) as refused:
        Settings.from_env()
    assert message in refused.value.format_message()


def test_flags_override_the_environment(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("USERS_PORT", "9000")
    environ.setenv("USERS_METRICS_NETWORKS", "10.0.0.0/8")
    networks = ["--metrics-network", "a::/64", "--metrics-network", "::1"]
    settings = Settings.from_env(["--port", "9001", *networks])
    assert settings.port == 9001
    assert settings.metrics_networks == ("a::/64", "::1")


def test_unset_flags_keep_the_environment(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("USERS_PORT", "9000")
    assert Settings.from_env(["--host", "::1"]).port == 9000


def test_a_bad_flag_is_refused_by_its_name_even_with_its_variable_set(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("USERS_PORT", "9000")
    with pytest.raises(click.BadParameter) as refused:
        Settings.from_env(["--port", "eighty"])
    assert refused.value.format_message().startswith("Invalid value for '--port': 'eighty'")


def test_plain_keys_are_never_taken_from_the_command_line(environ: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.BadParameter, match="a key is given in USERS_API_KEYS only"):
        Settings.from_env(["--api-keys", "k"])


def test_a_variable_set_empty_is_empty_not_the_default(environ: pytest.MonkeyPatch) -> None:
    """An operator who empties USERS_METRICS_NETWORKS closes /metrics to everyone."""
    environ.setenv("USERS_METRICS_NETWORKS", "")
    environ.setenv("USERS_HOST", "")
    settings = Settings.from_env()
    assert (settings.metrics_networks, settings.host) == ((), "")
    environ.setenv("USERS_PORT", "")
    with pytest.raises(click.BadParameter) as refused:
        Settings.from_env()
    assert "'USERS_PORT': '' is not a valid integer" in refused.value.format_message()


def test_to_env_round_trips_through_from_env(environ: pytest.MonkeyPatch) -> None:
    settings = Settings(
        port=9000, api_keys=("a", "b"), validate_responses=True, workers=2, app="flask"
    )
    for name, value in settings.to_env().items():
        environ.setenv(name, value)
    assert Settings.from_env() == settings


def test_every_setting_but_the_plain_keys_has_a_flag_on_serve() -> None:
    serve = users_api.commands["serve"]
    shown = {param.name for param in serve.params if not getattr(param, "hidden", False)}
    assert shown == {field for field in Settings.__dataclass_fields__} - {"api_keys"} | {"demo"}


def test_store_settings_apply_to_every_database_command() -> None:
    for command in ("migrate", "export", "import"):
        given = {param.name for param in users_api.commands[command].params}
        assert {"store_url", "pool_size", "sqlite_synchronous"} <= given
        assert "port" not in given


def test_the_settings_table_is_the_declarations() -> None:
    """docs/settings.md has each setting's row as its declaration gives it."""
    page = SETTINGS_PAGE.read_text()
    for option in options(SERVE):
        row = _table_row(option)
        assert row in page, f"docs/settings.md lacks or differs in this row:\n{row}"


def _table_row(option: click.Option) -> str:
    listed = option.multiple
    flag = "" if option.hidden else f"`{option.opts[0]}`" + (" (repeat)" if listed else "")
    variable = f"`{option.envvar}`" + (" (comma-separated)" if listed else "")
    if option.is_flag:
        default = "off"
    elif option.default:
        default = f"`{','.join(option.default) if listed else option.default}`"
    else:
        default = "none"
    meaning = Settings.__dataclass_fields__[option.name].metadata["help"]
    return f"| {flag} | {variable} | {default} | {meaning} |"


@pytest.mark.parametrize(
    "url",
    ["sqlite:/tmp/x.db", "sqlite:relative.db", "postgresql:/nohost", "sqlite:///", "redis://x"],
)
@pytest.mark.parametrize("command", ["serve", "migrate", "export", "import"])
def test_a_malformed_store_url_is_one_line_and_exit_2(
    command: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--store", url] + (["users.jsonl"] if command in {"export", "import"} else [])
    assert main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("users-api: error: ") and url in line


def test_a_sqlite_file_in_a_missing_folder_is_refused_not_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["migrate", "--store", f"sqlite:///{missing}/x.db"]) == 2
    assert f"the folder {missing} of" in capsys.readouterr().err
    assert not missing.exists()
