"""A whole computing heater in its room: boards, room sensor and the 2R2C room, stepped together.

Each ``step``: the board runs with the current room air (reading the agent's limits), all of its
electrical power goes as heat into the room's air node, together with the solar gain of the hour,
then the room sensor follows the new air temperature. ``run`` does this on the running asyncio loop,
scaled by a speed factor, so the same code serves real time (``qrad-hwsim serve``) and virtual time
(virtual_time.VirtualTimeLoop).

Run-time control: if ``<root>/.hwsim/sensor_fault`` exists, each step applies the fault it names
("ok", "stuck" or "missing"); ``qrad-hwsim fault`` writes it.

The heater's own cooling (``set_fault``, device "heater" of ``qrad-hwsim fault``): the boards' heat leaves
through the fans' air stream and the front panel. The panel (``surface_c``) follows
``air + k_panel * P`` with a time constant ``SURFACE_TAU_S``. A fault changes the paths, as in HEATER_FAULTS:
"fan_failure" (fans stopped: the CPU heatsinks, sized for forced air, fall to natural convection, about 3x
their thermal resistance, and the panel takes more of the heat) and "outlet_blocked" (the air outlet
covered: the fans turn but move almost no air, so nearly all the heat must leave through the panel, which
then runs at a bare panel radiator's 0.25 K/W; the air inside the case warms the CPUs a little).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from .board import Board, BoardSpec, BoardStep
from .room import Room, RoomParams
from .sensor import SENSOR_FAULTS, RoomSensor, SensorSpec
from .sim_clock import SimClock
from .sysfs_io import read_text
from .weather import Weather

CONTROL_DIR = ".hwsim"
SURFACE_K_PER_W = 0.06
"""Front panel above the room per W with the fans running and the outlet free (30 K at 500 W)."""
SURFACE_TAU_S = 270.0
"""Panel time constant: about 5 kg of aluminium (4.5 kJ/K) over 16.7 W/K to the room (chosen)."""


@dataclass(frozen=True)
class Cooling:
    """The heater's heat paths: panel K/W, CPU heatsink resistance factor, fan speed and air-flow shares."""

    panel_k_per_w: float
    cpu_r_th_factor: float
    fan_share: float
    airflow_share: float


HEATER_FAULTS = {
    "ok": Cooling(SURFACE_K_PER_W, 1.0, 1.0, 1.0),
    "fan_failure": Cooling(0.10, 3.0, 0.0, 0.15),
    "outlet_blocked": Cooling(0.25, 1.2, 1.0, 0.1),
}
TREE_DIRS = ("class", "devices", "fs", "bus", "dev", CONTROL_DIR)


def sensor_fault_path(root: Path) -> Path:
    """Control file a running simulator polls for sensor faults."""
    return Path(root) / CONTROL_DIR / "sensor_fault"


def reset_tree(root: Path) -> None:
    """Make ``root`` ready for a new simulator: absent or empty is fine; a previous simulator's tree
    (marked by its ``.hwsim`` folder) is removed; any other content is refused with ValueError, so
    a mistyped --root never deletes someone's files."""
    root = Path(root)
    if not root.exists() or not any(root.iterdir()):
        return
    if not (root / CONTROL_DIR).is_dir():
        raise ValueError(f"{root} is not empty and holds no qrad-hwsim tree ({CONTROL_DIR}/ missing)")
    for name in TREE_DIRS:
        shutil.rmtree(root / name, ignore_errors=True)


@dataclass(frozen=True)
class HeaterSpec:
    """The heater and its room: board, sensor, room constants, starting air temperature (°C)."""

    board: BoardSpec = field(default_factory=BoardSpec)
    sensor: SensorSpec = field(default_factory=SensorSpec)
    room: RoomParams = field(default_factory=RoomParams)
    initial_air_c: float = 16.0


@dataclass(frozen=True)
class HeaterState:
    """Snapshot after a step: s, °C, W, core-equivalents (sensor_c None while the sensor is missing)."""

    t_s: float
    air_c: float
    mass_c: float
    outdoor_c: float
    power_w: float
    compute_core_equiv: float
    sensor_c: float | None
    solar_w: float = 0.0
    surface_c: float | None = None
    fan_share: float = 1.0
    airflow_share: float = 1.0


OnStep = Callable[[HeaterState], Awaitable[None] | None]


class SimulatedHeater:
    """Builds the sysfs tree under ``root`` (standing for /sys) and simulates the heater in it.

    The room starts at ``spec.initial_air_c`` with its mass in balance with the air and the outdoor
    temperature at ``start``. ``seed`` seeds the one numpy Generator behind every random draw.
    """

    def __init__(self, root: Path, spec: HeaterSpec, weather: Weather, start: datetime,
                 seed: int = 0) -> None:
        self.root = Path(root)
        self.spec = spec
        self.weather = weather
        self.clock = SimClock(start)
        rng = np.random.default_rng(seed)
        (self.root / CONTROL_DIR).mkdir(parents=True, exist_ok=True)
        outdoor_c = weather.outdoor_c(self.clock.t_year_s(0.0))
        self.room = Room.at_equilibrium(spec.room, spec.initial_air_c, outdoor_c)
        self.board = Board(self.root, spec.board, spec.initial_air_c, rng)
        self.sensor = RoomSensor(self.root, spec.sensor, spec.initial_air_c, rng)
        self.last_board: BoardStep | None = None
        self.internal_w = 0.0  # occupants' heat (W), set by whoever simulates them
        self.fault = "ok"
        self.cooling = HEATER_FAULTS["ok"]
        self.surface_c = spec.initial_air_c
        self.state = HeaterState(0.0, self.room.air_c, self.room.mass_c, outdoor_c, 0.0, 0.0,
                                 self.sensor.published_c, surface_c=self.surface_c)

    def wall_time(self, t_s: float) -> datetime:
        """Calendar time at simulation second ``t_s``."""
        return self.clock.wall_time(t_s)

    def set_fault(self, kind: str) -> None:
        """Change the heater's cooling: one of HEATER_FAULTS ("ok", "fan_failure", "outlet_blocked")."""
        if kind not in HEATER_FAULTS:
            raise ValueError(f"heater fault must be one of {sorted(HEATER_FAULTS)}, not {kind!r}")
        self.fault, self.cooling = kind, HEATER_FAULTS[kind]
        self.board.r_th_k_w = self.spec.board.r_th_k_w * self.cooling.cpu_r_th_factor

    def _poll_control(self) -> None:
        fault = read_text(sensor_fault_path(self.root))
        if fault in SENSOR_FAULTS and fault != self.sensor.fault:
            self.sensor.set_fault(fault)

    def step(self, dt_s: float) -> HeaterState:
        """Advance the heater and room by ``dt_s`` s; return (and keep in ``state``) the new state."""
        self._poll_control()
        t_year_s = self.clock.t_year_s(self.state.t_s)
        outdoor_c = self.weather.outdoor_c(t_year_s)
        solar_w = self.spec.room.solar_gain_w(self.weather.ghi_w_m2(t_year_s))
        board = self.board.step(dt_s, self.room.air_c)
        self.room.step(dt_s, board.power_w, outdoor_c, solar_w=solar_w, internal_w=self.internal_w)
        sensor_c = self.sensor.step(dt_s, self.room.air_c)
        panel_target_c = self.room.air_c + self.cooling.panel_k_per_w * board.power_w
        self.surface_c = panel_target_c + (self.surface_c - panel_target_c) * math.exp(-dt_s / SURFACE_TAU_S)
        self.last_board = board
        self.state = HeaterState(self.state.t_s + dt_s, self.room.air_c, self.room.mass_c, outdoor_c,
                                 board.power_w, board.compute_core_equiv, sensor_c, solar_w, self.surface_c,
                                 self.cooling.fan_share, self.cooling.airflow_share)
        return self.state

    def advance(self, dt_s: float, max_step_s: float) -> HeaterState:
        """Advance ``dt_s`` s in steps of at most ``max_step_s`` s."""
        remaining_s = dt_s
        while remaining_s > 1e-9:
            chunk_s = min(max_step_s, remaining_s)
            self.step(chunk_s)
            remaining_s -= chunk_s
        return self.state

    async def run(self, step_s: float = 10.0, speed: float = 1.0, on_step: OnStep | None = None) -> None:
        """Run until cancelled: every ``step_s / speed`` s of loop time, advance the model by the loop
        time elapsed times ``speed`` (in steps of at most ``step_s`` model seconds) and call
        ``on_step(state)`` (which may be a coroutine function)."""
        if step_s <= 0 or speed <= 0:
            raise ValueError("step_s and speed must be > 0")
        loop = asyncio.get_running_loop()
        period_s = step_s / speed
        last_s = loop.time()
        deadline_s = last_s
        while True:
            deadline_s += period_s
            await asyncio.sleep(max(0.0, deadline_s - loop.time()))
            now_s = loop.time()
            state = self.advance((now_s - last_s) * speed, step_s)
            last_s = now_s
            if on_step is not None:
                result = on_step(state)
                if inspect.isawaitable(result):
                    await result
