"""A job's start never blocks the agent's event loop: the launcher's part (handing the work to the job user,
measuring it, spawning the sandbox; each call bounded by the launcher's timeouts) runs in a worker thread,
in a task the runner owns. The issue's fault: synchronous launcher calls with 3-10 s socket timeouts inside
the agent's loop, so a hung launcher service stopped the heartbeat and everything else with it.

A real `LauncherServer` in a thread, whose spawn is held at a gate as a hung service would hold it; a real
runner talking to it over its socket; real sandboxes. If the start ran on the loop, the test's own code
could not run while the gate is shut (the spawn would fail when the gate times out): each check below runs
exactly in that window."""

from __future__ import annotations

import asyncio
import threading

import pytest

from jobs_helpers import DEVICE_ID, RunnerHarness, make_cfg, remove_tree
from qrad_agent.jobs.launcher import Launcher, LauncherError, LauncherServer
from qrad_agent.jobs.model import Status
from qrad_agent.jobs.runner import JobRunner

GATE_TIMEOUT_S = 8.0  # below the launcher's spawn timeout (10 s): a shut gate fails the spawn, never the test


class _GatedLauncher(Launcher):
    """The in-process launcher whose spawn waits for ``gate`` (a hung service); counts the spawns."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.spawns = 0

    def spawn(self, *args, **kwargs):
        self.spawns += 1
        self.entered.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise LauncherError("test gate never opened")
        return super().spawn(*args, **kwargs)


@pytest.fixture
async def gated(base_dir, signing_key):
    """(harness, gated launcher): a runner using a launcher service whose spawns wait at a gate."""
    sock = base_dir / "launcher.sock"
    launcher = _GatedLauncher(make_cfg(base_dir, signing_key))
    server = LauncherServer(launcher, sock)
    launcher.setup()
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    runner = JobRunner(make_cfg(base_dir, signing_key, launcher_socket=sock), device_id=DEVICE_ID)
    runner.setup()
    task = asyncio.create_task(runner.run(), name="jobs")
    try:
        yield RunnerHarness(runner, base_dir, signing_key), launcher
    finally:
        launcher.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        leftovers = runner.tree.leftovers()
        remove_tree(runner.tree)
        server.close()
        thread.join(5)
        assert not leftovers, leftovers


async def _entered(launcher: _GatedLauncher) -> None:
    assert await asyncio.to_thread(launcher.entered.wait, GATE_TIMEOUT_S), "no spawn reached the launcher"
    launcher.entered.clear()


async def test_a_hung_spawn_leaves_the_loop_running_and_holds_its_slots(gated) -> None:
    h, launcher = gated
    slots = h.runner.cfg.total_slots
    big = h.submit(h.script_bundle("print('{\"big\": 1}')", cores=slots))
    small = h.submit(h.script_bundle("print('{\"small\": 1}')", cores=1))
    await _entered(launcher)
    # the loop runs while the launcher holds the spawn: the start is a task, its cores are taken
    assert h.runner.get(big.id).status == Status.QUEUED
    assert h.runner.used_slots() == slots
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert launcher.spawns == 1 and h.runner.get(small.id).status == Status.QUEUED  # no slot for it yet
    assert h.runner.status()["launcher"] == "reachable"  # the cached check: status never waits on it
    launcher.gate.set()
    done = await h.wait(big.id)
    assert done.status == Status.SUCCEEDED and h.result(big.id) == {"big": 1}
    done = await h.wait(small.id)
    assert done.status == Status.SUCCEEDED and h.result(small.id) == {"small": 1}
    assert launcher.spawns == 2


async def test_a_job_cancelled_while_it_is_started_ends_cancelled_with_nothing_left(gated) -> None:
    h, launcher = gated
    record = h.submit(h.script_bundle("import time\nprint('{\"ran\": 1}', flush=True)\ntime.sleep(30)"))
    await _entered(launcher)
    assert h.runner.cancel(record.id)
    assert h.runner.get(record.id).status == Status.QUEUED  # its sandbox may still appear: not ended yet
    launcher.gate.set()
    done = await h.wait(record.id, timeout=15)
    assert done.status == Status.CANCELLED, (done.status, done.reason)
    assert h.runner.used_slots() == 0 and not h.runner.active
    assert not h.runner.tree.job(record.id).pids()


async def test_stop_awaits_a_start_in_progress_and_stops_its_job(gated) -> None:
    h, launcher = gated
    record = h.submit(h.script_bundle("import time\ntime.sleep(30)"))
    await _entered(launcher)
    stopping = asyncio.create_task(h.runner.shutdown())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # it waits for the start (its worker thread cannot be cancelled)
    launcher.gate.set()
    await asyncio.wait_for(stopping, 20)
    done = h.runner.get(record.id)
    assert done.status == Status.CANCELLED, (done.status, done.reason)
    assert not h.runner.active and not h.runner.tree.job(record.id).pids()
