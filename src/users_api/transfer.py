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
import re
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from jsonschema_rs import Draft4Validator

from users_api.app import SPEC
from users_api.handlers.users import present
from users_api.store import (
    MAX_ID,
    MAX_VERSION,
    User,
    UsernameTaken,
    UsersTaken,
    UserStore,
)

PAGE = 1000
SHOWN_ERRORS = 20
"""How many of the lines it cannot keep an import names (the first); it counts them all."""
LONGEST_LINE = 64 * 1024
"""Far longer than any user's line: a longer one is refused unread, however large."""
QUOTED = 50
"""How many characters of a value a message quotes at most..."""
LONGEST_MESSAGE = 500
"""... and how long what it says of one line is at most."""
LAST_ID = "last_id"
"""The one member of the file's last line."""
TAIL_BYTES = 64 * 1024
"""How much of the file's end is read for its last line: blank lines may follow it."""


class ImportRejected(Exception):
    """The file has lines that cannot be kept; nothing was imported. `errors` names the first
    `SHOWN_ERRORS` lines and what is wrong with each, and says how many more there are."""

    def __init__(self, errors: list[str], count: int) -> None:
        super().__init__(f"{count} bad line(s); nothing was imported")
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
                sink.writelines(
                    json.dumps(present(user) | {"version": user.version}) + "\n" for user in page
                )
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

    Every line is checked, against the spec and against the store (a taken id or name), so
    `ImportRejected` names all bad ones, up to `SHOWN_ERRORS`, not just the first; `on_read` is
    told how many bytes each line had, for a progress bar. `path` is a file, not a pipe: its
    last line is read first, and with a bad line, the file is read again to check the rest.
    """
    if not path.is_file():
        raise OSError(
            f"{path} is not a file (import reads it more than once): nothing was imported"
        )
    reading = _Reading()
    try:
        users = _unless_bad(_users(path, on_read, reading), reading)
        return await store.add_all(users, last_id=_last_id(path))
    except _BadLines:
        # The store stopped at the first bad line: it checks the good ones now, adding none.
        checking = _Reading()
        try:
            await store.add_all(_users(path, lambda _: None, checking), check_only=True)
        except UsersTaken as taken:
            reading.found_taken(taken, checking.lines)
    except UsersTaken as taken:
        reading.found_taken(taken, reading.lines)
    raise reading.rejected()


class _BadLines(Exception):
    """Raised through the store, so that it adds none of the file's users."""


class _Reading:
    """What reading a file found: the line of each user handed to the store, by place, and the
    lines it cannot keep, up to `SHOWN_ERRORS` of each kind, with how many in all."""

    def __init__(self) -> None:
        self.lines = array("Q")
        self.bad: list[tuple[int, str]] = []
        self.count = 0

    def refuse(self, number: int, why: str) -> None:
        self.count += 1
        if len(self.bad) < SHOWN_ERRORS:
            self.bad.append((number, why))

    def found_taken(self, taken: UsersTaken, lines: array[int]) -> None:
        for place, clash in taken.named:
            why = str(clash)
            if isinstance(clash, UsernameTaken) and clash.holder is not None:
                why += f" (user {clash.holder} has it)"
            self.bad.append((lines[place], why))
        self.count += taken.count

    def rejected(self) -> ImportRejected:
        shown = [f"line {number}: {why}" for number, why in sorted(self.bad)[:SHOWN_ERRORS]]
        if self.count > len(shown):
            shown.append(
                f"... and {self.count - len(shown)} more (an import names the first "
                f"{SHOWN_ERRORS} lines it cannot keep)"
            )
        return ImportRejected(shown, self.count)


def _unless_bad(users: Iterable[User], reading: _Reading) -> Iterator[User]:
    """`users`, until a line is bad; the rest of the file is read for its errors only."""
    for user in users:
        if not reading.count:
            yield user
    if reading.count:
        raise _BadLines()


def _users(path: Path, on_read: Callable[[int], object], reading: _Reading) -> Iterator[User]:
    """The users of the file's good lines, read once; its bad lines go to `reading`."""
    validator = _line_validator()
    highest, last_id_line = 0, 0
    with path.open("rb") as source:
        for number, (line, size) in enumerate(_lines(source), start=1):
            on_read(size)
            if line is None:
                reading.refuse(number, f"longer than {LONGEST_LINE} bytes, as no user's line is")
                continue
            if not line.strip():
                continue
            if last_id_line:
                reading.refuse(last_id_line, f"{LAST_ID} belongs on the last line")
                last_id_line = 0
            try:
                record = _parsed(line)
                if (value := _last_id_of(record)) is not None:
                    last_id_line = number
                    if value < highest:
                        raise ValueError(f"{LAST_ID} {value} is below the id {highest}")
                    continue
                user = _user(_valid_record(record, validator))
            except ValueError as error:
                reading.refuse(number, _shortened(str(error)))
                continue
            highest = max(highest, user.id)
            reading.lines.append(number)
            yield user


def _lines(source: BinaryIO) -> Iterator[tuple[bytes | None, int]]:
    """Each line and its size in bytes; None for a line over `LONGEST_LINE`, which is skipped
    a piece at a time, so that a huge value never sits in memory whole."""
    while line := source.readline(LONGEST_LINE + 1):
        size = len(line)
        if size <= LONGEST_LINE or line.endswith(b"\n"):
            yield line, size
            continue
        while not line.endswith(b"\n") and (line := source.readline(LONGEST_LINE)):
            size += len(line)
        yield None, size


LONG_STRING = re.compile(rf'"((?:[^"\\]|\\.){{{QUOTED}}})(?:[^"\\]|\\.)+"')
"""A JSON string, as the validator quotes a value, of over `QUOTED` characters."""
LONG_NAME = re.compile(rf"'([^']{{{QUOTED}}})[^']+'")
"""A property's name, as the validator quotes it, of over `QUOTED` characters."""
LONG_WORD = re.compile(rf"([^\s\"']{{{QUOTED}}})[^\s\"']+")
"""Anything else of over `QUOTED` characters without a space or a quote: a number, say."""


def _shortened(message: str) -> str:
    """`message` with every value it quotes cut to its first `QUOTED` characters: a line's
    value may be 64 KiB."""
    message = LONG_STRING.sub(r'"\1..."', message)
    message = LONG_WORD.sub(r"\1...", LONG_NAME.sub(r"'\1...'", message))
    return message if len(message) <= LONGEST_MESSAGE else message[:LONGEST_MESSAGE] + "..."


def _last_id(path: Path) -> int:
    """The `last_id` of the file's last line, or 0 without one (or with a bad one, which
    `_users` names): read first, for the store."""
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - TAIL_BYTES))
        lines = [line for line in file.read().splitlines() if line.strip()]
    try:
        return _last_id_of(_parsed(lines[-1])) or 0
    except (IndexError, ValueError):  # no line, or a bad one (which `_users` names)
        return 0


def _last_id_of(record: Any) -> int | None:
    """The `last_id` of the file's last line, `{"last_id": N}`; None for any other line, and
    ValueError unless N is a whole number from 0 to `MAX_ID`."""
    if not (isinstance(record, dict) and set(record) == {LAST_ID}):
        return None
    value = record[LAST_ID]
    if type(value) is not int or not 0 <= value <= MAX_ID:
        raise ValueError(f"{LAST_ID} is a whole number from 0 to {MAX_ID}")
    return value


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


def _line_validator() -> Draft4Validator:
    """The spec's `User` schema and a `version`, as Connexion checks OpenAPI 3.0 schemas (JSON
    Schema draft 4)."""
    components = yaml.safe_load(SPEC.read_text())["components"]
    user = components["schemas"]["User"]
    version = {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}
    schema = user | {"properties": user["properties"] | {"version": version}}
    return Draft4Validator(schema | {"components": components}, validate_formats=True)
