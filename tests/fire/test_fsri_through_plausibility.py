"""A real fire's heat gets through the sensor hub's rate check: the UL FSRI armchair fire (excerpt under
tests/data/fire/, MIT), replayed by a room sensor at its polling period through the real hub and the fire
detector, reaches ALARM; and within two samples of the same samples fed to the engine without any check. Mid height (1.2 m below the 2.4 m ceiling) the rise is about 1.7, 2.8, 3.8 then
5.3 K/s over successive 10 s: faster than the 1 K/s room rate, so the rate check must let a physically
possible path through."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path
from typing import Literal

import pytest
from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverContext, Reading
from qrad_hwsim.virtual_time import run_virtual

from qrad_agent.clock import Clock
from qrad_agent.config import SensorHubConfig
from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.detector import FireDetector
from qrad_agent.fire.engine import FireEngine, FireInputs
from qrad_agent.fire.fusion import FireState
from qrad_agent.sensing.hub import SensorHub

EXCERPT = Path(__file__).resolve().parents[1] / "data" / "fire" / "fsri_redaccent_closed_corner_1_excerpt.csv"
MID = "Quadrant A Temperature 1.2 m Below Ceiling"
LOW = "Quadrant A Temperature 1.8 m Below Ceiling"


def _series(column: str) -> tuple[float, list[float]]:
    """(time of the first row from ignition (s), the column at 1 Hz (°C))."""
    with EXCERPT.open() as f:
        rows = list(csv.DictReader(f))
    return float(rows[0]["Time"]), [float(r[column]) for r in rows]


class ReplayConfig(DriverConfig):
    type: Literal["replay"] = "replay"


class ReplaySensor(Driver):
    """A room sensor reading the recorded temperature at the loop time (the 1 Hz row at or before it)."""

    type_name = "replay"
    config_model = ReplayConfig

    def __init__(self, values_c: list[float], period_s: float) -> None:
        self.values_c = values_c
        super().__init__(ReplayConfig(name="room_temp", timeout_s=1.0, period_s=period_s), DriverContext())

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        return (ChannelSpec("room_temp", "temperature", "°C", -40, 125, self.period_s),)

    async def open(self) -> None:
        pass

    async def read(self, t_s: float) -> list[Reading]:
        value = self.values_c[min(int(t_s), len(self.values_c) - 1)]
        return [Reading("room_temp", value, "°C", t_s)]


def _alarm_through_hub(values_c: list[float], period_s: float) -> float | None:
    """Loop time (s) of the first ALARM with the hub and the detector running; None if none."""
    clock = Clock()
    hub = SensorHub([ReplaySensor(values_c, period_s)], clock, SensorHubConfig(), ["room_temp"])
    alarms: list[float] = []
    fire = FireDetector(FireConfig(room_channels=["room_temp"]), hub, lambda: None, lambda: 0.0, clock,
                        lambda decision: alarms.append(clock.monotonic()))

    async def scenario() -> None:
        tasks = [asyncio.create_task(hub.run())]
        await asyncio.sleep(0.05)  # the first reading is in before the first evaluation
        tasks.append(asyncio.create_task(fire.run()))
        await asyncio.sleep(len(values_c))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_virtual(scenario())
    return alarms[0] if alarms else None


def _alarm_unchecked(values_c: list[float], period_s: float) -> float | None:
    """The same samples straight into the engine, evaluated every fire period: no plausibility at all."""
    engine, cfg = FireEngine(FireConfig(room_channels=["room_temp"])), FireConfig()
    t_s, sample_t = 0.0, 0.0
    while t_s < len(values_c):
        sample_t = (t_s // period_s) * period_s
        if engine.step(t_s, FireInputs(temp_c=values_c[int(sample_t)], power_w=0.0)).state is FireState.ALARM:
            return t_s
        t_s += cfg.period_s
    return None


@pytest.mark.parametrize("column", [MID, LOW])
@pytest.mark.parametrize("period_s", [1.0, 10.0])  # the recording's rate; a room sensor's nominal period
def test_the_fsri_fire_reaches_alarm_through_the_rate_check(column: str, period_s: float) -> None:
    first_s, values_c = _series(column)
    through_hub = _alarm_through_hub(values_c, period_s)
    unchecked = _alarm_unchecked(values_c, period_s)
    assert unchecked is not None
    assert through_hub is not None, "the rate check held the fire back"
    print(f"{column} every {period_s:g} s: ALARM at {through_hub + first_s:.0f} s from ignition through the "
          f"hub, {unchecked + first_s:.0f} s unchecked")
    # a jump is held until a following sample shows the path (one or two samples), and the detector
    # evaluates every fire period
    assert through_hub <= unchecked + 2 * period_s + 2 * FireConfig().period_s
