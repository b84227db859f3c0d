"""hw-sim's real-alarm variations: the door, the SNR at the microphone, the lines and the second alarm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from qrad_hwsim.fire import sounds, variations


def _level_at(x: np.ndarray, freq_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sounds.RATE_HZ)
    return 10 * np.log10(spectrum[np.abs(f - freq_hz) <= 20].sum())


def test_door_attenuates_its_reference_frequency_by_its_db() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 4 * sounds.RATE_HZ)
    through = variations.through_door(x, 15.0, 3700.0)
    assert abs((_level_at(x, 3700.0) - _level_at(through, 3700.0)) - 15.0) < 0.5
    assert abs(_level_at(x, 300.0) - _level_at(through, 300.0)) < 0.5  # speech band passes


def test_snr_is_measured_at_the_microphone_while_the_alarm_sounds() -> None:
    v = replace(variations.RECORDING_LIKE, snr_db=10.0, door_db=20.0)
    with_noise = variations.render(v, 8.0, np.random.default_rng(1))
    alarm_only = variations.render(replace(v, snr_db=None), 8.0, np.random.default_rng(1))
    on = variations._gate(with_noise.size, v.beeps(8.0)) > 0.5
    alarm_rms = sounds.rms(alarm_only[on]) / variations.QUIET_ALARM_RMS * variations.NOISE_RMS * 10 ** 0.5
    noise = with_noise[~on][: sounds.RATE_HZ]
    assert abs(20 * np.log10(alarm_rms / sounds.rms(noise)) - 10.0) < 2.0


def test_two_lines_flip_which_is_louder_within_a_beep() -> None:
    v = replace(variations.RECORDING_LIKE, reverb_s=0.0)
    x = variations.render(v, 4.0, np.random.default_rng(2))
    beep = x[int(v.onset_s * sounds.RATE_HZ) : int((v.onset_s + v.on_s) * sounds.RATE_HZ)]
    quarters = np.array_split(beep, 4)
    louder = [_level_at(q, 3700.0) > _level_at(q, 3375.0) for q in quarters]
    assert any(louder) and not all(louder)


def test_random_variations_span_the_issue_ranges_and_keep_a_second_alarm_200_hz_away() -> None:
    vs = [variations.random_variation(np.random.default_rng(k)) for k in range(300)]
    assert all(0.4 <= v.on_s <= 0.7 and 0.3 <= v.off_s <= 0.6 and 1.2 <= v.gap_s <= 2.5 for v in vs)
    assert all(v.door_db == 0 or 10 <= v.door_db <= 20 for v in vs)
    assert all(v.snr_db is not None and 0 <= v.snr_db <= 20 for v in vs)
    seconds = [v for v in vs if v.second is not None]
    assert seconds and all(abs(v.second.freq_hz - f) >= 200 for v in seconds
                           for f in (v.freq_hz, *(v.freq_hz + o for o in v.lines_hz)))
    assert {len(v.lines_hz) for v in vs} == {0, 1, 2}


def test_same_seed_same_samples() -> None:
    v = variations.PRESETS["second alarm out of phase"]
    a = variations.render(v, 3.0, np.random.default_rng(5))
    b = variations.render(v, 3.0, np.random.default_rng(5))
    assert np.array_equal(a, b)
