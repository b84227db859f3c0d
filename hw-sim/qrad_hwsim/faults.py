"""Fault control of a running simulator: a command (``qrad-hwsim fault``) or a scenario file.

Commands land in ``<root>/.hwsim/faults.json`` ({device: kind}); a scenario is a TOML file of
``[[fault]]`` tables with ``at_s`` (model seconds from the start), ``device`` and ``kind``. Each step the
serve loop applies what is new, moves the device suite with the room, and writes what every device shows
to ``<root>/.hwsim/truth.json`` (for tests that compare the agent's readings with the simulator's).

Thermal-protection faults (each makes one of the agent's thermal checks true through the real files):
``heater fan_failure`` (CPU packages over their limit in coretemp), ``heater outlet_blocked`` (the panel
over its limit in temp3), ``surface detached`` (power applied, the probe does not respond),
``surface misplaced`` (the probe warms with the heater idle), ``surface sentinel`` (85.000 °C) and
``surface unplugged`` (temp3_input vanishes).
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .heater import CONTROL_DIR, HeaterState, SimulatedHeater
from .sim_clock import typical_year_s
from .sysfs_io import write_text_atomic
from .weather import Weather


def faults_path(root: Path) -> Path:
    """The device-fault control file of a running simulator."""
    return root / CONTROL_DIR / "faults.json"


def outcome_path(root: Path) -> Path:
    """Where the running simulator answers each fault request: {device: {"kind", "ok", "detail"}}."""
    return root / CONTROL_DIR / "fault_outcomes.json"


def truth_path(root: Path) -> Path:
    """Where the simulator writes what every device shows."""
    return root / CONTROL_DIR / "truth.json"


def request_fault(root: Path, device: str, kind: str) -> None:
    """Add ``device: kind`` to the control file (read by the running serve on its next step)."""
    path = faults_path(root)
    path.parent.mkdir(exist_ok=True)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    current[device] = kind
    write_text_atomic(path, json.dumps(current))


@dataclass(frozen=True)
class TimedFault:
    """One scenario entry: at model second ``at_s``, put ``device`` in fault ``kind``."""

    at_s: float
    device: str
    kind: str


def load_scenario(path: Path) -> list[TimedFault]:
    """The ``[[fault]]`` entries of a TOML scenario, by time. Raises ValueError naming a bad entry."""
    data = tomllib.loads(path.read_text())
    faults = []
    for index, entry in enumerate(data.get("fault", [])):
        try:
            faults.append(TimedFault(float(entry["at_s"]), str(entry["device"]), str(entry["kind"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: fault[{index}]: {exc}") from exc
    return sorted(faults, key=lambda f: f.at_s)


class FaultControl:
    """Applies commanded and scheduled faults and moves the device suite after each heater step."""

    def __init__(self, root: Path, heater: SimulatedHeater, suite, scenario: list[TimedFault]) -> None:
        self.root, self.heater, self.suite = root, heater, suite
        self.pending = list(scenario)
        self._applied: dict[str, str] = {}
        self._outcomes: dict[str, dict] = {}
        self._last_t_s = 0.0

    def apply(self, device: str, kind: str) -> None:
        """Inject ``kind`` into ``device`` ("room" is the room temperature sensor, "heater" the heater's own
        cooling: fan_failure, outlet_blocked; the others are the suite's devices)."""
        if device == "room":
            self.heater.sensor.set_fault(kind)
        elif device == "heater":
            self.heater.set_fault(kind)
        elif self.suite is not None:
            self.suite.set_fault(device, kind)
        self._applied[device] = kind

    def step(self, state: HeaterState, weather: Weather) -> None:
        """After a heater step: faults due now, device values, truth file."""
        while self.pending and self.pending[0].at_s <= state.t_s:
            fault = self.pending.pop(0)
            self.apply(fault.device, fault.kind)
        try:
            requested = json.loads(faults_path(self.root).read_text())
        except (OSError, ValueError):
            requested = {}
        answered = False
        for device, kind in requested.items():
            if self._applied.get(device) != kind:
                try:
                    self.apply(device, kind)
                    self._outcomes[device] = {"kind": kind, "ok": True, "detail": "applied"}
                except (KeyError, ValueError) as exc:
                    detail = str(exc.args[0]) if exc.args else str(exc)
                    print(f"qrad-hwsim: fault {device}={kind} refused: {detail}", flush=True)
                    self._outcomes[device] = {"kind": kind, "ok": False, "detail": detail}
                    self._applied[device] = kind
                answered = True
        if answered:
            write_text_atomic(outcome_path(self.root), json.dumps(self._outcomes))
        if self.suite is None:
            return
        dt_s = max(0.0, state.t_s - self._last_t_s)
        self._last_t_s = state.t_s
        moment = self.heater.wall_time(state.t_s)
        t_year_s = typical_year_s(moment)
        self.suite.update(state, moment, dt_s, weather.pressure_pa(t_year_s), weather.ghi_w_m2(t_year_s))
        self.heater.internal_w = self.suite.internal_gains_w
        truth = self.suite.truth() | {"room_temp": state.sensor_c, "t_s": state.t_s}
        if self.heater.last_board is not None:  # coretemp shows whole degrees
            truth |= {f"cpu{i}_temp": float(round(t)) for i, t in enumerate(self.heater.last_board.cpu_temp_c)}
        write_text_atomic(truth_path(self.root), json.dumps(truth))
