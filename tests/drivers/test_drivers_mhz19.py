"""MH-Z19B driver against the hw-sim emulation over a real pseudo-terminal, and its frame scanner fuzzed."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from qrad_drivers.base import DriverContext, DriverError, Quality
from qrad_drivers.mhz19 import (READ_CO2, Mhz19Config, Mhz19Driver, Mhz19Response, checksum, command, scan)
from qrad_drivers.registry import driver_class
from qrad_hwsim.devices.mhz19 import SPIKE_PPM, Mhz19Device, answer_frame

TIMEOUT_S = 0.25  # the driver waits 0.8 of it for an answer: a fault read costs 0.2 s of real time
PERIOD_S = 5.0


class FakeClock:
    """The emulator's clock, advanced by the test (drift without waiting)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
async def no_task_left():
    """Fail a test that leaves a task running on the loop."""
    yield
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not left, f"tasks left running: {left}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def device(tmp_path: Path, clock: FakeClock):
    dev = Mhz19Device(tmp_path / "dev" / "ttyCO2", np.random.default_rng(7), clock, co2_ppm=612, noise_ppm=0)
    task = asyncio.create_task(dev.run(), name="mhz19-emulator")
    await dev.ready.wait()
    yield dev
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def make_driver(port: str, **extra: object) -> Mhz19Driver:
    cfg = Mhz19Config(name="co2", port=port, timeout_s=TIMEOUT_S, **extra)
    return Mhz19Driver(cfg, DriverContext())


@pytest.fixture
async def driver(device: Mhz19Device):
    drv = make_driver(device.path, stuck_after_s=10.0)
    await drv.open()
    yield drv
    await drv.close()


async def read_one(drv: Mhz19Driver, t_s: float = 0.0):
    (reading,) = await drv.read(t_s)
    return reading


# --- protocol --------------------------------------------------------------------------------------------

def test_frames_match_the_manual() -> None:
    assert READ_CO2 == bytes.fromhex("FF 01 86 00 00 00 00 00 79")
    assert command(0x87) == bytes.fromhex("FF 01 87 00 00 00 00 00 78")
    assert command(0x79, b"\xa0") == bytes.fromhex("FF 01 79 A0 00 00 00 00 E6")
    assert command(0x79) == bytes.fromhex("FF 01 79 00 00 00 00 00 86")
    example = bytes.fromhex("FF 86 02 20 00 00 00 00 58")
    assert checksum(example) == 0x58
    assert scan(example).frames == [Mhz19Response(example)]
    assert scan(example).frames[0].co2_ppm == 544
    assert answer_frame(544, -40) == example  # the emulator builds the manual's frame


def test_registry_and_config() -> None:
    assert driver_class("mhz19") is Mhz19Driver
    drv = make_driver("/dev/ttyCO2")
    (spec,) = drv.channels
    assert (spec.name, spec.quantity, spec.unit, spec.valid_min, spec.valid_max) == (
        "co2", "carbon_dioxide", "ppm", 0.0, 10000.0)
    assert drv.period_s == 5.0 and drv.cfg.baudrate == 9600 and drv.cfg.stuck_after_s == 1800.0
    with pytest.raises(ValidationError):
        Mhz19Config(name="co2", port="/dev/ttyCO2", baud=9600)


# --- against the emulator ------------------------------------------------------------------------------

async def test_reads_the_emulated_value(device: Mhz19Device, driver: Mhz19Driver) -> None:
    reading = await read_one(driver)
    assert (reading.quality, reading.value, reading.unit, reading.channel) == (Quality.OK, 612.0, "ppm", "co2")
    device.co2_ppm = 1234.4
    device.temperature_c = 25
    assert (await read_one(driver, 5.0)).value == 1234.0
    assert driver.last_temperature_c == 25
    assert device.requests == 2


@pytest.mark.parametrize(("kind", "reason"), [
    ("unplugged", "no answer"),
    ("garbage", "garbage"),
    ("partial", "partial frame"),
    ("bad_checksum", "bad checksum"),
])
async def test_fault_then_recovery(device: Mhz19Device, driver: Mhz19Driver, kind: str, reason: str) -> None:
    device.set_fault(kind)
    for period in range(2):
        reading = await read_one(driver, period * PERIOD_S)
        assert reading.quality is Quality.FAULT
        assert reason in reading.reason
        assert math.isnan(reading.value) and not reading.ok
    device.set_fault("ok")
    reading = await read_one(driver, 2 * PERIOD_S)
    assert reading.ok and reading.value == 612.0


async def test_out_of_range(device: Mhz19Device, driver: Mhz19Driver) -> None:
    device.set_fault("out_of_range")
    reading = await read_one(driver)
    assert reading.quality is Quality.OUT_OF_RANGE and reading.value == 0xFFFF
    device.set_fault("ok")
    assert (await read_one(driver, PERIOD_S)).ok


async def test_spike_is_never_ok(device: Mhz19Device, driver: Mhz19Driver) -> None:
    device.spike_every = 2
    device.set_fault("spike")
    readings = [await read_one(driver, i * PERIOD_S) for i in range(4)]
    assert [r.quality for r in readings] == [Quality.OK, Quality.OUT_OF_RANGE] * 2
    assert all(r.value == 612.0 for r in readings if r.ok)
    assert readings[1].value == SPIKE_PPM


async def test_stuck_becomes_stale_then_recovers(device: Mhz19Device, driver: Mhz19Driver) -> None:
    device.noise_ppm = 3.0  # a live sensor jitters
    values = []
    for i in range(4):
        reading = await read_one(driver, i * PERIOD_S)
        assert reading.ok
        values.append(reading.value)
    assert len(set(values)) > 1
    device.set_fault("stuck")
    stuck = [await read_one(driver, (4 + i) * PERIOD_S) for i in range(4)]
    assert len({r.value for r in stuck}) == 1
    assert stuck[-1].quality is Quality.STALE and "unchanged" in stuck[-1].reason
    assert stuck[-2].quality is Quality.STALE  # stale within two periods of stuck_after_s
    device.set_fault("ok")
    fresh = [await read_one(driver, (8 + i) * PERIOD_S) for i in range(2)]
    assert any(r.ok for r in fresh)


async def test_drift_is_followed(device: Mhz19Device, driver: Mhz19Driver, clock: FakeClock) -> None:
    """The driver reports the drifting value: drift is caught by the hub's redundancy, not here."""
    device.drift_ppm_per_min = 50.0
    device.set_fault("drift")
    assert (await read_one(driver)).value == 612.0
    clock.t = 120.0
    reading = await read_one(driver, PERIOD_S)
    assert reading.ok and reading.value == 712.0
    device.set_fault("ok")
    assert (await read_one(driver, 2 * PERIOD_S)).value == 612.0


async def test_resynchronises_after_line_noise(device: Mhz19Device, driver: Mhz19Driver) -> None:
    device.set_fault("noisy")
    for _ in range(5):
        reading = await read_one(driver)
        assert reading.ok and reading.value == 612.0


async def test_calibration_commands_reach_the_sensor(device: Mhz19Device, driver: Mhz19Driver) -> None:
    await driver.set_abc(False)
    await driver.calibrate_zero()
    assert (await read_one(driver)).ok  # the read after the commands still works
    assert device.abc_enabled is False and device.zero_calibrations == 1


async def test_vanished_port_raises(tmp_path: Path, clock: FakeClock) -> None:
    dev = Mhz19Device(tmp_path / "ttyCO2", np.random.default_rng(1), clock, noise_ppm=0)
    task = asyncio.create_task(dev.run())
    await dev.ready.wait()
    drv = make_driver(dev.path)
    await drv.open()
    assert (await read_one(drv)).ok
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not (tmp_path / "ttyCO2").exists()
    with pytest.raises(DriverError):
        await drv.read(1.0)
    await drv.close()
    await drv.close()  # close never raises, even twice


async def test_open_missing_port_raises(tmp_path: Path) -> None:
    drv = make_driver(str(tmp_path / "ttyNONE"))
    with pytest.raises(DriverError):
        await drv.open()
    with pytest.raises(DriverError):
        await drv.read(0.0)
    await drv.close()


async def test_read_never_blocks_the_loop(device: Mhz19Device, driver: Mhz19Driver) -> None:
    """While a read waits for an unplugged sensor, other tasks keep running."""
    device.set_fault("unplugged")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    reading = await read_one(driver)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert reading.quality is Quality.FAULT and ticks >= 5


# --- scanner fuzz --------------------------------------------------------------------------------------

def frame_of(ppm: int, temp: int = 62) -> bytes:
    return answer_frame(ppm, temp - 40)


ppms = st.integers(0, 0xFFFF)
no_start_garbage = st.binary(max_size=30).map(lambda b: bytes(x for x in b if x != 0xFF))


def check_scan(buffer: bytes) -> None:
    result = scan(buffer)
    for frame in result.frames:
        assert len(frame.raw) == 9 and frame.raw[:2] == b"\xff\x86" and checksum(frame.raw) == frame.raw[8]
    assert len(result.remainder) < 9 and (b"\xff\x86" + bytes(7)).startswith(result.remainder[:2])
    assert result.rejected >= 0 and result.skipped >= 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_scan_random_bytes(buffer: bytes) -> None:
    check_scan(buffer)
    check_scan(b"\xff\x86" + buffer)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(no_start_garbage, ppms), max_size=8), no_start_garbage)
def test_scan_finds_frames_in_garbage(parts: list[tuple[bytes, int]], tail: bytes) -> None:
    buffer = b"".join(g + frame_of(p) for g, p in parts) + tail
    result = scan(buffer)
    assert [f.co2_ppm for f in result.frames] == [p for _, p in parts]
    assert result.rejected == 0 and result.remainder == b""
    assert result.skipped == sum(len(g) for g, _ in parts) + len(tail)


@settings(max_examples=300, deadline=None)
@given(ppms, st.integers(0, 9 * 8 - 1), no_start_garbage, ppms)
def test_scan_rejects_a_flipped_bit(ppm: int, bit: int, gap: bytes, next_ppm: int) -> None:
    frame = bytearray(frame_of(ppm))
    frame[bit // 8] ^= 1 << (bit % 8)
    assert scan(bytes(frame)).frames == []  # any single-bit error is caught by the checksum
    result = scan(bytes(frame) + gap + frame_of(next_ppm))
    assert [f.co2_ppm for f in result.frames] == [next_ppm]  # and the next good frame is still found


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=12), ppms.map(frame_of)), max_size=10),
       st.lists(st.integers(1, 20), min_size=1, max_size=10))
def test_scan_in_chunks_equals_scan_at_once(pieces: list[bytes], cuts: list[int]) -> None:
    """Bytes cut anywhere (frames split across reads) give the same frames as one buffer."""
    buffer = b"".join(pieces)
    found, remainder, pos, i = [], b"", 0, 0
    while pos < len(buffer):
        chunk = buffer[pos:pos + cuts[i % len(cuts)]]
        pos, i = pos + len(chunk), i + 1
        result = scan(remainder + chunk)
        found += result.frames
        remainder = result.remainder
    whole = scan(buffer)
    assert found == whole.frames and remainder == whole.remainder


async def test_a_late_answer_is_not_taken_for_the_next_read(device: Mhz19Device, driver: Mhz19Driver) -> None:
    """Read k gets no answer in time; its answer (612 ppm) arrives as read k+1's command goes out: read k+1
    reports its own value (1234 ppm), not k's."""
    device.set_fault("late")
    late = await read_one(driver)
    assert late.quality is Quality.FAULT
    device.set_fault("ok")
    device.co2_ppm = 1234
    reading = await read_one(driver, 1.0)
    assert reading.ok and reading.value == 1234.0, reading
    assert driver._port.stale_bytes >= 9
