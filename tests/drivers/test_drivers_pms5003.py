"""PMS5003 driver against the hw-sim emulation over a real pseudo-terminal, and its parser fuzzed.

Most tests drive the emulator frame by frame (``emit``) for exact control; one lets it stream.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qrad_drivers.base import DriverContext, DriverError, Quality, Reading
from qrad_drivers.pms5003 import (Pms5003Config, Pms5003Driver, Pms5003Frame, Pms5003Parser,
                                  frame_checksum)
from qrad_drivers.registry import driver_class
from qrad_hwsim.devices.pms5003 import SPIKE_UGM3, Pms5003Device, build_frame

TIMEOUT_S = 0.25  # the driver waits 0.8 of it when no frame is pending: 0.2 s per fault read
PERIOD_S = 5.0
MANUAL_S = 3600.0  # an interval that never elapses in a test: frames only on emit()
PM = (5.0, 8.0, 12.0)


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


async def start(dev: Pms5003Device) -> asyncio.Task[None]:
    task = asyncio.create_task(dev.run(), name="pms5003-emulator")
    await dev.ready.wait()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def device(tmp_path: Path, clock: FakeClock):
    dev = Pms5003Device(tmp_path / "dev" / "ttyPM", np.random.default_rng(3), clock, interval_s=MANUAL_S,
                        noise_ugm3=0)
    task = await start(dev)
    yield dev
    await stop(task)


def make_driver(port: str, **extra: object) -> Pms5003Driver:
    cfg = Pms5003Config(name="pm", port=port, timeout_s=TIMEOUT_S, **extra)
    return Pms5003Driver(cfg, DriverContext())


@pytest.fixture
async def driver(device: Pms5003Device):
    drv = make_driver(device.path, stuck_after_s=10.0)
    await drv.open()
    yield drv
    await drv.close()


def values(readings: list[Reading]) -> tuple[float, ...]:
    return tuple(r.value for r in readings)


def qualities(readings: list[Reading]) -> set[Quality]:
    return {r.quality for r in readings}


# --- protocol --------------------------------------------------------------------------------------------

def test_frame_layout() -> None:
    raw = build_frame((1, 2, 3), (300, 50, 10, 2, 1, 0))
    assert len(raw) == 32 and raw[:4] == bytes.fromhex("42 4D 00 1C")
    assert int.from_bytes(raw[30:], "big") == frame_checksum(raw) == sum(raw[:30])
    frame = Pms5003Parser().feed(raw)[0]
    assert frame.pm_atmospheric == (1, 2, 3) == frame.pm_standard
    assert frame.counts == (300, 50, 10, 2, 1, 0)
    cf1_differs = raw[:4] + bytes([0, 9]) + raw[6:30]
    cf1_differs += (sum(cf1_differs) & 0xFFFF).to_bytes(2, "big")
    assert Pms5003Frame(cf1_differs).pm_standard[0] == 9 and Pms5003Frame(cf1_differs).pm_atmospheric[0] == 1


def test_registry_and_channels() -> None:
    assert driver_class("pms5003") is Pms5003Driver
    drv = make_driver("/dev/ttyPM")
    assert [s.name for s in drv.channels] == ["pm_pm1_0", "pm_pm2_5", "pm_pm10"]
    assert {(s.quantity, s.unit, s.valid_min, s.valid_max) for s in drv.channels} == {
        ("particulate_matter", "µg/m³", 0.0, 1000.0)}
    assert drv.period_s == 5.0 and drv.cfg.baudrate == 9600
    assert Pms5003Config(name="pm", port="/dev/ttyPM").timeout_s == 3.0


# --- against the emulator ------------------------------------------------------------------------------

async def test_reads_the_emulated_values(device: Pms5003Device, driver: Pms5003Driver) -> None:
    device.emit()
    readings = await driver.read(0.0)
    assert values(readings) == PM and qualities(readings) == {Quality.OK}
    device.pm1_0, device.pm2_5, device.pm10 = 10.2, 25.0, 40.6
    device.emit()
    device.pm2_5 = 30.0
    device.emit()
    assert values(await driver.read(PERIOD_S)) == (10.0, 30.0, 41.0)  # the latest frame wins


async def test_streaming_and_waiting_after_open(tmp_path: Path) -> None:
    dev = Pms5003Device(tmp_path / "ttyPM", np.random.default_rng(1), interval_s=0.05, noise_ugm3=0)
    task = await start(dev)
    drv = make_driver(dev.path)
    try:
        await drv.open()
        for i in range(3):  # the first read waits for a frame; later ones find frames pending
            readings = await drv.read(i * PERIOD_S)
            assert values(readings) == PM and qualities(readings) == {Quality.OK}
            await asyncio.sleep(0.12)
    finally:
        await drv.close()
        await stop(task)


async def test_incomplete_frame_is_kept(device: Pms5003Device, driver: Pms5003Driver) -> None:
    raw = build_frame((7, 9, 11), (1, 2, 3, 4, 5, 6))
    device.send(raw[:13])
    readings = await driver.read(0.0)
    assert qualities(readings) == {Quality.FAULT} and "partial frame pending (13 of 32" in readings[0].reason
    device.send(raw[13:])
    assert values(await driver.read(PERIOD_S)) == (7, 9, 11)


@pytest.mark.parametrize(("kind", "reason"), [
    ("unplugged", "nothing received"),
    ("garbage", "garbage"),
    ("partial", "partial"),
    ("bad_checksum", "bad checksum"),
])
async def test_fault_then_recovery(device: Pms5003Device, driver: Pms5003Driver, kind: str, reason: str) -> None:
    device.set_fault(kind)
    for period in range(2):
        device.emit()
        device.emit()
        readings = await driver.read(period * PERIOD_S)
        assert qualities(readings) == {Quality.FAULT}
        assert all(reason in r.reason and math.isnan(r.value) for r in readings), readings[0].reason
    device.set_fault("ok")
    device.emit()
    readings = await driver.read(2 * PERIOD_S)
    assert values(readings) == PM and qualities(readings) == {Quality.OK}


async def test_out_of_range(device: Pms5003Device, driver: Pms5003Driver) -> None:
    device.set_fault("out_of_range")
    device.emit()
    readings = await driver.read(0.0)
    assert qualities(readings) == {Quality.OUT_OF_RANGE} and values(readings) == (0xFFFF,) * 3
    device.set_fault("ok")
    device.emit()
    assert qualities(await driver.read(PERIOD_S)) == {Quality.OK}


async def test_spike_is_never_ok(device: Pms5003Device, driver: Pms5003Driver) -> None:
    device.spike_every = 2
    device.set_fault("spike")
    seen = []
    for i in range(4):
        device.emit()
        readings = await driver.read(i * PERIOD_S)
        seen.append(qualities(readings))
        assert all(r.value in PM for r in readings if r.ok)
        assert all(r.value == SPIKE_UGM3 for r in readings if not r.ok)
    assert seen == [{Quality.OK}, {Quality.OUT_OF_RANGE}] * 2


async def test_stuck_becomes_stale_then_recovers(device: Pms5003Device, driver: Pms5003Driver) -> None:
    for i in range(3):  # constant masses, but the particle counts of a live sensor move
        device.emit()
        assert qualities(await driver.read(i * PERIOD_S)) == {Quality.OK}
    device.set_fault("stuck")
    seen = []
    for i in range(3, 7):
        device.emit()
        seen.append(await driver.read(i * PERIOD_S))
    assert qualities(seen[-1]) == {Quality.STALE} and "identical frames" in seen[-1][0].reason
    assert qualities(seen[-2]) == {Quality.STALE}
    device.set_fault("ok")
    device.emit()
    assert qualities(await driver.read(7 * PERIOD_S)) == {Quality.OK}


async def test_drift_is_followed(device: Pms5003Device, driver: Pms5003Driver, clock: FakeClock) -> None:
    """The driver reports the drifting values: drift is caught by the hub's plausibility checks."""
    device.drift_ugm3_per_min = 2.0
    device.set_fault("drift")
    device.emit()
    assert values(await driver.read(0.0)) == PM
    clock.t = 300.0
    device.emit()
    readings = await driver.read(PERIOD_S)
    assert values(readings) == tuple(v + 10 for v in PM) and qualities(readings) == {Quality.OK}


async def test_resynchronises_after_line_noise(device: Pms5003Device, driver: Pms5003Driver) -> None:
    device.set_fault("noisy")
    for _ in range(5):
        device.emit()
        readings = await driver.read(0.0)
        assert values(readings) == PM and qualities(readings) == {Quality.OK}


async def test_vanished_port_raises(tmp_path: Path) -> None:
    dev = Pms5003Device(tmp_path / "ttyPM", np.random.default_rng(1), interval_s=MANUAL_S, noise_ugm3=0)
    task = await start(dev)
    drv = make_driver(dev.path)
    await drv.open()
    dev.emit()
    assert qualities(await drv.read(0.0)) == {Quality.OK}
    await stop(task)
    assert not (tmp_path / "ttyPM").exists()
    with pytest.raises(DriverError):
        await drv.read(1.0)
    await drv.close()
    await drv.close()


async def test_open_missing_port_raises(tmp_path: Path) -> None:
    drv = make_driver(str(tmp_path / "ttyNONE"))
    with pytest.raises(DriverError):
        await drv.open()
    await drv.close()


async def test_passive_mode_commands(device: Pms5003Device, driver: Pms5003Driver) -> None:
    """The emulator obeys the manual's host commands (the driver itself stays in active mode)."""
    driver._port.write(bytes.fromhex("42 4D E1 00 00 01 70"))  # passive
    driver._port.write(bytes.fromhex("42 4D E2 00 00 01 71"))  # read
    readings = await driver.read(0.0)
    assert device.active is False and values(readings) == PM


# --- parser fuzz -----------------------------------------------------------------------------------------

masses = st.tuples(*[st.integers(0, 0xFFFF)] * 3)
counts = st.tuples(*[st.integers(0, 0xFFFF)] * 6)
frames = st.builds(build_frame, masses, counts)
no_start_garbage = st.binary(max_size=40).map(lambda b: bytes(x for x in b if x != 0x42))


def assert_valid(found: list[Pms5003Frame]) -> None:
    for frame in found:
        raw = frame.raw
        assert len(raw) == 32 and raw[:4] == b"BM\x00\x1c"
        assert int.from_bytes(raw[30:], "big") == frame_checksum(raw)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6))
def test_parser_random_bytes(chunks: list[bytes]) -> None:
    parser = Pms5003Parser()
    for chunk in chunks:
        assert_valid(parser.feed(chunk))
        assert parser.pending < 32


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(no_start_garbage, frames), max_size=6), no_start_garbage)
def test_parser_finds_frames_in_garbage(parts: list[tuple[bytes, bytes]], tail: bytes) -> None:
    parser = Pms5003Parser()
    found = parser.feed(b"".join(g + f for g, f in parts) + tail)
    assert [f.raw for f in found] == [f for _, f in parts]
    assert parser.stats.bad_checksum == parser.stats.truncated == 0
    assert parser.stats.skipped_bytes == sum(len(g) for g, _ in parts) + len(tail)


@settings(max_examples=300, deadline=None)
@given(frames, st.integers(0, 32 * 8 - 1), no_start_garbage, frames)
def test_parser_rejects_a_flipped_bit(good: bytes, bit: int, gap: bytes, after: bytes) -> None:
    bad = bytearray(good)
    bad[bit // 8] ^= 1 << (bit % 8)
    parser = Pms5003Parser()
    assert parser.feed(bytes(bad)) == []
    assert [f.raw for f in parser.feed(gap + after)] == [after]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), frames, frames.map(lambda f: f[:20])), max_size=8),
       st.lists(st.integers(1, 40), min_size=1, max_size=8))
def test_parser_chunking_does_not_matter(pieces: list[bytes], cuts: list[int]) -> None:
    """Interleaved frames, cut frames and noise fed in arbitrary chunks give what one feed gives."""
    data = b"".join(pieces)
    whole = Pms5003Parser()
    expected = whole.feed(data)
    assert_valid(expected)
    chunked = Pms5003Parser()
    found, pos, i = [], 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        found += chunked.feed(data[pos:pos + size])
        pos, i = pos + size, i + 1
    assert found == expected and chunked.pending == whole.pending
