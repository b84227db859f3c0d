"""The agent's event loop under full job load: the longest stall, against the same agent idle.

Runs hw-sim (`serve`), the launcher service and the daemon as processes, as deployed, with jobs through the
launcher; the daemon's own loop watch (qrad_agent/loopwatch.py) measures how late its loop wakes. Phase 1
(baseline): no job, IDLE_S. Phase 2: one CPU-bound sandboxed job per CPU for LOAD_S, submitted through the
CLI, with the thermostat asking for full power. Prints the longest stall of each phase (`status --json`,
``event_loop.max_stall_s``) against the goal: below the control period's jitter allowance (1 s).

Needs root, bubblewrap and cgroups (as the jobs tests). python benchmarks/loop_stall.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy

from qrad_agent.jobs.bundle import write_manifest

BIN = Path(sys.executable).parent
IDLE_S, LOAD_S = 30.0, 60.0
GOAL_S = 1.0


def _config(base: Path, root: Path, cgroup: Path) -> str:
    np_dir = Path(numpy.__file__).parent
    return f"""
device_id = "stall-0001"
state_dir = "{base}/state"
[api]
socket_path = "{base}/api.sock"
[jobs]
jobs_dir = "{base}/jobs"
cgroup = "{cgroup}"
launcher_socket = "{base}/launcher/launcher.sock"
allow_unsigned = true
python = "/usr/bin/python3"
runtime = [{{ host = "{np_dir}", sandbox = "/opt/pylib/numpy" }}]
env = {{ PYTHONPATH = "/opt/pylib" }}
disk_reserve_mb = 16
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
[thermostat]
mode = "comfort"
period_s = 5.0
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 2.0
"""


def _max_stall(config: Path) -> float:
    out = subprocess.run([BIN / "qrad-agent", "status", "--config", str(config), "--json"], capture_output=True,
                         text=True, timeout=30)
    return float(json.loads(out.stdout)["event_loop"]["max_stall_s"])


def _wait(predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.1)


def main() -> int:
    if os.geteuid() != 0 or shutil.which("bwrap") is None:
        print("loop_stall: needs root and bubblewrap (as the jobs tests); not run")
        return 0
    base = Path(tempfile.mkdtemp(prefix="qrad-stall-", dir="/tmp"))
    base.chmod(0o755)
    root, cgroup = base / "sys", Path(f"/sys/fs/cgroup/qrad-stall-{base.name[-8:]}")
    config = base / "agent.toml"
    config.write_text(_config(base, root, cgroup))
    procs: list[subprocess.Popen] = []
    try:
        sim = subprocess.Popen([BIN / "qrad-hwsim", "serve", "--root", str(root), "--speed", "1", "--devices",
                                "room", "--initial-air-c", "15"], stdout=subprocess.PIPE, text=True)
        procs.append(sim)
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        procs.append(subprocess.Popen([BIN / "qrad-agent", "launcher", "--config", str(config)],
                                      stderr=subprocess.DEVNULL))
        _wait(lambda: (base / "launcher" / "launcher.sock").exists(), 30)
        procs.append(subprocess.Popen([BIN / "qrad-agent", "run", "--config", str(config)],
                                      stderr=subprocess.DEVNULL))
        _wait(lambda: (base / "api.sock").exists(), 30)
        time.sleep(IDLE_S)  # the baseline phase: the agent alone
        idle_s = _max_stall(config)
        cpus = os.cpu_count() or 1
        for n in range(cpus):
            bundle = base / f"burner{n}"
            bundle.mkdir()
            (bundle / "job.py").write_text(f"import time\nwhile time.process_time() < {LOAD_S}:\n    pass\n")
            write_manifest(bundle, {"id": f"burner{n}", "command": ["python3", "job.py"]})
            subprocess.run([BIN / "qrad-agent", "jobs", "--config", str(config), "submit", str(bundle)],
                           capture_output=True, timeout=60, check=True)
        time.sleep(LOAD_S)
        loaded_s = _max_stall(config)
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        from qrad_agent.jobs import jobfs

        for point in jobfs.mounts_under(base):  # the jobs' filesystems outlive the agent, not this run
            jobfs.umount(point)
        shutil.rmtree(base, ignore_errors=True)
    print(f"{'phase':32} {'longest loop stall (s)':>24} {'goal (s)':>9}")
    print(f"{'baseline: agent, no job':32} {idle_s:24.3f} {GOAL_S:9.1f}")
    print(f"{f'{cpus} CPU-bound jobs, full power':32} {loaded_s:24.3f} {GOAL_S:9.1f}")
    met = loaded_s < GOAL_S
    print("goal met" if met else "goal missed")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
