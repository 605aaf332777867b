"""`LocalWindows` counts as `limits`' sliding window counter does over its memory storage."""

from __future__ import annotations

import asyncio
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st
from limits import RateLimitItemPerSecond
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from users_api.middleware import rate_limits
from users_api.middleware.rate_limits import LocalWindows

START = 1_800_000_000.0
STEPS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=2_500),  # ms since the last step
        st.sampled_from(["10.0.0.1", "10.0.0.2"]),
        st.sampled_from(["hit", "stats"]),
    ),
    max_size=60,
)


@given(
    amount=st.integers(min_value=1, max_value=6),
    seconds=st.sampled_from([1, 2, 3]),
    start_ms=st.integers(min_value=0, max_value=3_000),
    steps=STEPS,
)
def test_local_windows_answer_as_limits_memory_storage_does(
    amount: int, seconds: int, start_ms: int, steps: list[tuple[int, str, str]]
) -> None:
    item = RateLimitItemPerSecond(amount, seconds)
    now = [START + start_ms / 1000]

    async def run() -> tuple[list[object], list[object]]:
        stock = SlidingWindowCounterRateLimiter(storage_from_string("async+memory://"))
        local = LocalWindows()
        answers: tuple[list[object], list[object]] = ([], [])
        for elapsed_ms, address, action in steps:
            now[0] += elapsed_ms / 1000
            for windows, answered in zip((stock, local), answers, strict=True):
                if action == "hit":
                    answered.append(await windows.hit(item, "address", address))
                else:
                    answered.append(tuple(await windows.get_window_stats(item, "address", address)))
        return answers

    with mock.patch("time.time", lambda: now[0]):
        stock, local = asyncio.run(run())
    assert local == stock


def test_counts_of_windows_long_past_are_forgotten() -> None:
    item = RateLimitItemPerSecond(5, 1)
    now = [START]

    async def run() -> LocalWindows:
        local = LocalWindows()
        for n in range(100):
            assert await local.hit(item, "address", f"10.0.0.{n}")
        now[0] += rate_limits.SWEEP_EVERY_SECONDS + 2
        assert await local.hit(item, "address", "10.0.1.1")
        return local

    with mock.patch("time.time", lambda: now[0]):
        local = asyncio.run(run())
    assert [identifiers for _, identifiers in local._counts] == [("address", "10.0.1.1")]
