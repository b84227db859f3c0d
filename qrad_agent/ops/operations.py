"""Long operations (autotune, fire-test, identify) as tasks the supervisor owns.

A command starts an operation through `Operations.start`; the task is held here, not by the caller, so
nothing runs unowned. `Operations.run` is the supervised ``operations`` component: when the supervisor stops
it (first, before power goes to its floor), every running operation is cancelled and awaited, so their
clean-up (autotune restoring the demand it held, a fire test clearing its condition) has finished before the
floor is written; the power authority's stop latch refuses anything above the floor from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from qrad_agent.errors import Refused

log = structlog.get_logger(component="operations")

CANCEL_TIMEOUT_S = 2.0
"""Longest wait for the operations' clean-up on stop (s); the supervisor's whole stop budget is 5 s."""


class Operations:
    """Owner of the long operations' tasks, one per name at a time."""

    def __init__(self) -> None:
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.stopped = False

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as the operation ``name``. Raises Refused if one of that name runs or the agent is
        stopping (the coroutine is closed unrun)."""
        running = self.tasks.get(name)
        if self.stopped or (running is not None and not running.done()):
            coro.close()
            raise Refused(f"{name}: " + ("the agent is stopping" if self.stopped else "already running"))
        task = asyncio.get_running_loop().create_task(coro, name=f"op:{name}")
        self.tasks[name] = task
        task.add_done_callback(self._done)
        return task

    def running(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done()

    def _done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("operation failed", operation=task.get_name(), error=repr(task.exception()))

    async def run(self) -> None:
        """Until cancelled; then cancel and await every running operation."""
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Refuse new operations, cancel the running ones and wait for their clean-up (bounded)."""
        self.stopped = True
        running = [t for t in self.tasks.values() if not t.done()]
        for task in running:
            task.cancel()
        if running:
            _, pending = await asyncio.wait(running, timeout=CANCEL_TIMEOUT_S)
            for task in pending:
                log.error("operation did not end in time", operation=task.get_name())
