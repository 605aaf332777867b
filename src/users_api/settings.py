"""Settings, read from `USERS_*` environment variables; the command line overrides them."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from users_api.auth import ApiKey, KeyFileError, plain_keys, read_key_file, refuse_duplicates
from users_api.logs import FORMATS
from users_api.ratelimit import parse_limits
from users_api.store import UserStore, open_store

SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")
MAX_RETENTION_HOURS = 10 * 366 * 24
"""Ten years: far past any retry, and far inside the dates a database can hold."""
APP_FLAVOURS = ("async", "flask")
"""Connexion's `AsyncApp` (the default: twice the throughput here) or its `FlaskApp`: the
same spec and handlers under either."""


class SettingsError(ValueError):
    """A setting with a value the service cannot run with."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    store_url: str = "sqlite:///data/users.db"
    pool_size: int = 5
    sqlite_synchronous: str = "FULL"
    sqlite_busy_timeout_ms: int = 5000
    store_timeout_ms: int = 5000
    idempotency_retention_hours: int = 24
    workers: int = 1
    api_keys: tuple[str, ...] = ()
    api_keys_file: str = ""
    public_reads: bool = False
    max_body_bytes: int = 16 * 1024
    validate_responses: bool = False
    app: str = "async"
    log_format: str = "auto"
    rate_limit_writes: str = "1000/second"
    rate_limit_requests: str = "5000/second"
    rate_limit_storage: str = "memory://"
    rate_limit_timeout_ms: int = 250
    cors_origins: tuple[str, ...] = ()
    shutdown_grace_seconds: int = 30
    metrics_networks: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be 0-65535, not {self.port}")
        if self.pool_size < 1:
            raise SettingsError(f"pool_size must be at least 1, not {self.pool_size}")
        if self.sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise SettingsError(
                f"sqlite_synchronous must be FULL or NORMAL, not {self.sqlite_synchronous!r}"
            )
        if self.sqlite_busy_timeout_ms < 0:
            raise SettingsError(
                f"sqlite_busy_timeout_ms must be 0 or more, not {self.sqlite_busy_timeout_ms}"
            )
        if self.store_timeout_ms < 1:
            raise SettingsError(f"store_timeout_ms must be at least 1, not {self.store_timeout_ms}")
        if not 1 <= self.idempotency_retention_hours <= MAX_RETENTION_HOURS:
            raise SettingsError(
                f"idempotency_retention_hours must be 1 to {MAX_RETENTION_HOURS}, "
                f"not {self.idempotency_retention_hours}"
            )
        if self.workers < 1:
            raise SettingsError(f"workers must be at least 1, not {self.workers}")
        if self.max_body_bytes < 1:
            raise SettingsError(f"max_body_bytes must be at least 1, not {self.max_body_bytes}")
        if any(not key.strip() for key in self.api_keys):
            raise SettingsError("an API key must not be empty")
        if self.app not in APP_FLAVOURS:
            raise SettingsError(f"app must be flask or async, not {self.app!r}")
        if self.log_format not in FORMATS:
            raise SettingsError(f"log_format must be auto, json or text, not {self.log_format!r}")
        for name in ("rate_limit_writes", "rate_limit_requests"):
            try:
                parse_limits(getattr(self, name))
            except ValueError as error:
                raise SettingsError(f"{name} must be like 50/second: {error}") from None
        if urlsplit(self.rate_limit_storage).scheme not in {"memory", "redis", "rediss"}:
            raise SettingsError(
                f"rate_limit_storage must be memory:// or redis://HOST:PORT, "
                f"not {self.rate_limit_storage!r}"
            )
        if self.rate_limit_timeout_ms < 1:
            raise SettingsError(
                f"rate_limit_timeout_ms must be at least 1, not {self.rate_limit_timeout_ms}"
            )
        for origin in self.cors_origins:
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path:
                raise SettingsError(f"a CORS origin is like https://example.com, not {origin!r}")
        if self.shutdown_grace_seconds < 0:
            raise SettingsError(
                f"shutdown_grace_seconds must be 0 or more, not {self.shutdown_grace_seconds}"
            )
        for name in ("metrics_networks", "trusted_proxies"):
            for network in getattr(self, name):
                try:
                    ipaddress.ip_network(network)
                except ValueError:
                    raise SettingsError(
                        f"{name} are addresses or networks like 10.0.0.0/8, not {network!r}"
                    ) from None

    def load_keys(self) -> list[ApiKey]:
        """The keys of `api_keys_file`, then those of `api_keys` (with every scope)."""
        try:
            keys = read_key_file(Path(self.api_keys_file)) if self.api_keys_file else []
            keys += plain_keys(self.api_keys)
            refuse_duplicates(keys)
        except KeyFileError as error:
            raise SettingsError(str(error)) from None
        return keys

    def open_store(self) -> UserStore:
        """The store `store_url` names, with the connection settings applied."""
        return open_store(
            self.store_url,
            pool_size=self.pool_size,
            sqlite_synchronous=self.sqlite_synchronous,
            sqlite_busy_timeout_ms=self.sqlite_busy_timeout_ms,
            timeout_ms=self.store_timeout_ms,
            idempotency_retention_hours=self.idempotency_retention_hours,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """`USERS_PORT=9000` sets `port`; `USERS_API_KEYS` is comma-separated."""
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(f"USERS_{field.name.upper()}")
            if raw is not None:
                values[field.name] = _parse(field.name, field.type, raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The `USERS_*` variables that `from_env` reads back as these settings."""
        return {
            f"USERS_{field.name.upper()}": _format(getattr(self, field.name))
            for field in fields(self)
        }


def _format(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(name: str, kind: object, raw: str) -> object:
    if kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(
                f"USERS_{name.upper()} must be a whole number, not {raw!r}"
            ) from None
    if kind == "bool":
        if raw.lower() not in {"1", "true", "yes", "0", "false", "no"}:
            raise SettingsError(f"USERS_{name.upper()} must be true or false, not {raw!r}")
        return raw.lower() in {"1", "true", "yes"}
    if kind == "tuple[str, ...]":
        return tuple(key.strip() for key in raw.split(",") if key.strip())
    return raw
