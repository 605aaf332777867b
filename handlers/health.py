"""Liveness."""

from __future__ import annotations

from typing import Any


def check_health() -> tuple[dict[str, Any], int, dict[str, str]]:
    return {"status": "ok"}, 200, {"Content-Type": "application/json"}
