"""The agent against a live hw-sim with every sensor: each channel reads what the simulator shows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from qrad_agent.api.client import AgentUnreachable, call

EXAMPLE = Path(__file__).resolve().parents[2] / "hw-sim" / "qrad_hwsim" / "agent.toml"
AGENT = str(Path(sys.executable).with_name("qrad-agent"))
HWSIM = str(Path(sys.executable).with_name("qrad-hwsim"))

RESOLUTION = {"co2": 1.0, "pm_pm1_0": 1.0, "pm_pm2_5": 1.0, "pm_pm10": 1.0, "room_temp": 0.01,
              "room_temp_ds18b20": 0.0625, "room_temp_bme280": 0.01, "room_humidity_bme280": 0.01,
              "pressure": 0.01, "light": 1.0, "inlet_temp": 0.001, "outlet_temp": 0.001,
              "surface_temp": 0.001, "fan1": 1.0, "fan2": 1.0, "mains_voltage": 1e-3, "mains_current": 1e-4,
              "mains_power": 1e-3, "mains_energy": 1e-4, "mains_frequency": 1e-4, "presence": 0, "window": 0,
              "door": 0, "cpu0_temp": 1.0, "cpu1_temp": 1.0, "cpu2_temp": 1.0, "cpu3_temp": 1.0}
"""What each sensor resolves (its unit): the tolerance of the comparison, plus a little for values that
move between the simulator's snapshot and the agent's last poll."""


def _config(tmp_path: Path, root: Path) -> Path:
    text = EXAMPLE.read_text().replace("/tmp/qrad-hwsim-state", str(tmp_path / "state"))
    text = text.replace("/tmp/qrad-hwsim", str(root))
    data = tomllib.loads(text)
    assert data["power"]["sysfs_root"] == str(root)
    text = text.replace('mode = "auto"', 'mode = "off"')  # hold power still so the meter's values hold still
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def _mismatches(channels: dict, truth: dict) -> list[str]:
    problems = []
    for name, resolution in RESOLUTION.items():
        ch = channels.get(name)
        if ch is None or ch["quality"] != "ok" or ch["value"] is None:
            problems.append(f"{name}: {ch and ch['quality']} {ch and ch['reason']}")
            continue
        if name not in truth:  # the simulator's snapshot before its first board step has no CPU temperatures
            problems.append(f"{name}: not in the simulator's truth yet")
            continue
        tolerance = resolution + 0.002 * abs(truth[name])  # + drift between snapshot and poll
        if abs(ch["value"] - truth[name]) > tolerance:
            problems.append(f"{name}: agent {ch['value']} vs simulator {truth[name]} (±{tolerance:.4g})")
    return problems


@pytest.fixture
def live_heater(tmp_path: Path):
    root = tmp_path / "sys"
    sim = subprocess.Popen([HWSIM, "serve", "--root", str(root), "--speed", "1", "--step", "1", "--no-noise",
                            "--initial-air-c", "20"], stdout=subprocess.PIPE, text=True)
    assert sim.stdout is not None and sim.stdout.readline().startswith("READY")
    config = _config(tmp_path, root)
    agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=(tmp_path / "agent.log").open("w"))
    yield root, tmp_path / "state" / "api.sock"
    for proc in (agent, sim):
        proc.send_signal(signal.SIGTERM)
    assert agent.wait(timeout=10) == 0
    sim.wait(timeout=10)


def test_every_channel_reads_what_the_simulator_shows(live_heater) -> None:
    root, socket_path = live_heater
    deadline = time.monotonic() + 40
    problems: list[str] = ["never compared"]
    while time.monotonic() < deadline and problems:
        time.sleep(0.5)
        try:
            channels = call(socket_path, "sensors")["channels"]
            truth = json.loads((root / ".hwsim" / "truth.json").read_text())
        except (AgentUnreachable, FileNotFoundError):
            continue
        problems = _mismatches(channels, truth)
    assert problems == []
    assert len(channels) >= 20
    sound = channels["sound"]
    assert sound["quality"] == "ok" and 25 < sound["value"] < 60  # 32 dB SPL pink background, A-weighted
    # The technicians' view of the same thing, in both output forms.
    as_json = subprocess.run([AGENT, "sensors", "--socket", str(socket_path), "--json"], capture_output=True,
                             text=True, timeout=30)
    assert as_json.returncode == 0
    assert set(RESOLUTION) <= set(json.loads(as_json.stdout)["channels"])
    table = subprocess.run([AGENT, "sensors", "--socket", str(socket_path)], capture_output=True, text=True,
                           timeout=30)
    assert table.returncode == 0
    assert all(any(line.startswith(name + " ") for line in table.stdout.splitlines()) for name in RESOLUTION)


def test_sensors_command_without_an_agent_exits_69(tmp_path: Path) -> None:
    result = subprocess.run([AGENT, "sensors", "--socket", str(tmp_path / "none.sock")], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 69 and "unreachable" in result.stderr
