"""The whole heater: power becomes room heat, time mapping, control file, run() on virtual time."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from qrad_hwsim.heater import HeaterSpec, HeaterState, SimulatedHeater, reset_tree, sensor_fault_path
from qrad_hwsim.room import steady_state
from qrad_hwsim.sim_clock import parse_start, typical_year_s
from qrad_hwsim.virtual_time import run_virtual
from qrad_hwsim.weather import Weather, t_year_s_of

START = datetime(2026, 1, 15)


def make(tmp_path: Path, weather: Weather | None = None, **spec: float) -> SimulatedHeater:
    return SimulatedHeater(tmp_path, HeaterSpec(**spec), weather or Weather.constant(0.0), START)


def test_all_electrical_power_becomes_room_heat(tmp_path: Path) -> None:
    heater = make(tmp_path, initial_air_c=10.0)
    params = heater.spec.room
    u0_j = params.c_air_j_k * heater.room.air_c + params.c_mass_j_k * heater.room.mass_c
    heat_in_j = loss_j = 0.0
    for _ in range(180):
        before = heater.state
        state = heater.step(10.0)
        heat_in_j += state.power_w * 10.0
        for s in (before, state):  # trapezoid on the losses to outdoor (0 °C)
            loss_j += 5.0 * (params.h_ao_w_k * s.air_c + params.h_mo_w_k * s.mass_c)
    u1_j = params.c_air_j_k * heater.room.air_c + params.c_mass_j_k * heater.room.mass_c
    assert state.power_w == pytest.approx(500.0)
    assert u1_j - u0_j == pytest.approx(heat_in_j - loss_j, rel=0.01)


def test_long_run_reaches_the_room_steady_state(tmp_path: Path) -> None:
    heater = make(tmp_path, initial_air_c=0.0)
    (tmp_path / "fs/cgroup/qrad-jobs/cpu.max").write_text("1000 100000\n")  # smallest quota: ~50 W
    heater.advance(20 * 86400.0, 3600.0)
    power_w = heater.state.power_w
    assert power_w == pytest.approx(50.0, abs=0.5)
    assert heater.state.air_c == pytest.approx(steady_state(heater.spec.room, power_w, 0.0)[0], abs=0.01)
    assert heater.state.sensor_c == pytest.approx(heater.state.air_c + 0.05, abs=0.1)


def test_weather_time_follows_the_start_date(tmp_path: Path, weather: Weather) -> None:
    heater = make(tmp_path, weather)
    assert heater.wall_time(3600.0) == START + timedelta(hours=1)
    heater.step(10.0)
    assert heater.state.outdoor_c == pytest.approx(weather.outdoor_c(t_year_s_of(1, 15)))


def test_start_dates() -> None:
    assert parse_start("01-15") == datetime(2026, 1, 15)
    assert parse_start("2024-03-01") == datetime(2024, 3, 1)
    assert typical_year_s(datetime(2024, 3, 1)) == t_year_s_of(3, 1)
    assert typical_year_s(datetime(2026, 3, 1)) == t_year_s_of(3, 1)
    for bad in ("13-40", "1/15", "2026-02-30-1"):
        with pytest.raises(ValueError):
            parse_start(bad)


def test_control_file_sets_sensor_faults(tmp_path: Path) -> None:
    heater = make(tmp_path)
    control = sensor_fault_path(tmp_path)
    control.parent.mkdir(exist_ok=True)
    control.write_text("missing\n")
    assert heater.step(10.0).sensor_c is None
    assert not (heater.sensor.dir / "temp1_input").exists()
    control.write_text("ok\n")
    assert heater.step(10.0).sensor_c is not None
    control.write_text("nonsense\n")
    assert heater.step(10.0).sensor_c is not None


def test_run_on_virtual_time(tmp_path: Path) -> None:
    heater = make(tmp_path)
    states: list[HeaterState] = []

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3.0):
                await heater.run(step_s=10.0, speed=600.0, on_step=states.append)
        return loop.time() - t0

    assert run_virtual(main()) == pytest.approx(3.0)
    assert len(states) == 179  # the 180th deadline coincides with the timeout
    assert heater.state.t_s == pytest.approx(1790.0)
    assert all(b.t_s - a.t_s == pytest.approx(10.0) for a, b in zip(states, states[1:], strict=False))


def test_run_accepts_coroutine_callbacks(tmp_path: Path) -> None:
    heater = make(tmp_path)
    seen: list[float] = []

    async def on_step(state: HeaterState) -> None:
        seen.append(state.t_s)
        await asyncio.sleep(0)

    async def main() -> None:
        task = asyncio.create_task(heater.run(step_s=60.0, speed=1.0, on_step=on_step))
        await asyncio.sleep(3600.0 + 1.0)
        task.cancel()

    run_virtual(main())
    assert seen[-1] == pytest.approx(3600.0)


def test_reset_tree_replaces_only_a_simulator_tree(tmp_path: Path) -> None:
    make(tmp_path)
    sensor_fault_path(tmp_path).write_text("missing\n")
    reset_tree(tmp_path)
    heater = make(tmp_path)
    assert heater.sensor.dir.name == "hwmon4"  # not hwmon9: the old devices are gone
    assert heater.step(10.0).sensor_c is not None  # the old fault is gone too
    other = tmp_path / "someone_else"
    (other / "file").parent.mkdir()
    (other / "file").write_text("keep me")
    with pytest.raises(ValueError):
        reset_tree(other)
    assert (other / "file").read_text() == "keep me"
    reset_tree(tmp_path / "absent")
