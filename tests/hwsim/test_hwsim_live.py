"""LiveSimulator (behind `qrad-hwsim serve` and `rig`): its device files exist before it says READY."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

from qrad_hwsim.heater import HeaterSpec
from qrad_hwsim.live import LiveSimulator
from qrad_hwsim.weather import Weather


def test_every_hwmon_input_holds_a_value_before_the_first_step(tmp_path: Path) -> None:
    async def entered() -> dict[str, str]:
        sim = LiveSimulator(tmp_path / "sys", HeaterSpec(), Weather.constant(0.0), datetime(2026, 1, 5), seed=2)
        async with sim:  # entered, not run: no model step yet
            return {f"{chip.name}/{f.name}": f.read_text().strip()
                    for chip in sorted((sim.root / "class" / "hwmon").iterdir())
                    for f in sorted(chip.glob("*_input"))}

    inputs = asyncio.run(entered())
    names = {key.split("/")[1] for key in inputs}
    assert {"temp1_input", "temp2_input", "temp3_input", "fan1_input", "fan2_input"} <= names  # the nct7802
    assert all(value.lstrip("-").isdigit() for value in inputs.values()), inputs
