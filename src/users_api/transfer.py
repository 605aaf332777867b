"""`users-api export` and `import`: users as JSON lines, each line one `User` as the spec
defines it (what `GET /users/{id}` returns), so an export from one store imports into another.

Each line carries the user's `version` too, the ETag's: a tag a client took before the move
names the same version after it, so `If-Match` with an older one still gets 412, and
`If-None-Match` never answers 304 for content that changed. A line without one (written by
hand, say) is version 1.

The last line is `{"last_id": N}`: the highest id the store ever handed out, a deleted user's
perhaps, which the store moved into hands out no more (ids are never reused). A file without
it (written by hand, or by 1.0) gives the ids up to its highest user's."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeGuard

import yaml
from jsonschema_rs import Draft4Validator

from users_api.app import SPEC
from users_api.handlers.users import present
from users_api.store import MAX_ID, MAX_VERSION, User, UserIdTaken, UsernameTaken, UserStore

PAGE = 1000
SHOWN_ERRORS = 20
LAST_ID = "last_id"
"""The one member of the file's last line."""
TAIL_BYTES = 64 * 1024
"""How much of the file's end is read for its last line: blank lines may follow it."""


class ImportRejected(Exception):
    """The file has bad lines; nothing was imported. `errors` names each line and what is wrong."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} bad line(s); nothing was imported")
        self.errors = errors


async def export_users(store: UserStore, path: Path) -> int:
    """Write every user to `path`, by id; the file appears only once it is complete (each
    export writes a partial file of its own beside it: two at once do not collide)."""
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    partial = Path(name)
    count, after = 0, 0
    try:
        with open(handle, "w", encoding="utf-8") as sink:
            while page := await store.list(after=after, limit=PAGE):
                sink.writelines(json.dumps(_line(user)) + "\n" for user in page)
                count, after = count + len(page), page[-1].id
            sink.write(json.dumps({LAST_ID: await store.last_id()}) + "\n")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


async def import_users(
    store: UserStore, path: Path, on_read: Callable[[int], object] = lambda _: None
) -> int:
    """Add the users in `path` in one transaction: all of them, or none if any line is bad.

    Every line is checked, so `ImportRejected` lists all bad ones, not just the first;
    `on_read` is told how many bytes each line had, for a progress bar. `path` is a file, not
    a pipe: its last line is read first, and a taken id or name is looked for in it again.
    """
    if not path.is_file():
        raise OSError(
            f"{path} is not a file (import reads it more than once): nothing was imported"
        )
    try:
        return await store.add_all(_users(path, on_read), last_id=_last_id(path))
    except (UserIdTaken, UsernameTaken) as error:
        raise ImportRejected([_where_taken(path, error)]) from None


def _users(path: Path, on_read: Callable[[int], object]) -> Iterator[User]:
    """The file's users, read once; its bad lines, if any, end it with `ImportRejected`."""
    validator = _line_validator()
    errors: list[str] = []
    highest, last_id_line = 0, 0
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            on_read(len(line))
            if not line.strip():
                continue
            if last_id_line:
                errors.append(f"line {last_id_line}: {LAST_ID} belongs on the last line")
                last_id_line = 0
            try:
                record = _parsed(line)
                if _is_last_id(record):
                    last_id_line, value = number, record[LAST_ID]
                    if not _is_id_count(value):
                        raise ValueError(f"{LAST_ID} is a whole number from 0 to {MAX_ID}")
                    if value < highest:
                        raise ValueError(f"{LAST_ID} {value} is below the id {highest}")
                    continue
                user = _user(_valid_record(record, validator))
            except ValueError as error:
                errors.append(f"line {number}: {error}")
                continue
            highest = max(highest, user.id)
            if not errors:
                yield user
    if errors:
        shown = errors[:SHOWN_ERRORS]
        if len(errors) > SHOWN_ERRORS:
            shown.append(f"... and {len(errors) - SHOWN_ERRORS} more bad lines")
        raise ImportRejected(shown)


def _last_id(path: Path) -> int:
    """The `last_id` of the file's last line, or 0 without one (or with a bad one, which
    `_users` names): read first, for the store."""
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - TAIL_BYTES))
        lines = [line for line in file.read().splitlines() if line.strip()]
    try:
        record = _parsed(lines[-1]) if lines else None
    except ValueError:  # `_users` names the line
        return 0
    value = record[LAST_ID] if _is_last_id(record) else None
    return value if _is_id_count(value) else 0


def _is_last_id(record: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a parsed line is the file's last one, `{"last_id": N}`."""
    return isinstance(record, dict) and set(record) == {LAST_ID}


def _is_id_count(value: Any) -> TypeGuard[int]:
    """Whether a `last_id` is one: a whole number from 0 to `MAX_ID`."""
    return type(value) is int and 0 <= value <= MAX_ID


def _parsed(line: bytes) -> Any:
    try:
        return json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error.msg} at column {error.colno}") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _valid_record(record: Any, validator: Draft4Validator) -> dict[str, Any]:
    problems = sorted(
        f"/{'/'.join(map(str, error.instance_path))}: {error.message}"
        if error.instance_path
        else error.message
        for error in validator.iter_errors(record)
    )
    if problems:
        raise ValueError("; ".join(problems))
    return dict(record)


def _line(user: User) -> dict[str, Any]:
    return present(user) | {"version": user.version}


def _user(record: dict[str, Any]) -> User:
    return User(
        id=record["id"],
        username=record["username"],
        created_at=_in_utc(record, "created_at"),
        updated_at=_in_utc(record, "updated_at"),
        version=record.get("version", 1),
    )


def _in_utc(record: dict[str, Any], field: str) -> datetime:
    try:
        return datetime.fromisoformat(record[field]).astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
        raise ValueError(f"/{field}: {record[field]!r} is outside years 1 to 9999 in UTC") from None


def _where_taken(path: Path, error: UserIdTaken | UsernameTaken) -> str:
    """The store refused an id or username: name the line, and an earlier one that has it."""

    def names_it(line: bytes) -> bool:
        """Whether a user's line has the id or name (the store refused before reading on: a
        later line may be blank, bad, or the last id)."""
        try:
            record = _parsed(line)
        except ValueError:
            return False
        if not isinstance(record, dict) or _is_last_id(record):
            return False
        if isinstance(error, UserIdTaken):
            return bool(record.get("id") == error.user_id)
        return str(record.get("username", "")).lower() == error.username.lower()

    with path.open("rb") as lines:
        numbers = [number for number, line in enumerate(lines, 1) if names_it(line)]
    where = f"line {numbers[-1]}: {error}"
    return where + (f" (line {numbers[0]} has it too)" if len(numbers) > 1 else "")


def _line_validator() -> Draft4Validator:
    """The spec's `User` schema and a `version`, as Connexion checks OpenAPI 3.0 schemas (JSON
    Schema draft 4)."""
    components = yaml.safe_load(SPEC.read_text())["components"]
    user = components["schemas"]["User"]
    version = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}
    schema = user | {"properties": user["properties"] | {"version": version}}
    return Draft4Validator(schema | {"components": components}, validate_formats=True)
