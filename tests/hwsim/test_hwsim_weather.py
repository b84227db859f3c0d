"""Weather: the real TMYx CSV shipped with hw-sim, EPW files, interpolation between hours, wrap around the
year, clear errors for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qrad_hwsim.weather import (
    WEATHER_ENV_VAR,
    YEAR_S,
    Weather,
    WeatherFormatError,
    bundled_weather_path,
    default_weather_path,
    t_year_s_of,
)


def test_loads_a_full_year(weather: Weather) -> None:
    assert len(weather.times_s) == 8760
    assert weather.times_s[0] == 3600.0
    assert weather.times_s[-1] == YEAR_S


def test_january_mean_matches_the_data_readme(weather: Weather) -> None:
    hours_s = np.arange(3600.0, 31 * 86400.0 + 1, 3600.0)
    mean_c = np.mean([weather.outdoor_c(t) for t in hours_s])
    assert mean_c == pytest.approx(3.9, abs=0.3)


def test_interpolates_between_hours(weather: Weather) -> None:
    # First two records: 1 Jan hour_ending 1 -> 0.0 °C, hour_ending 2 -> 2.0 °C.
    assert weather.outdoor_c(3600.0) == pytest.approx(0.0)
    assert weather.outdoor_c(7200.0) == pytest.approx(2.0)
    assert weather.outdoor_c(5400.0) == pytest.approx(1.0)
    assert weather.outdoor_c(4500.0) == pytest.approx(0.5)


def test_wraps_around_the_year(weather: Weather) -> None:
    # 31 Dec hour_ending 24 (13.1 °C) is the value at the end of the year, i.e. at t = 0.
    assert weather.outdoor_c(0.0) == pytest.approx(13.1)
    assert weather.outdoor_c(1800.0) == pytest.approx((13.1 + 0.0) / 2)
    assert weather.outdoor_c(YEAR_S + 5400.0) == pytest.approx(weather.outdoor_c(5400.0))
    assert weather.outdoor_c(-1800.0) == pytest.approx(weather.outdoor_c(YEAR_S - 1800.0))


def test_ghi_is_zero_at_night_and_positive_at_noon(weather: Weather) -> None:
    assert weather.ghi_w_m2(t_year_s_of(1, 15, 2 * 3600)) == 0.0
    assert weather.ghi_w_m2(t_year_s_of(6, 21, 13 * 3600)) > 200.0


def test_default_path_prefers_the_environment(monkeypatch: pytest.MonkeyPatch, weather_path: Path) -> None:
    monkeypatch.setenv(WEATHER_ENV_VAR, str(weather_path))
    assert default_weather_path(Path("/")) == weather_path


def test_default_is_the_shipped_year_whatever_the_directory(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    monkeypatch.delenv(WEATHER_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    path = default_weather_path()
    assert path == bundled_weather_path() and path.is_file()
    assert tmp_path not in path.parents


def test_environment_naming_no_file_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(WEATHER_ENV_VAR, str(tmp_path / "missing.csv"))
    with pytest.raises(FileNotFoundError, match=WEATHER_ENV_VAR):
        default_weather_path()


def _epw_from(weather_csv: Path, target: Path) -> None:
    """Write the CSV's records in the EPW layout (8 header lines, 35 fields per hourly record)."""
    import csv

    lines = ["LOCATION,Test Station,AR,FRA,ISD-TMYx,074800,45.7,4.9,1.0,198.0"]
    lines += [f"HEADER {i}" for i in range(2, 9)]
    with open(weather_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            fields = ["2004", row["month"], row["day"], row["hour_ending"], "60", "?9"] + ["0"] * 29
            fields[6], fields[7], fields[8] = row["dry_bulb_C"], row["dew_point_C"], row["rel_humidity_pct"]
            fields[9], fields[13] = row["pressure_Pa"], row["global_horiz_Wh_m2"]
            lines.append(",".join(fields))
    target.write_text("\n".join(lines) + "\n")


def test_an_epw_file_gives_the_same_year_as_its_csv(tmp_path: Path, weather_path: Path,
                                                    weather: Weather) -> None:
    epw = tmp_path / "station.epw"
    _epw_from(weather_path, epw)
    from_epw = Weather.load(epw)
    np.testing.assert_array_equal(from_epw.times_s, weather.times_s)
    np.testing.assert_array_equal(from_epw.dry_bulb_c, weather.dry_bulb_c)
    np.testing.assert_array_equal(from_epw.ghi_w_m2_series, weather.ghi_w_m2_series)
    assert from_epw.pressure_pa(7200.0) == pytest.approx(99645.0)


@pytest.mark.parametrize(("content", "words"), [
    ("time,temperature\n0,3.0\n", "missing: month"),
    ("LOCATION,x\n" + "H\n" * 7 + "2004,1,1,1,60,?9,warm\n", "line 9"),
    ("month,day,hour_ending,dry_bulb_C,global_horiz_Wh_m2\n1,1,1,cold,0\n", "line 2"),
])
def test_anything_else_is_a_clear_error(tmp_path: Path, content: str, words: str) -> None:
    bad = tmp_path / "weather.txt"
    bad.write_text(content)
    with pytest.raises(WeatherFormatError, match=words):
        Weather.load(bad)


def test_a_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "weather.xlsx"
    bad.write_bytes(b"PK\x03\x04\xff\xfe\x00")
    with pytest.raises(WeatherFormatError, match="not a text file"):
        Weather.load(bad)


def test_constant_weather() -> None:
    flat = Weather.constant(-3.0, 100.0)
    assert flat.outdoor_c(12345.0) == -3.0
    assert flat.ghi_w_m2(YEAR_S * 0.9) == 100.0
