"""Outdoor weather for the simulator: a typical meteorological year, interpolated.

The default is the Lyon-Bron TMYx hourly CSV shipped as package data (``qrad_hwsim/data/``, with its
source and licence): columns month, day, hour_ending (1-24), dry_bulb_C, ..., global_horiz_Wh_m2, ... with
8760 rows. ``Weather.load`` also reads an EnergyPlus EPW file (any TMYx station of climate.onebuilding.org).
A record with hour_ending h is taken as the value at h * 3600 s after the start of its day, so the
first record sits at t = 3600 s and the last at t = 365 * 86400 s, which is also t = 0 of the next
year: the series wraps around the year.

Times are ``t_year_s``: seconds since 1 January 00:00 of the typical (non-leap) year.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

WEATHER_ENV_VAR = "QRAD_WEATHER_FILE"
BUNDLED_WEATHER_NAME = "lyon_bron_tmyx_hourly.csv"
CSV_COLUMNS = ("month", "day", "hour_ending", "dry_bulb_C", "global_horiz_Wh_m2")
# EPW data record fields, 0-based (EnergyPlus Auxiliary Programs, "Weather Data Format": field 1 is
# the year): month, day, hour (1-24, hour ending), dry bulb °C, station pressure Pa, global horizontal
# radiation Wh/m² over the hour ending.
EPW_MONTH, EPW_DAY, EPW_HOUR, EPW_DRY_BULB, EPW_PRESSURE, EPW_GHI = 1, 2, 3, 6, 9, 13
EPW_HEADER_LINES = 8
HOUR_S = 3600.0
STANDARD_PRESSURE_PA = 101_325.0
YEAR_S = 365 * 86400.0
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)


def bundled_weather_path() -> Path:
    """The Lyon-Bron typical-year CSV shipped with hw-sim (``qrad_hwsim/data/lyon_bron_tmyx_hourly.csv``)."""
    return Path(str(resources.files("qrad_hwsim") / "data" / BUNDLED_WEATHER_NAME))


def default_weather_path(start_dir: Path | None = None) -> Path:
    """Return the weather file: ``$QRAD_WEATHER_FILE`` if set, else the Lyon-Bron CSV shipped with hw-sim.

    ``start_dir`` is accepted for compatibility and ignored: nothing outside the package is searched.
    Raises FileNotFoundError when ``$QRAD_WEATHER_FILE`` does not name a file.
    """
    del start_dir
    env = os.environ.get(WEATHER_ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"{WEATHER_ENV_VAR}={env!r} does not name a file")
        return path
    return bundled_weather_path()


class WeatherFormatError(ValueError):
    """A weather file that is neither the TMYx hourly CSV nor an EPW file, or a malformed record in one."""


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
    def load(cls, path: str | os.PathLike[str]) -> Weather:
        """Load a weather file by its content: an EPW file (first line ``LOCATION,``) or the TMYx hourly
        CSV (a header naming month, day, hour_ending, dry_bulb_C, global_horiz_Wh_m2).

        Raises FileNotFoundError for a missing file and WeatherFormatError (a ValueError) naming the file,
        the line and what was expected for anything else.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"weather file {path} does not exist")
        try:
            with open(path, encoding="utf-8", errors="strict") as handle:
                first = handle.readline()
        except UnicodeDecodeError as exc:
            raise WeatherFormatError(f"{path}: not a text file ({exc.reason}); expected an EPW file or the "
                                     f"TMYx hourly CSV") from None
        if first.startswith("LOCATION,"):
            return _whole_year(path, cls.from_epw(path))
        header = [name.strip() for name in first.strip().split(",")]
        missing = [name for name in CSV_COLUMNS if name not in header]
        if missing:
            raise WeatherFormatError(
                f"{path}: not a weather file this simulator reads: an EPW file starts with 'LOCATION,', a "
                f"weather CSV has a header with {', '.join(CSV_COLUMNS)} (missing: {', '.join(missing)})")
        return _whole_year(path, cls.from_csv(path))

    @classmethod
    def from_epw(cls, path: str | os.PathLike[str]) -> Weather:
        """Load an EnergyPlus weather file: 8 header lines, then one record per hour (hour ending 1-24).

        Raises WeatherFormatError naming the line of a short or non-numeric record.
        """
        times: list[float] = []
        temps: list[float] = []
        ghis: list[float] = []
        pressures: list[float] = []
        with open(path, newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.reader(handle), start=1):
                if line_no <= EPW_HEADER_LINES or not row:
                    continue
                try:
                    month, day, hour = int(row[EPW_MONTH]), int(row[EPW_DAY]), int(row[EPW_HOUR])
                    times.append(t_year_s_of(month, day, hour * HOUR_S))
                    temps.append(float(row[EPW_DRY_BULB]))
                    ghis.append(float(row[EPW_GHI]))
                    pressures.append(float(row[EPW_PRESSURE]))
                except (IndexError, ValueError) as exc:
                    raise WeatherFormatError(f"{path}, line {line_no}: not an EPW data record ({exc})") from None
        return cls._from_records(path, times, temps, ghis, pressures)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> Weather:
        """Load the derived TMYx CSV (header row, 8760 data rows in time order).

        Raises WeatherFormatError naming the line of a malformed record.
        """
        times: list[float] = []
        temps: list[float] = []
        ghis: list[float] = []
        pressures: list[float] = []
        with open(path, newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.DictReader(handle), start=2):
                try:
                    month, day, hour = int(row["month"]), int(row["day"]), int(row["hour_ending"])
                    times.append(t_year_s_of(month, day, hour * HOUR_S))
                    temps.append(float(row["dry_bulb_C"]))
                    ghis.append(float(row["global_horiz_Wh_m2"]))
                    pressures.append(float(row.get("pressure_Pa") or STANDARD_PRESSURE_PA))
                except (KeyError, TypeError, ValueError) as exc:
                    raise WeatherFormatError(f"{path}, line {line_no}: not a weather record ({exc!s})") from None
        return cls._from_records(path, times, temps, ghis, pressures)

    @classmethod
    def _from_records(cls, path: str | os.PathLike[str], times: list[float], temps: list[float],
                      ghis: list[float], pressures: list[float]) -> Weather:
        if len(times) < 2:
            raise WeatherFormatError(f"{path}: fewer than two weather records")
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


HOURS_PER_YEAR = 8760


def _whole_year(path: Path, weather: Weather) -> Weather:
    """``weather`` when it covers every hour of the typical year, else WeatherFormatError: a simulation
    wraps around the year, so a partial file would silently repeat what it has for the missing dates."""
    hours = len(set(weather.times_s.tolist()))
    if hours < HOURS_PER_YEAR:
        raise WeatherFormatError(f"{path}: {hours} hourly records, a typical year has {HOURS_PER_YEAR}: "
                                 "give a whole year (an EPW file or the TMYx hourly CSV)")
    return weather
