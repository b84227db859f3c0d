"""The sensor hub: every driver on its own task, latest reading and short history per channel, health.

Each driver is polled at its period by its own task, so a slow or hung driver delays nobody else: a read
is bounded by the driver's ``timeout_s``; repeated timeouts or a lost transport (DriverError) close the
driver and reopen it after a jittered exponential backoff. Every failure becomes FAULT readings with the
reason, never an exception out of the hub. On top of the drivers' range checks the hub flags spikes (rate
of change against the last accepted reading; a level reached too fast stays FAULT until a redundant room
sensor or a physically possible path confirms it: plausibility.guard_rate) and votes out a redundant room
temperature that disagrees with the others.

Reads are bounded with ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11, wait_for can
swallow a cancellation that arrives as the read completes (CPython gh-86296), and the hub would then never
stop.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from itertools import pairwise
from dataclasses import dataclass, field, replace

import structlog
from qrad_drivers.base import Driver, DriverError, Quality, Reading, fault

from qrad_agent.clock import Clock
from qrad_agent.config import SensorHubConfig
from qrad_agent.sensing.plausibility import RateGuard, guard_rate, vote

log = structlog.get_logger(component="sensors")


@dataclass(frozen=True)
class Choice:
    """The reading chosen for a role, or None with the reason nothing usable was found.

    ``skipped``: why each channel preferred to the chosen one was passed over (why the choice switched)."""

    reading: Reading | None
    reason: str
    notes: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()  # why each channel not used was unusable ("name: why")


@dataclass
class DriverHealth:
    """Connection state of one driver, for status and diagnostics."""

    state: str = "connecting"  # connecting | open | backoff
    consecutive_failures: int = 0
    reconnects: int = 0
    last_error: str = ""


@dataclass
class ChannelState:
    """Latest reading and history of one channel."""

    latest: Reading | None = None
    history: deque[Reading] = field(default_factory=deque)


class SensorHub:
    """Polls ``drivers``; `best` picks the room temperature; `status` reports every channel and driver."""

    def __init__(self, drivers: list[Driver], clock: Clock, cfg: SensorHubConfig | None = None,
                 room_channels: list[str] | None = None) -> None:
        self.cfg = cfg or SensorHubConfig()
        self.room_channels = set(room_channels or [])
        self.clock = clock
        self.drivers = {d.cfg.name: d for d in drivers}
        self.specs = {spec.name: spec for d in drivers for spec in d.channels}
        self.channels = {name: ChannelState(history=deque(maxlen=self.cfg.history_len)) for name in self.specs}
        self.health = {name: DriverHealth() for name in self.drivers}
        self._reported: dict[str, Quality] = {}
        self._guards = {name: RateGuard() for name in self.specs}
        self._period_s = {spec.name: d.period_s for d in drivers for spec in d.channels}
        self._rng = random.Random()

    @property
    def latest(self) -> dict[str, Reading]:
        """Latest reading per channel that has one."""
        return {n: c.latest for n, c in self.channels.items() if c.latest is not None}

    def driver(self, name: str) -> Driver:
        """The driver of device ``name`` (e.g. to subscribe to the microphone stream)."""
        return self.drivers[name]

    async def run(self) -> None:
        """Poll every driver until cancelled."""
        async with asyncio.TaskGroup() as group:
            for name, driver in self.drivers.items():
                group.create_task(self._drive(driver), name=f"sensor:{name}")

    async def _drive(self, driver: Driver) -> None:
        health = self.health[driver.cfg.name]
        backoff_s = self.cfg.backoff_initial_s
        while True:
            if await self._open(driver, health):
                if await self._poll_until_lost(driver, health):  # it worked for a while: start over
                    backoff_s = self.cfg.backoff_initial_s
                await self._close(driver)
                health.reconnects += 1
            health.state = "backoff"
            await asyncio.sleep(backoff_s * self._rng.uniform(0.5, 1.0))
            backoff_s = min(self.cfg.backoff_max_s, backoff_s * 2)
            health.state = "connecting"

    async def _open(self, driver: Driver, health: DriverHealth) -> bool:
        try:
            async with asyncio.timeout(driver.cfg.timeout_s):
                await driver.open()
        except (DriverError, TimeoutError) as exc:
            self._fail(driver, health, f"open failed: {exc or 'timeout'}")
            return False
        except Exception as exc:  # a driver bug must not take the hub down; it is logged with its traceback
            log.exception("driver crashed in open", device=driver.cfg.name)
            self._fail(driver, health, f"driver error in open: {exc!r}")
            return False
        health.state = "open"
        return True

    async def _poll_until_lost(self, driver: Driver, health: DriverHealth) -> bool:
        """Poll until the driver is lost; True if at least one read succeeded before that."""
        loop = asyncio.get_running_loop()
        next_s = loop.time()
        timeouts = 0
        succeeded = False
        while True:
            t_s = self.clock.monotonic()
            try:
                async with asyncio.timeout(driver.cfg.timeout_s):
                    readings = await driver.read(t_s)
            except TimeoutError:
                timeouts += 1
                self._fail(driver, health, f"no answer within {driver.cfg.timeout_s:g} s")
                if timeouts >= self.cfg.timeouts_before_reconnect:
                    return succeeded
            except DriverError as exc:
                self._fail(driver, health, f"lost: {exc}")
                return succeeded
            except Exception as exc:
                log.exception("driver crashed in read", device=driver.cfg.name)
                self._fail(driver, health, f"driver error: {exc!r}")
                return succeeded
            else:
                timeouts = 0
                succeeded = True
                self.store(readings)
                health.consecutive_failures = 0 if all(r.ok for r in readings) else health.consecutive_failures + 1
            next_s += driver.period_s
            now_s = loop.time()
            next_s = max(next_s, now_s)
            await asyncio.sleep(next_s - now_s)

    async def _close(self, driver: Driver) -> None:
        try:
            async with asyncio.timeout(driver.cfg.timeout_s):
                await driver.close()
        except Exception:  # close never raises by contract; a broken one is logged and forgotten
            log.exception("driver close failed", device=driver.cfg.name)

    def _fail(self, driver: Driver, health: DriverHealth, reason: str) -> None:
        health.consecutive_failures += 1
        health.last_error = reason
        self.store([fault(spec, self.clock.monotonic(), reason) for spec in driver.channels])

    def store(self, readings: list[Reading]) -> None:
        """Check and keep ``readings``; quality changes are logged once per change."""
        for reading in readings:
            state = self.channels.get(reading.channel)
            if state is None:
                continue
            quantity = self.specs[reading.channel].quantity
            if quantity != "temperature" or reading.channel in self.room_channels:
                # Room air changes slowly; CPU, outlet and surface temperatures follow power within seconds.
                reading = self._check_rate(reading, quantity)
            if reading.ok and reading.channel in self.room_channels and self.cfg.frozen_vs_redundant_s > 0:
                reading = self._frozen_among_redundant(state, reading)
            state.latest = reading
            state.history.append(reading)
            if self._reported.get(reading.channel) is not reading.quality:
                first = reading.channel not in self._reported
                self._reported[reading.channel] = reading.quality
                # A channel whose first reading is STALE has no complete sample yet (an audio level before its
                # first full period): a normal start, logged at info. Any later loss of quality is a warning.
                routine = reading.quality is Quality.OK or (first and reading.quality is Quality.STALE)
                level = log.info if routine else log.warning
                level("channel quality", channel=reading.channel, quality=reading.quality.value,
                      reason=reading.reason)

    def _frozen_among_redundant(self, state: ChannelState, reading: Reading) -> Reading:
        """``reading``, STALE when its channel has held this value for at least ``frozen_vs_redundant_s``
        while another room channel moved, over the same time, by ``frozen_move_k`` or more (and by three of
        this channel's own steps, so a coarse sensor is not blamed for its resolution).

        The peer's move is the range of its running mean over ``PEER_SMOOTHING`` samples: the noise of one
        sample does not count as a move (a steady room whose sensors jitter never makes a constant one
        stale), a real move of the room does, as soon as it is there."""
        since_s = reading.t_s
        for past in reversed(state.history):
            if past.quality not in (Quality.OK, Quality.STALE) or past.value != reading.value:
                break
            since_s = past.t_s
        held_s = reading.t_s - since_s
        if held_s < self.cfg.frozen_vs_redundant_s:
            return reading
        threshold_k = max(self.cfg.frozen_move_k, 3 * (observed_step(state.history) or 0.0))
        for name in sorted(self.room_channels - {reading.channel}):
            other = self.channels.get(name)
            values = [] if other is None else [r.value for r in other.history if r.ok and r.t_s >= since_s]
            moved_k = smoothed_range(values, PEER_SMOOTHING) if len(values) >= MIN_STEPS_SEEN else 0.0
            if moved_k >= threshold_k:
                reason = (f"unchanged at {reading.value:g} {reading.unit} for {held_s:.0f} s while {name} "
                          f"moved by {moved_k:.2f} {reading.unit}")
                return replace(reading, quality=Quality.STALE, reason=reason)
        return reading

    def _check_rate(self, reading: Reading, quantity: str) -> Reading:
        """The rate check (plausibility.guard_rate) against the channel's last accepted reading; a jump a
        redundant room sensor also shows is confirmed by it."""
        return guard_rate(self._guards[reading.channel], reading, self.cfg.max_rate_per_s.get(quantity),
                          self.cfg.spike_floor.get(quantity, 0.0), self._confirming_peer(reading))

    def _confirming_peer(self, reading: Reading) -> str | None:
        """A redundant room channel whose last sample (accepted or held, within two of its periods) reads
        within the redundancy tolerance of ``reading``; None if there is none or this is not a room channel."""
        if reading.channel not in self.room_channels or not reading.ok:
            return None
        for name in sorted(self.room_channels - {reading.channel}):
            guard = self._guards.get(name)
            last = guard.last if guard is not None else None
            if last is None or reading.t_s - last.t_s > 2 * self._period_s.get(name, 0.0):
                continue
            if abs(last.value - reading.value) <= self.cfg.redundancy_tolerance_k:
                return name
        return None

    def best(self, names: list[str], stale_after_s: float) -> Choice:
        """The first of ``names`` with a fresh, OK reading that agrees with the other redundant sensors."""
        now_s = self.clock.monotonic()
        reasons: dict[str, str] = {}
        fresh: list[Reading] = []
        for name in names:
            state = self.channels.get(name)
            reading = state.latest if state else None
            if reading is None:
                reasons[name] = f"{name}: no reading yet"
            elif not reading.ok:
                reasons[name] = f"{name}: {reading.quality.value}: {reading.reason}"
            elif now_s - reading.t_s > stale_after_s:
                reasons[name] = f"{name}: last reading {now_s - reading.t_s:.0f} s old"
            else:
                fresh.append(reading)
        kept, notes = vote(fresh, self.cfg.redundancy_tolerance_k)
        if kept:
            voted_out = {r.channel for r in fresh if r not in kept}
            before = names[:names.index(kept[0].channel)]
            skipped = [reasons.get(n, f"{n}: voted out") for n in before
                       if n in reasons or n in voted_out]
            return Choice(kept[0], "", tuple(notes), tuple(skipped))
        return Choice(None, "; ".join([*reasons.values(), *notes]), tuple(notes), tuple(reasons.values()))

    def status(self) -> dict:
        """Plain-JSON channels (value, unit, quality, reason, age s, step: the smallest change seen between
        successive readings, None before any) and drivers (state, failures)."""
        now_s = self.clock.monotonic()
        channels = {}
        for name, state in self.channels.items():
            r = state.latest
            channels[name] = {"unit": self.specs[name].unit, "quantity": self.specs[name].quantity,
                              "value": None if r is None or r.value != r.value else r.value,
                              "quality": None if r is None else r.quality.value,
                              "reason": "" if r is None else r.reason,
                              "age_s": None if r is None else round(now_s - r.t_s, 3),
                              "step": observed_step(state.history)}
        drivers = {name: {"type": d.type_name, "period_s": d.period_s, **vars(self.health[name])}
                   for name, d in self.drivers.items()}
        return {"channels": channels, "drivers": drivers}


def observed_step(history: deque[Reading]) -> float | None:
    """The smallest non-zero change between successive OK readings (the channel's effective resolution in
    its unit: 1 °C for coretemp, 0.0625 °C for a DS18B20), None until ``MIN_STEPS_SEEN`` changes were seen."""
    values = [r.value for r in history if r.ok and r.value == r.value]
    steps = [abs(b - a) for a, b in pairwise(values) if b != a]
    return min(steps) if len(steps) >= MIN_STEPS_SEEN else None


MIN_STEPS_SEEN = 5
"""Changes a channel must show before its smallest one is taken as its resolution."""
PEER_SMOOTHING = 3
"""Samples of a redundant peer averaged before its move is measured (the frozen-sensor check): a mean of 3
has 0.58 of one sample's noise, and lags a real move by one sample (10 s at the usual period)."""


def smoothed_range(values: list[float], n: int) -> float:
    """Largest minus smallest of the running means of ``n`` successive ``values`` (their plain range when
    fewer than ``n``); 0.0 for none. Units: the values'."""
    if not values:
        return 0.0
    if len(values) < n:
        return max(values) - min(values)
    means = [sum(values[i:i + n]) / n for i in range(len(values) - n + 1)]
    return max(means) - min(means)
