"""FlaskApp's WSGI threads run the coroutine handlers each on a loop of its own."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from users_api.resolver import ThreadLoops


async def running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_each_thread_keeps_one_loop_and_close_closes_them() -> None:
    loops = ThreadLoops()
    first = loops.run(running_loop())
    assert loops.run(running_loop()) is first
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(lambda: loops.run(running_loop())).result()
    assert other is not first
    loops.close()
    assert first.is_closed() and other.is_closed()
    # A thread that serves after a close gets a new loop, not a closed one.
    again = loops.run(running_loop())
    assert not again.is_closed()
    loops.close()
    assert again.is_closed()


def test_close_leaves_a_loop_that_is_still_running_a_call() -> None:
    loops = ThreadLoops()
    closed: list[BaseException | None] = []

    async def close_from_inside() -> None:
        try:
            loops.close()
        except RuntimeError as error:
            closed.append(error)
        else:
            closed.append(None)

    loops.run(close_from_inside())
    assert closed == [None]
    loops.close()
