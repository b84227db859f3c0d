"""Alarm-sound detection: T3 found in household noise, non-alarm sounds rejected, the real WAV."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from qrad_hwsim.devices.audio import load_wav
from qrad_hwsim.fire import sounds

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import fire as bench  # noqa: E402  (benchmarks/fire.py: the same trials the benchmark prints)


def test_t3_in_household_noise_200_trials_within_6_s(feed_audio) -> None:
    result = bench.t3_trials(200, seed=1)
    assert result["detected_within_6s"] >= 0.99, result["missed"]
    assert result["latency_max_s"] <= 6.0 or result["missed"]


def test_low_frequency_t3_in_household_noise(feed_audio) -> None:
    """520 Hz square T3 in the same noise: speech crowds that band; benchmarks/fire.py prints the rate."""
    result = bench.t3_trials(40, seed=2, low_frequency=True)
    # Not yet at the piezo figure: ~80 % within 6 s and ~90 % within 12 s (speech crowds 520 Hz at
    # 0-5 dB SNR). A regression guard, not the target.
    assert result["detected_within_6s"] >= 0.75, result["missed"]


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


def test_real_recording_continuous_alarm_tone_is_not_t3(data_dir: Path, feed_audio) -> None:
    tone = load_wav(data_dir / "audio" / "smoke_alarm_2p86kHz_excerpt_0-20s.wav", 16000)
    _, hits = feed_audio(tone)
    assert hits == []


def test_real_recording_gated_into_t3_is_detected(data_dir: Path, feed_audio) -> None:
    """The real piezo's timbre (harmonics, wobble) chopped into T3 from 3 s, where the tone is on."""
    tone = load_wav(data_dir / "audio" / "smoke_alarm_2p86kHz_excerpt_0-20s.wav", 16000)
    mask = np.zeros(tone.size)
    for start, end, *_ in sounds.t3_beeps(3.0, 20.0, 1.0, 1.0):
        mask[int(start * 16000) : int(end * 16000)] = 1.0
    _, hits = feed_audio(tone * mask)
    assert hits and hits[0] - 3.0 < 6.0


def test_stream_gap_resets_segmentation(feed_audio) -> None:
    det, _ = feed_audio(np.zeros(16000))
    beeps = sounds.t3_beeps(0.0, 3.0, 3100.0, 0.1)
    block = sounds.to_int16(sounds.BeepTrack(beeps).render(0, 2000))
    assert det.feed(100.0, block) is False  # a jump of 99 s: nothing before it may complete a pattern
    assert all(not band.segments for band in det.bands)
