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
import os
import tomllib
import uuid
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


def live_path(root: Path) -> Path:
    """Where a running simulator says who it is and how often it steps: {"pid", "step_period_s"} (real s)."""
    return root / CONTROL_DIR / "live.json"


def live_simulator(root: Path) -> dict | None:
    """The running simulator's live.json when its process is alive, else None."""
    try:
        live = json.loads(live_path(root).read_text())
        os.kill(int(live["pid"]), 0)
    except PermissionError:  # alive, another user's
        return live
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return live


def truth_path(root: Path) -> Path:
    """Where the simulator writes what every device shows."""
    return root / CONTROL_DIR / "truth.json"


def request_fault(root: Path, device: str, kind: str) -> str:
    """Add ``device: {"kind", "id"}`` to the control file (read by the running serve on its next step);
    returns the request's id, which the simulator's answer carries (a repeated request is answered too)."""
    path = faults_path(root)
    path.parent.mkdir(exist_ok=True)
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = {}
    request_id = uuid.uuid4().hex[:12]
    current[device] = {"kind": kind, "id": request_id}
    write_text_atomic(path, json.dumps(current))
    return request_id


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
        self._answered: dict[str, str | None] = {}
        self._last_t_s = 0.0

    def apply(self, device: str, kind: str) -> None:
        """Inject ``kind`` into ``device`` ("room" is the room temperature sensor, "heater" the heater's own
        cooling: fan_failure, outlet_blocked; the others are the suite's devices)."""
        if device == "room":
            self.heater.sensor.set_fault(kind)
        elif device == "heater":
            self.heater.set_fault(kind)
        elif self.suite is not None:
            try:
                self.suite.set_fault(device, kind)
            except KeyError as exc:  # name the two devices this layer adds to the suite's
                raise KeyError(f"no device {device!r}; devices: {sorted([*self.suite.devices, 'heater', 'room'])}"
                               ) from exc
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
        for device, request in requested.items():
            kind, request_id = (request, None) if isinstance(request, str) else (
                str(request.get("kind")), request.get("id"))
            new_id = request_id is not None and request_id != self._answered.get(device)
            if self._applied.get(device) != kind:
                try:
                    self.apply(device, kind)
                    self._outcomes[device] = {"kind": kind, "ok": True, "detail": "applied", "id": request_id}
                except (KeyError, ValueError) as exc:
                    detail = str(exc.args[0]) if exc.args else str(exc)
                    print(f"qrad-hwsim: fault {device}={kind} refused: {detail}", flush=True)
                    self._outcomes[device] = {"kind": kind, "ok": False, "detail": detail, "id": request_id}
                    self._applied[device] = kind
                answered = True
            elif new_id:  # the same state asked again: answered, nothing to change
                previous = self._outcomes.get(device, {"ok": True, "detail": "applied"})
                self._outcomes[device] = {**previous, "kind": kind, "id": request_id,
                                          "detail": "already so" if previous.get("ok") else previous["detail"]}
                answered = True
            self._answered[device] = request_id
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
