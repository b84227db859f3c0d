"""Room sensor: hwmon layout, quantisation, lag, bias, noise, and the stuck / missing faults."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from qrad_hwsim.sensor import RoomSensor, SensorSpec

QUIET = SensorSpec(noise_sd_c=0.0, humidity_noise_pct=0.0)


def temp_file(sensor: RoomSensor) -> Path:
    return sensor.dir / "temp1_input"


def test_layout_after_existing_hwmon_devices(tmp_path: Path) -> None:
    (tmp_path / "class/hwmon/hwmon0").mkdir(parents=True)
    sensor = RoomSensor(tmp_path, SensorSpec(), air_c=20.0)
    assert sensor.dir.name == "hwmon1"
    assert (sensor.dir / "name").read_text().strip() == "sht4x"
    assert 30_000 <= int((sensor.dir / "humidity1_input").read_text()) <= 50_000


def test_readings_are_quantised_to_10_millidegrees(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, SensorSpec(), air_c=20.0, rng=np.random.default_rng(1))
    for k in range(200):
        sensor.step(10.0, 20.0 + 0.00123 * k)
        assert int(temp_file(sensor).read_text()) % 10 == 0


def test_bias_without_lag_or_noise(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, SensorSpec(tau_s=0.0, noise_sd_c=0.0), air_c=20.0)
    assert sensor.step(10.0, 21.0) == pytest.approx(21.05)
    assert int(temp_file(sensor).read_text()) == 21_050


def test_first_order_lag(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, QUIET, air_c=20.0)
    for _ in range(6):
        sensor.step(10.0, 25.0)
    expected_c = 20.0 + 5.0 * (1.0 - math.exp(-1.0)) + 0.05
    assert sensor.reading_c == pytest.approx(expected_c, abs=0.006)


def test_noise_is_seeded_and_about_the_spec(tmp_path: Path) -> None:
    def series(seed: int, folder: str) -> list[float]:
        sensor = RoomSensor(tmp_path / folder, SensorSpec(tau_s=0.0), 20.0, np.random.default_rng(seed))
        return [sensor.step(10.0, 20.0) or 0.0 for _ in range(200)]
    a, b, c = series(7, "a"), series(7, "b"), series(8, "c")
    assert a == b and a != c
    assert np.mean(a) == pytest.approx(20.05, abs=0.005)
    assert 0.01 < np.std(a) < 0.03


def test_stuck_freezes_the_file(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, QUIET, air_c=20.0)
    sensor.step(10.0, 20.0)
    frozen = temp_file(sensor).read_text()
    sensor.set_fault("stuck")
    for _ in range(30):
        sensor.step(10.0, 26.0)
    assert temp_file(sensor).read_text() == frozen
    sensor.set_fault("ok")
    sensor.step(10.0, 26.0)
    assert int(temp_file(sensor).read_text()) > 25_000  # the lag kept following the air


def test_missing_removes_the_file_until_ok(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, QUIET, air_c=20.0)
    sensor.set_fault("missing")
    assert not temp_file(sensor).exists()
    assert sensor.step(10.0, 20.0) is None
    assert not temp_file(sensor).exists()
    sensor.set_fault("ok")
    assert sensor.step(10.0, 20.0) == pytest.approx(20.05)
    assert temp_file(sensor).exists()


def test_stuck_after_missing_brings_the_file_back_frozen(tmp_path: Path) -> None:
    sensor = RoomSensor(tmp_path, QUIET, air_c=20.0)
    sensor.step(10.0, 20.0)
    last = sensor.reading_mc
    sensor.set_fault("missing")
    sensor.step(10.0, 24.0)
    sensor.set_fault("stuck")  # once left without files: a technician's stuck sensor never showed up
    assert int(temp_file(sensor).read_text()) == last
    for _ in range(10):
        assert sensor.step(10.0, 26.0) == pytest.approx(last / 1000.0)
    assert int(temp_file(sensor).read_text()) == last


def test_unknown_fault_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RoomSensor(tmp_path, QUIET, air_c=20.0).set_fault("melted")
