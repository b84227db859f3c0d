"""Alarm-sound detection: T3 found in household noise, non-alarm sounds rejected, the real WAV."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qrad_agent.fire.alarm_sound import AlarmSoundDetector
from qrad_agent.fire.config import SoundConfig
from qrad_hwsim.devices.audio import load_wav
from qrad_hwsim.fire import sounds, variations

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fire as bench  # noqa: E402  (benchmarks/fire.py: the same trials the benchmark prints)


def test_t3_in_household_noise_200_trials_within_6_s(feed_audio) -> None:
    result = bench.t3_trials(200, seed=1)
    assert result["detected_within_6s"] >= 0.99, result["missed"]
    assert result["latency_max_s"] <= 6.0 or result["missed"]


def test_low_frequency_t3_in_household_noise(feed_audio) -> None:
    """520 Hz square T3 in the same noise (speech crowds that band), on other seeds than the benchmark's 1:
    benchmarks/fire.py prints the 200-trial rate (99 %+); 100 trials here may miss 3 of the 0-1 dB ones."""
    result = bench.t3_trials(100, seed=31, low_frequency=True)
    assert result["detected_within_6s"] >= 0.97, result["missed"]
    assert result["latency_median_s"] <= 5.0
    assert all(m["snr_db"] < 5.0 for m in result["missed"]), result["missed"]


@pytest.mark.parametrize("on_s,gap_s,long_s,freq_hz", [
    (0.5, 0.5, 1.5, 3100.0),    # ISO 8201
    (0.3, 0.3, 1.1, 2800.0),    # a fast cheap alarm at the band's bottom
    (0.8, 0.7, 2.8, 3800.0),    # a slow one at the top
    (0.42, 0.61, 1.9, 3450.0),  # uneven on and off
])
def test_cheap_alarm_timings_outside_iso_tolerances(on_s: float, gap_s: float, long_s: float,
                                                     freq_hz: float, feed_audio) -> None:
    house = sounds.Household(np.random.default_rng(3)).render(0, 16 * 16000) * 0.01
    beeps = sounds.t3_beeps(1.0, 16.0, freq_hz, 0.1, on_s, gap_s, long_s)
    _, hits = feed_audio(house + sounds.BeepTrack(beeps).render(0, house.size))
    assert hits and hits[0] - 1.0 <= 3 * on_s + 2 * gap_s + long_s + 0.5


def test_low_frequency_520_hz_square_wave(feed_audio) -> None:
    house = sounds.Household(np.random.default_rng(4)).render(0, 14 * 16000) * 0.01
    beeps = sounds.t3_beeps(1.0, 14.0, 520.0, 0.02, square=True)
    _, hits = feed_audio(house + sounds.BeepTrack(beeps).render(0, house.size))
    assert hits and hits[0] - 1.0 < 5.0


@pytest.mark.parametrize("name", list(bench.NON_ALARM))
def test_non_alarm_sounds_never_confirm(name: str, feed_audio) -> None:
    """Three minutes each here (benchmarks/fire.py runs an hour each)."""
    seconds = 180.0
    house = sounds.Household(np.random.default_rng(11), music=1.0)
    signal = house.render(0, int(seconds * 16000)) * 0.01
    signal += sounds.BeepTrack(bench.NON_ALARM[name](seconds)).render(0, signal.size)
    det, hits = feed_audio(signal)
    assert hits == [] and det.confidence(seconds) == 0.0


@pytest.mark.parametrize("pattern", [
    [(0.1, 0.1)] * 3 + [(0.1, 5.0)],  # T4, the CO alarm
    [(3600.0, 0.0)],                  # a steady tone
    [(0.5, 0.5)],                     # a beep train: no long gap
    [(0.5, 0.5), (0.5, 0.5), (0.5, 30.0)],  # one triple per 30 s (a microwave's end beeps): no next cycle
], ids=["t4", "steady", "train", "single-triple"])
def test_low_frequency_520_hz_non_alarms_never_confirm(pattern: list[tuple[float, float]],
                                                       feed_audio) -> None:
    """The 520 Hz square wave in the patterns that are not T3, over loud speech and music."""
    seconds = 120.0
    house = sounds.Household(np.random.default_rng(12), speech=2.0, music=1.0)
    signal = house.render(0, int(seconds * 16000)) * 0.01
    beeps = sounds.pattern_beeps(0.5, seconds, 520.0, 0.03, pattern, square=True)
    signal += sounds.BeepTrack(beeps).render(0, signal.size)
    det, hits = feed_audio(signal)
    assert hits == [] and det.confidence(seconds) == 0.0


def test_low_frequency_band_wants_the_square_wave_timbre(feed_audio) -> None:
    """Same T3 rhythm, pitch and level: the square wave (odd harmonics only) is found; a tone with a second
    harmonic as strong as a voice's or an instrument's is not taken for the 520 Hz alarm. That is the design's
    limit, on purpose: the even-harmonic check is what keeps speech from splitting and faking 520 Hz beeps."""
    house = sounds.Household(np.random.default_rng(13), speech=2.0, music=0.0).render(0, 14 * 16000) * 0.01
    square = sounds.t3_beeps(1.0, 14.0, 520.0, 0.02, square=True)
    _, hits = feed_audio(house + sounds.BeepTrack(square).render(0, house.size))
    assert hits and hits[0] - 1.0 < 5.0
    note = [(a, b, f * h, 0.025 * g, False) for a, b, f, *_ in square
            for h, g in ((1, 1.0), (2, 0.5), (3, 0.3))]
    _, hits = feed_audio(house + sounds.BeepTrack(note).render(0, house.size))
    assert hits == []


def test_hwsim_microphone_loops_cost_the_same_at_any_stream_age() -> None:
    """The simulated microphone that feeds this detector slices its noise loops from ``n0 % size``: the same
    samples as wrapping every index, without numpy's per-index wrap loop whose cost grew with ``n0``."""
    from qrad_hwsim.devices.audio import _loop_slice

    loop = np.arange(1000.0)
    for n0 in (0, 999, 1000, 12345, 10**12 + 7):
        for n in (0, 1, 800, 2500):
            assert np.array_equal(_loop_slice(loop, n0, n), loop[(n0 + np.arange(n)) % loop.size])


def _real_tone(excerpts: Path, seconds: float) -> np.ndarray:
    """The real piezo tone (6 s excerpt) repeated to ``seconds``: its harmonics and wobble (the level dips
    by up to 40 dB every ~0.6 s), continuous."""
    tone = load_wav(excerpts / "smoke_alarm_2p86kHz_3.0-9.0s_16k.wav", 16000)
    return np.tile(tone, int(np.ceil(seconds * 16000 / tone.size)))[: int(seconds * 16000)]


@pytest.mark.parametrize("segmenter", ["ridge", "bin"])
def test_real_recording_continuous_alarm_tone_is_not_t3(excerpts: Path, feed_audio, segmenter: str) -> None:
    det = AlarmSoundDetector(SoundConfig(segmenter=segmenter))
    _, hits = feed_audio(_real_tone(excerpts, 20.0), det)
    assert hits == []


@pytest.mark.parametrize("segmenter", ["ridge", "bin"])
def test_real_recording_gated_into_t3_is_detected(excerpts: Path, feed_audio, segmenter: str) -> None:
    """The real piezo's timbre (harmonics, wobble) chopped into T3: its first cycle is confirmed."""
    tone = _real_tone(excerpts, 6.0)
    mask = np.zeros(tone.size)
    for start, end, *_ in sounds.t3_beeps(0.0, 6.0, 1.0, 1.0):
        mask[int(start * 16000) : int(end * 16000)] = 1.0
    _, hits = feed_audio(tone * mask, AlarmSoundDetector(SoundConfig(segmenter=segmenter)))
    assert hits and hits[0] < 6.0


def test_stream_gap_resets_segmentation(feed_audio) -> None:
    det, _ = feed_audio(np.zeros(16000))
    beeps = sounds.t3_beeps(0.0, 3.0, 3100.0, 0.1)
    block = sounds.to_int16(sounds.BeepTrack(beeps).render(0, 2000))
    assert det.feed(100.0, block) is False  # a jump of 99 s: nothing before it may complete a pattern
    assert all(not band.segments for band in det.bands)


def _first_confirmation(v: variations.AlarmVariation, seed: int, segmenter: str, feed) -> float | None:
    x = variations.render(v, v.onset_s + 12.0, np.random.default_rng(seed))
    _, hits = feed(x, AlarmSoundDetector(SoundConfig(segmenter=segmenter)))
    return hits[0] - v.onset_s if hits else None


@pytest.mark.parametrize("name", ["recording-like", "one channel, flipping", "door -15 dB", "three lines",
                                  "reverb 0.8 s", "second alarm out of phase", "noise 0 dB", "AM and beating",
                                  "slow timing", "fast timing"])
def test_real_alarm_variations_found_within_10_s(name: str, feed_audio) -> None:
    """hw-sim's real-alarm variations (issue 16), 5 seeds each: every one found within 10 s of the first beep."""
    v = variations.PRESETS[name]
    times = [_first_confirmation(v, seed, "ridge", feed_audio) for seed in range(5)]
    assert all(t is not None and t <= 10.0 for t in times), times


def test_one_bin_segmenter_loses_the_flipping_two_line_alarm(feed_audio) -> None:
    """Why the tracker exists: keyed to one bin, the two-line beep whose louder line flips breaks into
    fragments (issue 16 measured 0 of 10); the ridge tracker finds the same signals."""
    v = variations.PRESETS["one channel, flipping"]
    old = [_first_confirmation(v, seed, "bin", feed_audio) for seed in range(3)]
    new = [_first_confirmation(v, seed, "ridge", feed_audio) for seed in range(3)]
    assert all(t is None or t > 10.0 for t in old) and all(t is not None and t <= 10.0 for t in new)


@pytest.mark.parametrize("people", [1, 2, 4])
def test_people_talking_in_the_room_are_no_alarm(tmp_path: Path, people: int) -> None:
    """hw-sim's occupants talk (0.3-3.4 kHz noise in talk spurts with a 4 Hz syllabic envelope, the rig's
    microphone content): 5 minutes of it, as the driver delivers it (50 ms int16 blocks), confirm no T3
    cycle. Noise peaks near the speech band's upper edge stood above the 2.3-4.4 kHz region's median and
    made two 'cycles' within a minute: a fire ALARM from sound alone in the rig."""
    from qrad_hwsim.devices.audio import AudioSource

    source = AudioSource(tmp_path / "mic.fifo", 16000, np.random.default_rng(people))
    source.set_occupants(people)
    detector = AlarmSoundDetector(SoundConfig())
    confirmed = []
    for k in range(1, int(300 / 0.05) + 1):
        pcm = np.clip(source.render(800) * 32768.0, -32768, 32767).astype(np.int16)
        if detector.feed(k * 0.05, pcm):
            confirmed.append((round(k * 0.05, 1), detector.last_match))
    assert confirmed == []
