"""SDM120 driver (our Modbus RTU master) against the hw-sim meter over a real pseudo-terminal, and against a
scripted pty peer for the late-answer race.

Poll times are stamped by the test (t_s = n x period): the driver's checks run on the time it is given,
so no test sleeps; the only real waits are the short timeouts of the line faults (TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qrad_drivers.base import DriverContext, DriverError, Quality, Reading
from qrad_drivers.registry import DRIVERS, driver_class
from qrad_drivers.sdm120 import CHANNELS, REQUESTS, Sdm120Config, Sdm120Driver, decode_float32
from qrad_hwsim.devices.sdm120 import SDM120_FAULTS, Sdm120Device, crc16_modbus

PERIOD_S = 10.0
TIMEOUT_S = 0.5
POWER_W = 1800.0
ATTRIBUTE = {"voltage": "voltage_v", "current": "current_a", "power": "power_w", "energy": "energy_kwh",
             "frequency": "frequency_hz"}


def f32(value: float) -> float:
    """``value`` as the meter's float32 carries it."""
    return float(struct.unpack(">f", struct.pack(">f", value))[0])


@pytest.fixture(autouse=True)
async def no_tasks_left() -> AsyncIterator[None]:
    """Fails a test that leaves a task running (the emulator's or the driver's)."""
    yield
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not left, f"tasks left running: {left}"


class Meter:
    """The emulated meter and its serving task, restartable (a USB adapter pulled and plugged back)."""

    def __init__(self, link: Path) -> None:
        self.device = Sdm120Device(link, rng=np.random.default_rng(7))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.device.run(), name="sdm120-sim")
        await asyncio.wait_for(self.device.ready.wait(), 2.0)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


@pytest.fixture
async def meter(tmp_path: Path) -> AsyncIterator[Meter]:
    m = Meter(tmp_path / "dev" / "ttyMETER")
    m.device.update(POWER_W, PERIOD_S)
    await m.start()
    yield m
    await m.stop()
    assert not m.device.link_path.exists() and not m.device.link_path.is_symlink()


def make_driver(port: Path, **extra: object) -> Sdm120Driver:
    cfg = Sdm120Config(name="mains", port=port, timeout_s=TIMEOUT_S, stuck_after_s=PERIOD_S, **extra)
    return Sdm120Driver(cfg, DriverContext())


@pytest.fixture
async def driver(meter: Meter) -> AsyncIterator[Sdm120Driver]:
    drv = make_driver(meter.device.link_path)
    await drv.open()
    yield drv
    await drv.close()


def by_key(readings: list[Reading]) -> dict[str, Reading]:
    return {r.channel.removeprefix("mains_"): r for r in readings}


def assert_true_or_flagged(readings: list[Reading], device: Sdm120Device) -> None:
    """No wrong value passes as OK: every OK reading equals the true value to float32 resolution."""
    for key, reading in by_key(readings).items():
        if reading.quality is Quality.OK:
            assert reading.value == f32(getattr(device, ATTRIBUTE[key])), (key, reading)


class Poller:
    """Steps the meter one period (heater power in, energy integrated) and polls the driver."""

    def __init__(self, driver: Sdm120Driver, device: Sdm120Device) -> None:
        self.driver, self.device, self.t_s = driver, device, 0.0

    async def poll(self, step: bool = True) -> dict[str, Reading]:
        if step:
            self.device.update(POWER_W, PERIOD_S)
            self.t_s += PERIOD_S
        readings = await self.driver.read(self.t_s)
        assert len(readings) == len(self.driver.channels)
        assert_true_or_flagged(readings, self.device)
        return by_key(readings)


def test_registry_knows_sdm120_and_the_config_validates() -> None:
    assert DRIVERS["sdm120"] == ("qrad_drivers.sdm120", "Sdm120Driver")
    assert driver_class("sdm120") is Sdm120Driver
    cfg = Sdm120Config(name="mains", port=Path("/dev/ttyUSB0"))
    assert (cfg.baudrate, cfg.unit_id, cfg.parity, cfg.stopbits) == (2400, 1, "N", 1)
    with pytest.raises(ValueError):
        Sdm120Config(name="mains", port=Path("/dev/ttyUSB0"), unit_id=248)
    with pytest.raises(ValueError):
        Sdm120Config(name="mains", port=Path("/dev/ttyUSB0"), baudrate=115200)


def test_request_frames_match_the_notes() -> None:
    """The CRC of the emulator reproduces the checked frames of protocols.md."""
    for frame in ("01 04 00 00 00 02 71 CB", "01 04 00 0C 00 02 B1 C8", "01 04 01 56 00 02 90 27"):
        raw = bytes.fromhex(frame)
        assert struct.pack("<H", crc16_modbus(raw[:-2])) == raw[-2:]
    assert decode_float32([0x4366, 0x0000], 0) == 230.0


@given(st.floats(width=32, allow_nan=False), st.sampled_from(sorted(CHANNELS)))
def test_register_image_decodes_to_the_same_float32(value: float, key: str) -> None:
    """Emulator encoding -> driver decoding is exact for every float32 at every channel address."""
    device = Sdm120Device(Path("/nonexistent"))
    setattr(device, ATTRIBUTE[key], value)
    address = CHANNELS[key][2]
    start, count = next((s, c) for s, c in REQUESTS if s <= address < s + c)
    image = device.register_image()
    registers = list(struct.unpack(f">{count}H", image[2 * start:2 * (start + count)]))
    assert decode_float32(registers, address - start) == value


async def test_reads_every_value_the_meter_serves(meter: Meter, driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    for power_w in (0.0, 37.5, 499.9, 1800.0, 3333.3):
        meter.device.update(power_w, PERIOD_S)
        poller.t_s += PERIOD_S
        readings = by_key(await driver.read(poller.t_s))
        assert all(r.quality is Quality.OK for r in readings.values()), readings
        for key, reading in readings.items():
            assert reading.value == f32(getattr(meter.device, ATTRIBUTE[key]))
            assert reading.t_s == poller.t_s
    assert meter.device.answers == 2 * 5  # two requests per poll


@pytest.mark.parametrize(("kind", "expected"), [
    ("unplugged", {k: Quality.FAULT for k in CHANNELS}),
    ("bad_checksum", {k: Quality.FAULT for k in CHANNELS}),
    ("garbage", {k: Quality.FAULT for k in CHANNELS}),
    ("busy", {k: Quality.FAULT for k in CHANNELS}),
    ("nan", {k: Quality.FAULT for k in CHANNELS}),
    ("out_of_range", {"voltage": Quality.OUT_OF_RANGE, "current": Quality.OUT_OF_RANGE,
                      "power": Quality.OUT_OF_RANGE, "frequency": Quality.OUT_OF_RANGE}),
    ("stuck", {k: Quality.STALE for k in CHANNELS}),
    ("spike", {"power": Quality.OUT_OF_RANGE}),
    ("drift", {k: Quality.FAULT for k in ("voltage", "current", "power")}),
])
async def test_each_fault_is_flagged_within_two_periods_and_clears(
        meter: Meter, driver: Sdm120Driver, kind: str, expected: dict[str, Quality]) -> None:
    poller = Poller(driver, meter.device)
    assert all(r.ok for r in (await poller.poll()).values())
    meter.device.set_fault(kind)
    seen: list[dict[str, Reading]] = []
    for _ in range(2):
        seen.append(await poller.poll())  # the poller checks that no falsified value passes as OK
    assert any(all(readings[k].quality is q for k, q in expected.items()) for readings in seen), seen
    for readings in seen:
        for r in readings.values():
            assert r.quality is Quality.OK or r.reason, r
    meter.device.set_fault("ok")
    readings = await poller.poll()
    assert all(r.quality is Quality.OK for r in readings.values()), readings


async def test_fault_reasons_tell_silence_from_noise_and_exceptions(meter: Meter,
                                                                  driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    reasons = {}
    for kind in ("unplugged", "bad_checksum", "busy"):
        meter.device.set_fault(kind)
        reasons[kind] = (await poller.poll())["voltage"].reason
    assert "nothing received" in reasons["unplugged"]
    assert "no valid frame" in reasons["bad_checksum"]
    assert "exception 6" in reasons["busy"] and "busy" in reasons["busy"]


async def test_garbage_never_passes_as_a_value(meter: Meter, driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    meter.device.set_fault("garbage")
    for _ in range(8):
        readings = await poller.poll()
        assert all(r.quality is Quality.FAULT and math.isnan(r.value) for r in readings.values())


async def test_energy_going_backwards_or_jumping_is_a_fault(meter: Meter, driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    meter.device.energy_kwh = 1234.5
    first = await poller.poll()
    assert first["energy"].ok
    meter.device.energy_kwh -= 0.5
    readings = await poller.poll()
    assert readings["energy"].quality is Quality.FAULT
    assert "went backwards" in readings["energy"].reason
    assert readings["power"].ok and readings["voltage"].ok  # the other channels stay usable
    meter.device.energy_kwh = first["energy"].value + 100.0  # 100 kWh in 20 s: impossible at 13.5 kW
    readings = await poller.poll()
    assert readings["energy"].quality is Quality.FAULT and "jumped" in readings["energy"].reason
    meter.device.energy_kwh = first["energy"].value + 0.01  # back on track: accepted again
    readings = await poller.poll()
    assert readings["energy"].ok and readings["energy"].value == f32(meter.device.energy_kwh)


async def test_vanished_port_raises_on_read_and_open_then_reopens(meter: Meter, driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    assert all(r.ok for r in (await poller.poll()).values())
    await meter.stop()  # the adapter is pulled: pty closed, link removed
    with pytest.raises(DriverError):
        await poller.poll()
    with pytest.raises(DriverError):
        await driver.open()
    with pytest.raises(DriverError):
        await poller.poll()
    await meter.start()  # plugged back (a new pty behind the same link)
    await driver.open()
    assert all(r.ok for r in (await poller.poll()).values())


async def test_read_before_open_raises_and_close_is_idempotent(meter: Meter) -> None:
    drv = make_driver(meter.device.link_path)
    with pytest.raises(DriverError):
        await drv.read(0.0)
    await drv.close()
    async with drv:
        assert all(r.ok for r in await drv.read(0.0))
    await drv.close()


async def test_another_unit_id_gets_no_answer(meter: Meter) -> None:
    async with make_driver(meter.device.link_path, unit_id=2) as drv:
        readings = await drv.read(0.0)
    assert all(r.quality is Quality.FAULT for r in readings)
    assert meter.device.answers == 0


def test_every_fault_kind_is_covered() -> None:
    covered = {"ok", "unplugged", "bad_checksum", "garbage", "busy", "nan", "out_of_range", "stuck", "spike",
               "drift", "late", "turnaround_glitch", "wrong_function"}
    assert set(SDM120_FAULTS) == covered
    with pytest.raises(ValueError):
        Sdm120Device(Path("/nonexistent")).set_fault("melted")


async def test_a_reply_with_the_wrong_function_code_is_refused(meter: Meter, driver: Sdm120Driver) -> None:
    """0x03 (read holding registers) in answer to 0x04, with a valid CRC: never decoded as the values."""
    poller = Poller(driver, meter.device)
    meter.device.set_fault("wrong_function")
    readings = await poller.poll()
    assert all(r.quality is Quality.FAULT for r in readings.values())
    assert "function code 0x03" in readings["voltage"].reason
    meter.device.set_fault("ok")
    assert all(r.ok for r in (await poller.poll()).values())


async def test_a_turnaround_zero_before_the_reply_is_skipped(meter: Meter, driver: Sdm120Driver) -> None:
    poller = Poller(driver, meter.device)
    meter.device.set_fault("turnaround_glitch")
    for _ in range(3):
        readings = await poller.poll()
        assert all(r.ok for r in readings.values()), readings
    assert readings["voltage"].value == f32(meter.device.voltage_v)


async def test_a_late_reply_is_not_taken_for_the_next_polls(meter: Meter, driver: Sdm120Driver) -> None:
    """Poll k gets no answer in time; its answer arrives as poll k+1's request goes out: poll k+1 must
    report its own values (Poller checks every OK value against the meter's present one)."""
    poller = Poller(driver, meter.device)
    meter.device.set_fault("late")
    late = await poller.poll()
    assert all(r.quality is Quality.FAULT for r in late.values())
    meter.device.set_fault("ok")
    meter.device.update(POWER_W, PERIOD_S)
    meter.device.voltage_v = 241.5  # far from poll k's value: k's reply cannot pass for this one
    readings = await poller.poll(step=False)
    assert readings["voltage"].ok and readings["voltage"].value == f32(241.5), readings["voltage"]
    assert driver.stale_bytes > 0


class ScriptedPeer:
    """A pty peer answering 0x04 like a meter, that can send a stale answer (of the same shape) the
    moment a request arrives, before its own answer after the turnaround."""

    def __init__(self, link: Path, baudrate: int) -> None:
        from qrad_hwsim.devices.uart_pty import PtyLink

        self.link = PtyLink(link)
        self.baudrate = baudrate
        self.voltage_v = 230.0
        self.stale: dict[tuple[int, int], bytes] = {}
        self.garbage_first = b""
        self._rx = b""
        asyncio.get_running_loop().add_reader(self.link.master_fd, self._on_readable)

    def reply(self, start: int, count: int, voltage_v: float) -> bytes:
        image = bytearray(2 * 0x160)
        image[0:4] = struct.pack(">f", voltage_v)
        image[2 * 0x46:2 * 0x46 + 4] = struct.pack(">f", 50.0)
        data = bytes(image[2 * start:2 * (start + count)])
        body = bytes([1, 0x04, len(data)]) + data
        return body + struct.pack("<H", crc16_modbus(body))

    def _on_readable(self) -> None:
        self._rx += self.link.read()
        while len(self._rx) >= 8:
            request, self._rx = self._rx[:8], self._rx[8:]
            start, count = struct.unpack(">HH", request[2:6])
            stale = self.stale.pop((start, count), None)
            if stale is not None:
                self.link.write(stale)  # the late answer lands while this request is on the line
            fresh = self.garbage_first + self.reply(start, count, self.voltage_v)
            asyncio.get_running_loop().call_later((8 + 3.5) * 11 / self.baudrate, self.link.write, fresh)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.link.master_fd)
        self.link.close()


async def test_a_late_reply_of_the_same_request_is_discarded(tmp_path: Path) -> None:
    """Same unit, function and byte count as the real answer: only the time tells them apart. The stale
    answer (226 V) arrives while the request is on the line and is discarded; the real one (233 V) is read."""
    peer = ScriptedPeer(tmp_path / "ttyPEER", 1200)
    drv = make_driver(tmp_path / "ttyPEER", baudrate=1200)
    try:
        await drv.open()
        for start, count in REQUESTS:
            peer.stale[(start, count)] = peer.reply(start, count, 226.0)
        peer.voltage_v = 233.0
        readings = by_key(await drv.read(0.0))
        assert readings["voltage"].ok and readings["voltage"].value == 233.0, readings["voltage"]
        assert drv.stale_bytes >= len(peer.reply(0, 72, 226.0))
        peer.garbage_first = b"\x00\xff\x01"  # junk, including our unit id, before a valid answer
        peer.voltage_v = 234.0
        readings = by_key(await drv.read(10.0))
        assert readings["voltage"].ok and readings["voltage"].value == 234.0, readings["voltage"]
    finally:
        await drv.close()
        peer.close()
