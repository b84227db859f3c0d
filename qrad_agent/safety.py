"""The safety layer: one path to the safe state, checked on its own task, owed nothing by anyone.

`enter_safe_state(condition, reason)` forces compute power to its minimum synchronously, through the power
manager's `force_minimum`, without awaiting anything, and only then records and logs. The conditions live
in the `SafetyState` the power manager refuses by: while any holds, no demand above the floor is written,
whoever asks. The layer's own loop watches what must not go wrong: the control loop's heartbeat (a hung
thermostat must not leave the boards at full power), CPU package temperatures (hwmon coretemp, m°C), the
fans' tachometers, and the extra checks the agent registers (thermal protection).

Latched conditions (see `qrad_agent.power.authority.LATCHED`) survive a restart and are reset only by a
technician or an authorised command, and only once their cause is gone: a CPU over its limit must have
cooled by ``CPU_RESET_MARGIN_K``; dead fans are given a bounded proof: power may rise again, but only up to
``fan_proof_w``, until every fan has turned under power for ``fan_grace_s``; a fan still below its minimum
then latches again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from qrad_agent.clock import Clock
from qrad_agent.config import SafetyConfig
from qrad_agent.errors import ResetRefused
from qrad_agent.power.authority import LATCHED, SafetyState
from qrad_agent.power.manager import PowerManager
from qrad_drivers.hwmon import find_hwmon

log = structlog.get_logger(component="safety")

CPU_RESET_MARGIN_K = 10.0
"""A CPU over-temperature latch resets only once the hottest package is this far below its limit (K), the
hysteresis of heater firmware's MAXTEMP recovery (chosen)."""

SafetyCheck = Callable[[float], dict[str, str]]
"""An extra check: loop time (s) -> {condition: reason} found now."""
FanReadings = Callable[[], dict[str, float | None]]
"""The fans' tachometers now: channel -> RPM, None when there is no valid reading."""


def _label(input_path: Path) -> str:
    label = input_path.with_name(input_path.name.replace("_input", "_label"))
    try:
        return label.read_text().strip()
    except OSError:
        return ""


class SafetyLayer:
    """Holds and checks the safety conditions; while any is active, compute power stays at its minimum."""

    LATCHED = LATCHED
    """Conditions that stay until a technician or an authorised command resets them."""

    def __init__(self, cfg: SafetyConfig, power: PowerManager, clock: Clock, heartbeat_timeout_s: float,
                 fans: FanReadings | None = None) -> None:
        self.cfg = cfg
        self.checks: list[SafetyCheck] = []  # extra checks, e.g. thermal protection
        self.power = power
        self.clock = clock
        self.state: SafetyState = power.safety_state
        self.state.heartbeat_timeout_s = heartbeat_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.fans = fans
        self._fan_low_since_s: dict[str, float] = {}
        self._fan_proving = False
        self._fans_ok_since_s: float | None = None
        self._hottest_cpu_c: float | None = None
        self._cpu_inputs = self._find_cpu_temps()
        if self.state.conditions:  # latched before a restart: the floor from the first instant
            self.power.force_minimum(self.state.refusal() or "latched")

    @property
    def conditions(self) -> dict[str, str]:
        """Active conditions: name -> reason (the power manager refuses while any is active)."""
        return self.state.conditions

    @property
    def forced(self) -> bool:
        """True while compute power is held at its minimum by a safety condition."""
        return bool(self.state.conditions)

    def enter_safe_state(self, condition: str, reason: str) -> None:
        """Force minimum power now and hold it while ``condition`` is active. Never raises; acts, then logs."""
        self.power.force_minimum(f"{condition}: {reason}")
        if self.state.hold(condition, reason):
            log.error("safe state", condition=condition, reason=reason)

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
        if self.state.release(condition):
            log.warning("safety condition cleared", condition=condition, remaining=sorted(self.conditions))

    def cause_still_present(self, condition: str) -> str | None:
        """Why a latched ``condition`` may not be reset now, or None when its cause is gone."""
        if condition == "fan_failure":  # its proof spins the fans up under power: nothing else may hold the floor
            others = sorted(c for c in self.conditions if c != "fan_failure")
            if others:
                return (f"its proof (a spin-up at {self.cfg.fan_proof_w:g} W) needs power above the floor, held "
                        f"there now by {', '.join(others)}: clear {'that' if len(others) == 1 else 'those'} first")
        if condition == "cpu_overtemperature":
            hottest = self._read_hottest_cpu_c()
            limit = self.cfg.cpu_temp_max_c - CPU_RESET_MARGIN_K
            if hottest is not None and hottest > limit:
                return f"CPU package still at {hottest:.1f} °C (reset below {limit:.1f} °C)"
        if condition == "surface_overtemperature":
            for check in self.checks:
                found = _quiet(check, self.clock.monotonic())
                if condition in found:
                    return found[condition]
        return None

    def reset(self, condition: str) -> bool:
        """Reset a latched ``condition``. False when it is not latched now; raises ResetRefused naming what
        still holds when its cause is present. Dead fans get a bounded proof instead of trust."""
        if condition not in self.LATCHED or condition not in self.conditions:
            return False
        still = self.cause_still_present(condition)
        if still is not None:
            raise ResetRefused(f"{condition} still holds: {still}")
        for check in self.checks:  # a check with its own latch (thermal protection) starts afresh
            protection = getattr(check, "protection", None)
            if protection is not None:
                protection.reset()
        if condition == "fan_failure":
            self._fan_proving, self._fans_ok_since_s = True, None
            self.state.ceiling_w = self.cfg.fan_proof_w
            self._fan_low_since_s.clear()
        self.clear(condition)
        return True

    def heartbeat(self, t_s: float) -> None:
        """Called by the control loop each period: proof that it is alive."""
        self.state.heartbeat(t_s)

    def check(self) -> None:
        """Evaluate every condition once."""
        now_s = self.clock.monotonic()
        age_s = self.state.heartbeat_age_s(now_s)
        if age_s > self.heartbeat_timeout_s:
            self.enter_safe_state("control_heartbeat", f"control loop silent for {age_s:.0f} s")
        else:
            self.clear("control_heartbeat")
        self._check_cpu_temps()
        self._check_fans(now_s)
        for extra in self.checks:
            for condition, reason in _quiet(extra, now_s).items():
                self.enter_safe_state(condition, reason)
        if self.conditions:
            self.power.force_minimum("; ".join(f"{c}: {r}" for c, r in self.conditions.items()))

    def _find_cpu_temps(self) -> list[Path]:
        """coretemp inputs to watch: the "Package id N" channels where labelled, else every input."""
        root = self.power.cfg.sysfs_root
        inputs: list[Path] = []
        index = 0
        while (device := find_hwmon(root, "coretemp", index)) is not None:
            channels = sorted(device.glob("temp*_input"))
            packages = [c for c in channels if _label(c).startswith("Package")]
            inputs += packages or channels
            index += 1
        return inputs

    def _read_hottest_cpu_c(self) -> float | None:
        hottest_c = None
        for path in self._cpu_inputs:
            try:
                value_c = int(path.read_text()) / 1000
            except (OSError, ValueError):
                continue
            hottest_c = value_c if hottest_c is None else max(hottest_c, value_c)
        return hottest_c

    def _check_cpu_temps(self) -> None:
        hottest_c = self._hottest_cpu_c = self._read_hottest_cpu_c()
        if hottest_c is not None and hottest_c > self.cfg.cpu_temp_max_c:
            self.enter_safe_state("cpu_overtemperature",
                                  f"CPU package at {hottest_c:.1f} °C > {self.cfg.cpu_temp_max_c} °C")

    def _above_floor(self) -> bool:
        """Whether power is commanded above the floor now (the only time a fan must turn)."""
        return self.power.level > 0.0 and self.power.forced_reason is None

    def _check_fans(self, now_s: float) -> None:
        """A fan seen below ``fan_min_rpm`` (or without a valid reading) while power was above the floor, and
        still below it ``fan_grace_s`` later, latches ``fan_failure``. A reset's proof passes (its ceiling
        lifted) once every fan has turned under power for ``fan_grace_s``."""
        if self.fans is None:
            return
        grace_s = self.cfg.fan_grace_s
        readings = _quiet_fans(self.fans)
        under_power = self._above_floor()
        for channel, rpm in readings.items():
            low = rpm is None or rpm < self.cfg.fan_min_rpm
            if not low:
                self._fan_low_since_s.pop(channel, None)
                continue
            if channel not in self._fan_low_since_s:
                # A fan may stop at idle (fan-stop): judged only under power, or while the CPUs overheat
                # (their over-temperature has put power at the floor, and a stopped fan is the likely cause).
                if not (under_power or "cpu_overtemperature" in self.conditions):
                    continue
                self._fan_low_since_s[channel] = now_s
            # Once seen stopped under power, it stays suspect until it turns, even if another condition
            # (the CPUs overheating without it) has meanwhile put power at the floor.
            since_s = self._fan_low_since_s[channel]
            if now_s - since_s >= grace_s:
                shown = "no valid reading" if rpm is None else f"{rpm:.0f} RPM"
                self.enter_safe_state("fan_failure", f"{channel} at {shown} < {self.cfg.fan_min_rpm:.0f} RPM, "
                                                     f"{grace_s:.0f} s after it was seen stopped under power")
        if self._fan_proving:
            self._advance_fan_proof(now_s, under_power and not self._fan_low_since_s)

    def _advance_fan_proof(self, now_s: float, turning_under_power: bool) -> None:
        if "fan_failure" in self.conditions:  # failed again: the latch holds power, the ceiling is moot
            self._fan_proving, self.state.ceiling_w = False, None
            return
        if not turning_under_power:
            self._fans_ok_since_s = None
            return
        if self._fans_ok_since_s is None:
            self._fans_ok_since_s = now_s
        elif now_s - self._fans_ok_since_s >= self.cfg.fan_grace_s:
            self._fan_proving, self.state.ceiling_w = False, None
            log.warning("fans proven after reset", grace_s=self.cfg.fan_grace_s)

    async def run(self) -> None:
        """Check every ``check_period_s`` until cancelled."""
        while True:
            self.check()
            await asyncio.sleep(self.cfg.check_period_s)

    def status(self) -> dict:
        """Plain-JSON status: active conditions and their reasons, latches, heartbeat, latch-file health."""
        return {"forced_minimum": self.forced, **self.state.status()}


def _quiet(check: SafetyCheck, now_s: float) -> dict[str, str]:
    """Run an extra check; a check that raises is itself an unsafe condition (never propagated)."""
    try:
        return check(now_s)
    except Exception as exc:
        return {"safety_check_error": f"{getattr(check, '__name__', check)}: {exc!r}"}


def _quiet_fans(fans: FanReadings) -> dict[str, float | None]:
    try:
        return fans()
    except Exception as exc:
        return {"fan_readings": None} if exc else {}
