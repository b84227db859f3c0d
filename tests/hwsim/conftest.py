"""Fixtures shared by the hw-sim tests: the real weather file and small trees in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrad_hwsim.weather import Weather, default_weather_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The project root (/work/main), where the console script runs."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def weather_path() -> Path:
    """The Lyon-Bron TMYx CSV, found from the project root as the simulator finds it."""
    return default_weather_path(PROJECT_ROOT)


@pytest.fixture(scope="session")
def weather(weather_path: Path) -> Weather:
    """The typical year loaded once per session."""
    return Weather.from_csv(weather_path)
