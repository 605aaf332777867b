"""How big this run makes the tests that grow with their size: load, soak and race tests, and
how many examples hypothesis tries. `make check`, the loop run every minute, sets
USERS_TEST_PROFILE=check and gets each at a smaller size; `make test` (and plain `pytest`) runs
the `full` size. Each behaviour is tested either way; the full size searches harder."""

from __future__ import annotations

import os
from typing import TypeVar

PROFILES = ("full", "check")
PROFILE = os.environ.get("USERS_TEST_PROFILE", "full")
if PROFILE not in PROFILES:
    raise ValueError(f"USERS_TEST_PROFILE={PROFILE!r}: one of {', '.join(PROFILES)}")

N = TypeVar("N", int, float)


def scaled(full: N, check: N) -> N:
    """`full` in the `full` profile, `check` in `make check`'s."""
    return check if PROFILE == "check" else full
