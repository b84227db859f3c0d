"""w1_therm driver against the simulated DS18B20: parsing, both CRC checks, the 85 °C value, every fault."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_agent.config import SensorHubConfig
from qrad_agent.sensing.plausibility import check_rate
from qrad_drivers.base import DriverContext, DriverError, Quality
from qrad_drivers.registry import build_driver, driver_class
from qrad_drivers.w1 import W1ThermConfig, W1ThermDriver, crc8_maxim, parse_w1_slave
from qrad_hwsim.devices import w1 as sim
from qrad_hwsim.devices.w1 import Ds18b20Device

DEVICE_ID = "28-0316a2791aff"
# A w1_slave text as published with a DS18B20 reading (public example; CRC rechecked below).
DOCUMENTED = "73 01 4b 46 7f ff 0d 10 41 : crc=41 YES\n73 01 4b 46 7f ff 0d 10 41 t=23187\n"


def make_driver(root: Path, **fields: object) -> W1ThermDriver:
    cfg = W1ThermConfig(name="outlet", **fields)  # type: ignore[arg-type]
    return W1ThermDriver(cfg, DriverContext(sysfs_root=root))


async def read(driver: W1ThermDriver, t_s: float):
    (reading,) = await driver.read(t_s)
    return reading


@pytest.mark.parametrize(("data", "crc"), [
    ("73 01 4b 46 7f ff 0d 10", 0x41),  # the documented w1_slave example above
    ("50 05 4b 46 7f ff 0c 10", 0x1C),  # DS18B20 power-on scratchpad (85 °C)
    ("02 1c b8 01 00 00 00", 0xA2),  # Maxim AN27 ROM example: family 02, serial 0001B81C, CRC A2
    ("ff ff ff ff ff ff ff ff", 0xC9),  # open bus: kernel prints crc=c9 NO (byte 8 is ff)
    ("00 00 00 00 00 00 00 00", 0x00),  # shorted bus: the CRC cannot tell
])
def test_crc8_known_cases(data: str, crc: int) -> None:
    assert crc8_maxim(bytes.fromhex(data)) == crc
    assert sim.crc8_maxim(bytes.fromhex(data)) == crc
    assert crc8_maxim(bytes.fromhex(data) + bytes([crc])) == 0


@given(st.binary(min_size=1, max_size=16))
def test_driver_and_sim_crc_agree(data: bytes) -> None:
    assert crc8_maxim(data) == sim.crc8_maxim(data)
    assert crc8_maxim(data + bytes([crc8_maxim(data)])) == 0


def test_documented_example_parses() -> None:
    pad, t_mc = parse_w1_slave(DOCUMENTED)
    assert t_mc == 23187
    assert int.from_bytes(pad[:2], "little", signed=True) / 16 == 23.1875
    assert sim.w1_slave_text(pad) == DOCUMENTED.strip()  # the sim writes the kernel's format exactly


@settings(max_examples=60, deadline=None)
@given(st.floats(-55.0, 125.0).filter(lambda t: abs(t - 85.0) > 0.04))
async def test_reads_what_the_sensor_shows(tmp_path_factory: pytest.TempPathFactory, temp_c: float) -> None:
    root = tmp_path_factory.mktemp("sys")
    Ds18b20Device(root, DEVICE_ID, temp_c)
    driver = make_driver(root, device_id=DEVICE_ID)
    await driver.open()
    reading = await read(driver, 0.0)
    assert reading.ok, reading.reason
    assert reading.value == pytest.approx(temp_c, abs=0.0625)
    assert reading.channel == "outlet" and reading.unit == "°C"


async def test_registry_and_auto_pick_first_ds18b20(tmp_path: Path) -> None:
    Ds18b20Device(tmp_path, "28-00000000000b", 20.0)
    Ds18b20Device(tmp_path, "28-00000000000a", 30.0)
    Ds18b20Device(tmp_path, "10-000000000001", 40.0)  # a DS18S20: not picked
    assert driver_class("w1_therm") is W1ThermDriver
    driver = build_driver(W1ThermConfig(name="room"), DriverContext(sysfs_root=tmp_path))
    await driver.open()
    (reading,) = await driver.read(0.0)
    assert reading.value == pytest.approx(30.0)


async def test_missing_device_fails_open(tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="28-0316a2791aff"):
        await make_driver(tmp_path, device_id=DEVICE_ID).open()
    with pytest.raises(DriverError, match="28-"):
        await make_driver(tmp_path).open()


async def test_unplugged_then_back(tmp_path: Path) -> None:
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    assert (await read(driver, 0.0)).ok
    device.set_fault("unplugged")
    reading = await read(driver, 10.0)
    assert reading.quality is Quality.FAULT and "vanished" in reading.reason
    device.set_fault("ok")
    reading = await read(driver, 20.0)
    assert reading.ok and reading.value == pytest.approx(21.0)


@pytest.mark.parametrize(("kind", "quality", "reason"), [
    ("garbage", Quality.FAULT, "malformed"),
    ("bad_checksum", Quality.FAULT, "CRC failed"),
    ("out_of_range", Quality.FAULT, "power-on reset value 85 °C"),
])
async def test_fault_kinds_and_recovery(tmp_path: Path, kind: str, quality: Quality, reason: str) -> None:
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    assert (await read(driver, 0.0)).ok
    device.set_fault(kind)
    for t_s in (10.0, 20.0):
        device.update(21.0)
        reading = await read(driver, t_s)
        assert reading.quality is quality and reason in reading.reason
    device.set_fault("ok")
    device.update(21.1)
    reading = await read(driver, 30.0)
    assert reading.ok and reading.value == pytest.approx(21.1, abs=0.0625)


async def test_spike_is_shown_once_and_caught_by_the_hub_rate_check(tmp_path: Path) -> None:
    """A glitch that passes the CRC is in range: the driver reports it, the hub's rate check flags it."""
    hub = SensorHubConfig()
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    before = await read(driver, 0.0)
    device.set_fault("spike")
    during = await read(driver, 10.0)
    assert during.value == pytest.approx(61.0)
    checked = check_rate(before, during, hub.max_rate_per_s["temperature"], hub.spike_floor["temperature"])
    assert checked.quality is Quality.FAULT and "spike" in checked.reason
    device.update(21.0)  # the glitch lasted one sample
    after = await read(driver, 20.0)
    assert after.ok and after.value == pytest.approx(21.0)


async def test_minus_127_is_out_of_range(tmp_path: Path) -> None:
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    device.set_fault("out_of_range", value_c=-127.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    reading = await read(driver, 0.0)
    assert reading.quality is Quality.OUT_OF_RANGE and reading.value == -127.0


async def test_kernel_yes_with_wrong_crc_is_a_fault(tmp_path: Path) -> None:
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    pad = sim.scratchpad(21.0)
    device.path.write_text(sim.w1_slave_text(pad[:8] + bytes([pad[8] ^ 1]), kernel_crc_ok=True))
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    reading = await read(driver, 0.0)
    assert reading.quality is Quality.FAULT and "CRC failed" in reading.reason


@pytest.mark.parametrize("text", [
    "00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0",  # shorted bus
    "73 01 4b 46 7f ff 0d 10 41 : crc=41 YES\n73 01 4b 46 7f ff 0d 10 41 t=30000",  # t= disagrees
    "73 01 4b 46 7f ff 0d 10 41 : crc=41 YES\n",  # truncated
    "",
])
async def test_suspect_texts_are_faults(tmp_path: Path, text: str) -> None:
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    device.path.write_text(text)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    reading = await read(driver, 0.0)
    assert reading.quality is Quality.FAULT and not reading.ok


async def test_stuck_becomes_stale_and_recovers(tmp_path: Path) -> None:
    """A sensor whose reads were changing (a room warming at 0.1 K per read) then hold one value."""
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID, stuck_after_s=100.0)
    await driver.open()
    for k in range(20):
        device.update(21.0 + 0.1 * k)
        assert (await read(driver, 10.0 * k)).ok
    device.set_fault("stuck")
    for t_s in (200.0, 250.0, 300.0):
        device.update(23.0 + t_s / 100)
        reading = await read(driver, t_s)
        assert reading.ok == (t_s < 290.0), (t_s, reading)  # the last change was read at 190 s
    assert reading.quality is Quality.STALE and reading.value == pytest.approx(22.9, abs=0.0625)
    device.set_fault("ok")
    reading = await read(driver, 310.0)
    assert reading.ok and reading.value == pytest.approx(26.0, abs=0.0625)


async def test_a_quiet_sensor_holding_one_step_is_not_stale(tmp_path: Path) -> None:
    """A steady room moves less than the 1/16 K step: one value for an hour is a right reading (the sensor
    hub calls it stale if its redundant peers move meanwhile)."""
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0)
    driver = make_driver(tmp_path, device_id=DEVICE_ID, stuck_after_s=1800.0)
    await driver.open()
    for k in range(361):
        device.update(21.0 + 0.02 * math.sin(k / 30))
        reading = await read(driver, 10.0 * k)
        assert reading.ok, (k, reading)


async def test_drift_is_reported_as_read(tmp_path: Path) -> None:
    """A slow drift passes every local check: catching it is the fusion layer's job (two sensors)."""
    device = Ds18b20Device(tmp_path, DEVICE_ID, 21.0, drift_c=0.125)
    driver = make_driver(tmp_path, device_id=DEVICE_ID)
    await driver.open()
    device.set_fault("drift")
    for k in range(1, 5):
        device.update(21.0)
        reading = await read(driver, 10.0 * k)
        assert reading.value == pytest.approx(21.0 + 0.125 * k)
    device.set_fault("ok")
    assert (await read(driver, 50.0)).value == pytest.approx(21.0)
