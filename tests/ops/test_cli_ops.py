"""Every technician command against a running daemon on hw-sim, in both output forms; a change refused
to a real second uid outside the privileged group."""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))
NOBODY = 65534


def _config(root: Path, run_dir: Path) -> str:
    group = grp.getgrgid(NOBODY).gr_name if _has_gid(NOBODY) else None
    return f"""
device_id = "ops-0001"
state_dir = "{run_dir}/state"
[api]
socket_path = "{run_dir}/api.sock"
{f'group = "{group}"' if group else ''}
privileged_group = "root"
[jobs]
enabled = false
[safety]
alarm_gpio_line = 23
identify_gpio_line = 24
[power]
sysfs_root = "{root}"
jobs_cgroup = "{root}/fs/cgroup/qrad-jobs"
platform_overhead_w = 30.0
[thermostat]
mode = "comfort"
period_s = 1.0
[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = {{ room_temp = "temp1_input" }}
period_s = 1.0
[[sensors]]
type = "hwmon"
name = "cpu0"
chip = "coretemp"
inputs = {{ cpu0_temp = "temp1_input" }}
stuck_after_s = 0.0
period_s = 1.0
"""


def _has_gid(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def daemon():
    run_dir = Path(tempfile.mkdtemp(prefix="qrad-ops-"))
    run_dir.chmod(0o755)  # a second uid must reach the socket inside
    root = run_dir / "sys"
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--devices", "room",
                            "--initial-air-c", "19.5"], stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
    for line in (23, 24):  # the board's alarm output and front LED, as GPIO output lines
        gpio = root / "class" / "gpio" / f"gpio{line}"
        gpio.mkdir(parents=True)
        (gpio / "direction").write_text("out\n")
        (gpio / "value").write_text("0\n")
    config = run_dir / "agent.toml"
    config.write_text(_config(root, run_dir))
    agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(run_dir / "agent.log").open("w"))
    sock = run_dir / "api.sock"
    deadline = time.monotonic() + 20
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    _wait_json(config, ["selftest"], lambda r: r["ok"], 60)  # ready: loop timing and every channel judged
    yield config, sock
    for proc in (agent, sim):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    shutil.rmtree(run_dir, ignore_errors=True)


def _cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=30, user=user,
                          env=dict(os.environ, HOME="/tmp"))


@pytest.mark.parametrize("command, key, words", [
    (["status"], "thermostat", ["mode", "limited by", "interfaces"]),
    (["power", "explain"], "applied", ["heat demand", "cpufreq", "policy0"]),
    (["selftest"], "checks", ["PASS", "actuator cpufreq", "control loop timing", "code unchanged since start"]),
    (["logs", "--component", "power"], None, ["interfaces"]),
    (["sensors"], "channels", ["room_temp", "cpu0_temp"]),
    (["autotune", "--dry-run"], "plan", ["plan", "step"]),
    (["autotune", "--status"], "running", ["running: False"]),
])
def test_command_in_both_forms(daemon, command, key, words) -> None:
    config, _ = daemon
    as_json = _cli(*command, "--config", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    if key is not None:
        assert key in data
    else:
        assert data and all(e["component"] == "power" for e in data)
    table = _cli(*command, "--config", str(config))
    assert table.returncode == 0, table.stderr
    assert all(word in table.stdout for word in words), table.stdout


def test_selftest_passes_on_a_healthy_heater(daemon) -> None:
    config, _ = daemon
    report = json.loads(_cli("selftest", "--config", str(config), "--json").stdout)
    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["ok"], failed


def test_override_by_root_applies_and_clears(daemon) -> None:
    config, _ = daemon
    set_ = _cli("override", "22.5", "--hours", "1", "--config", str(config), "--json")
    assert set_.returncode == 0, set_.stderr
    assert json.loads(set_.stdout)["override_c"] == 22.5
    status = _wait_json(config, ["status"], lambda s: s["thermostat"]["mode"] == "override", 10)  # next step
    assert status["thermostat"]["mode"] == "override" and status["thermostat"]["setpoint_c"] == 22.5
    cleared = _cli("override", "--clear", "--config", str(config), "--json")
    assert json.loads(cleared.stdout)["override_c"] is None
    table = _cli("override", "21.0", "--config", str(config))  # the readable form too
    assert table.returncode == 0 and "holding 21.0 °C" in table.stdout, table.stderr
    table = _cli("override", "--clear", "--config", str(config))
    assert table.returncode == 0 and "override cleared" in table.stdout, table.stderr


def test_json_output_is_strict_json(daemon) -> None:
    config, _ = daemon
    for command in (["status"], ["power", "explain"], ["selftest"], ["sensors"]):
        out = _cli(*command, "--config", str(config), "--json")
        json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"{command}: {c} is not JSON"))


RAW_CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n")
print(s.makefile().readline())
"""
"""A client for the second uid: the system Python, since the project's venv may sit under a private home."""
SYSTEM_PYTHON = "/usr/bin/python3"


def _as_nobody(sock: Path, request: dict) -> dict:
    done = subprocess.run([SYSTEM_PYTHON, "-c", RAW_CLIENT, str(sock), json.dumps(request)], capture_output=True,
                          text=True, timeout=30, user=NOBODY, group=NOBODY, extra_groups=[])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(os.geteuid() != 0 or not _has_gid(NOBODY) or not Path(SYSTEM_PYTHON).exists(),
                    reason="needs root (to run as a second uid) and a system python3")
def test_change_from_an_unprivileged_uid_is_refused_and_logged(daemon) -> None:
    config, sock = daemon
    view = _as_nobody(sock, {"method": "status"})
    assert view["ok"]  # the technicians' group (here nobody's group owns the socket) may look
    change = _as_nobody(sock, {"method": "set_override", "params": {"setpoint_c": 25}})
    assert not change["ok"] and "not allowed for uid 65534" in change["error"]
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert status["thermostat"]["override_c"] != 25
    refused = json.loads(_cli("logs", "--component", "api", "--config", str(config), "--json").stdout)
    assert any(e["event"] == "change refused" and e.get("uid") == NOBODY for e in refused)


def test_usage_error_exits_2(daemon) -> None:
    config, _ = daemon
    assert _cli("override", "--config", str(config)).returncode == 2


def _wait_json(config: Path, command: list[str], ready, timeout_s: float) -> dict:
    """``command --json`` of the daemon, repeated until ``ready(report)`` or ``timeout_s``; the last report."""
    deadline = time.monotonic() + timeout_s
    while True:
        out = _cli(*command, "--config", str(config), "--json").stdout
        report = json.loads(out) if out.strip() else {}
        if (report and ready(report)) or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def _wait_value(path: Path, value: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.read_text().strip() == value:
            return True
        time.sleep(0.05)
    return False


def test_identify_blinks_the_front_led(daemon) -> None:
    config, sock = daemon
    led = sock.parent / "sys" / "class" / "gpio" / "gpio24" / "value"
    result = _cli("identify", "--count", "3", "--config", str(config), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["blinking"] == 3
    assert _wait_value(led, "1", 2) and _wait_value(led, "0", 2)


def test_fire_test_drives_the_alarm_output_and_holds_power(daemon) -> None:
    config, sock = daemon
    line = sock.parent / "sys" / "class" / "gpio" / "gpio23" / "value"
    result = _cli("fire-test", "--seconds", "1.5", "--cut-power", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert _wait_value(line, "1", 2)
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert "fire_test" in status["safety"]["conditions"] and status["power"]["forced_reason"]
    assert _wait_value(line, "0", 4)
    status = _wait_json(config, ["status"], lambda s: "fire_test" not in s["safety"]["conditions"], 5)
    assert "fire_test" not in status["safety"]["conditions"]


def test_reset_alarm_without_a_latched_alarm_is_refused(daemon) -> None:
    config, _ = daemon
    result = _cli("reset-alarm", "--config", str(config))
    assert result.returncode == 1 and "no latched alarm" in result.stderr
