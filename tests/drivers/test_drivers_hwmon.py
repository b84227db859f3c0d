"""hwmon driver against a hwmon tree in tmp_path: values, faults, recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrad_drivers.base import DriverContext, DriverError, Quality
from qrad_drivers.hwmon import HwmonConfig, HwmonDriver


def _chip(root: Path, name: str = "sht4x", index: int = 3) -> Path:
    chip = root / "class" / "hwmon" / f"hwmon{index}"
    chip.mkdir(parents=True)
    (chip / "name").write_text(name + "\n")
    (chip / "temp1_input").write_text("21350\n")
    (chip / "humidity1_input").write_text("40500\n")
    (chip / "fan1_input").write_text("1200\n")
    return chip


def _driver(root: Path, **extra) -> HwmonDriver:
    cfg = HwmonConfig(name="room", chip="sht4x", inputs={"room_temp": "temp1_input", "room_rh": "humidity1_input",
                                                         "fan": "fan1_input"}, **extra)
    return HwmonDriver(cfg, DriverContext(sysfs_root=root))


async def test_reads_scaled_values(tmp_path: Path) -> None:
    _chip(tmp_path)
    driver = _driver(tmp_path)
    await driver.open()
    readings = {r.channel: r for r in await driver.read(0.0)}
    assert readings["room_temp"].value == pytest.approx(21.35) and readings["room_temp"].unit == "°C"
    assert readings["room_rh"].value == pytest.approx(40.5) and readings["fan"].value == 1200
    assert all(r.quality is Quality.OK for r in readings.values())


async def test_faults_and_recovery(tmp_path: Path) -> None:
    chip = _chip(tmp_path)
    driver = _driver(tmp_path, stuck_after_s=60.0)
    await driver.open()

    async def temp(t_s: float):
        return next(r for r in await driver.read(t_s) if r.channel == "room_temp")

    (chip / "temp1_input").write_text("0x##\n")
    garbage = await temp(1.0)
    assert garbage.quality is Quality.FAULT and "invalid literal" in garbage.reason
    (chip / "temp1_input").write_text("-273000\n")
    assert (await temp(2.0)).quality is Quality.OUT_OF_RANGE
    (chip / "temp1_input").unlink()
    assert (await temp(3.0)).quality is Quality.FAULT
    for i in range(10):  # a live sensor: its noise gives a new value at most reads
        (chip / "temp1_input").write_text(f"{21400 + i % 3 * 10}\n")
        assert (await temp(4.0 + i)).ok
    assert (await temp(72.0)).ok  # unchanged since 13 s, for 59 s: still fine
    stuck = await temp(73.5)
    assert stuck.quality is Quality.STALE and "unchanged" in stuck.reason
    (chip / "temp1_input").write_text("21410\n")
    assert (await temp(80.0)).ok


async def test_a_value_that_never_jittered_is_not_stale_for_holding_still(tmp_path: Path) -> None:
    """hw-sim's constant 40.0 %RH, or a quantity steadier than the resolution: constant is not frozen."""
    _chip(tmp_path)
    driver = _driver(tmp_path, stuck_after_s=60.0)
    await driver.open()
    for t_s in range(0, 3600, 10):
        readings = await driver.read(float(t_s))
        assert all(r.quality is Quality.OK for r in readings), readings


async def test_missing_chip_raises_driver_error(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="sht4x"):
        await _driver(tmp_path).open()


async def test_chip_found_by_name_whatever_its_number(tmp_path: Path) -> None:
    _chip(tmp_path, "coretemp", 0)
    _chip(tmp_path, "sht4x", 7)
    driver = _driver(tmp_path)
    await driver.open()
    assert next(r for r in await driver.read(0.0) if r.channel == "room_temp").value == pytest.approx(21.35)
