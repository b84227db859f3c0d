"""The deployment of the two units, as processes: `qrad-agent launcher` (privileged) and `qrad-agent run`
(asking it through ``jobs.launcher_socket``), on hw-sim; a technician's `jobs submit --wait` runs a real
sandboxed job end to end, and both stop cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs_helpers import numpy_runtime, remove_tree
from qrad_agent.jobs.bundle import write_manifest
from qrad_agent.jobs.cgroups import JobsCgroupTree

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))


def _config(base: Path, root: Path, cgroup: Path) -> str:
    python, runtime, env = numpy_runtime()
    binds = ", ".join(f'{{ host = "{b.host}", sandbox = "{b.sandbox}" }}' for b in runtime)
    return f"""
device_id = "launcher-0001"
state_dir = "{base}/state"
[api]
socket_path = "{base}/api.sock"
[jobs]
jobs_dir = "{base}/jobs"
cgroup = "{cgroup}"
launcher_socket = "{base}/launcher/launcher.sock"
allow_unsigned = true
python = "{python}"
runtime = [{binds}]
env = {{ PYTHONPATH = "{env['PYTHONPATH']}" }}
poll_s = 0.1
disk_reserve_mb = 16
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
[thermostat]
mode = "comfort"
period_s = 1.0
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 1.0
"""


def test_agent_and_launcher_processes_run_a_job(base_dir: Path) -> None:
    root = base_dir / "sys"
    cgroup = Path(f"/sys/fs/cgroup/qrad-test-{base_dir.name[-8:]}")
    config = base_dir / "agent.toml"
    config.write_text(_config(base_dir, root, cgroup))
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room",
                            "--initial-air-c", "19.5"], stdout=subprocess.PIPE, text=True)
    procs = [sim]
    try:
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        launcher = subprocess.Popen([AGENT, "launcher", "--config", str(config)],
                                    stderr=(base_dir / "launcher.log").open("w"))
        procs.append(launcher)
        sock = base_dir / "launcher" / "launcher.sock"
        deadline = time.monotonic() + 20
        while not sock.exists() and launcher.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), (base_dir / "launcher.log").read_text()
        assert sock.stat().st_mode & 0o777 == 0o600
        agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(base_dir / "agent.log").open("w"))
        procs.append(agent)
        deadline = time.monotonic() + 20
        while not (base_dir / "jobs" / "spool").is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        bundle = base_dir / "bundle"
        bundle.mkdir()
        (bundle / "job.py").write_text("import json, os\nprint(json.dumps({'uid': os.getuid(), 'sum': sum(range(10))}))\n")
        write_manifest(bundle, {"id": "via-launcher", "command": ["python3", "job.py"]})
        done = subprocess.run([AGENT, "jobs", "--config", str(config), "submit", str(bundle), "--wait", "30"],
                              capture_output=True, text=True, timeout=60)
        logs = (base_dir / "agent.log").read_text() + (base_dir / "launcher.log").read_text()
        assert done.returncode == 0, done.stdout + done.stderr + logs
        shown = subprocess.run([AGENT, "jobs", "--config", str(config), "show", "via-launcher"],
                               capture_output=True, text=True, timeout=30)
        assert json.dumps({"uid": 1000, "sum": 45}) in shown.stdout, shown.stdout
        as_json = subprocess.run([AGENT, "jobs", "--config", str(config), "show", "via-launcher", "--json"],
                                 capture_output=True, text=True, timeout=30)
        assert json.loads(as_json.stdout)["status"] == "succeeded"
        again = subprocess.run([AGENT, "jobs", "--config", str(config), "submit", str(bundle), "--wait", "5"],
                               capture_output=True, text=True, timeout=30)
        assert again.returncode == 2 and "job via-launcher exists" in again.stderr
        broken = base_dir / "broken"
        broken.mkdir()
        (broken / "manifest.json").write_text("{not json")
        refused = subprocess.run([AGENT, "jobs", "--config", str(config), "submit", str(broken), "--wait", "20"],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and 'malformed_manifest' in refused.stdout, refused.stdout + refused.stderr
        for proc in (agent, launcher):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0, logs
        assert not sock.exists()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        try:
            remove_tree(JobsCgroupTree(cgroup))
        except Exception:  # noqa: BLE001 - the tree may never have been made
            pass


def test_agent_without_its_launcher_exits_69_with_the_reason(base_dir: Path) -> None:
    root = base_dir / "sys"
    cgroup = Path(f"/sys/fs/cgroup/qrad-test-{base_dir.name[-8:]}")
    config = base_dir / "agent.toml"
    config.write_text(_config(base_dir, root, cgroup))
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
        agent = subprocess.run([AGENT, "run", "--config", str(config)], capture_output=True, text=True, timeout=30)
        assert agent.returncode == 69, agent.stderr
        assert "agent cannot start" in agent.stderr and "launcher" in agent.stderr and "unreachable" in agent.stderr
    finally:
        sim.terminate()
        sim.wait()
