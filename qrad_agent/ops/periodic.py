"""The self-test, run by the agent itself: first SELFTEST_FIRST_S after start, then every SELFTEST_PERIOD_S.

A failing check is an event (logged at error, with the checks that failed) and makes the status degraded
(``status()["failed"]``) until a later run passes; a technician's `qrad-agent selftest` runs the same checks
on demand. The code hash is taken at start, so a later run sees installed sources that changed under the
running agent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from qrad_agent.ops.selftest import Check, code_hash, run_selftest
from qrad_agent.parts import HeaterParts

log = structlog.get_logger(component="selftest")

SELFTEST_FIRST_S = 600.0
"""First run after start (s): the loop-timing check needs a few control periods to judge."""
SELFTEST_PERIOD_S = 3600.0
"""Then every hour (s)."""


class PeriodicSelftest:
    """Owned by the supervisor as the ``selftest`` component; ``parts`` is what `run_selftest` inspects (its
    ``run.code_hash_at_start`` is set here, at start)."""

    def __init__(self, parts: HeaterParts) -> None:
        self.parts = parts
        self.runs = 0
        self.failed: list[str] = []
        self.last_run_s: float | None = None
        self.enabled = False  # `qrad-agent run` turns it on; simulations and in-process tests may

    def check_once(self, code_hash_now: str | None = None) -> list[Check]:
        """Run every check now (``code_hash_now``: see `run_selftest`); record and log the failures."""
        checks = run_selftest(self.parts, code_hash_now)
        failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
        if failed and failed != self.failed:
            log.error("selftest failed", failed=failed)
        elif not failed and self.failed:
            log.warning("selftest passes again")
        self.failed, self.runs = failed, self.runs + 1
        self.last_run_s = asyncio.get_running_loop().time()
        return checks

    async def run(self) -> None:
        """Until cancelled."""
        self.parts.run.code_hash_at_start = await asyncio.to_thread(code_hash)
        await asyncio.sleep(SELFTEST_FIRST_S)
        while True:
            self.check_once(await asyncio.to_thread(code_hash))  # file reads off the loop, the checks on it
            await asyncio.sleep(SELFTEST_PERIOD_S)

    def status(self) -> dict[str, Any]:
        """Plain JSON: runs so far, the failed checks of the last run ([] : passed or not run yet)."""
        return {"runs": self.runs, "failed": list(self.failed)}
