"""Fire scenario player: a scenario file (JSON) played through the 2R2C room, CO2 and particle balances.

A scenario is data (hw-sim/qrad_hwsim/fire/scenarios/*.json), so a new one needs no code:
    name, kind ("fire" | "nuisance" | "program"), duration_s, start_hour, onset_s (fires), step_s
    room:    outdoor_c, air_c (start), volume_m3, ach, and any RoomParams field
    heater:  [[t_s, W], ...] piecewise-constant power of the heater itself (its own heat)
    sensors: temp_tau_s, temp_noise_k, co2_tau_s, co2_noise_ppm, pm (bool), background_db
    events:  {"type": "fire", start_s, alpha_kw_s2, peak_kw, air_fraction, co2_l_per_kj, pm_mg_per_kj}
             a t-squared fire: HRR = min(peak, alpha t^2) kW; air_fraction of it heats the air node that
             the heater's sensor sees, co2 and smoke come from the HRR (0.055 L CO2 per kJ: ~0.1 g/kJ)
             {"type": "source", start_s, end_s, heat_w, co2_l_per_min, pm_mg_per_min, occupants, ramp_s}
             people (80 W, 0.3 L/min of CO2 and speech each), cooking, a smouldering item ...
             {"type": "ventilation", start_s, end_s, ach}  an open window
             {"type": "sound", start_s, end_s, kind: t3 | t3_square | t4 | tone | beeps | microwave |
              ring, freq_hz, level_db, ...}  heard by the microphone; audio is rendered only around sounds
    program scenarios repeat other scenarios' events daily: {"days": 14, "daily": [{"scenario", "at_s"}]}
Each ``Tick`` carries the sensor readings (lagged, noisy), the heater power, the sound level and, around
sound events, the microphone blocks (16 kHz int16, 0.125 s).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from qrad_hwsim.devices.audio import sine_peak
from qrad_hwsim.fire import sounds
from qrad_hwsim.fire.timeline import Timeline
from qrad_hwsim.room import Room, RoomParams

SCENARIO_DIR = Path(__file__).parent / "scenarios"
PERSON_W, PERSON_CO2_L_MIN, SPEECH_DB = 80.0, 0.3, 60.0
BLOCK_N = 2000
PM_DEPOSITION_PER_H = 0.4
PM_SATURATION_UG_M3 = 1000.0
AUDIO_MARGIN_S = 15.0
_ROOM_FIELDS = set(RoomParams.__dataclass_fields__)


@dataclass
class Tick:
    t_s: float
    hour: float
    temp_c: float
    co2_ppm: float
    pm_ug_m3: float | None
    power_w: float
    sound_db_a: float
    audio: list[tuple[float, np.ndarray]] = field(default_factory=list)
    truth_air_c: float = 0.0


def load(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    if spec.get("kind") == "program":
        spec = expand_program(spec)
    return spec


def all_scenarios() -> list[dict[str, Any]]:
    return [load(p) for p in sorted(SCENARIO_DIR.glob("*.json"))]


def expand_program(program: dict[str, Any]) -> dict[str, Any]:
    """Repeat the named scenarios' events every day at their ``at_s`` (seconds after midnight)."""
    events, day_s = [], 86400.0
    for day in range(int(program["days"])):
        for item in program["daily"]:
            sub = load(item["scenario"])
            shift = day * day_s + float(item["at_s"]) - float(program.get("start_hour", 0)) * 3600
            for ev in sub.get("events", []):
                ev = dict(ev)
                for key in ("start_s", "end_s"):
                    if key in ev:
                        ev[key] = float(ev[key]) + shift
                events.append(ev)
    heater = [[d * day_s + t - float(program.get("start_hour", 0)) * 3600, w]
              for d in range(int(program["days"])) for t, w in program["heater_daily"]]
    return {**program, "kind": "nuisance", "events": events, "heater": heater,
            "duration_s": int(program["days"]) * day_s}


class Player:
    """Plays one scenario spec; iterate ``ticks()``."""

    def __init__(self, spec: dict[str, Any], seed: int = 0) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        room = spec.get("room", {})
        self.volume = float(room.get("volume_m3", 70.0))
        self.base_ach = float(room.get("ach", 0.5))
        self.outdoor_c = float(room.get("outdoor_c", 5.0))
        self.params = RoomParams(**{k: v for k, v in room.items() if k in _ROOM_FIELDS})
        self.room = Room.at_equilibrium(self.params, float(room.get("air_c", 20.0)), self.outdoor_c)
        self._rooms: dict[float, RoomParams] = {}
        self.sensors = {"temp_tau_s": 30.0, "temp_noise_k": 0.05, "co2_tau_s": 40.0, "co2_noise_ppm": 10.0,
                        "pm": False, "pm_noise": 2.0, "background_db": 35.0, **spec.get("sensors", {})}
        self.co2 = float(room.get("co2_ppm", 450.0))
        self.pm = float(room.get("pm_ug_m3", 8.0))
        self.events = spec.get("events", [])
        self.heater = sorted(spec.get("heater", [[0, 0.0]]))
        self._heater_t = [float(t0) for t0, _ in self.heater]
        self._event_times = Timeline([(float(e["start_s"]), e.get("end_s")) for e in self.events])
        self.sound_windows = [(float(e["start_s"]) - AUDIO_MARGIN_S, float(e["end_s"]) + AUDIO_MARGIN_S,
                               _track(e, self.rng)) for e in self.events if e["type"] == "sound"]
        self._sound_times = Timeline([(w[0], w[1]) for w in self.sound_windows])
        self.household = sounds.Household(self.rng) if self.sound_windows else None
        self._sensed = [self.room.air_c, self.co2, self.pm]

    def power_w(self, t_s: float) -> float:
        k = bisect.bisect_right(self._heater_t, t_s)
        return float(self.heater[k - 1][1]) if k else 0.0

    def _inputs(self, t_s: float) -> tuple[float, float, float, float, float]:
        """(heat into the air W, CO2 m3/s, PM µg/s, extra ventilation ach, occupants) at ``t_s``."""
        heat = co2 = pm = 0.0
        ach, people = self.base_ach, 0.0
        for k in self._event_times.live(t_s, t_s):
            e = self.events[k]
            start = float(e["start_s"])
            if t_s < start or t_s >= float(e.get("end_s", math.inf)):
                continue
            if e["type"] == "fire":
                hrr_kw = min(float(e["peak_kw"]), float(e["alpha_kw_s2"]) * (t_s - start) ** 2)
                heat += 1000 * hrr_kw * float(e.get("air_fraction", 0.3))
                co2 += hrr_kw * float(e.get("co2_l_per_kj", 0.055)) / 1000 * float(e.get("mixing", 0.5))
                pm += hrr_kw * float(e.get("pm_mg_per_kj", 2.0)) * 1000 * float(e.get("mixing", 0.5))
            elif e["type"] == "source":
                ramp = min(1.0, (t_s - start) / max(1.0, float(e.get("ramp_s", 1.0))))
                n = float(e.get("occupants", 0))
                people += n
                heat += ramp * (float(e.get("heat_w", 0)) + PERSON_W * n)
                co2 += ramp * (float(e.get("co2_l_per_min", 0)) + PERSON_CO2_L_MIN * n) / 60000
                pm += ramp * float(e.get("pm_mg_per_min", 0)) * 1000 / 60
            elif e["type"] == "ventilation":
                ach = max(ach, float(e["ach"]))
        return heat, co2, pm, ach, people

    def _room_for(self, ach: float) -> None:
        if ach == self.base_ach and self.room.params is self.params:
            return
        params = self.params if ach == self.base_ach else self._rooms.get(ach)
        if params is None:
            extra = 0.333 * (ach - self.base_ach) * self.volume
            params = self._rooms[ach] = replace(self.params, h_ao_w_k=self.params.h_ao_w_k + extra)
        if self.room.params is not params:
            self.room = Room(params, self.room.air_c, self.room.mass_c)

    def ticks(self) -> Iterator[Tick]:
        step = float(self.spec.get("step_s", 5.0))
        duration = float(self.spec["duration_s"])
        start_hour = float(self.spec.get("start_hour", 12.0))
        s, t = self.sensors, 0.0
        while t < duration:
            heat, co2_m3_s, pm_ug_s, ach, people = self._inputs(t)
            power = self.power_w(t)
            self._room_for(ach)
            self.room.step(step, power, self.outdoor_c, internal_w=heat)
            n_s = ach / 3600
            self.co2 += step * (co2_m3_s / self.volume * 1e6 - n_s * (self.co2 - 420.0))
            self.pm += step * (pm_ug_s / self.volume - (n_s + PM_DEPOSITION_PER_H / 3600) * (self.pm - 5.0))
            t += step
            plume = float(s.get("self_heating_k_per_kw", 0.0)) * power / 1000  # the heater's own plume
            truth = (self.room.air_c + plume, self.co2, self.pm)
            for i, tau in enumerate((s["temp_tau_s"], s["co2_tau_s"], 10.0)):
                self._sensed[i] += (truth[i] - self._sensed[i]) * (1 - math.exp(-step / tau))
            level = _db_sum(s["background_db"], SPEECH_DB + 10 * math.log10(people) if people else None)
            tick = Tick(t, (start_hour + t / 3600) % 24,
                        round(self._sensed[0] + self.rng.normal(0, s["temp_noise_k"]), 2),
                        round(self._sensed[1] + self.rng.normal(0, s["co2_noise_ppm"])),
                        _pm_reading(self._sensed[2] + self.rng.normal(0, s["pm_noise"])) if s["pm"] else None,
                        power, level, truth_air_c=self.room.air_c)
            tick.audio = self._audio(t - step, t, people)
            yield tick

    def _audio(self, t0: float, t1: float, people: float) -> list[tuple[float, np.ndarray]]:
        active = [w for w in (self.sound_windows[k] for k in self._sound_times.live(t0, t1))
                  if w[0] < t1 and w[1] > t0]
        if not active or self.household is None:
            return []
        n0, n1 = int(t0 * sounds.RATE_HZ), int(t1 * sounds.RATE_HZ)
        bg = sine_peak(_db_sum(self.sensors["background_db"],
                               SPEECH_DB + 10 * math.log10(people) if people else None)) / math.sqrt(2)
        mix = self.household.render(n0, n1 - n0) * bg
        for _, _, track in active:
            mix += track.render(n0, n1 - n0)
        pcm = sounds.to_int16(mix)
        return [((n0 + i + BLOCK_N) / sounds.RATE_HZ, pcm[i : i + BLOCK_N]) for i in range(0, len(pcm), BLOCK_N)]


def _pm_reading(value: float) -> float:
    """A PMS5003 reads 0 to PM_SATURATION_UG_M3."""
    return min(PM_SATURATION_UG_M3, max(0.0, value))


def _db_sum(a: float, b: float | None) -> float:
    return a if b is None else 10 * math.log10(10 ** (a / 10) + 10 ** (b / 10))


def _track(e: dict[str, Any], rng: np.random.Generator) -> sounds.BeepTrack:
    start, end = float(e["start_s"]), float(e["end_s"])
    amp = sine_peak(float(e.get("level_db", 70.0)))
    freq = float(e.get("freq_hz", 3100.0))
    kind = e["kind"]
    if kind in ("t3", "t3_square"):
        beeps = sounds.t3_beeps(start, end, freq, amp, e.get("on_s", 0.5), e.get("gap_s", 0.5),
                                e.get("long_s", 1.5), square=kind == "t3_square")
    elif kind == "t4":
        beeps = sounds.pattern_beeps(start, end, freq, amp, [(0.1, 0.1)] * 3 + [(0.1, 5.0)])
    elif kind == "tone":
        beeps = [(start, end, freq, amp, False)]
    elif kind == "microwave":
        beeps = sounds.pattern_beeps(start, start + 3.0, freq, amp, [(0.5, 0.5)] * 3)[:3]
    elif kind == "ring":
        beeps = sounds.pattern_beeps(start, end, freq, amp, [(0.4, 0.2), (0.4, 2.0)])
    elif kind == "beeps":
        beeps = sounds.random_beeps(start, end, amp, rng, e.get("freqs_hz", [1000.0, 3200.0]))
    else:
        raise ValueError(f"unknown sound kind {kind!r}")
    return sounds.BeepTrack(beeps)
