"""Heater thermal protection beside fire detection, as heater firmware has it (Klipper verify_heater).

``ThermalProtection.update(t_s, power_w, surface_c, surface_t_s, cpu_c, room_c, commanded_w)`` returns the
faults found now, each a ``(condition, reason)`` for ``SafetyLayer.enter_safe_state``. ``power_w`` is the
measured power, an average over the last measuring interval, so it lags a change; ``commanded_w``, when
given, is what the power stage was told now: power counts as applied only when both say so, and as absent
only when both do (a panel that warms as the power comes on is not "warming without power"). Checks and
their worst-case times, from the moment the condition exists:
    surface_overtemperature  heater surface above ``surface_max_c``           next sample
    cpu_overtemperature      CPU above ``cpu_max_c``                           next sample
    sensor_invalid           surface reading missing, a sentinel (DS18B20 85.0 power-on, -127, NaN) or
                             older than ``stale_after_s`` for ``invalid_fault_s``   invalid_fault_s
    no_response              power >= ``gain_power_w`` held ``gain_time_s`` but the surface rose less
                             than ``gain_k`` and is not ``gain_settled_k`` above the room (sensor off the
                             heater, or fans lost and the power goes elsewhere)     gain_time_s
    response_without_power   power <= ``idle_power_w`` and the surface rose ``unpowered_rise_k`` above
                             its lowest point of the last ``unpowered_time_s`` (a misplaced sensor, or
                             power we do not measure)     as soon as the rise completes, <= unpowered_time_s
                             for any rise faster than unpowered_rise_k / unpowered_time_s
Faults latch: a technician resets with ``reset()``. Pure and time-injected. In the agent
(fire_response.thermal_check) the safety layer runs it every ``safety.check_period_s`` on the hub's
``safety.surface_channel``; the CPU limit is the safety layer's own coretemp check (``safety.cpu_temp_max_c``,
latched too). tests/fire/test_thermal_protection_hil.py injects each fault in hw-sim and times it.
"""

from __future__ import annotations

import math
from collections import deque

from qrad_agent.fire.config import ThermalProtectionConfig

SENTINELS_C = (85.0, -127.0, -273.15)


class ThermalProtection:
    """Checks over time; a found fault is kept (latched) until ``reset``."""

    def __init__(self, cfg: ThermalProtectionConfig) -> None:
        self.cfg = cfg
        self.faults: dict[str, str] = {}
        self._invalid_since: float | None = None
        self._powered_since: tuple[float, float] | None = None  # (t, surface at start)
        self._unpowered: deque[tuple[float, float]] = deque()  # (t, surface) while idle, last window

    def update(self, t_s: float, power_w: float | None, surface_c: float | None, surface_t_s: float | None,
               cpu_c: float | None = None, room_c: float | None = None,
               commanded_w: float | None = None) -> dict[str, str]:
        """Evaluate once; returns the faults newly found now (condition -> reason)."""
        new: dict[str, str] = {}
        c = self.cfg
        valid = self._valid(t_s, surface_c, surface_t_s)
        if cpu_c is not None and math.isfinite(cpu_c) and cpu_c > c.cpu_max_c:
            new["cpu_overtemperature"] = f"CPU at {cpu_c:.1f} °C > {c.cpu_max_c} °C"
        if not valid:
            self._invalid_since = t_s if self._invalid_since is None else self._invalid_since
            self._powered_since = None
            self._unpowered.clear()
            if t_s - self._invalid_since >= c.invalid_fault_s:
                new["sensor_invalid"] = f"heater surface reading invalid ({surface_c!r}) for " \
                                        f"{t_s - self._invalid_since:.0f} s"
        else:
            assert surface_c is not None
            self._invalid_since = None
            if surface_c > c.surface_max_c:
                new["surface_overtemperature"] = f"heater surface at {surface_c:.1f} °C > {c.surface_max_c} °C"
            if power_w is not None and math.isfinite(power_w):
                low, high = power_w, power_w
                if commanded_w is not None and math.isfinite(commanded_w):
                    low, high = min(power_w, commanded_w), max(power_w, commanded_w)
                new.update(self._response(t_s, (low, high), surface_c, room_c))
        fresh = {k: v for k, v in new.items() if k not in self.faults}
        self.faults.update(new)
        return fresh

    def _valid(self, t_s: float, surface_c: float | None, surface_t_s: float | None) -> bool:
        if surface_c is None or not math.isfinite(surface_c) or surface_c in SENTINELS_C:
            return False
        return surface_t_s is not None and t_s - surface_t_s <= self.cfg.stale_after_s

    def _response(self, t_s: float, power: tuple[float, float], surface_c: float,
                  room_c: float | None) -> dict[str, str]:
        c, out = self.cfg, {}
        power_w, high_w = power  # the lower and the higher of measured and commanded power
        if power_w >= c.gain_power_w:
            self._unpowered.clear()
            if self._powered_since is None:
                self._powered_since = (t_s, surface_c)
            t0, s0 = self._powered_since
            settled = room_c is not None and surface_c - room_c >= c.gain_settled_k
            if settled or surface_c - s0 >= c.gain_k:
                self._powered_since = (t_s, surface_c)  # it responds: restart the watch from here
            elif t_s - t0 >= c.gain_time_s:
                out["no_response"] = f"{power_w:.0f} W applied for {t_s - t0:.0f} s but the surface rose " \
                                     f"{surface_c - s0:.1f} K < {c.gain_k} K"
        elif high_w <= c.idle_power_w:
            power_w = high_w
            self._powered_since = None
            window = self._unpowered
            window.append((t_s, surface_c))
            while t_s - window[0][0] > c.unpowered_time_s:
                window.popleft()
            t0, low = min(window, key=lambda x: x[1])
            if surface_c - low >= c.unpowered_rise_k:
                out["response_without_power"] = f"surface rose {surface_c - low:.1f} K in {t_s - t0:.0f} s " \
                                                f"at {power_w:.0f} W"
        else:
            self._powered_since = None
            self._unpowered.clear()
        return out

    def reset(self) -> None:
        """A technician cleared the faults."""
        self.faults.clear()
        self._invalid_since = self._powered_since = None
        self._unpowered.clear()

    def status(self) -> dict:
        return {"faults": dict(self.faults)}
