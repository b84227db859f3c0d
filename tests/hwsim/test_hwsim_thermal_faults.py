"""hw-sim's thermal-protection faults: the heater's cooling (fan_failure, outlet_blocked) and the panel probe
(detached, misplaced, sentinel, unplugged), seen in the sysfs files the agent reads, injected the ways a
running simulator takes them (``qrad-hwsim fault`` and a scenario file)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from qrad_hwsim.cli import main
from qrad_hwsim.devices.suite import DeviceSuite
from qrad_hwsim.faults import FaultControl, load_scenario
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

START = datetime(2026, 1, 5, 10)


class Rig:
    """A heater, its device suite (servers not started: sysfs only) and the fault control of ``serve``."""

    def __init__(self, root: Path, scenario=(), initial_air_c: float = 20.0) -> None:
        self.root = root
        self.weather = Weather.constant(0.0)
        self.heater = SimulatedHeater(root, HeaterSpec(initial_air_c=initial_air_c), self.weather, START)
        self.suite = DeviceSuite(root, np.random.default_rng(0), noise=False)
        self.control = FaultControl(root, self.heater, self.suite, list(scenario))
        self.full_power(False)

    def full_power(self, on: bool) -> None:
        """What the agent would write: every P-state cap at the top (or bottom) and the jobs' quota free."""
        for policy in self.heater.board.policies:
            table = policy.dir / ("cpuinfo_max_freq" if on else "cpuinfo_min_freq")
            (policy.dir / "scaling_max_freq").write_text(table.read_text())

    def run(self, seconds: float, step_s: float = 5.0) -> None:
        for _ in range(int(seconds / step_s)):
            self.control.step(self.heater.step(step_s), self.weather)

    def hwmon(self, name: str) -> float | None:
        path = self.suite.board.dir / name
        return int(path.read_text()) / (1000 if name.startswith("temp") else 1) if path.exists() else None

    def coretemp_max_c(self) -> float:
        return max(int(c.dir.joinpath("temp1_input").read_text()) / 1000 for c in self.heater.board.coretemps)


def test_healthy_panel_follows_power_with_its_time_constant(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.full_power(True)
    rig.run(60)
    early = rig.hwmon("temp3_input") - rig.heater.state.air_c
    rig.run(1800)
    settled = rig.hwmon("temp3_input") - rig.heater.state.air_c
    assert 3 < early < 15 and 27 < settled < 31  # 0.06 K/W at 500 W, 270 s time constant
    assert rig.hwmon("fan1_input") == 2000 and rig.coretemp_max_c() < 80


def test_fan_failure_stops_the_fans_and_overheats_the_cpus(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.full_power(True)
    rig.run(300)
    assert main(["fault", "--root", str(tmp_path), "--device", "heater", "--kind", "fan_failure", "--wait", "0"]) == 0
    rig.run(30)
    assert rig.hwmon("fan1_input") == 0 and rig.hwmon("fan2_input") == 0
    assert rig.coretemp_max_c() > 100
    rig.full_power(False)  # at the lowest P-state the CPUs cool even without fans
    rig.run(120)
    assert rig.coretemp_max_c() < 60


def test_blocked_outlet_takes_the_panel_over_its_limit_at_full_power(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.full_power(True)
    rig.run(600)
    assert rig.hwmon("temp3_input") < 60
    assert main(["fault", "--root", str(tmp_path), "--device", "heater", "--kind", "outlet_blocked", "--wait", "0"]) == 0
    rig.run(300)
    assert rig.hwmon("temp3_input") > 85 and rig.coretemp_max_c() < 95  # the panel, not the CPUs, first
    assert rig.hwmon("temp2_input") > rig.hwmon("temp1_input") + 30  # hardly any air leaves


def test_detached_probe_reads_the_room_while_power_goes_in(tmp_path: Path) -> None:
    rig = Rig(tmp_path, load_scenario(_scenario(tmp_path, 600.0, "surface", "detached")))
    rig.full_power(True)
    rig.run(590)
    assert rig.hwmon("temp3_input") - rig.heater.state.air_c > 20
    rig.run(200)
    assert abs(rig.hwmon("temp3_input") - rig.heater.state.air_c) < 1.0
    assert rig.heater.surface_c - rig.heater.state.air_c > 25  # the panel itself is as warm as ever


def test_misplaced_probe_warms_while_the_panel_does_not(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.run(1800)
    before, panel_before = rig.hwmon("temp3_input"), rig.heater.surface_c
    rig.suite.set_fault("surface", "misplaced")
    rig.run(300)
    assert rig.hwmon("temp3_input") - before > 15  # the pipe it touches warms
    assert abs(rig.heater.surface_c - panel_before) < 1.0  # the panel does not


@pytest.mark.parametrize("kind, shown", [("sentinel", 85.0), ("unplugged", None)])
def test_dead_probe_shows_the_sentinel_or_vanishes_then_recovers(tmp_path: Path, kind: str, shown) -> None:
    rig = Rig(tmp_path)
    rig.run(60)
    rig.suite.set_fault("surface", kind)
    rig.run(10)
    assert rig.hwmon("temp3_input") == shown and rig.hwmon("temp1_input") is not None
    rig.suite.set_fault("surface", "ok")
    rig.run(10)
    assert rig.hwmon("temp3_input") is not None and rig.hwmon("temp3_input") < 30


def test_unknown_kinds_are_refused_naming_the_valid_ones(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    with pytest.raises(ValueError, match="fan_failure"):
        rig.heater.set_fault("melted")
    with pytest.raises(ValueError, match="detached"):
        rig.suite.set_fault("surface", "melted")


def _scenario(tmp_path: Path, at_s: float, device: str, kind: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(f'[[fault]]\nat_s = {at_s}\ndevice = "{device}"\nkind = "{kind}"\n')
    return path


def test_an_unknown_device_is_refused_naming_every_device(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    with pytest.raises(KeyError) as refused:
        rig.control.apply("nosuch", "ok")
    assert "'heater'" in str(refused.value) and "'room'" in str(refused.value) and "'co2'" in str(refused.value)
