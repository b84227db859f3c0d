"""Outdoor weather for the simulator: a typical meteorological year, interpolated.

The data is the Lyon-Bron TMYx hourly CSV in /work/shared/data/weather (see that folder's README):
columns month, day, hour_ending (1-24), dry_bulb_C, ..., global_horiz_Wh_m2, ... with 8760 rows.
A record with hour_ending h is taken as the value at h * 3600 s after the start of its day, so the
first record sits at t = 3600 s and the last at t = 365 * 86400 s, which is also t = 0 of the next
year: the series wraps around the year.

Times are ``t_year_s``: seconds since 1 January 00:00 of the typical (non-leap) year.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEATHER_ENV_VAR = "QRAD_WEATHER_FILE"
WEATHER_REL_PATH = Path("shared/data/weather/lyon_bron_tmyx_hourly.csv")
HOUR_S = 3600.0
STANDARD_PRESSURE_PA = 101_325.0
YEAR_S = 365 * 86400.0
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def default_weather_path(start_dir: Path | None = None) -> Path:
    """Return the weather CSV: ``$QRAD_WEATHER_FILE`` if set, else the first
    ``shared/data/weather/lyon_bron_tmyx_hourly.csv`` found in ``start_dir`` (default: the current
    directory) or one of its parents (the project root /work/main finds /work/shared via its parent).

    Raises FileNotFoundError naming the places searched.
    """
    env = os.environ.get(WEATHER_ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"{WEATHER_ENV_VAR}={env} does not name a file")
        return path
    here = (start_dir or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / WEATHER_REL_PATH
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"weather file {WEATHER_REL_PATH} not found in {here} or any parent; "
        f"set {WEATHER_ENV_VAR} or pass --weather FILE"
    )


def t_year_s_of(month: int, day: int, seconds_in_day: float = 0.0) -> float:
    """Seconds since 1 January 00:00 of the typical year for a calendar date (29 Feb maps to 1 Mar)."""
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {month}")
    day_index = _DAYS_BEFORE_MONTH[month - 1] + day - 1
    return day_index * 86400.0 + seconds_in_day


@dataclass(frozen=True)
class Weather:
    """Hourly outdoor series of one typical year.

    ``times_s`` are the record times in seconds of the year (3600, 7200, ..., 365 * 86400);
    ``dry_bulb_c`` the outdoor air temperature in °C; ``ghi_w_m2_series`` the global horizontal irradiance,
    whose hourly Wh/m² equals the mean W/m² over that hour.
    """

    times_s: np.ndarray
    dry_bulb_c: np.ndarray
    ghi_w_m2_series: np.ndarray
    pressure_pa_series: np.ndarray | None = None

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Weather:
        """Load the derived TMYx CSV (header row, 8760 data rows in time order)."""
        times, temps, ghis, pressures = [], [], [], []
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                month, day, hour = int(row["month"]), int(row["day"]), int(row["hour_ending"])
                times.append(t_year_s_of(month, day, hour * HOUR_S))
                temps.append(float(row["dry_bulb_C"]))
                ghis.append(float(row["global_horiz_Wh_m2"]))
                pressures.append(float(row.get("pressure_Pa") or STANDARD_PRESSURE_PA))
        if len(times) < 2:
            raise ValueError(f"{path}: fewer than two weather records")
        order = np.argsort(times, kind="stable")
        return cls(
            times_s=np.asarray(times, dtype=float)[order],
            dry_bulb_c=np.asarray(temps, dtype=float)[order],
            ghi_w_m2_series=np.asarray(ghis, dtype=float)[order],
            pressure_pa_series=np.asarray(pressures, dtype=float)[order],
        )

    @classmethod
    def constant(cls, outdoor_c: float, ghi_w_m2: float = 0.0) -> Weather:
        """A flat year at ``outdoor_c`` °C and ``ghi_w_m2`` W/m² (for tests and what-ifs)."""
        times = np.array([0.0, YEAR_S / 2])
        return cls(times, np.full(2, float(outdoor_c)), np.full(2, float(ghi_w_m2)))

    def __post_init__(self) -> None:
        # Extend the series by one period on each side once, so that each lookup is a plain
        # O(log n) np.interp (np.interp's own ``period`` option re-sorts the arrays on every call).
        times = np.concatenate([self.times_s - YEAR_S, self.times_s, self.times_s + YEAR_S])
        object.__setattr__(self, "_wrapped_times_s", times)
        object.__setattr__(self, "_wrapped", {
            "dry_bulb_c": np.tile(self.dry_bulb_c, 3), "ghi_w_m2": np.tile(self.ghi_w_m2_series, 3),
            "pressure_pa": np.tile(self.pressure_pa_series if self.pressure_pa_series is not None
                                   else np.full(len(self.times_s), STANDARD_PRESSURE_PA), 3)})

    def _interp(self, t_year_s: float, series: str) -> float:
        t_s = float(t_year_s) % YEAR_S
        return float(np.interp(t_s, self._wrapped_times_s, self._wrapped[series]))  # type: ignore[attr-defined]

    def outdoor_c(self, t_year_s: float) -> float:
        """Outdoor dry-bulb temperature, °C, linearly interpolated, wrapping around the year."""
        return self._interp(t_year_s, "dry_bulb_c")

    def pressure_pa(self, t_year_s: float) -> float:
        """Station pressure, Pa (EPW field 10), linearly interpolated; 101 325 Pa for a constant year."""
        return self._interp(t_year_s, "pressure_pa")

    def ghi_w_m2(self, t_year_s: float) -> float:
        """Global horizontal irradiance, W/m², linearly interpolated, wrapping around the year."""
        return self._interp(t_year_s, "ghi_w_m2")
