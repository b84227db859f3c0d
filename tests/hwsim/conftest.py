"""Fixtures shared by the hw-sim tests: the weather file shipped with hw-sim and small trees in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrad_hwsim.weather import Weather, bundled_weather_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def project_root() -> Path:
    """The project root (/work/main), where the console script runs."""
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def weather_path() -> Path:
    """The Lyon-Bron TMYx CSV shipped with hw-sim (package data)."""
    return bundled_weather_path()


@pytest.fixture(scope="session")
def weather(weather_path: Path) -> Weather:
    """The typical year loaded once per session."""
    return Weather.load(weather_path)
