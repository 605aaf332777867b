"""Every setting, declared once as a field of `Settings`: its flag, its `USERS_*` variable, its
type check, its default and its help. click reads each from its flag, else its variable, else its
default; tests/unit/test_settings.py checks docs/settings.md's table against the same fields.

The store's options default to what `StoreOptions` declares. Importing this module stays cheap
(click, the store's interface, the standard library): `users-api --help` must not wait for
Connexion or SQLAlchemy.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from users_api.store import DEFAULT_OPTIONS, StoreOptions, check_store_url

if TYPE_CHECKING:
    from limits import RateLimitItem


STORE = "store"
"""Settings every command that opens the store takes; the rest are `serve`'s alone."""
SERVE = "serve"
DEFAULT_STORE_URL = "sqlite:///data/users.db"
APP_FLAVOURS = ("async", "flask")
"""Connexion's `AsyncApp` or its `FlaskApp`: the same spec and handlers under either."""
MAX_RETENTION_HOURS = 10 * 366 * 24
"""Ten years: far past any retry, and far inside the dates a database can hold."""


class SettingsError(click.ClickException):
    """A setting the service cannot run with: `users-api` says why on one line, exit status 2."""

    exit_code = 2


class _Checked(click.ParamType[str, str]):
    """A text setting checked by `check`, which raises ValueError with the reason; in a variable,
    a list is comma-separated."""

    def __init__(self, name: str, check: Callable[[str], object] = lambda _: None) -> None:
        self.name = name
        self._check = check

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            self._check(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return value

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item.strip() for item in rv.split(",") if item.strip()]


def parse_limits(text: str) -> list[RateLimitItem]:
    """`50/second` or `50/second;1000/hour`; raises ValueError for anything else."""
    from limits import parse_many  # slow to import: only when a limit is read

    items = parse_many(text)
    if not items or any(item.amount < 1 for item in items):
        raise ValueError(f"{text!r} allows nothing")
    return items


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
    check_store_url(text, default=DEFAULT_STORE_URL)


LIMITS = _Checked("limits", parse_limits)
NETWORK = _Checked("network", _network)


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    type: click.ParamType[Any, Any] | None = None,
    commands: str = SERVE,
    metavar: str | None = None,
    env_only: bool = False,
) -> Any:
    """A field of `Settings` and its option: `flag` replaces `--field-name`; `env_only` makes it
    a variable alone, refused on a command line."""
    return field(
        default=default,
        metadata={
            "flag": flag,
            "type": type,
            "help": help,
            "commands": commands,
            "metavar": metavar,
            "env_only": env_only,
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
        DEFAULT_OPTIONS.pool_size,
        "database connections per process; a request that finds none free waits for one, "
        "within the store timeout",
        type=click.IntRange(min=1),
        commands=STORE,
    )
    store_timeout_ms: int = setting(
        DEFAULT_OPTIONS.timeout_ms,
        "how long a request waits on the database in all (a free connection, connecting, each "
        "statement) before it gets `503` with `Retry-After`",
        type=click.IntRange(min=1),
        commands=STORE,
    )
    idempotency_retention_hours: int = setting(
        DEFAULT_OPTIONS.idempotency_retention_hours,
        "how long a create's `Idempotency-Key` is kept: a retry within it gets the first "
        f"create's answer again; at most ten years ({MAX_RETENTION_HOURS})",
        type=click.IntRange(1, MAX_RETENTION_HOURS),
        commands=STORE,
    )
    sqlite_synchronous: str = setting(
        DEFAULT_OPTIONS.sqlite_synchronous,
        "`FULL`: a write is on disk when acknowledged; `NORMAL`: faster, but a power cut may "
        "lose the last writes",
        type=click.Choice(["FULL", "NORMAL"], case_sensitive=False),
        commands=STORE,
    )
    sqlite_busy_timeout_ms: int = setting(
        DEFAULT_OPTIONS.sqlite_busy_timeout_ms,
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
        type=_Checked("key"),
        env_only=True,
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
        type=_Checked("origin", _origin),
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

    @property
    def store_options(self) -> StoreOptions:
        return StoreOptions(
            pool_size=self.pool_size,
            timeout_ms=self.store_timeout_ms,
            idempotency_retention_hours=self.idempotency_retention_hours,
            sqlite_synchronous=self.sqlite_synchronous,
            sqlite_busy_timeout_ms=self.sqlite_busy_timeout_ms,
            prepared_statements=not self.no_prepared_statements,
        )

    @classmethod
    def from_env(cls, args: Sequence[str] = ()) -> Settings:
        """The settings `serve` reads from `args`, else the `USERS_*` variables (as each worker
        does, with no args), else the defaults."""
        command = click.Command(SERVE, params=options(SERVE))
        return cls(**command.make_context(SERVE, list(args)).params)

    def to_env(self) -> dict[str, str]:
        """The `USERS_*` variables that `from_env` reads back as these settings."""
        return {variable(item.name): _format(getattr(self, item.name)) for item in fields(self)}


def variable(name: str) -> str:
    return f"USERS_{name.upper()}"


def options(command: str) -> list[click.Parameter]:
    """The options of `command`'s settings: the store's on every command, the rest on `serve`."""
    return [
        _Option(item) for item in fields(Settings) if item.metadata["commands"] in {command, STORE}
    ]


class _Option(click.Option):
    """A setting's option: its flag, else its `USERS_*` variable, else its default."""

    def __init__(self, item: Field[Any]) -> None:
        meta = item.metadata
        super().__init__(
            [meta["flag"] or f"--{item.name.replace('_', '-')}", item.name],
            envvar=variable(item.name),
            show_envvar=True,
            default=item.default,
            show_default=item.default not in ("", ()),
            type=meta["type"],
            is_flag=isinstance(item.default, bool),
            multiple=isinstance(item.default, tuple),
            metavar=meta["metavar"],
            help=meta["help"].replace("`", ""),
            hidden=meta["env_only"],
            callback=_refuse_on_command_line if meta["env_only"] else None,
        )

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        """A variable set empty means empty (no metrics networks, say), not click's "unset"."""
        return os.environ.get(variable(self.name or ""))

    def get_error_hint(self, ctx: click.Context | None) -> str:
        """The variable a bad value came from, else the flag (click's own hint names both)."""
        if ctx and ctx.get_parameter_source(self.name or "") == click.ParameterSource.ENVIRONMENT:
            return f"'{self.envvar}'"
        return super(click.Option, self).get_error_hint(ctx)


def _refuse_on_command_line(ctx: click.Context, option: click.Parameter, value: Any) -> Any:
    """A key on a command line would be shown by `ps` to every user of the machine."""
    if ctx.get_parameter_source(option.name or "") == click.ParameterSource.COMMANDLINE:
        raise click.BadParameter(f"a key is given in {option.envvar} only, never as a flag")
    return value


def _format(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
