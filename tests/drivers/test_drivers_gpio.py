"""GPIO driver: sysfs lines from the simulator, active-low handling, faults, and the gpiod backend's seams."""

from __future__ import annotations

import enum
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from qrad_drivers.base import DriverContext, DriverError, Quality, Reading
from qrad_drivers.gpio import GpioConfig, GpioDriver
from qrad_drivers.registry import driver_class
from qrad_hwsim.devices.gpio import GpioLines

LINES = {"presence": 17, "window": 27, "door": 22}


def make_driver(root: Path, **fields: object) -> GpioDriver:
    cfg = GpioConfig(name="contacts", lines=fields.pop("lines", LINES), **fields)  # type: ignore[arg-type]
    return GpioDriver(cfg, DriverContext(sysfs_root=root))


async def read(driver: GpioDriver, t_s: float = 0.0) -> dict[str, Reading]:
    return {r.channel: r for r in await driver.read(t_s)}


async def test_reads_levels(tmp_path: Path) -> None:
    sim = GpioLines(tmp_path, {17: 1, 27: 0, 22: 1})
    assert driver_class("gpio") is GpioDriver
    driver = make_driver(tmp_path)
    assert driver.period_s == 1.0
    await driver.open()
    got = await read(driver)
    assert {k: r.value for k, r in got.items()} == {"presence": 1.0, "window": 0.0, "door": 1.0}
    assert all(r.ok and r.unit == "bool" for r in got.values())
    assert all(spec.quantity == "state" for spec in driver.channels)
    sim.set(27, 1)
    assert (await read(driver, 1.0))["window"].value == 1.0
    assert (tmp_path / "class/gpio/gpio27/direction").read_text().strip() == "in"


async def test_active_low_in_config(tmp_path: Path) -> None:
    sim = GpioLines(tmp_path, {17: 0, 27: 0, 22: 1})
    driver = make_driver(tmp_path, active_low={"window": True})
    await driver.open()
    assert (await read(driver))["window"].value == 1.0  # contact pulls the line low: active
    sim.set(27, 1)
    assert (await read(driver))["window"].value == 0.0


@pytest.mark.parametrize("config_active_low", [False, True])
async def test_active_low_of_the_export_does_not_double_invert(tmp_path: Path,
                                                                config_active_low: bool) -> None:
    GpioLines(tmp_path, {17: 0, 27: 0, 22: 0}, active_low={27: True})  # kernel shows value = level ^ 1
    assert (tmp_path / "class/gpio/gpio27/value").read_text().strip() == "1"
    driver = make_driver(tmp_path, active_low={"window": config_active_low})
    await driver.open()
    assert (await read(driver))["window"].value == float(config_active_low)


async def test_unexported_line_fails_open(tmp_path: Path) -> None:
    GpioLines(tmp_path, {17: 0, 27: 0})
    with pytest.raises(DriverError, match="gpio22"):
        await make_driver(tmp_path).open()


@pytest.mark.parametrize("kind", ["unplugged", "garbage", "out_of_range"])
async def test_faults_and_recovery(tmp_path: Path, kind: str) -> None:
    sim = GpioLines(tmp_path, {17: 1, 27: 0, 22: 1})
    driver = make_driver(tmp_path)
    await driver.open()
    sim.set_fault(kind)
    got = await read(driver)
    assert all(r.quality is Quality.FAULT and not r.ok for r in got.values()), got
    sim.set(17, 0)
    sim.set_fault("ok")
    got = await read(driver)
    assert all(r.ok for r in got.values()) and got["presence"].value == 0.0


def test_config_rejects_unknown_active_low_channel() -> None:
    with pytest.raises(ValueError, match="garage"):
        GpioConfig(name="contacts", lines=LINES, active_low={"garage": True})


async def test_gpiod_backend_without_the_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod -> ImportError
    driver = make_driver(tmp_path, backend="gpiod")
    with pytest.raises(DriverError, match="gpiod not installed"):
        await driver.open()


class FakeValue(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


@dataclass
class FakeSettings:
    direction: object = None
    active_low: bool = False


class FakeRequest:
    """What gpiod.request_lines returns: logical values honouring active_low, like the kernel."""

    def __init__(self, levels: dict[int, int], config: dict[int, FakeSettings]) -> None:
        self.levels, self.config, self.released, self.error = levels, config, False, False

    def get_values(self, offsets: list[int]) -> list[FakeValue]:
        if self.error:
            raise OSError(19, "No such device")
        return [FakeValue(self.levels[o] ^ int(self.config[o].active_low)) for o in offsets]

    def release(self) -> None:
        self.released = True


def fake_gpiod(levels: dict[int, int], requests: list[FakeRequest]) -> types.ModuleType:
    module, line = types.ModuleType("gpiod"), types.ModuleType("gpiod.line")
    line.Direction = types.SimpleNamespace(INPUT="input")  # type: ignore[attr-defined]
    line.Value = FakeValue  # type: ignore[attr-defined]
    module.line = line  # type: ignore[attr-defined]
    module.LineSettings = FakeSettings  # type: ignore[attr-defined]

    def request_lines(chip: str, consumer: str, config: dict[int, FakeSettings]) -> FakeRequest:
        if chip != "/dev/gpiochip0":
            raise OSError(2, "No such file or directory")
        requests.append(FakeRequest(levels, config))
        return requests[-1]

    module.request_lines = request_lines  # type: ignore[attr-defined]
    return module


async def test_gpiod_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    requests: list[FakeRequest] = []
    module = fake_gpiod({17: 1, 27: 0, 22: 0}, requests)
    monkeypatch.setitem(sys.modules, "gpiod", module)
    monkeypatch.setitem(sys.modules, "gpiod.line", module.line)
    with pytest.raises(DriverError, match="gpiochip9"):
        await make_driver(tmp_path, backend="gpiod", chip="/dev/gpiochip9").open()
    driver = make_driver(tmp_path, backend="gpiod", active_low={"window": True})
    async with driver:
        got = await read(driver)
        assert {k: r.value for k, r in got.items()} == {"presence": 1.0, "window": 1.0, "door": 0.0}
        assert requests[-1].config[27].active_low and requests[-1].config[27].direction == "input"
        requests[-1].error = True
        assert all(r.quality is Quality.FAULT for r in (await read(driver)).values())
        assert requests[-1].released
        assert all(r.ok for r in (await read(driver)).values())  # requested again
    assert requests[-1].released
