"""The safety layer: one path to the safe state, checked on its own task, owed nothing by anyone.

`enter_safe_state(reason)` forces compute power to its minimum synchronously, through the power manager's
`force_minimum`, without awaiting anything. The layer's own loop re-asserts the minimum while a condition
holds and watches what must not go wrong: the control loop's heartbeat (a hung thermostat must not leave
the boards at full power) and CPU package temperatures (hwmon coretemp, m°C). A CPU over its limit is
latched like the heater's other thermal faults (heater firmware's MAXTEMP): cooling that lets it happen has
failed, and clearing it when the CPUs cool at minimum power would cycle a heater with dead fans between
its floor and the limit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from qrad_agent.clock import Clock
from qrad_agent.config import SafetyConfig
from qrad_agent.power.manager import PowerManager
from qrad_drivers.hwmon import find_hwmon

log = structlog.get_logger(component="safety")


def _label(input_path) -> str:
    label = input_path.with_name(input_path.name.replace("_input", "_label"))
    try:
        return label.read_text().strip()
    except OSError:
        return ""


class SafetyLayer:
    """Holds the active safety conditions; while any is active, compute power stays at its minimum."""

    LATCHED = ("fire_alarm", "surface_overtemperature", "sensor_invalid", "no_response",
               "response_without_power", "cpu_overtemperature")
    """Conditions that stay until a technician or an authorised command resets them."""

    def __init__(self, cfg: SafetyConfig, power: PowerManager, clock: Clock, heartbeat_timeout_s: float) -> None:
        self.cfg = cfg
        self.checks: list = []  # extra checks: callables(t_s) -> {condition: reason}, e.g. thermal protection
        self.power = power
        self.clock = clock
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.conditions: dict[str, str] = {}
        self._heartbeat_s: float | None = None
        self._cpu_inputs = self._find_cpu_temps()

    @property
    def forced(self) -> bool:
        """True while compute power is held at its minimum by a safety condition."""
        return bool(self.conditions)

    def enter_safe_state(self, condition: str, reason: str) -> None:
        """Force minimum power now and hold it while ``condition`` is active. Never raises."""
        if self.conditions.get(condition) != reason:
            log.error("safe state", condition=condition, reason=reason)
        self.conditions[condition] = reason
        self.power.force_minimum(f"{condition}: {reason}")

    def alarm_output_path(self) -> Path | None:
        """The sysfs ``value`` file of the alarm output line, or None when none is configured."""
        line = self.cfg.alarm_gpio_line
        return None if line is None else self.power.cfg.sysfs_root / "class" / "gpio" / f"gpio{line}" / "value"

    def alarm_output(self, on: bool) -> bool | None:
        """Drive the local alarm line (a GPIO output: relay, buzzer, LED) if one is configured. Never raises.
        Returns None without a line, else whether the write succeeded."""
        path = self.alarm_output_path()
        if path is None:
            return None
        try:
            path.write_text("1" if on else "0")
            return True
        except OSError as exc:
            log.error("alarm output write failed", path=str(path), error=str(exc))
            return False

    def clear(self, condition: str) -> None:
        """End ``condition``; the thermostat takes over again when no condition is left."""
        if self.conditions.pop(condition, None) is not None:
            log.warning("safety condition cleared", condition=condition, remaining=sorted(self.conditions))

    def heartbeat(self, t_s: float) -> None:
        """Called by the control loop each period: proof that it is alive."""
        self._heartbeat_s = t_s

    def check(self) -> None:
        """Evaluate every condition once."""
        now_s = self.clock.monotonic()
        if self._heartbeat_s is None:
            self._heartbeat_s = now_s  # the control loop gets a full timeout to start
        if now_s - self._heartbeat_s > self.heartbeat_timeout_s:
            self.enter_safe_state("control_heartbeat",
                                  f"control loop silent for {now_s - self._heartbeat_s:.0f} s")
        else:
            self.clear("control_heartbeat")
        self._check_cpu_temps()
        for extra in self.checks:
            try:
                found = extra(now_s)
            except Exception as exc:  # a broken check must not stop the others; it is itself unsafe
                log.exception("safety check failed")
                found = {"safety_check_error": f"{getattr(extra, '__name__', extra)}: {exc!r}"}
            for condition, reason in found.items():
                self.enter_safe_state(condition, reason)
        if self.conditions:
            self.power.force_minimum("; ".join(f"{c}: {r}" for c, r in self.conditions.items()))

    def _find_cpu_temps(self) -> list:
        """coretemp inputs to watch: the "Package id N" channels where labelled, else every input."""
        root = self.power.cfg.sysfs_root
        inputs, index = [], 0
        while (device := find_hwmon(root, "coretemp", index)) is not None:
            channels = sorted(device.glob("temp*_input"))
            packages = [c for c in channels if _label(c).startswith("Package")]
            inputs += packages or channels
            index += 1
        return inputs

    def _check_cpu_temps(self) -> None:
        hottest_c = None
        for path in self._cpu_inputs:
            try:
                value_c = int(path.read_text()) / 1000
            except (OSError, ValueError):
                continue
            hottest_c = value_c if hottest_c is None else max(hottest_c, value_c)
        if hottest_c is None:
            return
        if hottest_c > self.cfg.cpu_temp_max_c:
            self.enter_safe_state("cpu_overtemperature",
                                  f"CPU package at {hottest_c:.1f} °C > {self.cfg.cpu_temp_max_c} °C")

    async def run(self) -> None:
        """Check every ``check_period_s`` until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self.cfg.check_period_s)

    def status(self) -> dict:
        """Plain-JSON status: active conditions and their reasons."""
        return {"forced_minimum": self.forced, "conditions": dict(self.conditions)}
