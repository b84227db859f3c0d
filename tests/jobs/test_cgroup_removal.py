"""Removing a job's cgroup never blocks the event loop: a cgroup the kernel will not let go (here: one that
still holds a child cgroup, so rmdir fails with EBUSY, as it does while a killed process lingers) is retried in
a task the runner owns, on the loop's clock and bounded, and its job does not start again meanwhile. The
issue's fault: `time.sleep` of up to 5 s inside the agent's loop when a start failed or at setup."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from jobs_helpers import make_cfg, remove_tree
from qrad_agent.jobs import runner as runner_module
from qrad_agent.jobs.runner import JobRunner



def _busy_leftover(runner: JobRunner, job_id: str):
    """A job cgroup left by a previous run that rmdir refuses (it holds a child): (the cgroup, its child)."""
    runner.tree.setup()
    cgroup = runner.tree.create(job_id, 1, 64 << 20, 16)
    child = cgroup.dirs["cpu"] / "stuck"
    child.mkdir()
    return cgroup, child


async def _ticks_while(task: asyncio.Task, period_s: float = 0.01) -> int:
    """How many ``period_s`` sleeps the loop ran until ``task`` ended."""
    ticks = 0
    while not task.done():
        await asyncio.sleep(period_s)
        ticks += 1
    return ticks


async def test_a_cgroup_that_will_not_go_is_retried_off_the_loop_bounded_and_owned(base_dir, signing_key,
                                                                                    monkeypatch) -> None:
    monkeypatch.setattr(runner_module, "CGROUP_REMOVE_TIMEOUT_S", 1.0)
    runner = JobRunner(make_cfg(base_dir, signing_key))
    _, child = _busy_leftover(runner, "leftover-1")
    try:
        runner.setup()  # one try, no wait: the busy cgroup is handed to run()
        assert runner.tree.leftovers() == ["leftover-1"]
        with capture_logs() as logs:
            jobs = asyncio.create_task(runner.run(), name="jobs")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            removal = runner._cgroup_removals["leftover-1"]
            ticks = await _ticks_while(removal)
            assert removal.result() is False
            jobs.cancel()
            await asyncio.gather(jobs, return_exceptions=True)
        assert ticks >= 10, ticks  # the loop ran on through the bounded wait (a blocking sleep: 0 ticks)
        failed = [e for e in logs if e["event"] == "job cgroup not removed"]
        assert len(failed) == 1 and failed[0]["job"] == "leftover-1" and failed[0]["waited_s"] == 1.0
        assert not runner._cgroup_removals
    finally:
        child.rmdir()
        remove_tree(runner.tree)


async def test_a_cgroup_that_empties_during_the_wait_is_removed_and_shutdown_awaits_it(base_dir,
                                                                                     signing_key) -> None:
    runner = JobRunner(make_cfg(base_dir, signing_key))
    _, child = _busy_leftover(runner, "leftover-2")
    try:
        runner.setup()
        jobs = asyncio.create_task(runner.run(), name="jobs")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        removal = runner._cgroup_removals["leftover-2"]
        await asyncio.sleep(0.2)
        assert not removal.done()
        child.rmdir()  # the kernel lets go (the last process of a killed job is reaped)
        jobs.cancel()  # the jobs component stops: its shutdown awaits the removal in progress
        await asyncio.gather(jobs, return_exceptions=True)
        assert removal.done() and removal.result() is True
        assert runner.tree.leftovers() == []
    finally:
        if child.exists():
            child.rmdir()
        remove_tree(runner.tree)
