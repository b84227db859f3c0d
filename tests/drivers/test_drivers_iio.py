"""IIO driver against the simulated BME280 and light sensor: units, lookup by name, every fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_agent.config import SensorHubConfig
from qrad_agent.sensing.plausibility import check_rate
from qrad_drivers.base import DriverContext, DriverError, Quality, Reading
from qrad_drivers.iio import IioConfig, IioDriver
from qrad_drivers.registry import driver_class
from qrad_hwsim.devices.iio import Bme280Device, LightSensorDevice

BME_INPUTS = {"pressure": "in_pressure_input", "temp": "in_temp_input",
              "humidity": "in_humidityrelative_input"}


def make_driver(root: Path, device: str = "bme280", inputs: dict[str, str] | None = None,
                **fields: object) -> IioDriver:
    cfg = IioConfig(name="room", device=device, inputs=inputs or BME_INPUTS, **fields)  # type: ignore[arg-type]
    return IioDriver(cfg, DriverContext(sysfs_root=root))


async def read(driver: IioDriver, t_s: float) -> dict[str, Reading]:
    return {r.channel: r for r in await driver.read(t_s)}


@settings(max_examples=40, deadline=None)
@given(st.floats(300.0, 1100.0), st.floats(-40.0, 85.0), st.floats(0.0, 100.0))
async def test_bme280_units(tmp_path_factory: pytest.TempPathFactory, hpa: float, temp_c: float,
                            rh: float) -> None:
    root = tmp_path_factory.mktemp("sys")
    Bme280Device(root, 0, pressure_hpa=hpa, temp_c=temp_c, humidity_pct=rh)
    driver = make_driver(root)
    await driver.open()
    got = await read(driver, 0.0)
    assert all(r.ok for r in got.values()), got
    assert got["pressure"].value == pytest.approx(hpa, abs=0.001) and got["pressure"].unit == "hPa"
    assert got["temp"].value == pytest.approx(temp_c, abs=0.005) and got["temp"].unit == "°C"
    assert got["humidity"].value == pytest.approx(rh, abs=0.001) and got["humidity"].unit == "%RH"


def test_kernel_formats(tmp_path: Path) -> None:
    device = Bme280Device(tmp_path, 2, pressure_hpa=1003.3725, temp_c=25.73, humidity_pct=48.56)
    assert device.dir.name == "iio:device2"
    assert (device.dir / "name").read_text().strip() == "bme280"
    assert (device.dir / "in_temp_input").read_text().strip() == "25730"
    assert (device.dir / "in_pressure_input").read_text().strip() == "100.337250000"
    assert float((device.dir / "in_humidityrelative_input").read_text()) == pytest.approx(48560, abs=1)


async def test_found_by_name_among_devices(tmp_path: Path) -> None:
    LightSensorDevice(tmp_path, 0, lux=500.0)
    Bme280Device(tmp_path, 1, temp_c=19.5)
    assert driver_class("iio") is IioDriver
    driver = make_driver(tmp_path)
    await driver.open()
    assert (await read(driver, 0.0))["temp"].value == pytest.approx(19.5)
    with pytest.raises(DriverError, match="tsl2591"):
        await make_driver(tmp_path, device="tsl2591").open()


async def test_light_raw_times_scale_plus_offset(tmp_path: Path) -> None:
    light = LightSensorDevice(tmp_path, 0, lux=420.0)
    driver = make_driver(tmp_path, "bh1750", {"light": "in_illuminance_raw"})
    await driver.open()
    reading = (await read(driver, 0.0))["light"]
    assert reading.ok and reading.unit == "lx"
    assert reading.value == pytest.approx(420.0, abs=light.scale / 2)
    (light.dir / "in_illuminance_offset").write_text("10\n")  # lux = (raw + offset) * scale
    assert (await read(driver, 1.0))["light"].value == pytest.approx((light.raw + 10) * light.scale)


async def test_processed_illuminance(tmp_path: Path) -> None:
    folder = tmp_path / "bus/iio/devices/iio:device0"
    folder.mkdir(parents=True)
    (folder / "name").write_text("tsl2591\n")
    (folder / "in_illuminance_input").write_text("123.456\n")
    driver = make_driver(tmp_path, "tsl2591", {"light": "in_illuminance_input"})
    await driver.open()
    assert (await read(driver, 0.0))["light"].value == pytest.approx(123.456)


def test_bad_attribute_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="in_voltage0_raw"):
        make_driver(tmp_path, inputs={"v": "in_voltage0_raw"})


async def test_unplugged_then_back(tmp_path: Path) -> None:
    device = Bme280Device(tmp_path, 0)
    driver = make_driver(tmp_path)
    await driver.open()
    device.set_fault("unplugged")
    with pytest.raises(DriverError):  # the device is gone: the hub reopens with backoff
        await driver.read(10.0)
    device.set_fault("ok")
    assert all(r.ok for r in (await read(driver, 20.0)).values())


async def test_file_vanishing_is_a_fault(tmp_path: Path) -> None:
    device = Bme280Device(tmp_path, 0)
    driver = make_driver(tmp_path)
    await driver.open()
    (device.dir / "in_pressure_input").unlink()
    got = await read(driver, 0.0)
    assert got["pressure"].quality is Quality.FAULT and got["temp"].ok


EXPECTED = {
    "garbage": {"pressure": Quality.FAULT, "temp": Quality.FAULT, "humidity": Quality.FAULT},
    "out_of_range": {"pressure": Quality.OUT_OF_RANGE, "temp": Quality.OUT_OF_RANGE, "humidity": Quality.OK},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
async def test_bme280_faults_and_recovery(tmp_path: Path, kind: str) -> None:
    device = Bme280Device(tmp_path, 0, pressure_hpa=1000.0, temp_c=21.0, humidity_pct=40.0)
    driver = make_driver(tmp_path)
    await driver.open()
    assert all(r.ok for r in (await read(driver, 0.0)).values())
    device.set_fault(kind)
    for t_s in (10.0, 20.0):
        device.update(temp_c=21.0)
        got = await read(driver, t_s)
        assert {k: r.quality for k, r in got.items()} == EXPECTED[kind]
        humidity = got["humidity"]
        assert humidity.quality is not Quality.OK or humidity.value == pytest.approx(40.0, abs=0.01)
    device.set_fault("ok")
    got = await read(driver, 30.0)
    assert all(r.ok for r in got.values()) and got["temp"].value == pytest.approx(21.0)


async def test_spike_is_shown_once_and_caught_by_the_hub_rate_check(tmp_path: Path) -> None:
    """The driver reports what the chip shows; the hub's rate check (its default config) flags the glitch."""
    hub = SensorHubConfig()
    device = Bme280Device(tmp_path, 0, pressure_hpa=1000.0, temp_c=21.0, humidity_pct=40.0)
    driver = make_driver(tmp_path)
    await driver.open()
    before = await read(driver, 0.0)
    device.set_fault("spike")
    during = await read(driver, 10.0)
    assert during["temp"].value == pytest.approx(61.0) and during["pressure"].value == pytest.approx(1150.0)
    for channel in ("temp", "pressure"):
        quantity = next(s.quantity for s in driver.channels if s.name == channel)
        checked = check_rate(before[channel], during[channel], hub.max_rate_per_s[quantity],
                             hub.spike_floor[quantity])
        assert not checked.ok and checked.quality is not Quality.STALE
        assert checked.quality is Quality.OUT_OF_RANGE or "spike" in checked.reason  # 1150 hPa > 1100
    assert during["humidity"].ok and during["humidity"].value == pytest.approx(40.0, abs=0.01)
    device.update(temp_c=21.0)  # the glitch lasted one sample
    after = await read(driver, 20.0)
    assert all(r.ok for r in after.values()) and after["temp"].value == pytest.approx(21.0)


async def test_stuck_marks_the_whole_chip_stale(tmp_path: Path) -> None:
    device = Bme280Device(tmp_path, 0, temp_c=21.0)
    driver = make_driver(tmp_path, stuck_after_s=100.0)
    await driver.open()
    for k in range(10):  # a live chip: its noise moves every channel at most reads
        device.update(temp_c=21.0 + 0.01 * (k % 3), pressure_hpa=1000.0 + 0.01 * (k % 3),
                      humidity_pct=40.0 + 0.01 * (k % 3))
        await read(driver, float(k))
    device.set_fault("stuck")
    device.update(temp_c=22.0, pressure_hpa=1001.0, humidity_pct=41.0)
    assert all(r.ok for r in (await read(driver, 59.0)).values())
    got = await read(driver, 109.0)
    assert {r.quality for r in got.values()} == {Quality.STALE}
    device.set_fault("ok")
    got = await read(driver, 119.0)
    assert all(r.ok for r in got.values()) and got["temp"].value == pytest.approx(22.0)


async def test_steady_pressure_alone_is_not_stale(tmp_path: Path) -> None:
    device = Bme280Device(tmp_path, 0, temp_c=21.0)
    driver = make_driver(tmp_path, stuck_after_s=100.0)
    await driver.open()
    for k in range(5):
        device.update(temp_c=21.0 + 0.01 * k, humidity_pct=40.0 + 0.01 * k)
        got = await read(driver, 50.0 * k)
        assert all(r.ok for r in got.values()), got


async def test_a_constant_humidity_never_goes_stale(tmp_path: Path) -> None:
    """hw-sim's BME280 shows a constant 40.0 %RH: constant on a healthy device is not frozen."""
    device = Bme280Device(tmp_path, 0, temp_c=21.0, humidity_pct=40.0)
    driver = make_driver(tmp_path, stuck_after_s=100.0)
    await driver.open()
    for k in range(200):
        device.update(temp_c=21.0 + 0.01 * (k % 3), humidity_pct=40.0)
        got = await read(driver, 10.0 * k)
        assert got["humidity"].ok and got["pressure"].ok, got


async def test_drift_is_reported_as_read(tmp_path: Path) -> None:
    """A slow drift passes every local check: catching it is the fusion layer's job."""
    device = Bme280Device(tmp_path, 0, temp_c=21.0, drift_c=0.1)
    driver = make_driver(tmp_path)
    await driver.open()
    device.set_fault("drift")
    for k in range(1, 4):
        device.update(temp_c=21.0)
        assert (await read(driver, 10.0 * k))["temp"].value == pytest.approx(21.0 + 0.1 * k)


@pytest.mark.parametrize(("kind", "quality"),
                         [("garbage", Quality.FAULT), ("out_of_range", Quality.OUT_OF_RANGE)])
async def test_light_faults_and_recovery(tmp_path: Path, kind: str, quality: Quality) -> None:
    light = LightSensorDevice(tmp_path, 0, lux=300.0)
    driver = make_driver(tmp_path, "bh1750", {"light": "in_illuminance_raw"})
    await driver.open()
    light.set_fault(kind)
    assert (await read(driver, 0.0))["light"].quality is quality
    light.set_fault("ok")
    assert (await read(driver, 1.0))["light"].ok


async def test_light_may_hold_still(tmp_path: Path) -> None:
    LightSensorDevice(tmp_path, 0, lux=0.0)  # a dark room at night
    driver = make_driver(tmp_path, "bh1750", {"light": "in_illuminance_raw"}, stuck_after_s=10.0)
    await driver.open()
    for t_s in (0.0, 100.0, 1000.0):
        assert (await read(driver, t_s))["light"].ok


def test_unknown_fault_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad_checksum"):
        LightSensorDevice(tmp_path, 0).set_fault("bad_checksum")
