"""A live simulator: the heater, its room and every device, run on the event loop in real time x speed.

Shared by ``qrad-hwsim serve`` and ``qrad-hwsim rig``: `LiveSimulator` builds the sysfs tree under ``root``
(refusing a directory that is not a previous simulator's), starts the device suite's serial ports and
microphone (``async with``), and `run` steps the model until ``stop`` is set, applying the timed and the
commanded faults (faults.py) and moving every device after each step, then calling the caller's
``on_step``. `stop_on_signals` is the SIGTERM/SIGINT -> Event wiring both commands use.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from .devices.suite import DeviceSuite
from .faults import FaultControl, TimedFault, live_path
from .heater import HeaterSpec, HeaterState, SimulatedHeater, reset_tree
from .sysfs_io import write_files, write_text_atomic
from .weather import Weather


BOARD_OUTPUT_LINES = (23, 24)
"""GPIO output lines of the simulated board: 23 the alarm relay/buzzer, 24 the front LED (identify);
hw-sim's agent.toml names them in safety.alarm_gpio_line and safety.identify_gpio_line."""


class LiveSimulator:
    """One simulated heater board and room with (``devices="all"``) every sensor of the heater."""

    def __init__(self, root: Path, spec: HeaterSpec, weather: Weather, start: datetime, seed: int = 0,
                 devices: str = "all", noise: bool = True, faults: Iterable[TimedFault] = (),
                 occupancy: Any = None) -> None:
        self.root = Path(root).resolve()
        reset_tree(self.root)
        self.weather = weather
        self.heater = SimulatedHeater(self.root, spec, weather, start, seed)
        self.suite: DeviceSuite | None = None
        if devices == "all":
            self.suite = DeviceSuite(self.root, np.random.default_rng(seed + 1), noise=noise,
                                     occupancy=occupancy)
            for line in BOARD_OUTPUT_LINES:  # the alarm relay and the front LED: outputs the agent drives
                write_files(self.root / "class" / "gpio" / f"gpio{line}",
                            {"direction": "out", "active_low": 0, "value": 0, "edge": "none"})
        self.control = FaultControl(self.root, self.heater, self.suite, list(faults))

    async def __aenter__(self) -> LiveSimulator:
        if self.suite is not None:
            await self.suite.start()
        # Every device file holds a value before READY, as a real board's do from power-on: a reader that
        # starts at once must not find them missing (and log a fault) until the first model step.
        self.control.step(self.heater.state, self.weather)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.suite is not None:
            await self.suite.stop()

    async def run(self, step_s: float, speed: float, stop: asyncio.Event,
                  on_step: Callable[[HeaterState], None] | None = None) -> None:
        """Step the model (``step_s`` model s; ``speed`` model s per real s) until ``stop`` is set."""

        def step(state: HeaterState) -> None:
            self.control.step(state, self.weather)
            if on_step is not None:
                on_step(state)

        live = live_path(self.root)
        write_text_atomic(live, json.dumps({"pid": os.getpid(), "step_period_s": step_s / speed}))
        try:
            async with asyncio.TaskGroup() as group:
                runner = group.create_task(self.heater.run(step_s, speed, step), name="hwsim-run")
                await stop.wait()
                runner.cancel()
        finally:
            live.unlink(missing_ok=True)


def stop_on_signals() -> asyncio.Event:
    """An Event set by SIGTERM or SIGINT on the running loop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop
