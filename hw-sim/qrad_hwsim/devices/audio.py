"""A microphone behind a named pipe: raw PCM s16le mono, written in real time, as the audio driver reads it.

``AudioSource`` makes the FIFO, and its task (``start``/``aclose``, or ``async with``) writes a chunk every
``CHUNK_S`` paced by the loop clock. The pipe is opened non-blocking: until a reader appears the audio is
discarded (a live microphone does not buffer); a full pipe drops the chunk (counted in ``dropped_chunks``);
a reader that leaves closes our end and we wait for the next. Chunks stay under PIPE_BUF, so each write is
atomic and the stream never loses its sample alignment except under the "garbage" fault.

Content, over the microphone's self-noise (``SELF_NOISE_DB``), mixed in full-scale units and calibrated like the driver (``CALIBRATION_DB``: a 0 dBFS sine is
120 dB SPL, so a sine of L dB SPL has peak 10^((L-120)/20) of full scale):
    background  white or pink noise (20 Hz to Nyquist) at ``level_db`` SPL, unweighted, RMS
    occupants   speech-like talk spurts: 300-3400 Hz noise with a 4 Hz syllabic envelope, 60 dB SPL each
    tones       ``add_tone(freq_hz, level_db, pattern)``: pattern [(on_s, off_s), ...] repeated;
                ``T3_PATTERN`` is the ISO 8201 temporal-three evacuation signal
    recordings  ``play_wav(path)``: a 16-bit WAV resampled to our rate (FFT, ideal low-pass at Nyquist),
                played once at its own digital level plus ``gain_db``
Faults (``set_fault``): "ok", "unplugged" (nothing written, pipe kept open), "silence" (digital zeros),
"clipping" (a +10 dBFS square wave on top, clipped to int16), "garbage" (random bytes, the first chunk one
byte short: the stream stays one byte off afterwards, as after a lost byte) and "stuck" (the last good chunk repeated).
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import stat
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CALIBRATION_DB = 120.0
"""dB SPL of a 0 dBFS sine: must equal qrad_drivers.audio.CALIBRATION_DB (a test checks it)."""
FULL_SCALE = 32768.0
CHUNK_S = 0.05
MAX_CATCH_UP_S = 1.0
"""After a stall of the loop, at most this much audio is written late; the rest is skipped."""
LOOP_S = 16.0
"""Length of the pre-computed noise loops: longer than the driver's repeat window (8 s)."""
AUDIO_FAULTS = ("ok", "unplugged", "silence", "clipping", "garbage", "stuck")
T3_PATTERN = ((0.5, 0.5), (0.5, 0.5), (0.5, 1.5))
"""ISO 8201 temporal-three: three 0.5 s beeps 0.5 s apart, then 1.5 s of silence (a 4 s cycle)."""
TALK_ON_S, TALK_OFF_S, SPEECH_DB = 1.5, 1.0, 60.0
SELF_NOISE_DB = 29.0
"""The microphone's own white noise in dB SPL (a MEMS part of 65 dB SNR), always present: no live
microphone outputs an exactly periodic signal, which the driver would flag as stuck."""


def sine_peak(level_db: float) -> float:
    """Peak, in full-scale units, of a sine of ``level_db`` dB SPL."""
    return 10.0 ** ((level_db - CALIBRATION_DB) / 20.0)


def band_noise(n: int, sample_rate_hz: float, lo_hz: float, hi_hz: float, pink: bool,
               rng: np.random.Generator) -> np.ndarray:
    """A seamless loop of ``n`` samples of noise from lo to hi Hz (1/f power if ``pink``), RMS 1."""
    freq = np.fft.rfftfreq(n, 1.0 / sample_rate_hz)
    spectrum = rng.normal(size=freq.size) + 1j * rng.normal(size=freq.size)
    spectrum *= (freq >= lo_hz) & (freq <= hi_hz)
    if pink:
        spectrum[1:] /= np.sqrt(freq[1:])
    noise = np.fft.irfft(spectrum, n)
    return noise / np.sqrt(np.mean(noise**2))


def load_wav(path: Path, sample_rate_hz: int) -> np.ndarray:
    """A 16-bit WAV (channels averaged) in full-scale units, resampled to ``sample_rate_hz`` by FFT."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * wav.getsampwidth()}-bit samples, only 16-bit is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = frames.reshape(-1, channels).mean(axis=1) / FULL_SCALE
    if rate == sample_rate_hz:
        return samples
    n_out = round(samples.size * sample_rate_hz / rate)
    spectrum = np.fft.rfft(samples)[: n_out // 2 + 1]  # ideal low-pass at the new Nyquist
    return np.fft.irfft(spectrum, n_out) * (n_out / samples.size)


@dataclass
class Tone:
    """A sine at ``freq_hz``, ``level_db`` SPL, switched by ``pattern`` from sample ``start_n``."""

    freq_hz: float
    level_db: float
    pattern: tuple[tuple[float, float], ...] | None
    start_n: int

    def render(self, n0: int, n: int, sample_rate_hz: float) -> np.ndarray:
        t = np.arange(n0, n0 + n) / sample_rate_hz
        wave_ = sine_peak(self.level_db) * np.sin(2 * np.pi * self.freq_hz * t)
        if not self.pattern:
            return wave_
        edges = np.cumsum([x for on_off in self.pattern for x in on_off])
        phase = np.mod(t - self.start_n / sample_rate_hz, edges[-1])
        return wave_ * (np.searchsorted(edges, phase, side="right") % 2 == 0)


class AudioSource:
    """The simulated microphone writing into ``fifo_path``; mix its content and faults at run time."""

    def __init__(self, fifo_path: Path, sample_rate_hz: int = 16000,
                 rng: np.random.Generator | None = None) -> None:
        self.path = Path(fifo_path)
        self.rate = sample_rate_hz
        self.rng = rng if rng is not None else np.random.default_rng(0)
        if not self.path.exists():
            os.mkfifo(self.path)
        elif not stat.S_ISFIFO(self.path.stat().st_mode):
            raise ValueError(f"{self.path} exists and is not a FIFO")
        loop_n = int(LOOP_S * sample_rate_hz)
        self._pink = band_noise(loop_n, sample_rate_hz, 20.0, sample_rate_hz / 2, True, self.rng)
        self._white = band_noise(loop_n, sample_rate_hz, 20.0, sample_rate_hz / 2, False, self.rng)
        self._voice = band_noise(loop_n, sample_rate_hz, 300.0, 3400.0, False, self.rng)
        self.background_db: float | None = 35.0
        self.background_colour = "pink"
        self.occupants = 0
        self.tones: dict[int, Tone] = {}
        self._recordings: list[tuple[int, np.ndarray]] = []
        self.fault = "ok"
        self.n = 0  # samples generated since start (the sample clock)
        self._talking, self._talk_until_n = False, 0
        self._last_chunk = b""
        self._garbage_chunks = 0
        self._fd: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.written_chunks = self.dropped_chunks = 0

    # -- content --------------------------------------------------------------------------------------

    def set_background(self, level_db: float | None, colour: str = "pink") -> None:
        """Room noise at ``level_db`` dB SPL (unweighted RMS, 20 Hz to Nyquist), or None for none."""
        if colour not in ("pink", "white"):
            raise ValueError(f"colour {colour!r} is not 'pink' or 'white'")
        self.background_db, self.background_colour = level_db, colour

    def set_occupants(self, count: int) -> None:
        """People present: talk spurts at 60 dB SPL each (powers add), none for 0."""
        self.occupants = max(0, count)

    def add_tone(self, freq_hz: float, level_db: float,
                 pattern: list[tuple[float, float]] | tuple[tuple[float, float], ...] | None = None) -> int:
        """A tone, continuous or switched by ``pattern`` [(on_s, off_s), ...] repeated; returns its id."""
        key = max(self.tones, default=0) + 1
        self.tones[key] = Tone(freq_hz, level_db, tuple(pattern) if pattern else None, self.n)
        return key

    def remove_tone(self, key: int) -> None:
        self.tones.pop(key, None)

    async def play_wav(self, path: Path, gain_db: float = 0.0, start_s: float = 0.0) -> float:
        """Play a WAV from ``start_s`` into it, from now on, once; returns the playing time in s."""
        samples = await asyncio.to_thread(load_wav, Path(path), self.rate)
        samples = samples[int(start_s * self.rate) :] * 10.0 ** (gain_db / 20.0)
        self._recordings.append((self.n, samples))
        return samples.size / self.rate

    def set_fault(self, kind: str) -> None:
        if kind not in AUDIO_FAULTS:
            raise ValueError(f"unknown audio fault {kind!r}; known: {AUDIO_FAULTS}")
        self.fault = kind

    # -- rendering ------------------------------------------------------------------------------------

    def render(self, n: int) -> np.ndarray:
        """The next ``n`` samples of the mix, in full-scale units (advances the sample clock)."""
        n0 = self.n
        out = _loop_slice(self._white, n0 + n0 // 3, n) * sine_peak(SELF_NOISE_DB) / math.sqrt(2)
        if self.background_db is not None:
            noise = self._pink if self.background_colour == "pink" else self._white
            out += _loop_slice(noise, n0, n) * sine_peak(self.background_db) / math.sqrt(2)
        if self.occupants:
            out += self._speech(n0, n)
        for tone in self.tones.values():
            out += tone.render(n0, n, self.rate)
        self._recordings = [rec for rec in self._recordings if self._mix_recording(out, n0, *rec)]
        self.n += n
        return out

    def _speech(self, n0: int, n: int) -> np.ndarray:
        if n0 >= self._talk_until_n:
            self._talking = not self._talking
            mean_s = TALK_ON_S if self._talking else TALK_OFF_S
            self._talk_until_n = n0 + int(self.rng.exponential(mean_s) * self.rate)
        if not self._talking:
            return np.zeros(n)
        t = np.arange(n0, n0 + n) / self.rate
        envelope = np.sqrt(8.0 / 3.0) * np.sin(2 * np.pi * 2.0 * t) ** 2  # 4 Hz syllables, mean square 1
        rms = sine_peak(SPEECH_DB + 10 * math.log10(self.occupants)) / math.sqrt(2)
        return _loop_slice(self._voice, n0, n) * envelope * rms

    @staticmethod
    def _mix_recording(out: np.ndarray, n0: int, start_n: int, samples: np.ndarray) -> bool:
        part = samples[n0 - start_n : n0 - start_n + out.size]
        out[: part.size] += part
        return n0 - start_n + out.size < samples.size

    def _chunk_bytes(self, n: int) -> bytes:
        """The next chunk as it goes on the wire, faults applied."""
        mix = self.render(n)
        if self.fault == "silence":
            return bytes(2 * n)
        if self.fault == "garbage":  # one odd chunk, then even ones: the stream ends one byte off
            self._garbage_chunks += 1
            return self.rng.bytes(2 * n - (self._garbage_chunks == 1))
        self._garbage_chunks = 0
        if self.fault == "stuck" and self._last_chunk:
            return self._last_chunk
        if self.fault == "clipping":
            mix = mix + np.sign(np.sin(2 * np.pi * 440.0 * np.arange(self.n - n, self.n) / self.rate)) * 3.2
        pcm = np.clip(np.round(mix * FULL_SCALE), -32768, 32767).astype("<i2").tobytes()
        if self.fault == "ok":
            self._last_chunk = pcm
        return pcm

    # -- the writer task ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start writing on the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"hwsim-audio-{self.path.name}")

    async def aclose(self) -> None:
        """Stop writing, close our end (the reader sees end of file) and remove the FIFO."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._close_fd()
        self.path.unlink(missing_ok=True)

    async def __aenter__(self) -> AudioSource:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start, chunk_n = loop.time(), int(CHUNK_S * self.rate)
        while True:
            due = int((loop.time() - start) * self.rate) - self.n
            if due > MAX_CATCH_UP_S * self.rate:
                self.render(due - chunk_n)  # skip, keeping the clock and the noise loops in step
                due = chunk_n
            while due >= chunk_n:
                self._write(chunk_n)
                due -= chunk_n
            await asyncio.sleep(max(0.0, start + (self.n + chunk_n) / self.rate - loop.time()))

    def _write(self, n: int) -> None:
        if self._fd is None and not self._connect():
            self.n += n  # nobody listens: time passes, nothing is generated
            return
        data = self._chunk_bytes(n)
        if self.fault == "unplugged":
            return
        try:
            os.write(self._fd, data)  # type: ignore[arg-type]
            self.written_chunks += 1
        except BlockingIOError:
            self.dropped_chunks += 1
        except BrokenPipeError:
            self._close_fd()

    def _connect(self) -> bool:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno not in (errno.ENXIO, errno.ENOENT):
                raise
            return False
        return True

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _loop_slice(loop: np.ndarray, n0: int, n: int) -> np.ndarray:
    """``n`` samples of the periodic signal ``loop`` from sample ``n0``, at a cost independent of ``n0``.

    Slices from ``n0 % loop.size`` (wrapping as often as ``n`` needs), not ``np.take(..., mode="wrap")``
    over ``arange(n0, n0 + n)``: numpy wraps each index by repeated subtraction, so that cost grew with
    the stream's age."""
    parts, pos = [loop[:0]], n0 % loop.size
    while n > 0:
        part = loop[pos : pos + n]
        parts.append(part)
        n -= part.size
        pos = 0
    return np.concatenate(parts)
