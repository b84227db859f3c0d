"""The sensor hub: isolation of a hung driver, reconnect with backoff, spikes, redundancy vote."""

from __future__ import annotations

import asyncio
from typing import Literal

from structlog.testing import capture_logs

from qrad_agent.clock import Clock
from qrad_agent.config import SensorHubConfig
from qrad_agent.sensing.hub import SensorHub
from qrad_agent.sensing.plausibility import RateGuard, guard_rate, vote
from qrad_drivers.base import ChannelSpec, Driver, DriverConfig, DriverContext, DriverError, Quality, Reading
from qrad_hwsim.virtual_time import run_virtual


class ScriptConfig(DriverConfig):
    type: Literal["script"] = "script"


class ScriptedDriver(Driver):
    """A device at the driver seam whose behaviour the test scripts: values, hangs, lost links."""

    type_name = "script"
    config_model = ScriptConfig
    nominal_period_s = 10.0

    def __init__(self, name: str, values: list[float | str]) -> None:
        self.values = list(values)
        self.opens = 0
        self.reads = 0
        super().__init__(ScriptConfig(name=name, timeout_s=2.0), DriverContext())

    def declare_channels(self) -> tuple[ChannelSpec, ...]:
        return (ChannelSpec(self.cfg.name, "temperature", "°C", -20, 60, self.period_s),)

    async def open(self) -> None:
        self.opens += 1

    async def read(self, t_s: float) -> list[Reading]:
        self.reads += 1
        value = self.values.pop(0) if len(self.values) > 1 else self.values[0]
        if value == "hang":
            await asyncio.Event().wait()
        if value == "lost":
            raise DriverError("port vanished")
        return [Reading(self.cfg.name, float(value), "°C", t_s)]


def _run(hub: SensorHub, seconds: float) -> None:
    async def scenario() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(scenario())


def test_a_hung_driver_delays_nobody_and_is_reconnected() -> None:
    healthy = ScriptedDriver("healthy", [20.0])
    hung = ScriptedDriver("hung", ["hang"])
    hub = SensorHub([healthy, hung], Clock(), SensorHubConfig(backoff_initial_s=1.0, backoff_max_s=8.0))
    _run(hub, 300)
    assert healthy.reads >= 30  # every 10 s for 300 s, never held up
    assert hub.latest["hung"].quality is Quality.FAULT and "no answer within 2 s" in hub.latest["hung"].reason
    assert hung.opens >= 3  # three timeouts -> close, back off, reopen
    assert hub.health["hung"].reconnects >= 2


def test_lost_link_backs_off_exponentially() -> None:
    lost = ScriptedDriver("lost", ["lost"])
    hub = SensorHub([lost], Clock(), SensorHubConfig(backoff_initial_s=1.0, backoff_max_s=60.0))
    _run(hub, 200)
    # 1+2+4+8+16+32+60+60 s of backoff (jittered 50-100 %) fit in 200 s: a handful of opens, not 200
    assert 5 <= lost.opens <= 12
    assert hub.latest["lost"].quality is Quality.FAULT and "port vanished" in hub.latest["lost"].reason


def test_recovery_after_fault() -> None:
    flaky = ScriptedDriver("flaky", ["lost", 21.0])
    hub = SensorHub([flaky], Clock(), SensorHubConfig(backoff_initial_s=1.0))
    _run(hub, 60)
    assert hub.latest["flaky"].ok and hub.latest["flaky"].value == 21.0


def test_spike_is_flagged_and_a_real_step_accepted_after() -> None:
    a = Reading("t", 20.0, "°C", 0.0)
    guard = RateGuard()
    guard_rate(guard, a, max_rate_per_s=1.0, floor=1.0)
    spike = guard_rate(guard, Reading("t", 45.0, "°C", 10.0), max_rate_per_s=1.0, floor=1.0)
    assert spike.quality is Quality.FAULT and "spike" in spike.reason
    guard = RateGuard()
    guard_rate(guard, a, max_rate_per_s=1.0, floor=1.0)
    slow = guard_rate(guard, Reading("t", 25.0, "°C", 10.0), max_rate_per_s=1.0, floor=1.0)
    assert slow.ok  # 5 K in 10 s is within 1 K/s


def test_redundant_room_temperatures_vote_out_a_drifting_sensor() -> None:
    readings = [Reading("sht", 23.5, "°C", 0), Reading("ds", 20.1, "°C", 0), Reading("bme", 20.3, "°C", 0)]
    kept, notes = vote(readings, tolerance=1.5)
    assert [r.channel for r in kept] == ["ds", "bme"]
    assert "sht" in notes[0] and "median" in notes[0]
    kept, notes = vote(readings[:2], tolerance=1.5)
    assert len(kept) == 2 and "disagree" in notes[0]


def test_thermostat_falls_back_when_the_preferred_sensor_fails() -> None:
    preferred = ScriptedDriver("sht", ["lost"])
    backup = ScriptedDriver("ds", [20.5])
    hub = SensorHub([preferred, backup], Clock(), SensorHubConfig())
    seen = {}

    async def scenario() -> None:
        task = asyncio.create_task(hub.run())
        await asyncio.sleep(30)
        seen["choice"] = hub.best(["sht", "ds"], stale_after_s=300)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run_virtual(scenario())
    assert seen["choice"].reading is not None and seen["choice"].reading.channel == "ds"


def test_quality_changes_are_warnings_except_a_first_not_yet_complete_reading() -> None:
    driver = ScriptedDriver("mic", [40.0])
    hub = SensorHub([driver], Clock(loop_start_s=0.0))

    def store(quality: Quality, reason: str = "") -> list[str]:
        with capture_logs() as logs:
            hub.store([Reading("mic", 40.0, "°C", 0.0, quality, reason)])
        return [e["log_level"] for e in logs if e["event"] == "channel quality"]

    assert store(Quality.STALE, "no complete period yet") == ["info"]  # start-up
    assert store(Quality.STALE, "no complete period yet") == []  # logged once per change
    assert store(Quality.OK) == ["info"]
    assert store(Quality.STALE, "stuck") == ["warning"]
    assert store(Quality.FAULT, "port vanished") == ["warning"]

    other = SensorHub([ScriptedDriver("probe", [20.0])], Clock(loop_start_s=0.0))
    with capture_logs() as logs:
        other.store([Reading("probe", float("nan"), "°C", 0.0, Quality.FAULT, "file missing")])
    assert [e["log_level"] for e in logs] == ["warning"]  # a first reading that is a fault is a warning


def _room_hub() -> SensorHub:
    drivers = [ScriptedDriver(name, [20.0]) for name in ("sht", "ds", "bme")]
    return SensorHub(drivers, Clock(), SensorHubConfig(), room_channels=["sht", "ds", "bme"])


def test_a_room_sensor_frozen_while_the_redundant_ones_move_is_stale() -> None:
    hub = _room_hub()
    for k in range(200):  # 10 s apart: the room warms 0.005 K a sample, 1 K over 33 min; "ds" holds still
        t_s = 10.0 * k
        hub.store([Reading("sht", 20.0 + 0.005 * k, "°C", t_s), Reading("ds", 20.0625, "°C", t_s),
                   Reading("bme", 20.01 + 0.005 * k, "°C", t_s)])
    ds = hub.channels["ds"].latest
    assert ds is not None and ds.quality is Quality.STALE and "while bme moved by" in ds.reason
    assert hub.channels["sht"].latest.ok and hub.channels["bme"].latest.ok


def test_a_steady_room_keeps_every_constant_sensor_ok() -> None:
    hub = _room_hub()
    for k in range(400):  # a regulated room: noise of 0.02 K around a constant, one sensor at its 1/16 K step
        t_s = 10.0 * k
        hub.store([Reading("sht", 20.0 + 0.02 * (k % 3), "°C", t_s), Reading("ds", 20.0625, "°C", t_s),
                   Reading("bme", 40.0 / 2, "°C", t_s)])
    assert all(hub.channels[n].latest.ok for n in ("sht", "ds", "bme"))


def test_the_choice_says_why_the_preferred_channels_were_passed_over() -> None:
    hub = _room_hub()

    async def choose():
        now_s = hub.clock.monotonic()
        hub.store([Reading("sht", 20.0, "°C", now_s, Quality.FAULT, "bad CRC"),
                   Reading("ds", 20.1, "°C", now_s), Reading("bme", 20.2, "°C", now_s)])
        return hub.best(["sht", "ds", "bme"], stale_after_s=300)

    choice = asyncio.run(choose())
    assert choice.reading is not None and choice.reading.channel == "ds"
    assert choice.skipped == ("sht: fault: bad CRC",)
