"""Every technician command against a running daemon on hw-sim, in both output forms; a change refused
to a real second uid outside the privileged group."""

from __future__ import annotations

import grp
import json
import os
import re
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
    _wait_until_settled(config)
    yield config, sock
    for proc in (agent, sim):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    shutil.rmtree(run_dir, ignore_errors=True)


def _wait_until_settled(config: Path, timeout_s: float = 60.0) -> None:
    """Until the agent answers and has judged everything once: loop timing, every channel, the room."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = _cli("selftest", "--config", str(config), "--json")
        if done.returncode in (0, 1) and done.stdout:
            report = json.loads(done.stdout)
            if not any(c.get("pending") for c in report["checks"]) and all(
                    "no reading" not in c["detail"] for c in report["checks"]):
                return
        time.sleep(0.2)
    raise AssertionError("the agent did not settle")


def _cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=30, user=user,
                          env=dict(os.environ, HOME="/tmp"))


@pytest.mark.parametrize("command, key, words", [
    (["status"], "thermostat", ["verdict", "mode", "control", "interfaces"]),
    (["power", "explain"], "applied", ["heat demand", "cpufreq", "policy0"]),
    (["selftest"], "checks", ["PASS", "actuator cpufreq", "control loop timing", "code unchanged since start"]),
    (["logs", "--component", "power"], None, ["interfaces"]),
    (["sensors"], "channels", ["room_temp", "cpu0_temp"]),
    (["autotune", "--dry-run"], "plan", ["plan", "step"]),
    (["autotune", "--status"], "running", ["no autotune running"]),
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
    status = _wait_json(config, ["status"], lambda s: s["thermostat"]["mode"] == "override"
                        and s["thermostat"]["setpoint_c"] == 22.5, 30)  # applied at the next control step
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


def test_fire_test_drives_the_alarm_output_holds_power_and_prints_its_result(daemon) -> None:
    config, sock = daemon
    line = sock.parent / "sys" / "class" / "gpio" / "gpio23" / "value"
    test = subprocess.Popen([AGENT, "fire-test", "--seconds", "8", "--cut-power", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not _wait_value(line, "1", 20):
        test.kill()
        pytest.fail(f"the alarm line never went on: {test.communicate()}")
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert "fire_test" in status["safety"]["conditions"] and status["power"]["forced_reason"]
    assert status["verdict"].startswith("safe state: fire_test")
    out, err = test.communicate(timeout=30)  # it waits for the test's end and prints what happened
    assert test.returncode == 0, err
    assert out.startswith("fire test passed (8.0 s)") and "ok   alarm output off" in out, out
    assert not REPR.search(out), out
    assert line.read_text().strip() == "0"
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert "fire_test" not in status["safety"]["conditions"]


def test_reset_alarm_without_a_latched_alarm_is_refused(daemon) -> None:
    config, _ = daemon
    result = _cli("reset-alarm", "--config", str(config))
    assert result.returncode == 1 and "no latched alarm" in result.stderr


REPR = re.compile(r"\bNone\b|\bnan\b|\bTrue\b|\bFalse\b|\{|\}|[0-9]\.[0-9]{6,}")
"""What a Python repr leaves in a table: None, nan, booleans, dict braces, float noise."""
TABLE_COMMANDS = [["status"], ["sensors"], ["power", "explain"], ["selftest"], ["logs", "--limit", "500"],
                  ["autotune", "--status"], ["autotune", "--dry-run"], ["identify", "--count", "1"],
                  ["override", "21.5", "--hours", "0.5"], ["override", "--clear"]]


@pytest.mark.parametrize("command", TABLE_COMMANDS, ids=" ".join)
def test_no_python_repr_in_any_table(daemon, command) -> None:
    config, _ = daemon
    done = _cli(*command, "--config", str(config))
    assert done.returncode == 0, done.stderr
    bad = [line for line in done.stdout.splitlines() if REPR.search(line)]
    assert done.stdout and not bad, "\n".join(bad)


def test_no_python_repr_in_config_check(daemon) -> None:
    config, _ = daemon
    done = subprocess.run([AGENT, "config", "check", str(config)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0 and not REPR.search(done.stdout), done.stdout


@pytest.mark.parametrize("command", [*TABLE_COMMANDS[:6], ["sensors", "--watch", "0.2"], ["logs", "--follow"],
                                     ["status", "--json"]], ids=" ".join)
def test_a_closed_pipe_ends_the_command_quietly(daemon, command) -> None:
    config, _ = daemon
    proc = subprocess.Popen([AGENT, *command, "--config", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # `| head -1`: one line, then the pipe closes
    proc.stdout.close()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, 141), err
    assert not err, err.decode()


def test_hwsim_fault_reports_what_a_slow_simulator_did(daemon) -> None:
    """The fixture's simulator steps every 10 s (speed 1): the answer comes after the 0.5 s asked for."""
    _, sock = daemon
    root = sock.parent / "sys"
    done = subprocess.run([HWSIM, "fault", "--root", str(root), "--device", "room", "--kind", "ok", "--wait", "0.5"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() in ("room: ok applied", "room: ok already so"), done.stderr
    again = subprocess.run(done.args, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and again.stdout.strip() == "room: ok already so", again.stderr  # answered too


def test_status_shows_uptime_room_channel_events_and_one_verdict(daemon) -> None:
    config, _ = daemon
    table = _cli("status", "--config", str(config)).stdout
    lines = table.splitlines()
    assert lines[0].startswith("verdict     ")
    assert re.search(r"up \d+ (s|min)", lines[1]), lines[1]
    assert any(line.startswith("room        ") and "from room_temp" in line for line in lines), table
    assert "recent" in table and "jobs        disabled ([jobs] enabled = false)" in table
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert status["room"]["channel"] == "room_temp" and status["uptime_s"] > 0
    fire = status["fire"]
    if fire["state"] == "fault":  # this heater has no microphone: fire FAULT names why, in the table too
        reason = fire["decision"]["reason"]
        assert reason and reason in table and "fire detection fault" in status["verdict"]


def test_logs_refuses_an_unknown_component_with_the_known_ones(daemon) -> None:
    config, _ = daemon
    done = _cli("logs", "--component", "foo", "--config", str(config))
    assert done.returncode == 2 and "known: api, autotune" in done.stderr, done.stderr


def test_logs_since_and_follow(daemon) -> None:
    config, _ = daemon
    recent = json.loads(_cli("logs", "--since", "10m", "--config", str(config), "--json").stdout)
    assert recent and all(e["timestamp"] >= recent[0]["timestamp"] for e in recent)
    follow = subprocess.Popen([AGENT, "logs", "--follow", "--component", "api", "--config", str(config)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal
    assert follow.stdout is not None
    follow.stdout.readline()  # the recent api events first
    assert _cli("identify", "--count", "1", "--config", str(config)).returncode == 0
    deadline = time.monotonic() + 20
    seen = ""
    while "method=identify" not in seen and time.monotonic() < deadline:
        seen = follow.stdout.readline()
    follow.send_signal(signal.SIGINT)
    follow.communicate(timeout=60)
    assert "method=identify" in seen and follow.returncode == 0


def test_override_with_a_non_positive_duration_is_refused_and_never_applied(daemon) -> None:
    config, sock = daemon
    for hours in ("-1", "0"):
        done = _cli("override", "22", "--hours", hours, "--config", str(config))
        assert done.returncode == 2 and "--hours must be > 0" in done.stderr
    raw = _request(sock, "set_override", {"setpoint_c": 22, "duration_s": -3600})  # past the CLI's own check
    assert raw["ok"] is False and raw["usage"] is True and "duration must be > 0" in raw["error"]
    status = json.loads(_cli("status", "--config", str(config), "--json").stdout)
    assert status["thermostat"]["override_c"] is None


def _request(sock: Path, method: str, params: dict) -> dict:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(sock))
        client.sendall(json.dumps({"method": method, "params": params}).encode() + b"\n")
        return json.loads(client.makefile().readline())


def _until(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _status(config: Path) -> dict:
    return json.loads(_cli("status", "--config", str(config), "--json").stdout)


def test_autotune_refuses_outside_its_band_shows_phase_and_cancels(daemon) -> None:
    config, _ = daemon
    try:  # a setpoint far from the room (19.5 °C): the test's band is setpoint ± 2 K
        assert _cli("override", "27", "--config", str(config)).returncode == 0
        assert _until(lambda: _status(config)["thermostat"]["setpoint_c"] == 27)
        planned = _cli("autotune", "--dry-run", "--config", str(config))  # the plan says so before any start
        assert planned.returncode == 0 and "a start now would be refused" in planned.stdout, planned.stdout
        assert "outside the test's band 25.0..29.0 °C" in planned.stdout, planned.stdout
        refused = _cli("autotune", "--config", str(config))
        assert refused.returncode == 1 and "outside the test's band 25.0..29.0 °C" in refused.stderr, refused.stderr
    finally:
        _cli("override", "--clear", "--config", str(config))
    # at once after the clear (before any control step applies comfort again): planned around comfort
    started = _cli("autotune", "--config", str(config))
    assert started.returncode == 0 and started.stdout.startswith("autotune started"), started.stderr
    running = _cli("autotune", "--status", "--config", str(config))
    assert re.search(r"autotune running: phase (hold|step), \d+ s elapsed of at most", running.stdout), running.stdout
    assert _until(lambda: _status(config)["thermostat"]["limit_reason"] == "autotune step test")  # next step
    cancelled = _cli("autotune", "--cancel", "--config", str(config))
    assert cancelled.returncode == 0 and "the thermostat drives the power again" in cancelled.stdout
    assert _until(lambda: _status(config)["thermostat"]["limit_reason"] != "autotune step test")
    assert json.loads(_cli("autotune", "--status", "--config", str(config), "--json").stdout)["running"] is False
    after = _cli("autotune", "--status", "--config", str(config)).stdout
    assert after.startswith("no autotune running (the last one was cancelled)"), after


@pytest.mark.parametrize("tool", ["agent", "hwsim"])
def test_a_pipe_closed_before_any_output_ends_quietly(daemon, tool: str) -> None:
    """`cmd | true`: the reader is gone before the first write."""
    config, sock = daemon
    argv = ([AGENT, "status", "--config", str(config)] if tool == "agent" else
            [HWSIM, "fault", "--root", str(sock.parent / "sys"), "--device", "room", "--kind", "ok"])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 141), err
    assert not err, err.decode()


def test_mode_setpoint_and_schedule_from_the_cli(daemon, tmp_path: Path) -> None:
    """The technician's mode, setpoint and schedule go through the same commands surface as the platform's:
    one schedule grammar, refusals with the rule and field named."""
    config, _ = daemon
    before = json.loads(_cli("mode", "eco", "--config", str(config), "--json").stdout)
    assert before["mode_setting"] == "eco", before
    shown = _cli("setpoint", "eco", "18.5", "--config", str(config))
    assert shown.returncode == 0 and shown.stdout.startswith("mode eco, setpoint 18.5 °C"), shown  # the new one
    inverted = _cli("setpoint", "frost", "25", "--config", str(config))
    assert inverted.returncode == 2 and "comfort_c >= eco_c >= frost_c" in inverted.stderr, inverted
    rules = tmp_path / "week.toml"
    rules.write_text('[[rule]]\ndays = "weekdays"\nstart = "06:30:00"\nmode = "comfort"\n'
                     '[[rule]]\ndays = "fri-mon"\nstart = "22:00"\nmode = "eco"\n')
    assert _cli("schedule", str(rules), "--config", str(config)).returncode == 0
    rules.write_text('[[rule]]\ndays = "mon-xyz"\nstart = "06:30"\nmode = "comfort"\n')
    bad = _cli("schedule", str(rules), "--config", str(config))
    assert bad.returncode == 2 and "schedule rule 0: field 'days'" in bad.stderr, bad
    unknown = _cli("mode", "turbo", "--config", str(config))
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr
    assert _cli("setpoint", "eco", "17", "--config", str(config)).returncode == 0
    assert _cli("mode", "comfort", "--config", str(config)).returncode == 0  # as the fixture's config has it
