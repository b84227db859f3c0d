"""VirtualTimeLoop: timers jump instead of waiting; asyncio's timeout tools work on it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator

import pytest

from qrad_hwsim.virtual_time import VirtualTimeLoop, run_virtual

WEEK_S = 7 * 86400.0


def test_a_week_of_ten_second_sleeps_is_fast() -> None:
    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        t0, n = loop.time(), 0
        while loop.time() - t0 < WEEK_S:
            await asyncio.sleep(10.0)
            n += 1
        return loop.time() - t0, n

    wall0 = time.perf_counter()
    elapsed_s, iterations = run_virtual(main())
    wall_s = time.perf_counter() - wall0
    assert iterations == 60_480
    assert elapsed_s == pytest.approx(WEEK_S, abs=1e-3)
    assert wall_s / iterations * 10_000 < 1.0  # well under a second per 10k iterations


def test_wait_for_and_timeout_fire_on_virtual_time() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        marks = []
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(3600.0), timeout=5.0)
        marks.append(loop.time())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30.0):
                await asyncio.Event().wait()
        marks.append(loop.time())
        assert await asyncio.wait_for(asyncio.sleep(1.0, result="done"), timeout=2.0) == "done"
        marks.append(loop.time())
        return marks

    assert run_virtual(main()) == pytest.approx([5.0, 35.0, 36.0])


def test_task_group_runs_tasks_concurrently() -> None:
    async def main() -> tuple[float, list[int]]:
        loop = asyncio.get_running_loop()
        order: list[int] = []

        async def sleeper(delay_s: float, tag: int) -> None:
            await asyncio.sleep(delay_s)
            order.append(tag)

        async with asyncio.TaskGroup() as group:
            for tag, delay_s in enumerate((300.0, 100.0, 200.0)):
                group.create_task(sleeper(delay_s, tag))
        return loop.time(), order

    assert run_virtual(main()) == (pytest.approx(300.0), [1, 2, 0])


def test_executor_jobs_take_no_virtual_time() -> None:
    async def main() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        ticker = asyncio.create_task(asyncio.sleep(3600.0))
        result = await asyncio.wait_for(asyncio.to_thread(lambda: time.sleep(0.05) or 7), timeout=1.0)
        ticker.cancel()
        return result, loop.time()

    result, now_s = run_virtual(main())
    assert result == 7
    assert now_s < 1e-6


def test_blocks_for_real_io_when_no_timer_is_pending() -> None:
    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        threading.Timer(0.05, loop.call_soon_threadsafe, (future.set_result, "woken")).start()
        return await future, loop.time()

    assert run_virtual(main()) == ("woken", 0.0)


def test_run_virtual_cleans_up() -> None:
    closed: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def ticks() -> AsyncIterator[int]:
        try:
            while True:
                await asyncio.sleep(1.0)
                yield 1
        finally:
            closed.append("agen")

    async def forever() -> None:
        try:
            await asyncio.sleep(1e9)
        finally:
            closed.append("task")

    async def main() -> int:
        loops.append(asyncio.get_running_loop())
        asyncio.create_task(forever())
        gen = ticks()
        return await anext(gen)

    assert run_virtual(main()) == 1
    assert sorted(closed) == ["agen", "task"]
    assert isinstance(loops[0], VirtualTimeLoop) and loops[0].is_closed()


def test_policy_makes_virtual_loops() -> None:
    from qrad_hwsim.virtual_time import VirtualTimeLoopPolicy

    loop = VirtualTimeLoopPolicy().new_event_loop()
    try:
        assert isinstance(loop, VirtualTimeLoop)
        assert loop.run_until_complete(asyncio.sleep(86400.0, result="slept")) == "slept"
        assert loop.time() == pytest.approx(86400.0)
    finally:
        loop.close()
