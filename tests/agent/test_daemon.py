"""The daemon as systemd runs it: a subprocess against a live hw-sim, sd_notify, SIGTERM, exit codes."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
"""The console script installed beside the interpreter running the tests."""
SPEED = 600.0
"""hw-sim model seconds per real second: a minute of the room per 0.1 s."""


def _agent_toml(root: Path, state_dir: Path) -> str:
    # Every time constant of the example config divided by SPEED, so the loop sees the room it was tuned for.
    return f"""
device_id = "it-0001"
state_dir = "{state_dir}"
[api]
socket_path = "{state_dir}/api.sock"
[logging]
level = "info"
format = "json"
[jobs]
enabled = false
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
platform_overhead_w = 30.0
heartbeat_timeout_s = 2.0
[thermostat]
mode = "comfort"
period_s = {30 / SPEED}
stale_after_s = 1.0
[thermostat.setpoints]
comfort_c = 20.0
[thermostat.pid]
kp_w_per_k = 1400.0
ti_s = {1100 / SPEED}
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = {10 / SPEED}
stuck_after_s = 2.0
[safety]
check_period_s = 0.05
"""


def _last_air_c(trace: Path) -> float | None:
    try:
        rows = list(csv.DictReader(trace.open()))
    except (OSError, csv.Error):
        return None
    return float(rows[-1]["air_c"]) if rows else None


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)  # the test polls the real world; the agent itself never sleeps on the wall clock
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _int(path: Path) -> int:
    """The file's integer, 0 while the agent is between truncating and writing it."""
    text = _read(path)
    return int(text) if text else 0


def _read(path: Path) -> str:
    return path.read_text().strip()


@pytest.fixture
def hwsim(tmp_path: Path):
    root = tmp_path / "sys"
    trace = tmp_path / "trace.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "qrad_hwsim.cli", "serve", "--root", str(root), "--speed", str(SPEED),
         "--initial-air-c", "19.2", "--trace", str(trace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY"), (line, proc.stderr.read() if proc.poll() is not None else "")
    yield root, trace
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def test_daemon_reaches_setpoint_notifies_systemd_and_stops_on_sigterm(tmp_path: Path, hwsim) -> None:
    root, trace = hwsim
    config = tmp_path / "agent.toml"
    config.write_text(_agent_toml(root, tmp_path / "state"))
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(0.2)
    messages: list[bytes] = []
    done = threading.Event()

    def drain() -> None:  # systemd reads every notification; so does this listener
        while not done.is_set():
            try:
                messages.append(listener.recv(4096))
            except TimeoutError:
                continue

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path))
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=log, env=env)
        try:
            _wait_for(lambda: any(b"WATCHDOG=1" in m for m in messages), 10, "watchdog pings")
            assert b"READY=1" in messages[0]
            # Heating: at least one policy above its minimum frequency while the room is below the setpoint.
            policies = sorted((root / "devices/system/cpu/cpufreq").glob("policy*"))
            _wait_for(lambda: any(_int(p / "scaling_max_freq") > _int(p / "cpuinfo_min_freq")
                                  for p in policies), 10, "the agent to raise a P-state cap")
            _wait_for(lambda: (_last_air_c(trace) or 0) >= 19.9, 90, "the room to reach 19.9 °C (setpoint 20)")
            started = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(timeout=5) == 0
            assert time.monotonic() - started < 5
        finally:
            if agent.poll() is None:
                agent.kill()
    _wait_for(lambda: any(b"STOPPING=1" in m for m in messages), 2, "STOPPING=1")
    done.set()
    reader.join()
    # Stopped: every policy at its lowest frequency, the jobs' quota at its minimum, state flushed.
    for policy in policies:
        assert _read(policy / "scaling_max_freq") == _read(policy / "cpuinfo_min_freq")
    assert _read(root / "fs/cgroup/qrad-jobs/cpu.max").split()[0] == "1000"
    assert (tmp_path / "state" / "state.json").exists()
    lines = log_path.read_text().splitlines()
    assert lines and all('"device_id": "it-0001"' in line and '"component"' in line for line in lines)


def test_bad_config_exits_78_with_field_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('device_id = "a/b"\n[thermostat]\nperiod_s = -1\n')
    result = subprocess.run([AGENT, "run", "--config", str(config)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 78
    assert "device_id" in result.stderr and "thermostat.period_s" in result.stderr
