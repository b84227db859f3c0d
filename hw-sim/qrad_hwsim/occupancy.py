"""Occupants of the simulated room and the CO2 they exhale, with a ventilation mass balance.

Occupancy comes from a weekly pattern (an office: 2 people on weekdays 08:30-12:00 and 13:30-18:00; or
none) or from a replay of the UCI Occupancy Detection data set (Candanedo and Feldheim 2016; 1-min rows with
an Occupancy column and a measured CO2 column), looped over its span.
CO2 balance of a well-mixed room (volume V, air change rate n per hour, outdoor 420 ppm):
    dC/dt = G * N / V * 1e6 - n * (C - C_out)       [ppm/h]
with G = 0.018 m³/h of CO2 per seated adult (about 0.005 L/s, ASHRAE 62.1 background; EN 16798-1 uses
similar figures). At two people in 70 m³ with 0.5 ACH the room settles near 1 450 ppm.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path

CO2_OUTDOOR_PPM = 420.0
CO2_PER_PERSON_M3_H = 0.018
SENSIBLE_HEAT_PER_PERSON_W = 75.0
"""Sensible heat of a seated adult (ISO 7730 / ASHRAE: about 70-80 W at 1.2 met)."""


@dataclass
class Co2Room:
    """Well-mixed CO2 concentration of the room (ppm)."""

    volume_m3: float = 70.0
    air_changes_per_h: float = 0.5
    co2_ppm: float = CO2_OUTDOOR_PPM

    def step(self, dt_s: float, occupants: float, extra_m3_h: float = 0.0) -> float:
        """Advance ``dt_s`` with ``occupants`` people and ``extra_m3_h`` of other CO2 (a fire); ppm."""
        gen_ppm_h = (occupants * CO2_PER_PERSON_M3_H + extra_m3_h) / self.volume_m3 * 1e6
        rate_ppm_h = gen_ppm_h - self.air_changes_per_h * (self.co2_ppm - CO2_OUTDOOR_PPM)
        self.co2_ppm += rate_ppm_h * dt_s / 3600.0
        return self.co2_ppm


class OfficeOccupancy:
    """A weekly pattern: ``people`` present on weekdays in the morning and afternoon blocks."""

    BLOCKS = ((time(8, 30), time(12, 0)), (time(13, 30), time(18, 0)))

    def __init__(self, people: int = 2) -> None:
        self.people = people

    def occupants(self, moment: datetime) -> int:
        """People in the room at ``moment``."""
        if moment.weekday() >= 5:
            return 0
        now = moment.time()
        return self.people if any(a <= now < b for a, b in self.BLOCKS) else 0


class ReplayOccupancy:
    """Occupancy replayed from a UCI Occupancy Detection file, looped; one person when occupied."""

    def __init__(self, path: Path) -> None:
        # The header names 7 columns; each row starts with an extra unnamed row number: take the last column.
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        self.flags = [int(float(row[-1])) for row in rows if row]

    def occupants(self, moment: datetime) -> int:
        """People at ``moment``: the replay's minute at the same offset into its span, looped."""
        minutes = int((moment - datetime(moment.year, 1, 1)).total_seconds() // 60)
        return self.flags[minutes % len(self.flags)]
