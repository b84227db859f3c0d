"""Real smoke alarms as a microphone hears them: the variations that broke a one-bin tone detector.

A real piezo alarm is not the clean sine of ISO 8201. Recorded alarms show (issue 16):
    lines      two or three lines a few hundred Hz apart (e.g. 3.70 and 3.375 kHz) whose relative level
               swings within each beep (-4.5 to +1.5 dB at 1-3 Hz), so which is louder keeps flipping
    AM         amplitude modulation and beating (a line split by a few Hz)
    timing     off-nominal T3: on 0.4-0.7 s, off 0.3-0.6 s, long gap 1.2-2.5 s
    room       reverberation (RT60 0.2-0.8 s) and a door or wall in between (a 2nd-order low-pass giving
               -10 to -25 dB at 3-4 kHz)
    others     a second alarm out of phase, household noise at 0-20 dB SNR measured at the microphone
``AlarmVariation`` describes one such signal; ``render`` makes it (full-scale float at 16 kHz, the alarm's
first beep at ``onset_s``). ``random_variation`` draws one from the ranges above; ``PRESETS`` are the named
cases benchmarks/fire.py tabulates. Everything is seeded: the same rng gives the same samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from qrad_hwsim.fire import sounds

RATE_HZ = sounds.RATE_HZ
EDGE_S = 0.005
"""Raised-cosine attack and release of each beep (a piezo driver switching)."""
NOISE_RMS = 0.02
"""The household noise's RMS at the microphone, full scale (about 58 dB SPL with the audio driver's
calibration: a lived-in room)."""
QUIET_ALARM_RMS = 0.05
"""Alarm RMS while on when no noise is asked for (microphone self-noise 50 dB below it)."""


@dataclass(frozen=True, slots=True)
class SecondAlarm:
    """Another T3 alarm in the home: its pitch, its start after the first's (s) and its level (dB rel.)."""

    freq_hz: float
    delay_s: float
    level_db: float = -3.0
    on_s: float = 0.5
    off_s: float = 0.5
    gap_s: float = 1.5


@dataclass(frozen=True, slots=True)
class AlarmVariation:
    """One alarm as heard. Frequencies Hz, times s, levels dB; ``snr_db`` None: no household noise.

    ``lines_hz``: offsets of the extra lines from ``freq_hz``; their level relative to the main line swings
    sinusoidally between ``flip_db`` (low, high) at ``flip_hz`` (the total power stays constant).
    ``door_db``: attenuation at ``door_ref_hz`` of a 2nd-order Butterworth low-pass (0: no door).
    ``reverb_s``: RT60 of an exponentially decaying diffuse tail at ``drr_db`` direct-to-reverberant.
    """

    name: str = "clean"
    freq_hz: float = 3100.0
    lines_hz: tuple[float, ...] = ()
    flip_db: tuple[float, float] = (0.0, 0.0)
    flip_hz: float = 2.0
    am_depth: float = 0.0
    am_hz: float = 0.0
    beat_hz: float = 0.0
    wander_hz: float = 0.0
    on_s: float = 0.5
    off_s: float = 0.5
    gap_s: float = 1.5
    reverb_s: float = 0.0
    drr_db: float = 3.0
    door_db: float = 0.0
    door_ref_hz: float = 3700.0
    second: SecondAlarm | None = None
    snr_db: float | None = None
    onset_s: float = 2.0
    square: bool = False

    @property
    def cycle_s(self) -> float:
        return 3 * self.on_s + 2 * self.off_s + self.gap_s

    def beeps(self, end_s: float) -> list[sounds.Beep]:
        """The first alarm's beeps (start, end, freq, 1.0, square) from ``onset_s`` to ``end_s``."""
        return sounds.t3_beeps(self.onset_s, end_s, self.freq_hz, 1.0, self.on_s, self.off_s, self.gap_s,
                               square=self.square)


def _gate(n: int, beeps: list[sounds.Beep]) -> np.ndarray:
    """0/1 envelope of the beeps with raised-cosine edges."""
    gate = np.zeros(n)
    edge = max(1, int(EDGE_S * RATE_HZ))
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(edge) / edge)
    for start, end, *_ in beeps:
        a, b = int(start * RATE_HZ), min(n, int(end * RATE_HZ))
        if a >= n or b - a < 2 * edge:
            continue
        gate[a:b] = 1.0
        gate[a : a + edge] = ramp
        gate[b - edge : b] = ramp[::-1]
    return gate


def _tone(t: np.ndarray, freq_hz: float, wander_hz: float, rng: np.random.Generator, square: bool) -> np.ndarray:
    """A line whose pitch drifts slowly by up to ``wander_hz`` (a piezo warming up, a weak battery)."""
    inst = freq_hz + wander_hz * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(inst) / RATE_HZ + rng.uniform(0, 2 * np.pi)
    wave = np.sin(phase)
    return np.sign(wave) if square else wave


def _alarm(v: AlarmVariation, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / RATE_HZ
    x = _tone(t, v.freq_hz, v.wander_hz, rng, v.square)
    if v.lines_hz:
        lo, hi = v.flip_db
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        main = np.ones(n)
        extras = []
        for k, offset in enumerate(v.lines_hz):
            rel_db = mid + half * np.sin(2 * np.pi * v.flip_hz * t + rng.uniform(0, 2 * np.pi) + k * 2.1)
            extras.append((10 ** (rel_db / 20), _tone(t, v.freq_hz + offset, v.wander_hz, rng, v.square)))
        total = np.sqrt(main ** 2 + sum(a ** 2 for a, _ in extras))
        x = (main * x + sum(a * w for a, w in extras)) / total
    if v.beat_hz:
        x = (x + 0.8 * _tone(t, v.freq_hz + v.beat_hz, v.wander_hz, rng, v.square)) / 1.28
    if v.am_depth:
        x = x * (1 + v.am_depth * np.sin(2 * np.pi * v.am_hz * t + rng.uniform(0, 2 * np.pi))) / (1 + v.am_depth)
    x = x * _gate(n, v.beeps(n / RATE_HZ))
    if v.second is not None:
        s = v.second
        other = sounds.t3_beeps(v.onset_s + s.delay_s, n / RATE_HZ, s.freq_hz, 1.0, s.on_s, s.off_s, s.gap_s)
        x = x + 10 ** (s.level_db / 20) * _tone(t, s.freq_hz, 0.0, rng, False) * _gate(n, other)
    return x


def reverberate(x: np.ndarray, rt60_s: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct sound plus a diffuse tail: Gaussian noise decaying 60 dB in ``rt60_s``, its energy
    ``drr_db`` below the direct sound's (FFT convolution)."""
    if rt60_s <= 0:
        return x
    m = int(rt60_s * RATE_HZ)
    tail = rng.normal(0, 1, m) * np.exp(-6.91 * np.arange(m) / m)
    tail *= math.sqrt(10 ** (-drr_db / 10) / float(np.sum(tail ** 2)))
    h = np.concatenate(([1.0], tail))
    size = 1 << math.ceil(math.log2(x.size + h.size))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.size]


def through_door(x: np.ndarray, door_db: float, ref_hz: float) -> np.ndarray:
    """A 2nd-order Butterworth low-pass (magnitude only) whose cut-off gives ``door_db`` at ``ref_hz``:
    |H|^2 = 1 / (1 + (f/fc)^4), so fc = ref / (10^(db/10) - 1)^(1/4)."""
    if door_db <= 0:
        return x
    fc = ref_hz / (10 ** (door_db / 10) - 1) ** 0.25
    f = np.fft.rfftfreq(x.size, 1 / RATE_HZ)
    return np.fft.irfft(np.fft.rfft(x) / np.sqrt(1 + (f / fc) ** 4), x.size)


def render(v: AlarmVariation, duration_s: float, rng: np.random.Generator) -> np.ndarray:
    """``duration_s`` of microphone signal (full-scale float, 16 kHz): the alarm through the room and the
    door, then household noise at ``snr_db`` (alarm power while on over noise power, both at the mic)."""
    n = int(duration_s * RATE_HZ)
    x = through_door(reverberate(_alarm(v, n, rng), v.reverb_s, v.drr_db, rng), v.door_db, v.door_ref_hz)
    on = _gate(n, v.beeps(duration_s)) > 0.5
    alarm_rms = sounds.rms(x[on]) if on.any() else 1.0
    if v.snr_db is None:
        noise = sounds.Household(rng, speech=0.0, music=0.0, length_s=duration_s).render(0, n)
        return x * QUIET_ALARM_RMS / alarm_rms + noise * QUIET_ALARM_RMS * 10 ** (-50 / 20) / sounds.rms(noise)
    noise = sounds.Household(rng, length_s=duration_s).render(int(rng.integers(0, 60 * RATE_HZ)), n)
    noise *= NOISE_RMS / sounds.rms(noise)
    return noise + x * NOISE_RMS * 10 ** (v.snr_db / 20) / alarm_rms


RECORDING_LIKE = AlarmVariation(
    "recording-like", freq_hz=3700.0, lines_hz=(-325.0,), flip_db=(-4.5, 1.5), flip_hz=2.0,
    on_s=0.60, off_s=0.35, gap_s=2.1, reverb_s=0.3, drr_db=6.0)
"""The real alarm of issue 16: 3.70 and 3.375 kHz, the level difference flipping at ~2 Hz, 0.60/0.35/2.1 s."""

PRESETS: dict[str, AlarmVariation] = {
    "clean": AlarmVariation("clean"),
    "recording-like": RECORDING_LIKE,
    "door -15 dB": replace(RECORDING_LIKE, name="door -15 dB", door_db=15.0, snr_db=15.0),
    "door -25 dB": replace(RECORDING_LIKE, name="door -25 dB", door_db=25.0, snr_db=10.0),
    "one channel, flipping": replace(RECORDING_LIKE, name="one channel, flipping", reverb_s=0.0, snr_db=20.0),
    "two lines fixed -3 dB, reverb 0.4": replace(RECORDING_LIKE, name="two lines fixed -3 dB, reverb 0.4",
                                                 flip_db=(-3.0, -3.0), reverb_s=0.4, drr_db=0.0),
    "three lines": AlarmVariation("three lines", freq_hz=3300, lines_hz=(-280.0, 310.0), flip_db=(-6.0, 2.0),
                                  flip_hz=1.3),
    "AM and beating": AlarmVariation("AM and beating", freq_hz=3000, am_depth=0.4, am_hz=3.0, beat_hz=7.0),
    "slow timing": AlarmVariation("slow timing", freq_hz=2900, on_s=0.7, off_s=0.6, gap_s=2.5),
    "fast timing": AlarmVariation("fast timing", freq_hz=3500, on_s=0.4, off_s=0.3, gap_s=1.2),
    "reverb 0.8 s": replace(RECORDING_LIKE, name="reverb 0.8 s", reverb_s=0.8, drr_db=0.0),
    "second alarm out of phase": AlarmVariation(
        "second alarm out of phase", freq_hz=3100, second=SecondAlarm(3450.0, 1.3, -2.0, 0.55, 0.45, 1.7)),
    "noise 0 dB": replace(RECORDING_LIKE, name="noise 0 dB", snr_db=0.0),
    "noise 10 dB": replace(RECORDING_LIKE, name="noise 10 dB", snr_db=10.0),
    "noise 20 dB": replace(RECORDING_LIKE, name="noise 20 dB", snr_db=20.0),
    "520 Hz square": AlarmVariation("520 Hz square", freq_hz=520.0, square=True, snr_db=10.0),
}


def random_variation(rng: np.random.Generator, max_door_db: float = 20.0) -> AlarmVariation:
    """One alarm from the ranges of issue 16: 1-3 lines 200-400 Hz apart with flipping levels, AM or
    beating, off-nominal timing, reverberation half the time, a door a third of the time (up to
    ``max_door_db``), a second alarm a quarter of the time (>= 200 Hz from every line), 0-20 dB SNR."""
    freq = float(rng.uniform(2800, 3800))
    n_lines = int(rng.choice([1, 2, 2, 3]))
    offsets: list[float] = []
    for _ in range(n_lines - 1):
        side = -1.0 if freq > 3300 else 1.0
        offsets.append(side * float(rng.uniform(200, 400)) * (len(offsets) + 1))
    lo = float(rng.uniform(-8, -2))
    flip = (lo, lo + float(rng.uniform(0, 7)))
    am = float(rng.uniform(0, 0.4)) if rng.random() < 0.4 else 0.0
    beat = float(rng.uniform(3, 15)) if rng.random() < 0.3 else 0.0
    on, off, gap = float(rng.uniform(0.4, 0.7)), float(rng.uniform(0.3, 0.6)), float(rng.uniform(1.2, 2.5))
    reverb = float(rng.uniform(0.2, 0.8)) if rng.random() < 0.5 else 0.0
    door = float(rng.uniform(10, max_door_db)) if rng.random() < 0.33 else 0.0
    second = None
    if rng.random() < 0.25:
        lines = [freq] + [freq + o for o in offsets]
        for _ in range(50):
            f2 = float(rng.uniform(2800, 3800))
            if all(abs(f2 - f) >= 200 for f in lines):
                second = SecondAlarm(f2, float(rng.uniform(0.2, 4.0)), float(rng.uniform(-6, 0)),
                                     float(rng.uniform(0.4, 0.7)), float(rng.uniform(0.3, 0.6)),
                                     float(rng.uniform(1.2, 2.5)))
                break
    return AlarmVariation("random", freq, tuple(offsets), flip, float(rng.uniform(1, 3)), am,
                          float(rng.uniform(1, 8)), beat, float(rng.uniform(0, 30)), on, off, gap, reverb,
                          float(rng.uniform(-3, 6)), door, freq, second, float(rng.uniform(0, 20)),
                          float(rng.uniform(1.0, 4.0)))
