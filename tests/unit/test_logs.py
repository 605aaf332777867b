"""The log formats: the JSON line's fields, and what `lighten_log_records` leaves out."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from users_api.logs import LEFT_OUT, JsonFormatter, log_config


def record(**attributes: object) -> logging.LogRecord:
    """A record as `logger.info("%s %s", "GET", 200, extra=...)` makes, after the id filter."""
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


def test_no_format_writes_what_lightened_records_leave_out() -> None:
    """A field added to a format from `LEFT_OUT` would be empty: take it out of `LEFT_OUT`."""
    assert not LEFT_OUT & json.loads(JsonFormatter().format(record())).keys()
    formatters = log_config("json")["formatters"]
    for name in ("text", "access_text"):
        written = formatters[name]["fmt"]
        assert not [field for field in LEFT_OUT if f"%({field})" in written]
