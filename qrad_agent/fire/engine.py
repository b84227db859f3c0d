"""The pure fire engine: the detectors and the fusion, driven by explicit inputs and times (no I/O).

``FireDetector`` (detector.py) feeds it from the sensor hub and the microphone; benchmarks/fire.py and
the tests feed it from scenarios and data sets, so the evaluation runs exactly the deployed logic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qrad_agent.fire.alarm_sound import AlarmSoundDetector
from qrad_agent.fire.co2 import Co2Detector
from qrad_agent.fire.config import FireConfig
from qrad_agent.fire.evidence import Evidence, missing
from qrad_agent.fire.fusion import Decision, FireFusion
from qrad_agent.fire.heat import HeatDetector


@dataclass(frozen=True, slots=True)
class FireInputs:
    """One evaluation's inputs; None means missing (or not fitted)."""

    temp_c: float | None = None
    co2_ppm: float | None = None
    pm_ug_m3: float | None = None
    power_w: float | None = None
    sound_db_a: float | None = None
    occupancy: bool | None = None
    hour: float | None = None
    audio_ok: bool | None = None  # None: no microphone fitted; False: fitted but silent


class FireEngine:
    """Detectors plus fusion. ``feed_audio`` per block, ``step`` per sensor evaluation."""

    def __init__(self, cfg: FireConfig) -> None:
        self.cfg = cfg
        self.sound = AlarmSoundDetector(cfg.sound)
        self.heat = HeatDetector(cfg.heat)
        self.co2 = Co2Detector(cfg.co2)
        self.fusion = FireFusion(cfg.fusion)
        self._loud_until_s = -1e18
        self._first_step_s: float | None = None

    def feed_audio(self, t_s: float, block: np.ndarray) -> bool:
        """One microphone block; True when it confirmed an alarm cycle (worth an immediate ``step``)."""
        return self.cfg.sound.enabled and self.sound.feed(t_s, block)

    def presence(self, t_s: float, inp: FireInputs) -> bool | None:
        """Occupancy sensor, else recent speech-level sound, else the occupied hours, else unknown."""
        if inp.occupancy is not None:
            return inp.occupancy
        if inp.sound_db_a is not None:
            if inp.sound_db_a >= self.cfg.co2.presence_db_a:
                self._loud_until_s = t_s + self.cfg.co2.presence_hold_s
            return t_s <= self._loud_until_s
        if inp.hour is not None:
            start, end = self.cfg.co2.occupied_hours
            return start <= inp.hour < end
        return None

    def step(self, t_s: float, inp: FireInputs) -> Decision:
        heat = self.heat.update(t_s, inp.temp_c, inp.power_w)
        co2, pm = self.co2.update(t_s, inp.co2_ppm, inp.pm_ug_m3, self.presence(t_s, inp))
        if inp.audio_ok is False:
            sound = missing("sound", t_s, "microphone stream silent")
        else:
            sound = self.sound.evidence(t_s)
        needed = ("heat",) + (("sound",) if inp.audio_ok is not None else ()) + \
            (("co2",) if self.cfg.co2_channels else ())
        if self._first_step_s is None:
            self._first_step_s = t_s
        if t_s - self._first_step_s < self.cfg.stale_after_s:
            needed = ()  # start-up: first readings still coming (an MH-Z19 answers after its warm-up)
        evidence: list[Evidence] = [sound, heat, co2, pm]
        return self.fusion.update(t_s, evidence, needed)
