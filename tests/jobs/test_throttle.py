"""Heat coupling with real sandboxed jobs: commanded share vs measured CPU, freeze/thaw, checkpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrad_agent.jobs.examples import make_bundle
from qrad_agent.jobs.heat import JobsHeat
from qrad_agent.jobs.model import Status

from jobs_helpers import start_harness, stop_harness, system_python_ok

BURN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end:\n    pass\n"
WINDOW_S = 10.0
MC_ARGS = ["--seed", "42", "--paths", "1600000", "--batch", "20000", "--steps", "64"]

needs_numpy = pytest.mark.skipif(not system_python_ok(), reason="/usr/bin/python3 is not CPython 3.11")


async def _measure(heats: list[JobsHeat], window_s: float) -> list[float]:
    loop = asyncio.get_running_loop()
    t0, c0 = loop.time(), [h.cpu_s() for h in heats]
    await asyncio.sleep(window_s)
    dt = loop.time() - t0
    return [(h.cpu_s() - c) / (dt * h.runner.cfg.cpus) for h, c in zip(heats, c0)]


async def test_share_followed_within_5_points(base_dir, signing_key):
    """Two pools of one CPU each, run side by side: 25 % + 75 %, then 50 % + 100 % (10 s windows)."""
    other = Path(f"{base_dir}-b")
    other.mkdir(mode=0o755)
    pools = [await start_harness(base_dir, signing_key, cpus=1), await start_harness(other, signing_key, cpus=1)]
    heats = [JobsHeat(h.runner) for h, _ in pools]
    for h, _ in pools:  # measure the quota, not the CI machine's other load: jobs first when contended
        tree = h.runner.tree
        weight = ("cpu.shares", "262144") if tree.version == 1 else ("cpu.weight", "10000")
        (tree.cpu_dir / weight[0]).write_text(weight[1])
    try:
        for h, _ in pools:
            h.submit(h.script_bundle(BURN, walltime_s=120))
        for h, _ in pools:
            await h.wait("job1", until=lambda r: r.status == Status.RUNNING)
        measured = {}
        for pair in ((0.25, 0.75), (0.50, 1.00)):
            for heat, share in zip(heats, pair):
                heat.set_share(share)
            await asyncio.sleep(0.5)
            for share, used in zip(pair, await _measure(heats, WINDOW_S)):
                measured[share] = used
        print("commanded -> measured share:", {k: round(v, 3) for k, v in measured.items()})
        for share, used in measured.items():
            assert abs(used - share) <= 0.05, measured
    finally:
        for h, task in pools:
            h.runner.cancel("job1", grace_s=0)
            await asyncio.sleep(0.2)
            await stop_harness(h, task)
        import shutil
        shutil.rmtree(other, ignore_errors=True)


def _bare_montecarlo(tmp: Path) -> dict:
    src = Path(__file__).parents[2] / "qrad_agent" / "jobs" / "examples" / "montecarlo.py"
    out = subprocess.run([sys.executable, str(src), *MC_ARGS], cwd=tmp, capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_numpy
async def test_freeze_stops_cpu_within_1s_and_thaw_loses_no_work(harness, tmp_path):
    bare = _bare_montecarlo(tmp_path)
    heat = JobsHeat(harness.runner)
    bundle = make_bundle("montecarlo", harness.base / "mc", "mc", MC_ARGS, key=harness.key, devices=[harness.runner.device_id], walltime_s=60)
    harness.submit(bundle)
    await harness.wait("mc", until=lambda r: r.status == Status.RUNNING)
    await harness.wait("mc", until=lambda r: heat.cpu_s() > 0.5)  # computing, past its start-up
    heat.freeze_all("test")  # synchronous: returns at once
    await asyncio.sleep(1.0)
    assert (await _measure([heat], 1.0))[0] < 0.005  # zero within 1 s, and stays there
    assert harness.runner.get("mc").status == Status.RUNNING
    heat.thaw_all()
    record = await harness.wait("mc", timeout=60)
    assert record.status == Status.SUCCEEDED and record.usage.frozen_s >= 1.9
    result = harness.result("mc")
    assert result["checksum"] == bare["checksum"] and result["price"] == bare["price"]
    print("paths/s sandboxed", result["paths_per_s"], "bare", bare["paths_per_s"])


@needs_numpy
async def test_checkpoint_then_resume_same_result(harness, tmp_path):
    bare = _bare_montecarlo(tmp_path)
    heat = JobsHeat(harness.runner)
    # Each job pauses at a known point of its work and waits there for the checkpoint (SIGTERM): the test,
    # not the machine's speed, decides when it checkpoints.
    harness.submit(make_bundle("montecarlo", harness.base / "mc", "mc", [*MC_ARGS, "--pause-at", "10"],
                               key=harness.key, devices=[harness.runner.device_id], checkpointable=True,
                               grace_s=5))
    harness.submit(make_bundle("sweep", harness.base / "sw", "sw",
                               ["--points", "120", "--iterations", "40000", "--pause-at", "30"],
                               key=harness.key, devices=[harness.runner.device_id], checkpointable=True,
                               grace_s=5))
    for job in ("mc", "sw"):
        await harness.wait(job, timeout=120, until=lambda r, job=job: '"paused_at"' in harness.stdout(job))
    await heat.checkpoint_all(grace_s=5)
    for job in ("mc", "sw"):
        record = harness.runner.get(job)
        assert record.status == Status.QUEUED and record.reason == "checkpointed", record
        assert (harness.runner.store.work_dir(job) / "checkpoint.json").exists()
    assert '{"checkpointed_batches": 10}' in harness.stdout("mc")
    assert '{"checkpointed_points": 30}' in harness.stdout("sw")
    heat.set_share(1.0)
    mc, sw = await harness.wait("mc", timeout=60), await harness.wait("sw", timeout=60)
    assert mc.status == sw.status == Status.SUCCEEDED and mc.checkpoints == sw.checkpoints == 1
    assert harness.result("mc")["checksum"] == bare["checksum"]
    src = Path(__file__).parents[2] / "qrad_agent" / "jobs" / "examples" / "sweep.py"
    sweep_bare = subprocess.run([sys.executable, str(src), "--points", "120", "--iterations", "40000"],
                                cwd=tmp_path, capture_output=True, text=True, check=True)
    assert harness.result("sw")["checksum"] == json.loads(sweep_bare.stdout.splitlines()[-1])["checksum"]

