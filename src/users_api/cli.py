"""`users-api`: run the service, and look after its database.

Each command imports what it needs when it runs, so that `--help` answers at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from users_api.settings import DEFAULT_STORE_URL, SERVE, STORE, Settings, SettingsError, options

if TYPE_CHECKING:
    from users_api.store import UserStore


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("users-api"), prog_name="users-api")
def users_api() -> None:
    """Run the users service, and look after its database. Each flag overrides its USERS_*
    environment variable."""


@users_api.command()
@click.option(
    "--demo",
    is_flag=True,
    help="add example users to an empty store; with no key configured, make one up with "
    "every scope for this run",
)
def serve(demo: bool, **flags: Any) -> int:
    """Run the service."""
    settings = Settings(**flags)
    from users_api.serve import serve as run

    with _store(settings, sql_only=None) as store:
        run(settings, store, demo=demo)
    return 0


@users_api.command()
def migrate(**flags: Any) -> int:
    """Bring the database's schema to this version (serve does it too)."""
    with _store(Settings(**flags), sql_only="migrate") as store:
        revision = store.migrate()  # type: ignore[attr-defined]
    _say(f"The database is at schema revision {revision}.")
    return 0


@users_api.command()
@click.argument("file", type=click.Path(path_type=Path))
def export(file: Path, **flags: Any) -> int:
    """Write every user to FILE, one JSON object a line."""
    from users_api.transfer import export_users

    with _store(Settings(**flags), sql_only="export") as store:
        count = asyncio.run(export_users(store, file))
    _say(f"Exported {count} users to {file}.")
    return 0


@users_api.command(name="import")
@click.argument("file", type=click.Path(path_type=Path))
def import_(file: Path, **flags: Any) -> int:
    """Add the users in FILE (as export writes them) in one transaction; any bad line, and
    nothing is added."""
    from tqdm import tqdm

    from users_api.transfer import ImportRejected, import_users

    with _store(Settings(**flags), sql_only="import") as store:
        asyncio.run(store.prepare())
        size = file.stat().st_size
        with tqdm(
            total=size, unit="B", unit_scale=True, desc="import", disable=size < 1_000_000
        ) as progress:
            try:
                count = asyncio.run(import_users(store, file, on_read=progress.update))
            except ImportRejected as rejected:
                raise _Failed("\n".join([*rejected.errors, str(rejected)])) from None
    _say(f"Imported {count} users from {file}.")
    return 0


@users_api.group()
def keys() -> None:
    """Make API keys."""


# `keys new` checks its flags as the key file's reader checks a line.
def _name(_: click.Context, __: click.Parameter, text: str) -> str:
    from users_api.auth import parse_name

    try:
        return parse_name(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _scopes(_: click.Context, __: click.Parameter, text: str) -> frozenset[str]:
    from users_api.auth import parse_scopes

    try:
        return parse_scopes(text)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@keys.command()
@click.option("--name", required=True, callback=_name, help="what logs call the key")
@click.option(
    "--scopes",
    required=True,
    callback=_scopes,
    help="users:read, users:write (which may read too), or both, comma-separated",
)
def new(name: str, scopes: frozenset[str]) -> int:
    """Print a new key once, and the key file's line for it (only its digest)."""
    from users_api.auth import key_file_line, new_key

    key = new_key()
    _say("Give the key to its client; add the line to the key file. The key is not kept.")
    sys.stdout.write(f"key:  {key}\nline: {key_file_line(name, scopes, key)}\n")
    return 0


# Each command's flags are its settings' options, declared in `Settings`.
for _command, _takes in ((serve, SERVE), (migrate, STORE), (export, STORE), (import_, STORE)):
    _command.params[:0] = options(_takes)


@contextmanager
def _store(settings: Settings, *, sql_only: str | None) -> Iterator[UserStore]:
    """The store the settings name, closed after the command; a store that fails the command
    is one line on stderr and exit status 1."""
    from users_api.store import MigrationRefused, StoreUnavailable, open_store

    if sql_only and settings.store_url.startswith("memory"):
        raise SettingsError(f"{sql_only} needs a sqlite:// or postgresql:// store, not memory://")
    if settings.store_url == DEFAULT_STORE_URL:
        Path("data").mkdir(exist_ok=True)
    store = open_store(settings.store_url, settings.store_options)  # its URL checked as a setting
    try:
        yield store
    except StoreUnavailable as error:
        raise _Failed(f"The store is unavailable: {error.reason}") from None
    except MigrationRefused as refused:
        raise _Failed(f"The schema was not migrated: {refused}") from None
    except OSError as error:
        raise _Failed(str(error)) from None
    finally:
        asyncio.run(store.close())


class _Failed(Exception):
    """A command that could not do its work: its message, and exit status 1."""


def main(argv: list[str] | None = None) -> int:
    """The `users-api` command; every refusal is one line on stderr, never a traceback."""
    try:
        result = users_api.main(argv, prog_name="users-api", standalone_mode=False)
    except _Failed as failed:
        _say(str(failed))
        return 1
    except click.ClickException as error:  # a bad flag or setting
        _say(f"users-api: error: {error.format_message()}")
        return 2
    except click.Abort:
        return 1
    return result if isinstance(result, int) else 0


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")


if __name__ == "__main__":
    sys.exit(main())
