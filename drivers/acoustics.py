"""Sound levels from PCM blocks, pure numpy: the A-weighting curve, an A-weighting filter and an LAeq meter.

Source: IEC 61672-1:2013, Annex E: the analytic A-weighting
``R_A(f) = 12194² f⁴ / ((f² + 20.6²) √((f² + 107.7²)(f² + 737.9²)) (f² + 12194²))``,
``A(f) = 20 log10 R_A(f) + 2.00 dB`` (0 dB at 1 kHz; the table gives -19.1 dB at 100 Hz, +1.0 dB at 4 kHz).

Levels follow AES17: 0 dBFS is the RMS of a full-scale sine (peak 32768), so a sine reads its peak in dBFS.
A calibration offset turns dBFS into dB SPL: a typical MEMS microphone (-26 dBFS at 94 dB SPL) gives
``SPL = dBFS + 120``.

Why a FIR applied by overlap-add, not a weighting of each block's spectrum: weighting the FFT bins of framed
blocks leaks energy between bins (a 100 Hz tone between two bins spreads into the kHz bins, which the curve
lifts by 20 dB: +1 to +2 dB of error). A true linear filter has no framing error, so the mean square of its
output is the A-weighted energy of any signal, tone or transient. The taps are designed by frequency sampling
of the analytic curve (Blackman window, 0.128 s long: about ±25 Hz of smoothing, within 0.3 dB of the curve
from 50 Hz to Nyquist). A bilinear IIR was rejected: at 16 kHz the 12194 Hz pole lies above Nyquist and
the warping costs 0.5 dB at 4 kHz, and a per-sample recursion in Python costs ~100x more CPU than 3 FFTs.
Cost: one rfft and one irfft of 4096 points per 2000-sample block.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass

import numpy as np

FULL_SCALE = 32768.0
"""Peak of a full-scale int16 sine."""
FULL_SCALE_SINE_MS = FULL_SCALE**2 / 2
"""Mean square of a full-scale sine: 0 dBFS (AES17)."""
CLIP_LEVEL = 32767
"""A sample whose magnitude reaches this is taken as clipped."""
CLIP_FRACTION = 1e-3
"""A period with more clipped samples than this fraction is flagged: its level is only a lower bound."""
REPEAT_WINDOW_BLOCKS = 64
"""A block identical to one of the previous this-many blocks is a repeat (a stuck DMA buffer or writer)."""
FIR_LENGTH_S = 0.128
"""Length of the A-weighting FIR; sets its frequency resolution (about 3/length with a Blackman window)."""
_POLES_HZ = (20.6, 107.7, 737.9, 12194.0)


def a_weighting_db(freq_hz: np.ndarray | float) -> np.ndarray:
    """The analytic A-weighting in dB at ``freq_hz`` (IEC 61672-1 Annex E); -inf at 0 Hz."""
    f2 = np.square(np.asarray(freq_hz, dtype=np.float64))
    p1, p2, p3, p4 = (p * p for p in _POLES_HZ)
    ra = p4 * f2 * f2 / ((f2 + p1) * np.sqrt((f2 + p2) * (f2 + p3)) * (f2 + p4))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(ra) + 2.00


def a_weighting_fir(sample_rate_hz: float, taps: int) -> np.ndarray:
    """A linear-phase FIR of ``taps`` (odd) taps whose gain follows the A-weighting up to Nyquist."""
    grid = 1 << int(np.ceil(np.log2(taps * 8)))
    gain = 10.0 ** (a_weighting_db(np.fft.rfftfreq(grid, 1.0 / sample_rate_hz)) / 20.0)
    impulse = np.fft.irfft(gain, grid)  # zero-phase: symmetric about index 0
    return np.roll(impulse, taps // 2)[:taps] * np.blackman(taps)


class AWeightingFilter:
    """Stateful A-weighting of a stream cut into blocks of ``block_n`` samples (FFT overlap-add)."""

    def __init__(self, sample_rate_hz: float, block_n: int) -> None:
        taps = int(FIR_LENGTH_S * sample_rate_hz) | 1
        self.block_n = block_n
        self.nfft = 1 << int(np.ceil(np.log2(block_n + taps - 1)))
        self.delay_n = taps // 2
        self._spectrum = np.fft.rfft(a_weighting_fir(sample_rate_hz, taps), self.nfft)
        self._tail = np.zeros(taps - 1)

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """The filtered block (same length), delayed by half the FIR length; the filter's tail is kept."""
        full = np.fft.irfft(np.fft.rfft(block, self.nfft) * self._spectrum, self.nfft)
        full = full[: self.block_n + self._tail.size]
        full[: self._tail.size] += self._tail
        self._tail = full[self.block_n :]
        return full[: self.block_n]

    def reset(self) -> None:
        """Forget the past signal (after a gap in the stream)."""
        self._tail[:] = 0.0


def level_db(mean_square: float, calibration_db: float) -> float:
    """The level of a mean square of int16 samples: dBFS (AES17) + ``calibration_db``; -inf for 0."""
    if mean_square <= 0.0:
        return float("-inf")
    return float(10.0 * np.log10(mean_square / FULL_SCALE_SINE_MS) + calibration_db)


@dataclass(frozen=True, slots=True)
class PeriodLevel:
    """One period's A-weighted equivalent level and what is wrong with its samples."""

    laeq_db: float
    samples: int
    clipped: int
    digital_zero: bool
    repeated: bool
    garbled: bool

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.samples


class LevelMeter:
    """LAeq over periods of ``blocks_per_period`` blocks of int16 samples, with clip/zero/repeat checks."""

    def __init__(self, sample_rate_hz: float, block_n: int, blocks_per_period: int, calibration_db: float):
        self.blocks_per_period = blocks_per_period
        self.calibration_db = calibration_db
        self._filter = AWeightingFilter(sample_rate_hz, block_n)
        self._recent: deque[int] = deque(maxlen=REPEAT_WINDOW_BLOCKS)
        self._skip = self._filter.delay_n  # the filter's start-up: its output is not yet the signal's
        self._start_period()

    def _start_period(self) -> None:
        self._energy, self._weighted_n, self._blocks, self._samples, self._clipped = 0.0, 0, 0, 0, 0
        self._nonzero, self._fresh, self._garbled = False, False, False

    def add(self, block: np.ndarray) -> PeriodLevel | None:
        """Account one block; returns the period's level when this block completes a period."""
        weighted = self._filter(block.astype(np.float64))
        skip = min(self._skip, weighted.size)
        self._skip -= skip
        weighted = weighted[skip:]
        self._energy += float(np.dot(weighted, weighted))
        self._weighted_n += weighted.size
        self._samples += block.size
        if block.max() >= CLIP_LEVEL or block.min() <= -CLIP_LEVEL:
            self._clipped += int(np.count_nonzero(np.abs(block.astype(np.int32)) >= CLIP_LEVEL))
        self._nonzero = self._nonzero or bool(block.any())
        digest = zlib.crc32(np.ascontiguousarray(block).data)
        self._fresh = self._fresh or digest not in self._recent
        self._recent.append(digest)
        self._blocks += 1
        return self._finish() if self._blocks >= self.blocks_per_period else None

    def mark_garbled(self) -> None:
        """The current period held bytes out of alignment: its level is meaningless."""
        self._garbled = True
        self._filter.reset()
        self._skip = self._filter.delay_n

    def _finish(self) -> PeriodLevel:
        laeq = level_db(self._energy / max(1, self._weighted_n), self.calibration_db)
        result = PeriodLevel(laeq, self._samples, self._clipped, not self._nonzero, not self._fresh,
                             self._garbled)
        self._start_period()
        return result
