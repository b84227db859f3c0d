"""Carbon facts per job and per day (the method: docs/energy-and-carbon.md).

Each energy interval (energy_monitor.py) gives the heater's electrical energy, each job's share of it, and
whether the room needed the heat: the room's temperature at or below its setpoint plus ``comfort_band_k``.
Heat the room needed displaces the heating it would otherwise have had, so it counts as reused. Heat that
only pushed the room above its setpoint band is not reused, and neither is heat delivered while the room
temperature or setpoint is unknown (the conservative choice). With g the grid's carbon intensity
(gCO2e/kWh) and d the emission factor of the displaced heating (gCO2e per kWh of heat):

    emitted_g   = E_kWh · g
    reused_kWh  = E_kWh  if the room needed the heat, else 0
    avoided_g   = reused_kWh · d
    net_g       = emitted_g − avoided_g

computed per job (its E_j) and for the whole heater per local calendar day. d defaults to g: a heater that
replaces a direct electric radiator (COP 1) avoids exactly the grid emissions of the heat it delivers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

DAYS_KEPT = 14


@dataclass
class CarbonTotals:
    """kWh, kWh, gCO2e, gCO2e."""

    energy_kwh: float = 0.0
    reused_kwh: float = 0.0
    emitted_g: float = 0.0
    avoided_g: float = 0.0

    def add(self, energy_kwh: float, reused: bool, g: float, d: float) -> None:
        self.energy_kwh += energy_kwh
        self.emitted_g += energy_kwh * g
        if reused:
            self.reused_kwh += energy_kwh
            self.avoided_g += energy_kwh * d

    def as_dict(self) -> dict[str, float]:
        return {"energy_kwh": round(self.energy_kwh, 6), "heat_reused_kwh": round(self.reused_kwh, 6),
                "emitted_g": round(self.emitted_g, 3), "avoided_g": round(self.avoided_g, 3),
                "net_g": round(self.emitted_g - self.avoided_g, 3)}


@dataclass
class CarbonAccountant:
    """Per-job and per-day carbon facts. ``grid_g_per_kwh``: gCO2e/kWh (config, or the platform's value
    through `set_intensity`); ``displaced_g_per_kwh``: of the displaced heating (None: the grid's);
    ``comfort_band_k``: K above the setpoint that still counts as needed."""

    grid_g_per_kwh: float | None
    displaced_g_per_kwh: float | None = None
    comfort_band_k: float = 0.5
    source: str = "config"
    jobs: dict[str, CarbonTotals] = field(default_factory=dict)
    days: dict[str, CarbonTotals] = field(default_factory=dict)

    def set_intensity(self, g_per_kwh: float, source: str) -> None:
        """A new grid intensity (gCO2e/kWh). Raises ValueError for a negative or non-finite value."""
        if not math.isfinite(g_per_kwh) or g_per_kwh < 0 or g_per_kwh > 5000:
            raise ValueError(f"grid intensity {g_per_kwh} gCO2e/kWh is not plausible (0..5000)")
        self.grid_g_per_kwh, self.source = float(g_per_kwh), source

    @staticmethod
    def needed(room_c: float | None, setpoint_c: float | None, band_k: float) -> bool:
        """Whether the room needed heat: room at or below setpoint + band (False when either is unknown)."""
        if room_c is None or setpoint_c is None or not (math.isfinite(room_c) and math.isfinite(setpoint_c)):
            return False
        return room_c <= setpoint_c + band_k

    def interval(self, heater_j: float, job_j: dict[str, float], room_c: float | None, setpoint_c: float | None,
                 wall_s: float | None = None) -> bool:
        """Account one interval: the heater's J, each job's J, the room and its setpoint (°C). Returns whether
        the heat counted as reused. Nothing is counted while the grid intensity is unknown."""
        reused = self.needed(room_c, setpoint_c, self.comfort_band_k)
        g = self.grid_g_per_kwh
        if g is None:
            return reused
        d = g if self.displaced_g_per_kwh is None else self.displaced_g_per_kwh
        day = time.strftime("%Y-%m-%d", time.localtime(time.time() if wall_s is None else wall_s))
        self.days.setdefault(day, CarbonTotals()).add(max(0.0, heater_j) / 3.6e6, reused, g, d)
        for old in sorted(self.days)[:-DAYS_KEPT]:
            del self.days[old]
        for job_id, e in job_j.items():
            self.jobs.setdefault(job_id, CarbonTotals()).add(max(0.0, e) / 3.6e6, reused, g, d)
        return reused

    def job(self, job_id: str) -> dict[str, float] | None:
        """A job's carbon facts (None when none were counted)."""
        totals = self.jobs.get(job_id)
        return None if totals is None else totals.as_dict()

    def forget(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def status(self) -> dict:
        return {"grid_g_per_kwh": self.grid_g_per_kwh, "source": self.source,
                "displaced_g_per_kwh": self.displaced_g_per_kwh if self.displaced_g_per_kwh is not None
                else self.grid_g_per_kwh, "comfort_band_k": self.comfort_band_k,
                "days": {d: t.as_dict() for d, t in sorted(self.days.items())}}
