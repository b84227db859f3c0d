"""A heater whose jobs are disabled has no launcher dead-man: what puts its power at the floor after a
SIGKILL is the unit's ExecStopPost, `qrad-agent floor`. The daemon runs against hw-sim at full power, is
killed, and the command (run as systemd would) brings the board's measured power to the floor."""

from __future__ import annotations

import csv
import signal
import subprocess
from pathlib import Path

import pytest

from qrad_agent.config import load_config
from qrad_agent.ops.floor import agent_running
from test_daemon import AGENT, _agent_toml, _int, _wait_for, hwsim  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
FLOOR_W = 60.0  # the board's idle draw with P-states and quota at their minimum


def _power_w(trace: Path) -> float:
    """The board's last measured power (W), 0 before the simulator's first row."""
    try:
        rows = list(csv.DictReader(trace.open()))
    except (OSError, csv.Error):
        return 0.0
    return float(rows[-1]["power_w"]) if rows else 0.0


def _caps(root: Path) -> list[tuple[int, int]]:
    policies = sorted((root / "devices/system/cpu/cpufreq").glob("policy*"))
    return [(_int(p / "scaling_max_freq"), _int(p / "cpuinfo_min_freq")) for p in policies]


def test_sigkill_then_the_units_stop_post_puts_power_at_the_floor(tmp_path: Path, hwsim) -> None:
    root, trace = hwsim
    config = tmp_path / "agent.toml"
    # a setpoint the room cannot reach within the test: full power, caps raised, until the kill (at 20 °C a
    # loaded machine's slow CLI let the compressed room reach its setpoint and the caps come down first)
    config.write_text(_agent_toml(root, tmp_path / "state").replace("comfort_c = 20.0", "comfort_c = 28.0"))
    agent = subprocess.Popen([AGENT, "run", "--config", str(config)], stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: _power_w(trace) > 300, 30, "the heater above 300 W")
        cfg = load_config(config)
        _wait_for(lambda: agent_running(cfg), 30, "the agent's API")
        running = subprocess.run([AGENT, "floor", "--config", str(config)], capture_output=True, text=True,
                                 timeout=60)
        assert running.returncode == 1 and "the agent is running" in running.stdout  # it owns power then
        assert any(cap > low for cap, low in _caps(root))
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
    finally:
        if agent.poll() is None:
            agent.kill()
    assert any(cap > low for cap, low in _caps(root)), "the kill left no cap raised: nothing to prove"
    floor = subprocess.run([AGENT, "floor", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert floor.returncode == 0, floor.stdout + floor.stderr
    assert "cpufreq: at its minimum" in floor.stdout
    assert all(cap == low for cap, low in _caps(root))
    _wait_for(lambda: _power_w(trace) <= FLOOR_W, 10, "measured power at the floor")
