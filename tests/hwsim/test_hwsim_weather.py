"""Weather: parsing the real TMYx CSV, interpolation between hours, wrap around the year."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qrad_hwsim.weather import WEATHER_ENV_VAR, YEAR_S, Weather, default_weather_path, t_year_s_of


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


def test_default_path_searches_parent_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEATHER_ENV_VAR, raising=False)
    data = tmp_path / "shared/data/weather/lyon_bron_tmyx_hourly.csv"
    data.parent.mkdir(parents=True)
    data.write_text("month,day,hour_ending,dry_bulb_C,global_horiz_Wh_m2\n")
    deep = tmp_path / "main/sub"
    deep.mkdir(parents=True)
    assert default_weather_path(deep) == data


def test_default_path_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(WEATHER_ENV_VAR, raising=False)
    with pytest.raises(FileNotFoundError, match=WEATHER_ENV_VAR):
        default_weather_path(tmp_path)


def test_constant_weather() -> None:
    flat = Weather.constant(-3.0, 100.0)
    assert flat.outdoor_c(12345.0) == -3.0
    assert flat.ghi_w_m2(YEAR_S * 0.9) == 100.0
