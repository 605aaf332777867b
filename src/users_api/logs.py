"""Log lines on stdout: JSON for a log collector, text for a person at a terminal.

Every line logged while a request is answered carries its request id.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_PREFIX = "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: "
LEFT_OUT = {"pathname", "filename", "module", "lineno", "funcName"}
LEFT_OUT |= {"thread", "threadName", "process", "processName"}
"""What `lighten_log_records` leaves out of each record, and no format here writes."""


def lighten_log_records() -> None:
    """Records without `LEFT_OUT`: the caller's file, line and function, which `logging` finds
    by walking the stack on each call, and the thread and process: the access log makes a record
    for every request. The switches are the logging HOWTO's (its "Optimization" section)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def log_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn to apply in the server and in each worker."""
    if log_format == "auto":
        log_format = "text" if sys.stdout.isatty() else "json"
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
            # A person reads the request's own path; a JSON line has it in its `path` field, and
            # its message names the operation's template, never a path a client made up.
            "access_text": {
                "()": "users_api.logs.TextFormatter",
                "fmt": f"{TEXT_PREFIX}%(method)s %(path)s %(status)s",
            },
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": log_format,
                "filters": ["request_id"],
            },
            "access": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "access_text" if log_format == "text" else "json",
                "filters": ["request_id"],
            },
        },
        "root": {"handlers": ["stdout"], "level": "INFO"},
        # uvicorn's own loggers come through the handler above; its access log is replaced by
        # users_api.middleware.access_log's, which knows the operation.
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
            "users.access": {"handlers": ["access"], "propagate": False},
        },
    }


class JsonFormatter(logging.Formatter):
    """One JSON object a line: level, logger, message and request id, then what the call's
    `extra` added, any exception, and the time (RFC 3339, UTC).

    Written for these fields alone, with orjson's encoder: the access log writes a line for
    every request, and a general-purpose formatter's generality cost more than the line.
    """

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "correlation_id", None),
        }
        line.update((name, value) for name, value in vars(record).items() if name not in _OWN)
        if record.exc_info and not record.exc_text:  # cached, as `logging.Formatter` does
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        line["time"] = datetime.fromtimestamp(record.created, UTC)
        return orjson.dumps(line, default=_as_text, option=orjson.OPT_NON_STR_KEYS).decode()


_OWN = frozenset(
    {*vars(logging.makeLogRecord({})), "message", "asctime", "correlation_id"}
    | {"color_message"}  # uvicorn's ANSI-coloured copy of its message, for terminals
)
"""A record's own attributes, or a formatter's; any other came from the call's `extra`."""


def _as_text(value: object) -> str:
    """What JSON has no type for, as text; one that cannot say what it is, by its type's name:
    a line is never lost to what a caller put in it."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"


class TextFormatter(logging.Formatter):
    """Lines for a terminal, where a request's path, which may hold any character, can neither
    end a line (and forge the next) nor send the terminal an escape: control characters are
    written as `\\x..`."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_ESCAPED)


_ESCAPED = {code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]}
