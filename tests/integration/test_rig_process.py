"""The rig test: `qrad-hwsim rig` and the real `qrad-agent run` daemon as two processes, with a real broker.

The shipped winter_day scenario (a cold morning, occupants, the SHT4x freezing, a fire) runs at 60x. The
agent runs as systemd would run it, from its own config file: hw-sim's example config with the paths under
the rig's root and the time constants divided by the speed. The broker is stopped before the fire and
started again once the agent has raised the alarm, so the alarm is stored during the outage and delivered
after it. Checks: every expectation of the rig's report met; the platform got the alarm once, and a late
subscriber finds it retained; the per-device sequence has no gap across the outage.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from qrad_agent.sim import example_config_data
from qrad_agent.sync.devbroker import MOSQUITTO, DevBroker, make_pki
from qrad_hwsim.platform import Platform
from qrad_hwsim.rig import load_scenario
from qrad_hwsim.rig_expect import render

if not Path(MOSQUITTO).exists() and shutil.which("mosquitto") is None:
    pytest.skip("mosquitto is not installed (tests/run.sh installs it)", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]

AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))
DEVICE = "heater-1"
ALARM_LINE = 23
OUTAGE_BEFORE_FIRE_S = 900.0
"""Model seconds before the ignition at which the broker goes away (15 real s at 60x)."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """The config as TOML: scalars and inline tables first, then [tables] and [[arrays of tables]]."""
    is_table_list = lambda v: isinstance(v, list) and v and all(isinstance(x, dict) for x in v)  # noqa: E731
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
             if not isinstance(v, dict) and not is_table_list(v)]
    for key, value in data.items():
        name = f"{prefix}{_toml_key(key)}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", to_toml(value, f"{name}.")]
        elif is_table_list(value):
            for item in value:
                lines += ["", f"[[{name}]]", to_toml(item, f"{name}.")]
    return "\n".join(lines)


def agent_config(tmp_path: Path, root: Path, speed: float, sync: dict[str, Any]) -> Path:
    """hw-sim's example config for a heater under ``root`` at ``speed``; the file the daemon is given."""
    text_root = str(root)
    data = example_config_data()
    data.update(device_id=DEVICE, state_dir=str(tmp_path / "state"))
    data["api"] = {"socket_path": str(tmp_path / "api.sock")}
    data["logging"] = {"level": "info", "format": "json"}
    data["power"].update(sysfs_root=text_root, jobs_cgroup=f"{text_root}/fs/cgroup/qrad-jobs",
                         heartbeat_timeout_s=10.0)
    for sensor in data["sensors"]:
        for key in ("port", "path"):
            if key in sensor:
                sensor[key] = sensor[key].replace("/tmp/qrad-hwsim", text_root)
        if sensor["type"] in ("hwmon", "iio", "w1_therm"):
            sensor["period_s"] = 1.0
    sht = next(s for s in data["sensors"] if s["name"] == "room_sht4x")
    sht["stuck_after_s"] = 1200.0 / speed  # a frozen SHT4x is flagged within 20 simulated minutes
    data["thermostat"].update(mode="comfort", period_s=30.0 / speed, stale_after_s=10.0)
    data["thermostat"]["pid"] = {"kp_w_per_k": 1400.0, "ti_s": 1100.0 / speed}
    data["thermostat"]["window"] = {"drop_window_s": 300.0 / speed, "max_pause_s": 1800.0 / speed}
    data["safety"]["alarm_gpio_line"] = ALARM_LINE
    # CO2 is judged by its rate of rise (ppm per real second), which the rig compresses by its speed: two
    # occupants at 60x read as a CO2 source of over a hundred people and, when the PIR misses them, as
    # unexplained combustion gas. The fire here is found by its alarm sound, heat and particles.
    data["fire"]["co2_channels"] = []
    data["sync"] = sync
    path = tmp_path / "agent.toml"
    path.write_text(to_toml(data) + "\n")
    return path


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(poll_s)


def _model_s(root: Path) -> float:
    try:
        return float(json.loads((root / ".hwsim" / "truth.json").read_text())["t_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def _stop(process: subprocess.Popen, timeout_s: float = 20.0) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    return process.wait(timeout_s)


def test_winter_day_rig_with_the_real_daemon(tmp_path: Path) -> None:
    scenario = load_scenario("winter_day")
    assert scenario.fire is not None
    pki = make_pki(tmp_path / "pki", ("platform", DEVICE))
    broker = DevBroker(tmp_path / "broker", pki)
    broker.start()
    cert, key = pki.client(DEVICE)
    sync = {"host": "127.0.0.1", "port": broker.port, "ca_file": str(pki.ca), "cert_file": str(cert),
            "key_file": str(key), "keepalive_s": 2, "backoff_initial_s": 0.1, "backoff_max_s": 0.5,
            "connect_timeout_s": 5.0, "outbox_path": str(tmp_path / "outbox.db"),
            "outbox_durability": "normal",            "telemetry_period_s": 2.0, "state_period_s": 1.0}
    root = tmp_path / "sys"
    report_path = tmp_path / "report.json"
    config = agent_config(tmp_path, root, scenario.speed, sync)
    agent_log = open(tmp_path / "agent.log", "w")
    rig = agent = None
    started = time.monotonic()
    try:
        with Platform("127.0.0.1", broker.platform_port, pki.ca, *pki.client("platform")) as platform:
            rig = subprocess.Popen([HWSIM, "rig", "--root", str(root), "--scenario", "winter_day",
                                    "--report", str(report_path)], stdout=subprocess.PIPE, text=True)
            assert rig.stdout is not None and rig.stdout.readline().startswith("READY")
            agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stdout=agent_log,
                                     stderr=subprocess.STDOUT,
                                     env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
            log = platform.devices[DEVICE]
            assert platform.wait_for(lambda p: len(p.devices[DEVICE].seen) >= 3, 60), "no telemetry"

            # The broker goes away before the fire; the agent raises the alarm during the outage.
            fire_at_s = scenario.fire.at_s
            _wait(lambda: _model_s(root) >= fire_at_s - OUTAGE_BEFORE_FIRE_S, 300, "the pre-fire time")
            with platform.cond:
                before = max(log.seen)
            broker.stop()
            outage_started = time.time()
            alarm_output = root / "class" / "gpio" / f"gpio{ALARM_LINE}" / "value"
            _wait(lambda: alarm_output.read_text().strip() == "1", 120, "the alarm output")
            early = [m for m in log.messages.values() if m["kind"] == "alarm"]
            assert not early, (f"an alarm reached the platform before the outage (model time now "
                               f"{_model_s(root):.0f} s, ignition at {fire_at_s:.0f} s): {early}")
            broker.start()
            outage_ended = time.time()
            assert platform.wait_for(lambda p: any(m["kind"] == "alarm" for m in log.messages.values()), 60)

            # The rig ends at its duration and reports.
            assert rig.wait(timeout=300) in (0, 1)
            report = json.loads(report_path.read_text())
            print(render(report))
            assert platform.wait_for(lambda p: max(log.seen) >= before + 20, 30)
            with platform.cond:
                alarms = [m for m in log.messages.values() if m["kind"] == "alarm"]
                missing = log.missing(max(log.seen))
                latest = max(log.seen)
        with Platform("127.0.0.1", broker.platform_port, pki.ca, *pki.client("platform"),
                      client_id="platform-late", clean=True) as late:
            retained = late.wait_for(
                lambda p: any(m["kind"] == "alarm" for m in p.devices[DEVICE].messages.values()), 10)
            assert retained, "a late subscriber finds no retained alarm"
    finally:
        for process in (agent, rig):
            if process is not None:
                _stop(process)
        broker.stop()
        agent_log.close()
        print(f"wall time {time.monotonic() - started:.0f} s; agent log: {tmp_path / 'agent.log'}")

    failed = [e for e in report["expectations"] if not e["met"]]
    assert report["all_met"] and not failed, failed
    assert report["ended_by"] == "duration"
    assert len(alarms) == 1 and alarms[0]["body"]["state"] == "raised", alarms
    assert outage_started <= float(alarms[0]["ts"]) <= outage_ended, "the alarm was raised during the outage"
    assert missing == [] and latest > before, f"sequence gaps: {missing[:20]}"
