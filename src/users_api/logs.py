"""Log lines on stdout: JSON for a log collector, text for a person at a terminal.

Every line logged while a request is answered carries its request id. The access log's line,
one a request, is written by `AccessLines` rather than as a `logging` record, in the same
formats.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from asgi_correlation_id import correlation_id

TEXT_PREFIX = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: "
ACCESS_LOGGER = "users.access"
"""The logger name the access log's lines carry."""


def resolved_format(log_format: str) -> str:
    """`json` or `text`; `auto` is text on a terminal."""
    if log_format == "auto":
        return "text" if sys.stdout.isatty() else "json"
    return log_format


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn to apply in the server and in each worker."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {
                "()": "asgi_correlation_id.CorrelationIdFilter",
                "default_value": "-",
            }
        },
        "formatters": {
            "json": {"()": "users_api.logs.JsonFormatter"},
            "text": {
                "()": "users_api.logs.TextFormatter",
                "fmt": f"{TEXT_PREFIX}%(message)s",
            },
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": resolved_format(log_format),
                "filters": ["request_id"],
            },
        },
        "root": {"handlers": ["stdout"], "level": "INFO"},
        # uvicorn's own loggers come through the handler above; its access log is replaced by
        # users_api.middleware.access_log's, which knows the operation.
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


class JsonFormatter(logging.Formatter):
    """One JSON object a line: level, logger, message and request id, then what the call's
    `extra` added, any exception, and the time (RFC 3339, UTC).

    The access log's lines, written by `AccessLines`, have the same fields.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = {name: value for name, value in vars(record).items() if name not in _OWN}
        if record.exc_info and not record.exc_text:  # cached, as `logging.Formatter` does
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields["exc_info"] = record.exc_text
        if record.stack_info:
            fields["stack_info"] = self.formatStack(record.stack_info)
        return _json_line(
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "correlation_id", None),
            fields,
            datetime.fromtimestamp(record.created, UTC),
        )


_OWN = frozenset(
    {*vars(logging.makeLogRecord({})), "message", "asctime", "correlation_id", "color_message"}
)
"""A record's own attributes, a formatter's, and uvicorn's `color_message` (an ANSI-coloured
copy of its message, for terminals); any other came from the call's `extra`."""


def _json_line(
    level: str,
    logger: str,
    message: str,
    request_id: str | None,
    fields: dict[str, Any],
    moment: datetime,
) -> str:
    """The JSON line of every log line, the access log's included: its fields in this order."""
    line: dict[str, Any] = {
        "level": level,
        "logger": logger,
        "message": message,
        "request_id": request_id,
        **fields,
        "time": moment,
    }
    return orjson.dumps(line, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()


def _as_text(value: object) -> str:
    """What JSON has no type for, as text; one that cannot say what it is, by its type's name:
    a line is never lost to what a caller put in it."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


class AccessLines:
    """The access log: a line on stdout for each request, as `JsonFormatter` or, for a person
    at a terminal, `TextFormatter` would write it under the logger `ACCESS_LOGGER`.

    Written directly, not as a `logging` record: making, handling and formatting a record for
    every request cost more than all the rest of the access log and its metrics.
    """

    def __init__(self, log_format: str) -> None:
        self._text = None
        if resolved_format(log_format) == "text":
            # A person reads the request's own path; a JSON line has it in its `path` field,
            # and its message names the operation's template, never a path a client made up.
            self._text = TextFormatter(f"{TEXT_PREFIX}%(method)s %(path)s %(status)s")

    def write(self, level: int, message: str, fields: dict[str, Any]) -> None:
        level_name = logging.getLevelName(level)
        if self._text is None:
            line = _json_line(
                level_name,
                ACCESS_LOGGER,
                message,
                correlation_id.get("-"),
                fields,
                datetime.now(UTC),
            )
        else:
            line = self._text.format(
                logging.makeLogRecord(
                    {
                        "name": ACCESS_LOGGER,
                        "levelno": level,
                        "levelname": level_name,
                        "msg": message,
                        "correlation_id": correlation_id.get("-"),
                        **fields,
                    }
                )
            )
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except Exception:  # a closed or broken stdout: the line is lost, never the request
            pass


class TextFormatter(logging.Formatter):
    """Lines for a terminal, where a request's path, which may hold any character, can neither
    end a line (and forge the next) nor send the terminal an escape: control characters are
    written as `\\x..`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPED)


_ESCAPED = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
