"""An asyncio event loop on virtual time, to run days of simulation (and agent) in seconds.

``VirtualTimeLoop.time()`` returns a virtual clock that starts at 0. When the loop has nothing to
run and would wait for its next timer, it polls its file descriptors without waiting; if none is
ready it jumps the clock to that timer instead of sleeping. With no timer at all it blocks for
real, waiting for I/O (another thread, a pipe, a socket). Everything built on loop.time() and
call_at (asyncio.sleep, wait_for, asyncio.timeout, TaskGroup) therefore works unchanged.

Executor jobs (``run_in_executor``, hence ``asyncio.to_thread``) take no virtual time: while one is
pending, the loop waits for it in real time (in short polls) instead of jumping the clock, so a
thread doing a sysfs read cannot be overtaken by hours of virtual timers. A thread that never ends
therefore freezes virtual time. Subprocess and network waits are not covered: a virtual timer may
fire before their real I/O arrives.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
EXECUTOR_POLL_S = 0.005  # real seconds per poll while an executor job is pending


class _VirtualSelector:
    """Wraps the loop's real selector; turns timed waits into clock jumps."""

    def __init__(self, real: selectors.BaseSelector, advance: Callable[[float], None],
                 executor_busy: Callable[[], bool]) -> None:
        self._real = real
        self._advance = advance
        self._executor_busy = executor_busy

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            return self._real.select(timeout)
        events = self._real.select(0)
        if events:
            return events
        if self._executor_busy():
            return self._real.select(min(timeout, EXECUTOR_POLL_S))
        self._advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """SelectorEventLoop whose clock is virtual (seconds, from 0.0); see the module docstring."""

    def __init__(self) -> None:
        self._virtual_now_s = 0.0
        self._executor_jobs = 0
        selector = _VirtualSelector(selectors.DefaultSelector(), self._advance,
                                    lambda: self._executor_jobs > 0)
        super().__init__(selector)  # type: ignore[arg-type]

    def time(self) -> float:
        """Virtual seconds since the loop was created."""
        return self._virtual_now_s

    def _advance(self, dt_s: float) -> None:
        self._virtual_now_s += dt_s

    def run_in_executor(self, executor: concurrent.futures.Executor | None,
                        func: Callable[[*Ts], T], *args: *Ts) -> asyncio.Future[T]:
        """As SelectorEventLoop.run_in_executor; the job is counted so the clock waits for it."""
        future = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        future.add_done_callback(self._executor_job_done)
        return future

    def _executor_job_done(self, _future: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh VirtualTimeLoop, like asyncio.run: remaining tasks are
    cancelled, async generators and the default executor shut down, and the loop closed."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(coro)


class VirtualTimeLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Event loop policy whose new loops are VirtualTimeLoops (for pytest-asyncio's
    ``event_loop_policy`` fixture, or asyncio.set_event_loop_policy in a benchmark)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh VirtualTimeLoop."""
        return VirtualTimeLoop()
