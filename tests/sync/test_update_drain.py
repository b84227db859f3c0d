"""Before an update, the jobs: the updater asks the running agent (local API, ``prepare_update``) to start no
job and checkpoint the checkpointable ones, waits for the others to end, and a refused update lets jobs
start again. Real sandboxed jobs on hw-sim (skipped where sandboxes cannot run, as test_job_results)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather
from test_job_results import _agent, jobs_base, pytestmark  # noqa: F401 - the fixture and the skip

from qrad_agent.jobs.bundle import write_manifest
from qrad_agent.update.updater import Updater

CHECKPOINTING = """import signal, sys, time
def stop(*_):
    open("checkpoint", "w").write("saved")
    sys.exit(75)
signal.signal(signal.SIGTERM, stop)
open("ready", "w").write("handler installed")
while True:
    time.sleep(0.05)
"""
SHORT = """import time
time.sleep(3)
print("done")
"""


async def _until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_update_checkpoints_and_drains_jobs_first(tmp_path, heater_agent_data, jobs_base) -> None:  # noqa: F811
    base, cgroup = jobs_base
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=16.0), Weather.constant(0.0),
                             datetime(2026, 1, 5), seed=3)
    agent = _agent(heater_agent_data, base, cgroup)
    agent.cfg = agent.cfg.model_copy(update={"update": agent.cfg.update.model_copy(
        update={"drain_timeout_s": 30.0, "poll_s": 0.1})})
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        assert agent.jobs is not None
        for job_id, code, checkpointable in (("ckpt-1", CHECKPOINTING, True), ("short-1", SHORT, False)):
            bundle = base / job_id
            bundle.mkdir()
            (bundle / "job.py").write_text(code)
            write_manifest(bundle, {"id": job_id, "command": ["python3", "job.py"],
                                    "checkpointable": checkpointable, "grace_s": 5})
            assert agent.jobs.submit(bundle).status.value == "queued"
        assert await _until(lambda: agent.jobs.used_slots() == 2, 30), agent.jobs.status()
        # (a SIGTERM before the job installs its handler would be ignored: it is PID 1 of its namespace)
        assert await _until((base / "jobs" / "ckpt-1" / "work" / "ready").exists, 30)

        updater = Updater(agent.cfg)
        await asyncio.to_thread(updater._drain)  # through the agent's API socket, as the updater does

        ckpt, short = agent.jobs.get("ckpt-1"), agent.jobs.get("short-1")
        assert (ckpt.status.value, ckpt.reason, ckpt.checkpoints) == ("queued", "checkpointed", 1), ckpt
        assert (base / "jobs" / "ckpt-1" / "work" / "checkpoint").read_text() == "saved"
        assert short.status.value == "succeeded", short  # drained: it ran to its end
        assert agent.jobs.used_slots() == 0
        await asyncio.sleep(1.0)
        assert agent.jobs.get("ckpt-1").status.value == "queued"  # no start while the update is prepared

        await asyncio.to_thread(updater._release_hold)  # the update was refused: jobs run again
        assert await _until(lambda: agent.jobs.get("ckpt-1").status.value == "running", 30)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
