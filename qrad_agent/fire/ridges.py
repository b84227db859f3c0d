"""Beeps as ridges in time and frequency: a beep is an envelope over one to three lines, not one FFT bin.

A real piezo alarm's beep carries two or three lines a few hundred Hz apart whose relative level flips
within the beep, and its pitch wanders (issue 16; hw-sim/qrad_hwsim/fire/variations.py makes such
signals). Keyed to the bin of its first frame, such a beep broke into fragments. Here, per frame, up to
``MAX_PEAKS`` spectral peaks of the band (local maxima of the 3-bin power, each standing the configured
contrast above the region's median bin and within ``LINE_RANGE_DB`` of the frame's strongest) are
attached to open beeps:
    - a peak within ``LINE_TOL_BINS`` of one of a beep's lines continues that line (the line follows it:
      the pitch may wander by that much per frame);
    - during a beep's first ``ONSET_S`` any other peak becomes one more of its lines (lines of one alarm
      start together; a second alarm, out of phase, starts at its own time and becomes its own beep);
      a line silent for longer than ``BRIDGE_FRAMES`` leaves the beep (two alarms that happened to start
      together part when the shorter beep ends);
    - a beep lasts while the loudest of its lines stays within ``BEEP_LEVEL_DB`` of its envelope (the
      loudest line after its first ``ATTACK_S``), bridging dropouts of up to ``BRIDGE_FRAMES``; a tone
      ``NEW_SOUND_DB`` louder at its pitch is a new sound.
The T3 pattern is then matched on the beeps' onsets (``match_t3``): onsets are sharp even in a reverberant
room, where the tail stretches every beep and shortens every gap by up to its decay time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qrad_agent.fire.config import SoundConfig

MAX_PEAKS = 3
LINE_TOL_BINS = 2.0
"""A peak this close (125 Hz at 62.5 Hz bins) to a line continues it, in one frame or across a pattern."""
LINE_RANGE_DB = 12.0
"""Secondary peaks further below the frame's strongest are noise, not lines (a line's level swings by
about 6 dB in recordings)."""
ONSET_S = 0.08
"""Lines starting within this of a beep's onset belong to it (one driver, one envelope)."""
BEEP_LEVEL_DB = 8.0
"""A frame whose loudest line is this far below the beep's envelope is not part of the beep (the noise under
it, or the reverberant tail once it has decayed this much)."""
ATTACK_S = 0.1
"""A beep's first 100 ms belong to it whatever their level, and its envelope is the loudest line after
them: in a reverberant room a tone's first 20-50 ms (the direct sound alone) can be 10 dB louder than its
steady state (direct plus a reverberant field that may cancel at that pitch); the steady part is the beep."""
NEW_SOUND_DB = 10.0
BRIDGE_FRAMES = 10
"""Dropouts up to 160 ms inside a beep (beating nulls, a flip between lines) do not split it."""
LOCAL_NEAR, LOCAL_FAR = 3, 10
"""A peak's neighbourhood: the bins 3 to 10 away on each side (190-625 Hz at 62.5 Hz bins), past the Hann
window's main lobe (2 bins) and wide enough that a second or third line 300-350 Hz away raises at most three
of a side's 8 bins, not their median."""
QUARTILE_TO_MEDIAN = math.log(2.0) / math.log(4.0 / 3.0)
"""Median over lower quartile of a noise bin's power (exponentially distributed: chi-square, 2 degrees of
freedom), so a side's lower quartile estimates the median a noise-only side would have."""
LOCAL_CONTRAST_DB = 9.0
"""A line's 3-bin power over 3 x the louder side's median (dB), as over the region's median
(``contrast_db``). Measured on 5 minutes of hw-sim's talk (1, 2, 4 people): at 6 dB the talk's own noise
still chained into 1-3 T3 confirmations, at 8 dB none; 9 dB keeps a margin. It costs the hardest variations
(low SNR behind a -20 dB door): 96.5 % of 200 random alarms found within 10 s, against 98.5 % with the
region's median alone (benchmarks/fire.py --only sound --trials 200)."""
MIN_SEGMENT_FRAMES = 3
MAX_OPEN = 4
"""Beeps tracked at once (two alarms and noise); the weakest is dropped beyond this."""
REVERB_ON_S = 0.3
"""A reverberant tail may lengthen a beep by this much beyond ``on_max_s`` (RT60 0.8 s at 8 dB)."""
MIN_GAP_S = 0.08
"""Between two beeps of a pattern there is at least this much of a gap."""
PERIOD_SIMILARITY = 1.35
"""The two onset periods of a triple differ by at most this ratio (one alarm's oscillator)."""
PATTERN_LEVEL_DB = BEEP_LEVEL_DB
"""The three beeps of one pattern share their peak level, or their mean level (the envelope's mean power over
the beep), within the 8 dB the tracker allows within one beep: a clean alarm's beeps are 1-2 dB apart in
0-20 dB SNR noise, but two lines flipping behind a door (the higher one attenuated more) at 5 dB SNR put
the loudest line's peak 6-8 dB apart when one line sinks into the noise for a whole beep. Either
measure: with beating and AM (a 3 Hz beat at 0.8, AM of 0.3 at 3 Hz) a 0.4 s beep's peak depends on where
the maxima fall in it and moves by up to 8 dB from beep to beep while its mean stays within 1-3 dB; in a
reverberant room the mean moves with the tail while the peak (the direct sound) stays. The next cycle's
first beep, still sounding when it is judged (its first ``next_beep_min_s``), is held to its peak within
``NEW_SOUND_DB``, the tracker's own limit for one sound."""
FRAGMENT_GAP_S = 0.2
"""A beep may break into fragments this close together: beating (two lines a few Hz apart) and AM put the
envelope 8-20 dB down for up to a sixth of a second at a time (a 3 Hz beat at 0.8 relative level stays 8 dB
down for 25 % of its 0.33 s period; with AM, longer), beyond ``BRIDGE_FRAMES``. The matcher tries the
beeps as heard first, and only then with such fragments joined (when the joined beep is still no longer
than ``on_max_s``): a T3 gap is 0.3-0.6 s, and reverberation that shortens it (a tail 8 dB down lasts
RT60 x 8/60, 0.11 s at 0.8 s) leaves at least 0.19 s, which the first pass matches as heard."""
GAP_SPREAD_S = 0.1 + BRIDGE_FRAMES * 0.016
"""The two short gaps of one cycle come from one timer: they differ by at most ISO 8201's tolerance on each
(±0.05 s) plus one beep end lost to a dropout the tracker does not bridge (``BRIDGE_FRAMES``, 0.16 s):
0.26 s. Reverberation shortens both alike. Melody notes and a doorbell's two notes that fall into a T3-like
rhythm do not keep their gaps this equal."""
CYCLE_RATIO = 1.3
"""The cycle's last onset period (third beep to the next cycle's first) exceeds the triple's by this:
T3 off-nominal extremes (on 0.7, off 0.6, gap 1.2 s) give 1.46; a beep train gives 1."""


@dataclass(frozen=True, slots=True)
class Beep:
    """One beep: start and end (stream s), its lines (fractional FFT bins), peak level (dB)."""

    start_s: float
    end_s: float
    lines: tuple[float, ...]
    level_db: float
    mean_db: float = -np.inf
    """The envelope's mean power over the beep, dB (``PATTERN_LEVEL_DB``); -inf: not known."""

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def bin(self) -> int:
        return round(self.lines[0])

    def shares_pitch(self, other: Beep) -> bool:
        return any(abs(a - b) <= LINE_TOL_BINS for a in self.lines for b in other.lines)


@dataclass
class _Open:
    start: int
    last: int
    lines: list[float]
    level: float
    confirmed: bool = False
    ended: bool = False
    ref: float = 0.0
    seen: list[int] = field(default_factory=list)
    peak: list[tuple[float, float]] = field(default_factory=list)
    energy: float = 0.0
    frames: int = 0
    """Per line: (level dB, fractional bin) of its loudest frame: the pitch the line is reported at (the
    tracked position may drift onto noise in its last frames)."""


class RidgeBand:
    """Beep tracking in one band (the piezo band 2.8-3.8 kHz); ``scan`` per block of power spectra."""

    harmonic = False

    def __init__(self, name: str, bins: tuple[int, int], ref: tuple[int, int], frame_s: float) -> None:
        self.name, self.bins, self.ref, self.frame_s = name, bins, ref, frame_s
        self.floor_db: float | None = None
        self.segments: deque[Beep] = deque(maxlen=24)
        self.open: list[_Open] = []

    def reset(self) -> None:
        self.open = []

    def peaks(self, power: np.ndarray, cfg: SoundConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per frame and band bin: is a peak, its fractional bin, its level dB (frames x bins)."""
        lo, hi = self.bins
        band = power[:, lo - 2 : hi + 3]
        triple = band[:, :-2] + band[:, 1:-1] + band[:, 2:]  # centred on bins lo-1 .. hi+1
        inner = triple[:, 1:-1]  # bins lo .. hi
        is_max = (inner >= triple[:, :-2]) & (inner > triple[:, 2:])
        median = np.median(power[:, self.ref[0] : self.ref[1]], axis=1, keepdims=True) + 1e-12
        is_max &= inner >= 3.0 * median * 10.0 ** (cfg.contrast_db / 10.0)
        is_max &= inner >= 3.0 * self._local_median(power) * 10.0 ** (LOCAL_CONTRAST_DB / 10.0)
        below, above = band[:, 1:-3], band[:, 3:-1]
        frac = np.arange(lo, hi + 1)[None, :] + (above - below) / (inner + 1e-12)
        return is_max, frac, 10.0 * np.log10(inner + 1e-12)

    def _local_median(self, power: np.ndarray) -> np.ndarray:
        """Per frame and band bin: the larger of the noise floors of the bins LOCAL_NEAR..LOCAL_FAR below and
        of those above it, each the side's lower quartile scaled to a median (frames x bins): the other lines
        of a three-line alarm 200-400 Hz apart may fill up to 5 of a side's 8 bins without raising it. A tone
        stands above its neighbourhood on both sides; a broadband sound that fills part of the region (speech,
        0.3-3.4 kHz) stands above the region's median, and at its band edge above the quiet side, but not above
        its own side."""
        lo, hi = self.bins
        span = power[:, lo - LOCAL_FAR : hi + LOCAL_FAR + 1]
        windows = np.lib.stride_tricks.sliding_window_view(span, 2 * LOCAL_FAR + 1, axis=1)
        below = np.percentile(windows[:, :, : LOCAL_FAR - LOCAL_NEAR + 1], 25, axis=2)
        above = np.percentile(windows[:, :, LOCAL_FAR + LOCAL_NEAR :], 25, axis=2)
        return np.maximum(below, above) * QUARTILE_TO_MEDIAN + 1e-12

    def scan(self, power: np.ndarray, cfg: SoundConfig, first_frame: int,
             on_current: Callable[[RidgeBand, Beep], bool]) -> bool:
        """Track every frame of the block; ``on_current(band, beep)`` is asked about each open beep that has
        lasted ``next_beep_min_s`` (it returns True when the beep confirmed a pattern)."""
        is_max, frac, level = self.peaks(power, cfg)
        strongest = level.max(axis=1).tolist()
        best_peak = np.where(is_max, level, -np.inf).max(axis=1).tolist()  # per frame, whole block at once
        confirmed = False
        min_frames = cfg.next_beep_min_s / self.frame_s
        for i in range(len(is_max)):
            frame = first_frame + i
            top = strongest[i]
            if self.floor_db is None:
                self.floor_db = top
            peaks: list[tuple[float, float]] = []
            if best_peak[i] >= self.floor_db + cfg.floor_margin_db:
                idx = np.flatnonzero(is_max[i])
                best = best_peak[i]
                order = idx[np.argsort(-level[i, idx])][:MAX_PEAKS]
                peaks = [(float(frac[i, k]), float(level[i, k])) for k in order
                         if level[i, k] >= best - LINE_RANGE_DB]
            else:
                rate = 0.3 if top < self.floor_db else 0.005
                self.floor_db += rate * (top - self.floor_db)
            self._track(frame, peaks)
            for beep in self.open:
                if beep.confirmed or beep.ended or (beep.last + 1 - beep.start) < min_frames:
                    continue
                if on_current(self, self._as_beep(beep)):
                    beep.confirmed = True
                    confirmed = True
        return confirmed

    def _as_beep(self, b: _Open) -> Beep:
        mean = 10.0 * np.log10(b.energy / b.frames) if b.frames else b.level
        return Beep(b.start * self.frame_s, (b.last + 1) * self.frame_s, tuple(f for _, f in b.peak), b.level,
                    float(mean))

    def _track(self, frame: int, peaks: list[tuple[float, float]]) -> None:
        if not peaks and not self.open:
            return  # nothing to continue, end or start (most frames of a quiet room)
        used = [False] * len(peaks)
        live = sorted((b for b in self.open if not b.ended), key=lambda b: -b.level)
        matched: dict[int, list[tuple[int, int, float, float]]] = {id(b): [] for b in live}
        for j, (f, db) in enumerate(peaks):  # first every line that continues, then new lines at onsets
            near = [(abs(line - f), k, b) for b in live for k, line in enumerate(b.lines)]
            if near:
                dist, k, b = min(near, key=lambda x: x[0])
                if dist <= LINE_TOL_BINS:
                    matched[id(b)].append((j, k, f, db))
                    used[j] = True
        for j, (f, db) in enumerate(peaks):
            if used[j]:
                continue
            for b in live:
                if frame - b.start <= ONSET_S / self.frame_s and db >= b.level - LINE_RANGE_DB:
                    matched[id(b)].append((j, -1, f, db))
                    used[j] = True
                    break
        settle = ATTACK_S / self.frame_s
        for beep in live:
            found = matched[id(beep)]
            if not found:
                continue
            env = max(db for *_, db in found)
            if env > beep.level + NEW_SOUND_DB:
                beep.ended = True  # a much louder tone at this pitch: a new sound; this beep ends here
                for j, *_ in found:
                    used[j] = False
                continue
            for _, k, f, db in found:
                if k < 0:
                    beep.lines.append(f)
                    beep.seen.append(frame)
                    beep.peak.append((db, f))
                else:
                    beep.lines[k] = f
                    beep.seen[k] = frame
                    beep.peak[k] = max(beep.peak[k], (db, f))
            attack = frame - beep.start <= settle
            if attack or env >= beep.ref - BEEP_LEVEL_DB:
                beep.last = frame
                beep.energy += 10.0 ** (env / 10.0)
                beep.frames += 1
                beep.level = max(beep.level, env)
                beep.ref = env if attack else max(beep.ref, env)
        fresh = [(f, db) for j, (f, db) in enumerate(peaks) if not used[j]]
        if fresh:
            level = max(db for _, db in fresh)
            self.open.append(_Open(frame, frame, [f for f, _ in fresh], level, ref=level,
                                   seen=[frame] * len(fresh), peak=[(db, f) for f, db in fresh],
                                   energy=10.0 ** (level / 10.0), frames=1))
        for beep in self.open:  # a line silent longer than a dropout has ended: another sound may take its pitch
            alive = [k for k, seen in enumerate(beep.seen) if frame - seen <= BRIDGE_FRAMES]
            if alive and len(alive) < len(beep.lines):
                beep.lines = [beep.lines[k] for k in alive]
                beep.seen = [beep.seen[k] for k in alive]
                beep.peak = [beep.peak[k] for k in alive]
        keep = []
        for beep in self.open:
            if beep.ended or frame - beep.last > BRIDGE_FRAMES:
                if beep.last + 1 - beep.start >= MIN_SEGMENT_FRAMES:
                    self.segments.append(self._as_beep(beep))
            else:
                keep.append(beep)
        keep.sort(key=lambda b: -b.level)
        self.open = keep[:MAX_OPEN]


def match_t3(cfg: SoundConfig, done: list[Beep], nxt: Beep) -> tuple[dict, tuple[Beep, Beep, Beep]] | None:
    """Three beeps of one alarm, then ``nxt``, the next cycle's first: a T3 cycle, matched on onsets.

    Candidates share a line with ``nxt`` (within ``LINE_TOL_BINS``), its peak level within ``NEW_SOUND_DB``
    and last at least ``on_min_s`` (shorter: noise reaching the band for a moment, ignored). Accepted:
    on times in [on_min, on_max + REVERB_ON_S], onset periods in [on_min + gap_min, on_max + gap_max] and
    alike (``PERIOD_SIMILARITY``), a silent gap between beeps, short gaps no longer than ``gap_max_s`` and
    within ``GAP_SPREAD_S`` of each other, the cycle's last period at least
    ``CYCLE_RATIO`` times the others with a long gap of at least ``long_gap_min_s`` - ``REVERB_ON_S``,
    no candidate starting inside a gap, and none closer than that before the first (the triple starts
    a cycle). If the beeps as heard match nothing, fragments of one beep (``FRAGMENT_GAP_S``) are joined
    and the match is tried once more.
    Returns the match's timing (s) and its three beeps, or None."""
    alike = [s for s in done if s.shares_pitch(nxt) and abs(s.level_db - nxt.level_db) <= NEW_SOUND_DB
             and s.end_s <= nxt.start_s]
    found = _match(cfg, [s for s in alike if cfg.on_min_s <= s.duration_s], nxt)
    if found is None:
        joined = _join_fragments(cfg, alike)
        if len(joined) < len(alike):
            found = _match(cfg, [s for s in joined if cfg.on_min_s <= s.duration_s], nxt)
            if found is not None:
                found[0]["fragments_joined"] = True
    return found


def _join_fragments(cfg: SoundConfig, beeps: list[Beep]) -> list[Beep]:
    """Successive beeps closer than ``FRAGMENT_GAP_S`` joined into one, while it stays within ``on_max_s``."""
    out: list[Beep] = []
    for b in sorted(beeps, key=lambda b: b.start_s):
        last = out[-1] if out else None
        if (last is not None and b.start_s - last.end_s <= FRAGMENT_GAP_S
                and max(b.end_s, last.end_s) - last.start_s <= cfg.on_max_s):
            power = (last.duration_s * 10.0 ** (last.mean_db / 10.0) + b.duration_s * 10.0 ** (b.mean_db / 10.0)) \
                / max(1e-9, last.duration_s + b.duration_s)
            out[-1] = Beep(last.start_s, max(b.end_s, last.end_s), last.lines, max(last.level_db, b.level_db),
                           float(10.0 * np.log10(max(power, 1e-30))))
        else:
            out.append(b)
    return out


def _match(cfg: SoundConfig, cands: list[Beep], nxt: Beep) -> tuple[dict, tuple[Beep, Beep, Beep]] | None:
    c = cfg
    p_lo, p_hi = c.on_min_s + c.gap_min_s, c.on_max_s + c.gap_max_s
    on_hi = c.on_max_s + REVERB_ON_S
    for k3 in range(len(cands) - 1, -1, -1):
        s3 = cands[k3]
        q = nxt.start_s - s3.start_s
        long_gap = nxt.start_s - s3.end_s
        if long_gap > c.long_gap_max_s:
            break
        if long_gap < c.long_gap_min_s - REVERB_ON_S or s3.duration_s > on_hi:
            continue
        for k2 in range(k3 - 1, -1, -1):
            s2 = cands[k2]
            p2 = s3.start_s - s2.start_s
            if p2 > p_hi:
                break
            if p2 < p_lo or s3.start_s - s2.end_s < MIN_GAP_S or s2.duration_s > on_hi:
                continue
            for k1 in range(k2 - 1, -1, -1):
                s1 = cands[k1]
                p1 = s2.start_s - s1.start_s
                if p1 > p_hi:
                    break
                if p1 < p_lo or s2.start_s - s1.end_s < MIN_GAP_S or s1.duration_s > on_hi:
                    continue
                if max(p1, p2) > PERIOD_SIMILARITY * min(p1, p2) or q < CYCLE_RATIO * max(p1, p2):
                    continue
                ons = [s1.duration_s, s2.duration_s, s3.duration_s]
                if max(ons) > c.similarity * min(ons):
                    continue
                g1, g2 = s2.start_s - s1.end_s, s3.start_s - s2.end_s
                if max(g1, g2) > c.gap_max_s or abs(g1 - g2) > GAP_SPREAD_S:
                    continue  # reverberation only shortens a gap: longer is no T3; unequal: not one timer
                three = (s1, s2, s3)
                if (max(s.level_db for s in three) - min(s.level_db for s in three) > PATTERN_LEVEL_DB
                        and max(s.mean_db for s in three) - min(s.mean_db for s in three) > PATTERN_LEVEL_DB):
                    continue  # neither their peaks nor their means agree: not one source
                gaps = ((s1.end_s, s2.start_s), (s2.end_s, s3.start_s), (s3.end_s, nxt.start_s))
                if any(a < s.start_s < b for s in cands for a, b in gaps):
                    continue  # another beep of this pitch and level in a gap: a longer train, not T3
                if any(s1.start_s - CYCLE_RATIO * max(p1, p2) < s.start_s < s1.start_s for s in cands[:k1]):
                    continue  # the tail of a longer beep train, not the start of a cycle
                return ({"on_s": [round(d, 3) for d in ons],
                         "gaps_s": [round(s2.start_s - s1.end_s, 3), round(s3.start_s - s2.end_s, 3)],
                         "long_gap_s": round(long_gap, 3),
                         "periods_s": [round(p1, 3), round(p2, 3), round(q, 3)],
                         "peak_db": [round(s.level_db, 1) for s in (s1, s2, s3, nxt)],
                         "mean_db": [round(s.mean_db, 1) for s in three]}, (s1, s2, s3))
    return None
