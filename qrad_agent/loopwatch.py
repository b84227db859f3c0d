"""How long the agent's event loop was held up: a task that asks to wake every PERIOD_S and measures how
late it wakes (loop clock). The longest stall and the recent ones go into the status, so a technician and
benchmarks see what blocks the loop (a synchronous call, a slow disk) without a profiler.
"""

from __future__ import annotations

import asyncio
from collections import deque

import structlog

log = structlog.get_logger(component="loopwatch")

PERIOD_S = 0.1
STALL_REPORT_S = 1.0
"""A wake-up later than this is logged as a warning: the control loop and the safety checks waited that long."""


class LoopWatch:
    """``run`` until cancelled; ``status()`` gives the longest stall (s) since start and the last few."""

    def __init__(self) -> None:
        self.max_stall_s = 0.0
        self.recent: deque[float] = deque(maxlen=10)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due_s = loop.time() + PERIOD_S
            await asyncio.sleep(PERIOD_S)
            stall_s = max(0.0, loop.time() - due_s)
            if stall_s > self.max_stall_s:
                self.max_stall_s = stall_s
            if stall_s >= STALL_REPORT_S:
                self.recent.append(round(stall_s, 3))
                log.warning("event loop stalled", stall_s=round(stall_s, 3))

    def status(self) -> dict[str, object]:
        """Plain JSON: the longest stall and the recent ones over STALL_REPORT_S (s)."""
        return {"max_stall_s": round(self.max_stall_s, 3), "recent_stalls_s": list(self.recent)}
