"""Every setting, declared once: its flag, its `USERS_*` variable, its type, its default and its
help. The command line, the environment and the README's table are all read from `Settings`.

Importing this module stays cheap (click and the standard library): `users-api --help` must
not wait for Connexion or SQLAlchemy.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

if TYPE_CHECKING:
    from users_api.auth import ApiKey
    from users_api.store import StoreOptions

STORE = "store"
"""Settings every command that opens the store takes; the rest are `serve`'s alone."""
SERVE = "serve"
DEFAULT_STORE_URL = "sqlite:///data/users.db"
APP_FLAVOURS = ("async", "flask")
"""Connexion's `AsyncApp` or its `FlaskApp`: the same spec and handlers under either."""
MAX_RETENTION_HOURS = 10 * 366 * 24
"""Ten years: far past any retry, and far inside the dates a database can hold."""


class SettingsError(click.ClickException):
    """A setting the service cannot run with: one line on stderr and exit status 2."""

    exit_code = 2

    def format_message(self) -> str:
        return f"error: {self.message}"


class _Checked(click.ParamType[str, str]):
    """A text setting checked by `check`, which raises ValueError with the reason."""

    def __init__(self, name: str, check: Any) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            self._check(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return value

    def split_envvar_value(self, rv: str) -> list[str]:
        """A list in one variable is comma-separated."""
        return [item.strip() for item in rv.split(",") if item.strip()]


def _limits(text: str) -> None:
    from users_api.middleware.rate_limits import (
        parse_limits,  # the `limits` library, only when it is used
    )

    parse_limits(text)


def _network(text: str) -> None:
    try:
        ipaddress.ip_network(text)
    except ValueError:
        raise ValueError(f"an address or network is like 10.0.0.0/8, not {text!r}") from None


def _origin(text: str) -> None:
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
        raise ValueError(f"a CORS origin is like https://example.com, not {text!r}")


def _rate_limit_storage(text: str) -> None:
    if urlsplit(text).scheme not in {"memory", "redis", "rediss"}:
        raise ValueError(f"expected memory:// or redis://HOST:PORT, not {text!r}")


def _store_url(text: str) -> None:
    from users_api.store import check_store_url

    check_store_url(text, default=DEFAULT_STORE_URL)


def _key(text: str) -> None:
    if not text:
        raise ValueError("an API key must not be empty")


TEXT = _Checked("text", lambda _: None)
LIMITS = _Checked("limits", _limits)
NETWORK = _Checked("network", _network)
ORIGIN = _Checked("origin", _origin)
KEY = _Checked("key", _key)


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = "",
    type: click.ParamType[Any, Any] | None = None,
    commands: str = SERVE,
    metavar: str | None = None,
) -> Any:
    """A field of `Settings` and what its option is. `flag=None`: a variable, never a flag."""
    return field(
        default=default,
        metadata={
            "flag": flag,
            "type": type,
            "help": help,
            "commands": commands,
            "metavar": metavar,
        },
    )


@dataclass(frozen=True)
class Settings:
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8080, "port to listen on", type=click.IntRange(0, 65535))
    store_url: str = setting(
        DEFAULT_STORE_URL,
        "`sqlite:///PATH`, `postgresql://USER@HOST:PORT/DB`, or `memory://` (one process, gone "
        "on restart); only the default's folder is made for it",
        flag="--store",
        type=_Checked("url", _store_url),
        commands=STORE,
    )
    pool_size: int = setting(
        5,
        "database connections per process; a request that finds none free waits for one, "
        "within the store timeout",
        type=click.IntRange(min=1),
        commands=STORE,
    )
    store_timeout_ms: int = setting(
        5000,
        "how long a request waits on the database in all (a free connection, connecting, each "
        "statement) before it gets `503` with `Retry-After`",
        type=click.IntRange(min=1),
        commands=STORE,
    )
    idempotency_retention_hours: int = setting(
        24,
        "how long a create's `Idempotency-Key` is kept: a retry within it gets the first "
        f"create's answer again; at most ten years ({MAX_RETENTION_HOURS})",
        type=click.IntRange(1, MAX_RETENTION_HOURS),
        commands=STORE,
    )
    sqlite_synchronous: str = setting(
        "FULL",
        "`FULL`: a write is on disk when acknowledged; `NORMAL`: faster, but a power cut may "
        "lose the last writes",
        type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
        commands=STORE,
    )
    sqlite_busy_timeout_ms: int = setting(
        5000,
        "how long a write waits for another process's write before it answers `503`",
        type=click.IntRange(min=0),
        commands=STORE,
    )
    no_prepared_statements: bool = setting(
        False,
        "PostgreSQL: send each statement unprepared (two round trips, not one), for PgBouncer "
        "in transaction pooling mode, which cannot keep a connection's prepared statements",
        commands=STORE,
    )
    workers: int = setting(
        1,
        "worker processes (uvicorn's); the memory store refuses more than one",
        type=click.IntRange(min=1),
    )
    api_keys_file: str = setting(
        "",
        "the key file: each key's name, scopes and SHA-256 digest (`users-api keys new`)",
        metavar="FILE",
    )
    api_keys: tuple[str, ...] = setting(
        (),
        "plain keys with every scope, comma-separated, for development and tests; no flag, so "
        "no key is ever on a command line",
        flag=None,
        type=KEY,
    )
    public_reads: bool = setting(False, "clients without a key may list and get users")
    max_body_bytes: int = setting(
        16 * 1024, "larger request bodies get `413`", type=click.IntRange(min=1)
    )
    app: str = setting(
        "async",
        "`async` or `flask`: Connexion's `AsyncApp` (faster) or its `FlaskApp`, over the same "
        "spec and handlers, for a team that needs Flask's extensions",
        type=click.Choice(APP_FLAVOURS),
    )
    validate_responses: bool = setting(
        False, "check every response against the spec (slow; the tests turn it on)"
    )
    log_format: str = setting(
        "auto",
        "`json` (a line per event), `text` (for a person); `auto`: text on a terminal",
        type=click.Choice(["auto", "json", "text"]),
    )
    rate_limit_writes: str = setting(
        "1000/second",
        "writes allowed per API key, like `50/second;1000/hour`",
        type=LIMITS,
        metavar="LIMITS",
    )
    rate_limit_requests: str = setting(
        "5000/second",
        "requests allowed per client address (probes, `/metrics` and `/ui` are exempt)",
        type=LIMITS,
        metavar="LIMITS",
    )
    rate_limit_storage: str = setting(
        "memory://",
        "where the counts live: `memory://`, per process, or `redis://HOST:PORT`, shared by "
        "every worker and instance",
        type=_Checked("url", _rate_limit_storage),
        metavar="URL",
    )
    rate_limit_timeout_ms: int = setting(
        250,
        "how long a request waits for the rate limits' storage; past it, or when it fails, the "
        "request passes unlimited, and is counted",
        type=click.IntRange(min=1),
    )
    cors_origins: tuple[str, ...] = setting(
        (),
        "origins whose browser scripts may call the API; none: CORS off",
        flag="--cors-origin",
        type=ORIGIN,
        metavar="ORIGIN",
    )
    shutdown_grace_seconds: int = setting(
        30,
        "on SIGTERM, how long requests in flight may take to finish",
        type=click.IntRange(min=0),
    )
    metrics_networks: tuple[str, ...] = setting(
        ("127.0.0.1/32", "::1/128"),
        "client addresses or networks that may read `/metrics`; to others it is a `404`",
        flag="--metrics-network",
        type=NETWORK,
        metavar="NETWORK",
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "load balancers whose `X-Forwarded-For` names the client",
        flag="--trusted-proxy",
        type=NETWORK,
        metavar="NETWORK",
    )

    def load_keys(self) -> list[ApiKey]:
        """The keys of `api_keys_file`, then those of `api_keys` (with every scope)."""
        from users_api.auth import KeyFileError, plain_keys, read_key_file, refuse_duplicates

        try:
            keys = read_key_file(Path(self.api_keys_file)) if self.api_keys_file else []
            keys += plain_keys(self.api_keys)
            refuse_duplicates(keys)
        except KeyFileError as error:
            raise SettingsError(str(error)) from None
        return keys

    @property
    def store_options(self) -> StoreOptions:
        from users_api.store import StoreOptions

        return StoreOptions(
            pool_size=self.pool_size,
            timeout_ms=self.store_timeout_ms,
            idempotency_retention_hours=self.idempotency_retention_hours,
            sqlite_synchronous=self.sqlite_synchronous,
            sqlite_busy_timeout_ms=self.sqlite_busy_timeout_ms,
            prepared_statements=not self.no_prepared_statements,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings the `USERS_*` variables give (the command line's, with no flags)."""
        return cls.parse(SERVE, {}, environ)

    @classmethod
    def parse(cls, command: str, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
        """`command`'s settings: each from its flag if given, else its variable, else its
        default; a bad value is a SettingsError naming where it came from."""
        values: dict[str, Any] = {}
        for item, option in _options(command):
            given = flags.get(item.name)
            if given is not None and given != ():
                values[item.name] = tuple(given) if option.multiple else given
                continue
            raw = environ.get(variable(item.name))
            if raw is not None:
                values[item.name] = _from_variable(item.name, option, raw)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The `USERS_*` variables that `from_env` reads back as these settings."""
        return {variable(item.name): _format(getattr(self, item.name)) for item in fields(self)}


def variable(name: str) -> str:
    return f"USERS_{name.upper()}"


def options(command: str) -> list[click.Option]:
    """The flags `command` takes, each overriding its variable."""
    return [option for item, option in _options(command) if item.metadata["flag"] is not None]


def _options(command: str) -> Iterator[tuple[Any, click.Option]]:
    for item in fields(Settings):
        meta = item.metadata
        if meta["commands"] not in {command, STORE}:
            continue
        multiple = isinstance(item.default, tuple)
        is_flag = isinstance(item.default, bool)
        shown = _format(item.default)
        yield (
            item,
            click.Option(
                [_flag(item) or "", item.name],
                type=None if is_flag else meta["type"] or TEXT,
                is_flag=is_flag,
                default=None,
                multiple=multiple,
                metavar=meta["metavar"],
                help=f"{meta['help']} [{variable(item.name)}; default: {shown or 'none'}]".replace(
                    "`", ""
                ),
            ),
        )


def _flag(item: Any) -> str | None:
    """A setting's flag: `--` and its name, unless it names another or none."""
    flag: str | None = item.metadata["flag"]
    return flag if flag != "" else f"--{item.name.replace('_', '-')}"


def _from_variable(name: str, option: click.Option, raw: str) -> Any:
    """A variable's value, checked by its option's type."""
    kind = click.BOOL if option.is_flag else option.type
    try:
        if option.multiple:
            return tuple(kind.convert(item, None, None) for item in kind.split_envvar_value(raw))
        return kind.convert(raw, None, None)
    except click.BadParameter as error:
        raise SettingsError(f"{variable(name)}: {error.message}") from None


def _format(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def readme_table() -> str:
    """The README's table of settings, as these declarations give it."""
    rows = ["| flag | variable | default | meaning |", "|---|---|---|---|"]
    for item in fields(Settings):
        flag, listed = _flag(item), isinstance(item.default, tuple)
        default = _format(item.default)
        rows.append(
            "| {} | {} | {} | {} |".format(
                f"`{flag}`" + (" (repeat)" if listed else "") if flag else "",
                f"`{variable(item.name)}`" + (" (comma-separated)" if listed else ""),
                "off" if default == "false" else f"`{default}`" if default else "none",
                item.metadata["help"],
            )
        )
    return "\n".join(rows)
