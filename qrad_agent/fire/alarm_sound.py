"""Smoke-alarm sound detection on the microphone stream: tones by FFT bins, then temporal-three timing.

Stage 1, tones: the stream is cut into frames of ``FRAME_N`` samples (16 ms at 16 kHz, 62.5 Hz bins),
Hann-windowed and transformed with one batched rfft per block. In each band (piezo alarms 2.8-3.8 kHz;
low-frequency alarms 520 Hz ±10 %) the peak (3 bins) must stand ``contrast_db`` above the median bin of
the surrounding region in the same frame (a noise floor in frequency, immune to level changes) and
``floor_margin_db`` above an adaptive floor in time (fast down, slow up, frozen while a tone is on). The
520 Hz square wave must also show its timbre: a third harmonic, and no second one (a square wave has only odd
harmonics; voiced speech and melody notes, which crowd that band, have a strong second), both looked for at
multiples of the tone's frequency estimated to a fraction of a bin (the power centroid of its 3 bins), which
must itself lie in the band (the 3 bins reach one bin beyond it: a 390 Hz note is not 520 Hz). Goertzel
would cost one multiply-add per sample per bin; with ~30 bins per band the batched FFT is cheaper in numpy
and gives the median for free.

Stage 2, beeps. In the piezo band (``SoundConfig.segmenter`` "ridge", the default) a beep is an envelope
over one to three lines that may wander in pitch and flip in level (qrad_agent.fire.ridges), and the
pattern is matched on onsets (``ridges.match_t3``); once a cycle is confirmed, the alarm's next cycle is
recognised from its known period, pitch and long gap even if one of its beeps was lost. The 520 Hz band,
and the piezo band with segmenter "bin" (the detector before issue 16, kept for comparison), use the
one-bin segments below: on-frames with a stable peak (±2 bins) and a steady level (within ``BEEP_LEVEL_DB`` of the
beep's peak: an alarm's envelope is flat, the speech or music under it is not) form a tone segment; off runs
of up to ``BRIDGE_FRAMES`` are bridged; blips under ``MIN_SEGMENT_FRAMES`` are dropped.

Stage 3, pattern: three segments of similar length (on and short gaps within the configured windows,
which are far wider than ISO 8201's ±0.05 s because cheap alarms drift), of one frequency and level, not
preceded closely by another beep, then a long gap, then the next cycle's first beep of the same frequency.
Segments of that pitch and level but shorter than ``on_min_s`` are noise reaching the band for a moment
(a syllable, a note's attack), not beeps: they neither count as beeps nor break the pattern. That
rejects: T4 (0.1 s pulses), steady tones (too long), a single triple (microwave end beeps: no next cycle),
beep trains (no long gap), phone rings (one or two long bursts per cycle) and speech and music (no stable
peak in the band for 0.2-0.9 s in this rhythm). The first confirmation comes ~4.2 s after onset for an
ISO alarm (3 x 0.5 + 2 x 0.5 + 1.5 + 0.12 s): one cycle is the lower bound the notes give.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from qrad_agent.fire.config import SoundConfig
from qrad_agent.fire.evidence import Evidence
from qrad_agent.fire.ridges import PATTERN_LEVEL_DB, REVERB_ON_S, Beep, RidgeBand, match_t3

SAMPLE_RATE_HZ = 16000
FRAME_N = 256
BRIDGE_FRAMES = 6
"""Off frames (96 ms) tolerated inside one beep: a dropout in noise must not split it (T4's 100 ms gaps
may merge its pulses into one 0.7 s beep a cycle: still nothing like T3)."""
MIN_SEGMENT_FRAMES = 3
"""Segments shorter than this (under 48 ms) are noise blips, not beeps."""
BIN_TOLERANCE = 2
"""Peak bin wander (±125 Hz) allowed within one beep and between the beeps of one pattern."""
PATTERN_BIN_TOLERANCE = 2
"""The beeps of one pattern share their pitch within ±2 bins (125 Hz)."""
LEVEL_TOLERANCE_DB = 10.0
"""A tone this much louder than the current beep at its pitch is a new sound, not the same beep."""
BEEP_LEVEL_DB = 6.0
"""One alarm at one distance has a flat envelope: a frame this much weaker than the beep so far is not part of
it (speech or a melody note under the alarm's pitch), and the beeps of one pattern share their peak level
within this (measured: beeps in 0-20 dB SNR noise vary by 1-2 dB; the in-band noise blips between them sit
6-12 dB lower and must neither lengthen a beep nor count as one)."""
CONSECUTIVE_CYCLE_S = 9.0
"""A confirmation this soon after the previous one continues the same alarm (the cycle is ~4 s)."""
HARMONIC_CONTRAST_RELIEF_DB = 3.0
"""The 520 Hz band, where speech is loud, needs 3 dB less contrast because its third harmonic must show too."""
REGION_HISTORY_FRAMES = 800
"""Per-frame region levels kept (12.8 s: a T3 cycle and its next beep)."""
EVEN_HARMONIC_DB = 9.0
"""The 520 Hz square wave has half-wave symmetry, hence no even harmonics: its second harmonic must be this
far below the fundamental. Voiced speech and melody notes have a strong second harmonic (0-6 dB below); a
speaker's distortion and the room (linear: it adds no harmonic) leave a real square wave's far lower."""
GAP_QUIET_DB = 6.0
"""In the 520 Hz band the gaps must be this much quieter than the beeps across the whole region."""
SAME_CYCLE_S = 2.0
"""Confirmations closer than this are one cycle heard in both bands."""
LOCK_TOLERANCE_S = 0.3
"""A confirmed alarm's next cycle starts within this of one period after the last (a cheap alarm's
period drifts by a few %; one period is 3.2-5.8 s)."""
HARMONIC_ONSET_S = 0.06
"""Piezo-band beeps starting and ending this close to 520 Hz square-wave beeps are that square wave's 5th or
7th harmonic: a pattern built on them must continue with the square wave's next beep, not any sound."""
STREAM_GAP_S = 0.5
"""A jump in block times larger than this resets the segmentation (the stream lost audio)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One tone: start and end in stream seconds, peak FFT bin."""

    start_s: float
    end_s: float
    bin: int
    level_db: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class _Band:
    """Tone segmentation in one band."""

    def __init__(self, name: str, bins: tuple[int, int], ref: tuple[int, int],
                 square: tuple[float, float] | None = None) -> None:
        """``square``: the band's limits in fractional bins, for a square wave whose harmonics are checked."""
        self.name, self.bins, self.ref, self.square = name, bins, ref, square
        self.harmonic = square is not None
        self.floor_db: float | None = None
        self.segments: deque[Segment] = deque(maxlen=16)
        self.region_db: deque[tuple[int, float]] = deque(maxlen=REGION_HISTORY_FRAMES)
        self.last_region_db = np.zeros(0)
        self.reset()

    def reset(self) -> None:
        self.cur_start: int | None = None
        self.cur_last = 0
        self.cur_bin = 0
        self.cur_level = 0.0
        self.confirmed_start: int | None = None

    def tone_frames(self, power: np.ndarray, cfg: SoundConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per frame: tone present, peak bin, peak level in dB (all frames of a block at once)."""
        lo, hi = self.bins
        band = power[:, lo - 1 : hi + 2]
        triple = band[:, :-2] + band[:, 1:-1] + band[:, 2:]
        k = np.argmax(triple, axis=1)
        peak = triple[np.arange(len(k)), k]
        bins = k + lo
        median = np.median(power[:, self.ref[0] : self.ref[1]], axis=1) + 1e-12
        contrast_db = cfg.contrast_db - (HARMONIC_CONTRAST_RELIEF_DB if self.harmonic else 0.0)
        on = peak >= 3.0 * median * 10.0 ** (contrast_db / 10.0)
        if self.square is not None:  # odd harmonics (the third shows), no even ones (the second is low)
            rows = np.arange(len(k))
            below, above = band[rows, k], band[rows, k + 2]
            freq = bins + (above - below) / (peak + 1e-12)  # power centroid of the 3 bins, in bins
            on &= (freq >= self.square[0]) & (freq <= self.square[1])

            def harmonic(n: int) -> np.ndarray:
                at = np.rint(n * freq).astype(int)
                return power[rows, at - 1] + power[rows, at] + power[rows, at + 1]

            hmed = np.median(power[:, 3 * self.ref[0] : 3 * self.ref[1]], axis=1) + 1e-12
            on &= harmonic(3) >= 3.0 * hmed * 2.0
            on &= harmonic(2) <= peak * 10.0 ** (-EVEN_HARMONIC_DB / 10.0)
        self.last_region_db = 10.0 * np.log10(np.max(power[:, self.ref[0] : self.ref[1]], axis=1) + 1e-12)
        return on, bins, 10.0 * np.log10(peak + 1e-12)

    def gaps_quiet(self, intervals: list[tuple[float, float]], frame_s: float, beep_db: float) -> bool:
        """The loudest bin of the region, in the middle of every gap, is ``GAP_QUIET_DB`` below the beeps."""
        levels = [db for frame, db in self.region_db
                  if any(a + 2 * frame_s <= frame * frame_s <= b - 2 * frame_s for a, b in intervals)]
        return not levels or float(np.median(levels)) <= beep_db - GAP_QUIET_DB


class AlarmSoundDetector:
    """Feed int16 blocks with ``feed(t_s, block)``; ``evidence(t_s)`` says whether an alarm is sounding."""

    def __init__(self, cfg: SoundConfig, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        if sample_rate_hz != SAMPLE_RATE_HZ:
            raise ValueError(f"the alarm-sound detector runs at {SAMPLE_RATE_HZ} Hz, not {sample_rate_hz}")
        self.cfg = cfg
        self.frame_s = FRAME_N / sample_rate_hz
        bw = sample_rate_hz / FRAME_N
        hi = (round(cfg.high_band_hz[0] / bw), round(cfg.high_band_hz[1] / bw))
        lo = (round(cfg.low_band_hz[0] / bw), round(cfg.low_band_hz[1] / bw))
        high: _Band | RidgeBand = (RidgeBand("high", hi, (hi[0] - 8, hi[1] + 9), self.frame_s)
                                   if cfg.segmenter == "ridge" else _Band("high", hi, (hi[0] - 8, hi[1] + 9)))
        self.bands = (high,
                      _Band("low", lo, (max(1, lo[0] - 5), lo[1] + 11),
                            (cfg.low_band_hz[0] / bw, cfg.low_band_hz[1] / bw)))
        self.bin_hz = bw
        self._window = np.hanning(FRAME_N).astype(np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frame = 0  # frames processed since start
        self._last_t: float | None = None
        self._block_t = 0.0
        self._lock: tuple[Beep, float, float] | None = None
        """A confirmed alarm: its last cycle's first beep, its period (s) and its beeps' level (dB, the
        median peak of the confirmed triple: steadier than any one beep, whose peak a beat null can lower)."""
        self.confirmations = 0
        self.consecutive = 0
        self.last_confirm_t: float | None = None
        self.run_start_t: float | None = None
        self.last_match: dict | None = None
        self.samples = 0

    def feed(self, t_s: float, block: np.ndarray) -> bool:
        """Process one block whose last sample arrived at ``t_s``; True when it confirmed a T3 cycle."""
        if self._last_t is not None and t_s - self._last_t > len(block) / SAMPLE_RATE_HZ + STREAM_GAP_S:
            self._restart()
        self._last_t = t_s
        self.samples += len(block)
        data = np.concatenate((self._pending, block.astype(np.float32)))
        n = len(data) // FRAME_N
        self._pending = data[n * FRAME_N :]
        if n == 0:
            return False
        frames = data[: n * FRAME_N].reshape(n, FRAME_N) * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        confirmed = False
        self._block_t = t_s
        for band in reversed(self.bands):  # the 520 Hz band first: the piezo band looks at its beeps
            if isinstance(band, RidgeBand):
                confirmed |= band.scan(power, self.cfg, self._frame, self._ridge_beep)
            else:
                confirmed |= self._scan(band, power, t_s)
        self._frame += n
        return confirmed

    def _ridge_beep(self, band: RidgeBand, beep: Beep) -> bool:
        """A beep in progress in the ridge-tracked band: does it complete a T3 cycle?"""
        found = match_t3(self.cfg, list(band.segments), beep)
        if found is None:
            return self._continues(band, beep)
        match, triple = found
        low = next((b for b in self.bands if isinstance(b, _Band) and b.harmonic), None)
        if low is not None and any(self._square_harmonic(low, s.start_s, s.end_s) for s in triple):
            now = low.cur_start * self.frame_s if low.cur_start is not None else -math.inf
            if abs(beep.start_s - now) > HARMONIC_ONSET_S:
                return False  # a square wave's harmonics, then some other sound: not one alarm's pattern
        self.last_match = {**match, "freq_hz": round(beep.lines[0] * self.bin_hz),
                           "lines_hz": sorted(round(f * self.bin_hz) for f in beep.lines)}
        self._lock = (beep, beep.start_s - triple[0].start_s, sorted(s.level_db for s in triple)[1])
        self._confirm(band, beep, self._block_t)
        return True

    def _continues(self, band: RidgeBand, beep: Beep) -> bool:
        """After a confirmed cycle the alarm's pitch, level (the confirmed triple's) and cycle period are
        known: a beep of that pitch and level starting one period after the last cycle's first beep (within
        ``LOCK_TOLERANCE_S``), after a long gap and with another beep of it inside that cycle, is the alarm's
        next cycle even when one of its beeps was lost to noise or a door (the first confirmation still needs
        the whole pattern)."""
        if self._lock is None:
            return False
        first, period, level = self._lock
        expected = first.start_s + period
        if beep.start_s > expected + LOCK_TOLERANCE_S:
            self._lock = None
            return False
        if (abs(beep.start_s - expected) > LOCK_TOLERANCE_S or not beep.shares_pitch(first)
                or abs(beep.level_db - level) > PATTERN_LEVEL_DB):
            return False
        alike = [s for s in band.segments if s.shares_pitch(first) and s.duration_s >= self.cfg.on_min_s
                 and abs(s.level_db - level) <= PATTERN_LEVEL_DB]
        quiet_from = beep.start_s - (self.cfg.long_gap_min_s - REVERB_ON_S)
        if not any(first.end_s < s.start_s < quiet_from for s in alike):
            return False  # none of the cycle's other beeps
        if any(quiet_from <= s.start_s < beep.start_s for s in alike):
            return False  # no long gap before it: a beep train, not the next T3 cycle
        self.last_match = {"continued": True, "period_s": round(beep.start_s - first.start_s, 3),
                           "freq_hz": round(beep.lines[0] * self.bin_hz),
                           "lines_hz": sorted(round(f * self.bin_hz) for f in beep.lines)}
        self._lock = (beep, period, level)
        self._confirm(band, beep, self._block_t)
        return True

    def _square_harmonic(self, low: _Band, start_s: float, end_s: float) -> bool:
        """A beep that starts and ends with a 520 Hz square-wave beep: its 5th or 7th harmonic."""
        return any(abs(start_s - q.start_s) <= HARMONIC_ONSET_S and abs(end_s - q.end_s) <= HARMONIC_ONSET_S
                   for q in low.segments if q.duration_s >= self.cfg.on_min_s)

    def _restart(self) -> None:
        self._lock = None
        for band in self.bands:
            band.reset()
            band.segments.clear()
        self._pending = np.zeros(0, dtype=np.float32)

    def _scan(self, band: _Band, power: np.ndarray, t_s: float) -> bool:
        on_a, bins_a, level_a = band.tone_frames(power, self.cfg)
        on, bins, level_db = on_a.tolist(), bins_a.tolist(), level_a.tolist()  # Python scalars: per-frame loop
        region = band.last_region_db.tolist()
        confirmed = False
        for i in range(len(on)):
            frame = self._frame + i
            tone = on[i]
            if band.floor_db is None:
                band.floor_db = level_db[i]
            if tone and level_db[i] < band.floor_db + self.cfg.floor_margin_db:
                tone = False
            if not tone:
                rate = 0.3 if level_db[i] < band.floor_db else 0.005
                band.floor_db += rate * (level_db[i] - band.floor_db)
            band.region_db.append((frame, region[i]))
            if tone or band.cur_start is not None:
                confirmed |= self._segment(band, frame, tone, bins[i], level_db[i], t_s)
        return confirmed

    def _segment(self, band: _Band, frame: int, tone: bool, bin_: int, level: float, t_s: float) -> bool:
        if band.cur_start is not None:
            same = (tone and abs(bin_ - band.cur_bin) <= BIN_TOLERANCE
                    and level >= band.cur_level - BEEP_LEVEL_DB)  # a weaker frame: the noise under the beep
            if same and level > band.cur_level + LEVEL_TOLERANCE_DB:
                self._close(band)  # a much louder tone starts at this pitch: a new sound, not this one
            elif same:
                band.cur_last = frame
                band.cur_level = max(band.cur_level, level)
            elif frame - band.cur_last > BRIDGE_FRAMES:  # off, or another pitch, for too long
                self._close(band)
        if tone and band.cur_start is None:
            band.cur_start, band.cur_last, band.cur_bin, band.cur_level = frame, frame, bin_, level
        if band.cur_start is None or band.confirmed_start == band.cur_start:
            return False
        if (band.cur_last + 1 - band.cur_start) * self.frame_s < self.cfg.next_beep_min_s:
            return False
        current = Segment(band.cur_start * self.frame_s, (band.cur_last + 1) * self.frame_s, band.cur_bin,
                          band.cur_level)
        if self._matches(band, list(band.segments), current):
            band.confirmed_start = band.cur_start
            self._confirm(band, current, t_s)
            return True
        return False

    def _close(self, band: _Band) -> None:
        assert band.cur_start is not None
        if band.cur_last + 1 - band.cur_start >= MIN_SEGMENT_FRAMES:
            band.segments.append(Segment(band.cur_start * self.frame_s, (band.cur_last + 1) * self.frame_s,
                                         band.cur_bin, band.cur_level))
        band.cur_start = None

    def _matches(self, band: _Band, done: list[Segment], nxt: Segment) -> bool:
        """Three similar beeps, a long gap, then ``nxt`` (the next cycle's first beep) at the same pitch."""
        c = self.cfg
        everything = done
        same = [s for s in done if abs(s.bin - nxt.bin) <= PATTERN_BIN_TOLERANCE
                and abs(s.level_db - nxt.level_db) <= BEEP_LEVEL_DB]  # other pitch or level: other sound
        done = [s for s in same if s.duration_s >= c.on_min_s]  # shorter: a blip of noise, not a beep
        if len(done) < 3:
            return False
        s1, s2, s3 = done[-3:]
        mine = {id(s) for s in same}
        if any(s.end_s > s1.start_s and id(s) not in mine and s.level_db >= nxt.level_db - BEEP_LEVEL_DB
               for s in everything):
            return False  # the "gaps" hold another tone as loud: a warbling or sweeping sound, not beeps
        ons = [s.duration_s for s in (s1, s2, s3)]
        gaps = [s2.start_s - s1.end_s, s3.start_s - s2.end_s]
        long_gap = nxt.start_s - s3.end_s
        if not all(c.on_min_s <= d <= c.on_max_s for d in ons):
            return False
        if not all(c.gap_min_s <= g <= c.gap_max_s for g in gaps):
            return False
        if max(ons) > c.similarity * min(ons) or max(gaps) > c.similarity * min(gaps):
            return False
        if not (c.long_gap_min_s <= long_gap <= c.long_gap_max_s and long_gap >= c.long_gap_ratio * max(gaps)):
            return False
        four = (s1, s2, s3, nxt)
        if max(s.bin for s in four) - min(s.bin for s in four) > PATTERN_BIN_TOLERANCE:
            return False
        if max(s.level_db for s in four) - min(s.level_db for s in four) > BEEP_LEVEL_DB:
            return False
        if len(done) >= 4:  # the triple must start a cycle, not be the tail of a longer beep train
            before = s1.start_s - done[-4].end_s
            if before < min(c.long_gap_min_s, c.long_gap_ratio * max(gaps)):
                return False
        if band.harmonic and not band.gaps_quiet([(s1.end_s, s2.start_s), (s2.end_s, s3.start_s),
                                                  (s3.end_s, nxt.start_s)], self.frame_s, nxt.level_db):
            return False  # 520 Hz band: music and speech fill the gaps with neighbouring notes
        self.last_match = {"on_s": [round(d, 3) for d in ons], "gaps_s": [round(g, 3) for g in gaps],
                           "long_gap_s": round(long_gap, 3), "freq_hz": round(s1.bin * self.bin_hz)}
        return True

    def _confirm(self, band: _Band | RidgeBand, seg: Segment | Beep, t_s: float) -> None:
        since = t_s - self.last_confirm_t if self.last_confirm_t is not None else math.inf
        if since < SAME_CYCLE_S:  # the other band (a square wave's harmonics) heard the same cycle
            return
        self.consecutive = self.consecutive + 1 if since <= CONSECUTIVE_CYCLE_S else 1
        if self.consecutive == 1:
            self.run_start_t = t_s
        self.confirmations += 1
        self.last_confirm_t = t_s
        if self.last_match is not None:
            self.last_match["band"] = band.name

    def confidence(self, t_s: float) -> float:
        """1 after two consecutive cycles, ``first_confidence`` after one, 0 once ``hold_s`` has passed."""
        if self.last_confirm_t is None or t_s - self.last_confirm_t > self.cfg.hold_s:
            return 0.0
        return 1.0 if self.consecutive >= 2 else self.cfg.first_confidence

    def evidence(self, t_s: float) -> Evidence:
        conf = self.confidence(t_s)
        values = {"cycles": self.consecutive if conf else 0, **(self.last_match or {})} if conf else {}
        reason = (f"temporal-three alarm sound, {self.consecutive} cycle(s), last at {self.last_confirm_t:.1f} s"
                  if conf else "no alarm pattern")
        return Evidence("sound", conf, values, reason, t_s, since_s=self.run_start_t if conf >= 1.0 else None)
