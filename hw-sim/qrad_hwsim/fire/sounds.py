"""Sounds for fire scenarios and the alarm-sound benchmark, rendered chunk by chunk in full-scale units.

Everything is a function of the absolute sample index, so an hour renders in chunks with no seams and
without holding the hour in memory. Beeps are listed as (start_s, end_s, freq_hz, amplitude, square);
``BeepTrack`` renders any list, and the generators below build the lists for the sounds the detector must
find (T3 at any pitch in 2.8-3.8 kHz, 520 Hz square T3) and those it must not (T4, steady tone, microwave,
phone ring, TV beeps, music). ``Household`` is pink room noise, voiced speech and music-like notes.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from qrad_hwsim.devices.audio import band_noise

RATE_HZ = 16000
Beep = tuple[float, float, float, float, bool]


def t3_beeps(start_s: float, end_s: float, freq_hz: float, amp: float, on_s: float = 0.5,
             gap_s: float = 0.5, long_s: float = 1.5, square: bool = False,
             jitter: float = 0.0, rng: np.random.Generator | None = None) -> list[Beep]:
    """Temporal-three from ``start_s`` (first beep onset) to ``end_s``; ``jitter`` varies each time by ±x."""
    beeps, t, k = [], start_s, 0
    rng = rng or np.random.default_rng(0)

    def j(x: float) -> float:
        return x * (1.0 + jitter * rng.uniform(-1, 1)) if jitter else x

    while t < end_s:
        on = j(on_s)
        beeps.append((t, t + on, freq_hz, amp, square))
        t += on + (j(long_s) if k % 3 == 2 else j(gap_s))
        k += 1
    return beeps


def pattern_beeps(start_s: float, end_s: float, freq_hz: float, amp: float,
                  pattern: list[tuple[float, float]], square: bool = False) -> list[Beep]:
    """A repeated [(on_s, off_s), ...] pattern (T4 is [(0.1, 0.1)] * 3 + [(0.1, 5.0)])."""
    beeps, t = [], start_s
    while t < end_s:
        for on, off in pattern:
            beeps.append((t, t + on, freq_hz, amp, square))
            t += on + off
    return beeps


class BeepTrack:
    """Renders a list of beeps (sines or square waves) over any sample range."""

    def __init__(self, beeps: list[Beep]) -> None:
        self.beeps = sorted(beeps)
        self._starts = np.array([b[0] for b in self.beeps]) if beeps else np.zeros(0)
        self._max_len = max((b[1] - b[0] for b in self.beeps), default=0.0)

    def render(self, n0: int, n: int) -> np.ndarray:
        out = np.zeros(n)
        t0, t1 = n0 / RATE_HZ, (n0 + n) / RATE_HZ
        first = int(np.searchsorted(self._starts, t0 - self._max_len))
        for k in range(first, len(self.beeps)):  # not a slice: an hour of notes is no copy per chunk
            start, end, freq, amp, square = self.beeps[k]
            if start >= t1:
                break
            if end <= t0:
                continue
            a, b = max(0, int(start * RATE_HZ) - n0), min(n, int(end * RATE_HZ) - n0)
            t = np.arange(n0 + a, n0 + b) / RATE_HZ
            wave = np.sin(2 * np.pi * freq * t)
            out[a:b] += amp * (np.sign(wave) if square else wave)
        return out


class Household:
    """Room noise at RMS 1 (full-scale units, before scaling): pink noise, voiced speech, music notes."""

    def __init__(self, rng: np.random.Generator, speech: float = 1.0, music: float = 0.5, pink: float = 1.0,
                 music_band: bool = True, length_s: float = 3600.0) -> None:
        self.rng = rng
        self.gains = (pink, speech, music)
        self._pink, self._speech_loop = _loops()
        self._offset = int(rng.integers(0, 16 * RATE_HZ))
        self._speech_offset = int(rng.integers(0, 32 * RATE_HZ))
        self._music_n = int(length_s * RATE_HZ)
        self._music = BeepTrack(self._notes(length_s, music_band))

    def _notes(self, length_s: float, in_band: bool) -> list[Beep]:
        """Melody notes with harmonics: fundamentals 130-1050 Hz, some harmonics in the alarm band."""
        notes: list[Beep] = []
        t = 0.0
        while t < length_s:
            dur = float(self.rng.choice([0.25, 0.5, 0.5, 0.75, 1.0]))
            f0 = 130.0 * 2 ** (self.rng.integers(0, 36) / 12)
            for h, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.2)):
                if in_band or f0 * h < 2500:
                    notes.append((t, t + dur * 0.95, float(f0 * h), a, False))
            t += dur
        return notes

    def render(self, n0: int, n: int) -> np.ndarray:
        pink, speech, music = self.gains
        out = pink * _wrap(self._pink, n0 + self._offset, n)
        if speech:
            out += speech * _wrap(self._speech_loop, n0 + self._speech_offset, n) / 1.2
        if music:
            out += music * self._music.render(n0 % self._music_n, n) / 0.8
        return out


def _wrap(loop: np.ndarray, start: int, n: int) -> np.ndarray:
    """``n`` samples of the periodic ``loop`` from sample ``start`` (slices, not an index array)."""
    parts, pos = [], start % loop.size
    while n > 0:
        part = loop[pos : pos + n]
        parts.append(part)
        n -= part.size
        pos = 0
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


@functools.cache
def _loops() -> tuple[np.ndarray, np.ndarray]:
    """A 16 s pink-noise loop and a 32 s voiced-speech loop, computed once (read-only after)."""
    pink = band_noise(16 * RATE_HZ, RATE_HZ, 20.0, RATE_HZ / 2, True, np.random.default_rng(12345))
    return pink, _speech(32 * RATE_HZ)


def _speech(n: int) -> np.ndarray:
    """Voiced speech: a gliding 80-180 Hz pitch, harmonics shaped by a formant near 700 Hz, 4 Hz syllables
    and talk spurts 60 % of the time."""
    t = np.arange(n) / RATE_HZ
    f0 = 120.0 + 40.0 * np.sin(2 * np.pi * 0.3 * t) + 20.0 * np.sin(2 * np.pi * 1.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE_HZ
    voice = sum(np.sin(k * phase) * math.exp(-abs(k * 130.0 - 700.0) / 900.0) for k in range(1, 28))
    syllables = np.sin(2 * np.pi * 2.0 * t) ** 2
    spurts = (np.sin(2 * np.pi * t / 8.0) + 0.3) > 0
    return voice * syllables * spurts


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def random_beeps(start_s: float, end_s: float, amp: float, rng: np.random.Generator,
                 freqs_hz: list[float]) -> list[Beep]:
    """TV-like beeps: a random one of ``freqs_hz``, 0.1-1 s on, 0.1-3 s off (game shows, censor bleeps)."""
    beeps, t = [], start_s
    while t < end_s:
        on = float(rng.uniform(0.1, 1.0))
        beeps.append((t, t + on, float(rng.choice(freqs_hz)), amp, False))
        t += on + float(rng.uniform(0.1, 3.0))
    return beeps
