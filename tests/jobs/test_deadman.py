"""The dead-man outside the agent: the launcher service puts the jobs at the power floor when the agent
dies (SIGKILL) or hangs (SIGSTOP), without the agent. Both daemons run as processes on hw-sim, a real
sandboxed job burns CPU in a real cgroup, and the jobs' CPU use (what hw-sim's board turns into dynamic
power, job_heat.py) is measured from the cgroup, not taken from what anyone commanded.

Goals (issue 12): SIGKILL at full power -> the floor within 5 s; SIGSTOP -> within 2 x the dead-man
timeout; nothing lost: the stopped agent resumes and the frozen job finishes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_helpers import remove_tree
from test_launcher_daemon import AGENT, HWSIM, _config

from qrad_agent.jobs.bundle import write_manifest
from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_hwsim.job_heat import CgroupCpuMeter

pytestmark = pytest.mark.slow

DEADMAN_TIMEOUT_S = 2.0
FLOOR_UTIL = 0.02
"""Busy fraction of the machine's CPUs counted as the floor (a frozen job uses none)."""
CPUS = 2


def _wait(predicate, timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)  # the test polls the real world
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Util:
    """The jobs' busy fraction of CPUS, over windows of at least 0.3 s."""

    def __init__(self, cgroup: Path) -> None:
        self.meter = CgroupCpuMeter(cgroup, CPUS, min_interval_s=0.3)
        self.meter.util()

    def now(self) -> float:
        time.sleep(0.35)
        return self.meter.util()


def _start(base_dir: Path):
    root = base_dir / "sys"
    cgroup = Path(f"/sys/fs/cgroup/qrad-test-{base_dir.name[-8:]}")
    config = base_dir / "agent.toml"
    # Full power whatever the room does (output_min_w near max_w): only the dead-man may bring the jobs down.
    config.write_text(_config(base_dir, root, cgroup).replace(
        "poll_s = 0.1", f"poll_s = 0.1\ndeadman_timeout_s = {DEADMAN_TIMEOUT_S}").replace(
        'mode = "comfort"', 'mode = "comfort"\noutput_min_w = 490.0'))
    procs: list[subprocess.Popen] = []
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room",
                            "--initial-air-c", "17.0"], stdout=subprocess.PIPE, text=True)
    procs.append(sim)
    assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
    launcher = subprocess.Popen([AGENT, "launcher", "--config", str(config)],
                                stderr=(base_dir / "launcher.log").open("w"))
    procs.append(launcher)
    sock = base_dir / "launcher" / "launcher.sock"
    _wait(lambda: sock.exists() or launcher.poll() is not None, 20, "the launcher's socket")
    agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(base_dir / "agent.log").open("w"))
    procs.append(agent)
    _wait(lambda: (base_dir / "jobs" / "spool").is_dir(), 20, "the agent's jobs directory")
    return config, cgroup, procs, agent


def _submit_burner(base_dir: Path, config: Path, cpu_s: float) -> None:
    bundle = base_dir / "burner"
    bundle.mkdir()
    (bundle / "job.py").write_text(
        "import time\nwhile time.process_time() < %r:\n    pass\nprint('done')\n" % cpu_s)
    write_manifest(bundle, {"id": "burner", "command": ["python3", "job.py"]})
    submitted = subprocess.run([AGENT, "jobs", "--config", str(config), "submit", str(bundle)],
                               capture_output=True, text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr


def _status(config: Path) -> str:
    shown = subprocess.run([AGENT, "jobs", "--config", str(config), "show", "burner", "--json"],
                           capture_output=True, text=True, timeout=30)
    return json.loads(shown.stdout)["status"] if shown.returncode == 0 else "?"


def _stop_all(procs: list[subprocess.Popen], cgroup: Path) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()
    try:
        remove_tree(JobsCgroupTree(cgroup))
    except Exception:  # noqa: BLE001 - the tree may never have been made
        pass


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSTOP"])
def test_launcher_floors_the_jobs_when_the_agent_dies_or_hangs(base_dir: Path, sig: str) -> None:
    config, cgroup, procs, agent = _start(base_dir)
    try:
        _submit_burner(base_dir, config, cpu_s=20.0)
        util = Util(cgroup)
        try:
            _wait(lambda: util.now() > 0.15, 30, "the job to heat (its CPU use)")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; job {_status(config)}; agent log tail: "
                                 f"{(base_dir / 'agent.log').read_text()[-3000:]}") from None
        agent.send_signal(getattr(signal, sig))
        sent = time.monotonic()
        floor_s = _wait(lambda: util.now() < FLOOR_UTIL, 15, "the jobs at the floor")
        logs = (base_dir / "launcher.log").read_text()
        print(f"\n{sig}: jobs at the floor {time.monotonic() - sent:.2f} s after the signal")
        assert "dead-man: jobs at the power floor" in logs
        if sig == "SIGKILL":
            assert floor_s <= 5.0
            return
        assert floor_s <= 2 * DEADMAN_TIMEOUT_S + 0.4  # the measurement window
        held = [util.now() for _ in range(4)]  # held while the agent stays stopped
        assert max(held) < FLOOR_UTIL, held
        agent.send_signal(signal.SIGCONT)
        _wait(lambda: _status(config) == "succeeded", 120, "the frozen job to finish after the agent resumed")
        assert "dead-man: agent beating again" in (base_dir / "launcher.log").read_text()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
    finally:
        _stop_all(procs, cgroup)
