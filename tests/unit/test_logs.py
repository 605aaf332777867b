"""The log formats: a JSON line's fields, and the access log's lines in either format."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgi_correlation_id import correlation_id

from users_api.logs import AccessLines, JsonFormatter


def record(**attributes: object) -> logging.LogRecord:
    """A record as `logger.info("%s %s", "GET", 200, extra=...)` makes, after the id filter
    (the names are the access log's, whose fields `AccessLines` writes as these would be)."""
    made = logging.getLogger("users.access").makeRecord(
        "users.access", logging.INFO, "app.py", 7, "%s %s", ("GET", 200), None, extra=attributes
    )
    made.correlation_id = "trace-1"
    return made


def test_a_json_line_holds_the_message_request_id_and_extra_fields() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    line = json.loads(JsonFormatter().format(record(status=200, path="/users/{user_id}")))
    written = datetime.fromisoformat(line.pop("time"))
    assert before <= written <= datetime.now(UTC)
    assert written.utcoffset() is not None and not written.utcoffset()
    assert line == {
        "level": "INFO",
        "logger": "users.access",
        "message": "GET 200",
        "request_id": "trace-1",
        "status": 200,
        "path": "/users/{user_id}",
    }


def test_a_json_line_holds_the_traceback_and_any_value_as_text() -> None:
    try:
        raise ValueError("secret-free detail")
    except ValueError:
        failed = record(where=Path("/srv"), color_message="\x1b[31mGET\x1b[0m")
        failed.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(failed))
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].endswith("ValueError: secret-free detail")
    assert line["where"] == "/srv"
    assert "color_message" not in line  # uvicorn's copy for terminals


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


def test_a_json_line_is_written_whatever_the_call_put_in_it() -> None:
    odd = record(counts={1: "one"}, thing=Unprintable())
    odd.stack_info = "Stack (most recent call last)"
    line = json.loads(JsonFormatter().format(odd))
    assert line["counts"] == {"1": "one"}
    assert line["thing"] == "<Unprintable>"
    assert line["stack_info"] == "Stack (most recent call last)"


def test_a_record_no_request_id_filter_saw_has_a_null_request_id() -> None:
    unfiltered = logging.getLogger("users").makeRecord(
        "users", logging.WARNING, "app.py", 7, "started", (), None
    )
    line = json.loads(JsonFormatter().format(unfiltered))
    assert (line["request_id"], line["level"], line["message"]) == (None, "WARNING", "started")


ACCESS_FIELDS = {"method": "GET", "path": "/users/{user_id}", "status": 404, "key": None}


@pytest.fixture
def request_id() -> Iterator[str]:
    """The id of a request being answered, as the request id's middleware sets it."""
    token = correlation_id.set("trace-7")
    yield "trace-7"
    correlation_id.reset(token)


def test_an_access_line_in_json_has_the_fields_a_json_formatter_writes(
    capsys: pytest.CaptureFixture[str], request_id: str
) -> None:
    AccessLines("json").write(logging.INFO, "GET /users/{user_id} 404", ACCESS_FIELDS)
    written = json.loads(capsys.readouterr().out)
    as_record = json.loads(JsonFormatter().format(record(**ACCESS_FIELDS)))
    assert written.keys() == as_record.keys()
    assert datetime.fromisoformat(written.pop("time")).utcoffset() == timedelta(0)
    assert written == {
        "level": "INFO",
        "logger": "users.access",
        "message": "GET /users/{user_id} 404",
        "request_id": request_id,
        **ACCESS_FIELDS,
    }


def test_an_access_line_in_text_escapes_what_the_path_holds(
    capsys: pytest.CaptureFixture[str], request_id: str
) -> None:
    forged = "/x\n2026-11-29 INFO forged\x1b[31m"
    fields = ACCESS_FIELDS | {"path": forged}
    AccessLines("text").write(logging.WARNING, "GET (no operation) 404", fields)
    written = capsys.readouterr().out
    assert written.count("\n") == 1
    assert written.endswith(
        " WARNING [trace-7] users.access: GET /x\\x0a2026-11-29 INFO forged\\x1b[31m 404\n"
    )
