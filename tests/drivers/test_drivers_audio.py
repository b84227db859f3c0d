"""The audio driver against hw-sim's AudioSource over a real FIFO, in real time (periods of 0.25 s).

The A-weighting itself is checked as pure numpy against the IEC 61672-1 table; the WAV replay uses an excerpt of a
real smoke alarm recording (tests/data/README.md).
"""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from qrad_drivers import audio as audio_mod
from qrad_drivers.acoustics import AWeightingFilter, LevelMeter, a_weighting_db
from qrad_drivers.audio import AudioConfig, AudioDriver
from qrad_drivers.base import DriverContext, DriverError, Quality, Reading
from qrad_drivers.registry import driver_class
from qrad_hwsim.devices import audio as sim_audio
from qrad_hwsim.devices.audio import T3_PATTERN, AudioSource

RATE = 16000
PERIOD_S = 0.25
ALARM_WAV = Path(__file__).resolve().parents[1] / "data/audio/smoke_alarm_2p86kHz_4-6s.wav"  # 4-6 s of the recording
IEC_TABLE_DB = {31.5: -39.4, 63: -26.2, 100: -19.1, 125: -16.1, 250: -8.6, 500: -3.2, 1000: 0.0,
                2000: 1.2, 4000: 1.0, 6300: -0.1}


def a_minus_z_db(pink: bool) -> float:
    """A-weighted minus unweighted level of white or pink noise from 20 Hz to Nyquist, from the curve."""
    freq = np.linspace(20.0, RATE / 2, 100_000)
    density = 1 / freq if pink else np.ones_like(freq)
    return float(10 * np.log10(np.sum(density * 10 ** (a_weighting_db(freq) / 10)) / np.sum(density)))


PINK_A_MINUS_Z_DB = a_minus_z_db(pink=True)  # -2.7 dB


@pytest.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves a task running (a reader, a writer, a pacing task)."""
    yield
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert not left, f"tasks left running: {left}"


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[AudioSource]:
    """A quiet simulated microphone (no background) writing into tmp_path/mic.fifo."""
    async with AudioSource(tmp_path / "mic.fifo", RATE, np.random.default_rng(7)) as src:
        src.set_background(None)
        yield src


def make_driver(path: Path, **extra: object) -> AudioDriver:
    cfg = AudioConfig(name="mic", path=path, period_s=PERIOD_S, **extra)  # type: ignore[arg-type]
    return AudioDriver(cfg, DriverContext())


@pytest.fixture
async def driver(source: AudioSource) -> AsyncIterator[AudioDriver]:
    async with make_driver(source.path) as drv:
        yield drv  # type: ignore[misc]


async def read_until(drv: AudioDriver, accept: Callable[[Reading], bool], timeout_s: float = 2.0) -> Reading:
    """Poll like the hub does (every 50 ms) until a reading is accepted; fail with the last one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        (reading,) = await drv.read(loop.time())
        if accept(reading) or loop.time() > deadline:
            assert accept(reading), f"last reading {reading}"
            return reading
        await asyncio.sleep(0.05)


async def settled_level(drv: AudioDriver) -> float:
    """The level of a period that started after the current content did."""
    await read_until(drv, lambda r: r.ok)
    await asyncio.sleep(2 * PERIOD_S)
    return (await read_until(drv, lambda r: r.ok)).value


# -- pure: the weighting curve and its filter ------------------------------------------------------------

@pytest.mark.parametrize("freq_hz", sorted(IEC_TABLE_DB))
def test_analytic_curve_matches_the_iec_table(freq_hz: float) -> None:
    assert float(a_weighting_db(freq_hz)) == pytest.approx(IEC_TABLE_DB[freq_hz], abs=0.15)


@pytest.mark.parametrize("freq_hz", [63.0, 100.0, 1000.0, 2860.0, 4000.0, 97.3])
def test_filter_gain_for_pure_tones_is_within_a_quarter_db(freq_hz: float) -> None:
    flt, block_n = AWeightingFilter(RATE, 2000), 2000
    x = np.sin(2 * np.pi * freq_hz * np.arange(3 * RATE) / RATE + 0.4)
    y = np.concatenate([flt(x[i : i + block_n]) for i in range(0, x.size, block_n)])[RATE:]
    assert 10 * np.log10(np.mean(y**2) / 0.5) == pytest.approx(float(a_weighting_db(freq_hz)), abs=0.25)


def test_level_meter_costs_well_under_one_percent_of_a_core() -> None:
    """CPU measure: samples processed per CPU second (time.process_time) against the 16 kHz stream."""
    meter = LevelMeter(RATE, 2000, 8, 120.0)
    pcm = np.random.default_rng(0).normal(0, 2000, 20 * RATE).astype(np.int16)
    start = time.process_time()
    for i in range(0, pcm.size, 2000):
        meter.add(pcm[i : i + 2000])
    cpu_share = (time.process_time() - start) / 20.0
    assert cpu_share < 0.005, f"{cpu_share:.2%} of a core"


def test_config_takes_a_path_for_fifo_and_a_device_for_alsa(tmp_path: Path) -> None:
    assert driver_class("audio") is AudioDriver
    with pytest.raises(ValueError):
        AudioConfig(name="mic")
    with pytest.raises(ValueError):
        AudioConfig(name="mic", source="alsa", path=tmp_path)
    assert AudioConfig(name="mic", source="alsa", device="hw:1").calibration_db == 120.0
    assert audio_mod.CALIBRATION_DB == sim_audio.CALIBRATION_DB


# -- through the FIFO ------------------------------------------------------------------------------------

async def test_a_1khz_tone_reads_back_its_level(source: AudioSource, driver: AudioDriver) -> None:
    source.add_tone(1000.0, 94.0)
    reading = await read_until(driver, lambda r: r.ok)
    assert reading.channel == "mic" and reading.unit == "dB(A)"
    assert await settled_level(driver) == pytest.approx(94.0, abs=1.0)


async def test_a_100hz_tone_reads_19_db_below_a_1khz_tone(source: AudioSource, driver: AudioDriver) -> None:
    tone = source.add_tone(1000.0, 80.0)
    at_1k = await settled_level(driver)
    source.remove_tone(tone)
    source.add_tone(100.0, 80.0)
    assert at_1k - await settled_level(driver) == pytest.approx(19.1, abs=0.5)


async def test_white_noise_reads_its_a_weighted_level(source: AudioSource, driver: AudioDriver) -> None:
    source.set_background(70.0, "white")
    assert await settled_level(driver) == pytest.approx(70.0 + a_minus_z_db(pink=False), abs=1.0)


async def test_subscribers_get_timestamped_blocks(source: AudioSource, driver: AudioDriver) -> None:
    queue = driver.subscribe()
    blocks = [await asyncio.wait_for(queue.get(), 1.0) for _ in range(6)]
    driver.unsubscribe(queue)
    times = [t for t, _ in blocks]
    assert all(b.dtype == np.int16 and b.size == 2000 for _, b in blocks)
    assert times == sorted(times) and times[-1] <= asyncio.get_running_loop().time()
    assert (times[-1] - times[0]) / 5 == pytest.approx(0.125, abs=0.05)


async def test_a_full_queue_drops_its_oldest_blocks(source: AudioSource, driver: AudioDriver) -> None:
    queue = driver.subscribe(maxsize_blocks=2)
    while driver.dropped(queue) < 3:
        await asyncio.sleep(0.05)
    status = driver.status()
    (t_first, _), (t_second, _) = queue.get_nowait(), queue.get_nowait()
    assert t_first < t_second and asyncio.get_running_loop().time() - t_second < 0.3
    assert status["dropped_blocks"] >= 3
    driver.unsubscribe(queue)


def test_t3_pattern_beeps_at_iso_8201_times(tmp_path: Path) -> None:
    """The mix itself (no writer task): 0.5 s on / 0.5 s off three times, then 1.5 s off, at 3.1 kHz."""
    src = AudioSource(tmp_path / "mic.fifo", RATE, np.random.default_rng(3))
    src.set_background(None)
    src.add_tone(3100.0, 85.0, T3_PATTERN)
    mix = src.render(8 * RATE)
    on = np.abs(mix).reshape(-1, 80).max(axis=1) > 0.5 * 10 ** (-35 / 20)  # 5 ms frames; the peak is -35 dBFS
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    runs = np.diff(np.concatenate([[0], edges, [on.size]])) * 0.005
    assert on[0] and runs.tolist() == pytest.approx([0.5, 0.5, 0.5, 0.5, 0.5, 1.5] * 2, abs=0.006)
    spectrum = np.abs(np.fft.rfft(mix[: RATE // 2]))
    assert np.fft.rfftfreq(RATE // 2, 1 / RATE)[np.argmax(spectrum)] == pytest.approx(3100.0, abs=2.0)


async def test_wav_replay_reaches_the_subscriber(source: AudioSource, driver: AudioDriver) -> None:
    """The recording's alarm warbles between about 2.46 and 2.87 kHz (0.25 s slices of the 44.1 kHz file):
    the replay must put its energy in that band, resampled to 16 kHz."""
    queue = driver.subscribe()
    await source.play_wav(ALARM_WAV)
    await asyncio.wait_for(queue.get(), 1.0)  # a block that may predate the replay
    samples = np.concatenate([(await asyncio.wait_for(queue.get(), 1.0))[1] for _ in range(4)])
    driver.unsubscribe(queue)
    power = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freq = np.fft.rfftfreq(samples.size, 1 / RATE)
    assert 2400.0 <= freq[np.argmax(power)] <= 2950.0
    assert power[(freq >= 2300) & (freq <= 3000)].sum() > 0.5 * power.sum()


# -- faults and recovery ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "quality", "reason"), [
    ("unplugged", Quality.FAULT, "no audio"),
    ("silence", Quality.FAULT, "silence: digital zero"),
    ("clipping", Quality.OUT_OF_RANGE, "clipped"),
    ("stuck", Quality.STALE, "stuck"),
])
async def test_fault_is_flagged_then_recovers(source: AudioSource, driver: AudioDriver, fault: str,
                                              quality: Quality, reason: str) -> None:
    source.set_background(50.0)
    await read_until(driver, lambda r: r.ok)
    source.set_fault(fault)
    loop = asyncio.get_running_loop()
    began = loop.time()
    flagged = await read_until(driver, lambda r: r.quality is quality, timeout_s=2.5 * PERIOD_S + 0.3)
    assert flagged.reason.startswith(reason) and loop.time() - began <= 2 * PERIOD_S + 0.3
    source.set_fault("ok")  # the first OK period may still hold the filter's 64 ms tail of the fault
    assert await settled_level(driver) == pytest.approx(50.0 + PINK_A_MINUS_Z_DB, abs=1.0)


async def test_garbage_realigns_the_stream(source: AudioSource, driver: AudioDriver) -> None:
    source.add_tone(1000.0, 70.0)
    await read_until(driver, lambda r: r.ok)
    source.set_fault("garbage")
    await asyncio.sleep(0.3)  # 6 chunks of an odd byte count: the alignment is lost
    source.set_fault("ok")
    await read_until(driver, lambda r: r.quality is Quality.FAULT and r.reason.startswith("garbled"))
    assert driver.resyncs >= 1
    assert await settled_level(driver) == pytest.approx(70.0, abs=1.0)


async def test_writer_gone_raises_and_reopen_resumes(tmp_path: Path) -> None:
    path = tmp_path / "mic.fifo"
    async with AudioSource(path, RATE) as first:
        first.add_tone(1000.0, 80.0)
        drv = make_driver(path)
        await drv.open()
        await read_until(drv, lambda r: r.ok)
    with pytest.raises(DriverError, match="writer closed"):
        for _ in range(20):
            await drv.read(asyncio.get_running_loop().time())
            await asyncio.sleep(0.05)
    with pytest.raises(DriverError):
        await drv.open()  # the FIFO is gone with its writer
    async with AudioSource(path, RATE) as second:
        second.add_tone(1000.0, 80.0)
        await drv.open()
        assert (await read_until(drv, lambda r: r.ok)).value == pytest.approx(80.0, abs=1.0)
        await drv.close()


async def test_file_source_replays_a_wav_at_real_time_pace(tmp_path: Path) -> None:
    path = tmp_path / "tone.wav"
    t = np.arange(RATE) / RATE
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(RATE)
        noise = np.random.default_rng(5).normal(0.0, 3.0, t.size)  # a real recording is never periodic
        wav.writeframes(np.round(0.1 * 32768 * np.sin(2 * np.pi * 1000 * t) + noise).astype("<i2").tobytes())
    async with AudioDriver(AudioConfig(name="mic", source="file", path=path, period_s=PERIOD_S),
                           DriverContext()) as drv:
        await read_until(drv, lambda r: r.ok)
        await asyncio.sleep(PERIOD_S + 0.05)
        assert (await read_until(drv, lambda r: r.ok)).value == pytest.approx(100.0, abs=0.5)
        with pytest.raises(DriverError, match="end of file"):
            await read_until(drv, lambda r: False, timeout_s=1.0)
