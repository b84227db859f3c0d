"""The heater's own board sensors on a hwmon chip (an NCT7802-class monitor): air in, air out, the
radiator's front surface and two fans.

Physics, chosen and stated: the fans move about 0.04 m³/s at full speed (two 120 mm fans), so the outlet
air rises by P / (ρ·c_p·Q) above the inlet (ρ·c_p = 1200 J/(m³·K)); fan speed follows power from 600 to
2000 RPM; the front surface sits 0.06 K/W above the room (30 K at 500 W, a touch-safe radiator panel). The
heater (heater.py) gives the panel's true temperature and its fans' and air path's state when it has them;
a stopped fan or a blocked outlet leaves a natural draught of ``NATURAL_DRAFT_M3_S``.

The surface probe (device "surface" of ``qrad-hwsim fault``) is a sensor glued to the panel, read through
temp3. Its faults are physical (``SURFACE_FAULTS``): "detached" (it fell off the panel and hangs in the room
air: power goes in, the reading does not respond), "misplaced" (it sits against another heat source, a
hot-water pipe whose heating comes on: the reading rises with the heater idle), "sentinel" (a dead probe
behind a w1_therm hwmon bridge shows the DS18B20's 85.000 °C power-on value) and "unplugged" (temp3_input
vanishes, as a hot-unplugged hwmon attribute does). The probe follows what it touches with a time
constant of ``PROBE_TAU_S``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..heater import SURFACE_K_PER_W
from ..hwmon import allocate_hwmon_dir, millidegrees
from ..sysfs_io import PublishedFile, write_files

AIR_RHO_CP_J_M3K = 1200.0
FAN_FLOW_M3_S = 0.04
NATURAL_DRAFT_M3_S = 0.005
FAN_RPM_MIN, FAN_RPM_MAX = 600.0, 2000.0
MAX_POWER_W = 500.0
SURFACE_FAULTS = ("ok", "detached", "misplaced", "sentinel", "unplugged")
PROBE_TAU_S = 20.0
"""A small probe in its clip: time constant to what it touches (s)."""
DETACHED_OFFSET_K = 0.5
"""A probe hanging behind the heater reads the room air plus a little of the heater's warmth."""
PIPE_RISE_K, PIPE_TAU_S = 30.0, 180.0
"""The pipe a misplaced probe touches: its heating comes on at the fault and it warms 30 K above the room
with a 3 min time constant."""
SENTINEL_C = 85.0


class SurfaceProbe:
    """The probe on the panel: what temp3 shows for the panel and room temperatures, with its faults."""

    def __init__(self) -> None:
        self.fault = "ok"
        self.shown_c: float | None = None
        self._pipe_k = 0.0

    def set_fault(self, kind: str) -> None:
        """One of SURFACE_FAULTS; the fault starts now."""
        if kind not in SURFACE_FAULTS:
            raise ValueError(f"surface probe fault must be one of {SURFACE_FAULTS}, not {kind!r}")
        self.fault, self._pipe_k = kind, 0.0

    def step(self, dt_s: float, air_c: float, panel_c: float) -> float | None:
        """The temperature shown after ``dt_s`` s, °C; None while unplugged."""
        if self.fault == "unplugged":
            return None
        if self.fault == "sentinel":
            return SENTINEL_C
        touching_c = panel_c
        if self.fault == "detached":
            touching_c = air_c + DETACHED_OFFSET_K
        elif self.fault == "misplaced":
            self._pipe_k += (PIPE_RISE_K - self._pipe_k) * (1 - math.exp(-dt_s / PIPE_TAU_S))
            touching_c = air_c + self._pipe_k
        if self.shown_c is None:
            self.shown_c = touching_c
        self.shown_c = touching_c + (self.shown_c - touching_c) * math.exp(-dt_s / PROBE_TAU_S)
        return self.shown_c


class BoardSensors:
    """hwmon chip ``nct7802``: temp1 inlet, temp2 outlet, temp3 surface (m°C), fan1/fan2 (RPM)."""

    def __init__(self, sys_root: Path, rng: np.random.Generator, noise: bool = True) -> None:
        self.dir = allocate_hwmon_dir(sys_root)
        write_files(self.dir, {"name": "nct7802", "temp1_label": "inlet", "temp2_label": "outlet",
                               "temp3_label": "surface"})
        self._files = {k: PublishedFile(self.dir / k) for k in
                       ("temp1_input", "temp2_input", "temp3_input", "fan1_input", "fan2_input")}
        self.rng = rng
        self.noise = noise
        self.fault = "ok"
        self.surface = SurfaceProbe()
        self.truth: dict[str, float] = {}

    def update(self, air_c: float, power_w: float, surface_c: float | None = None, dt_s: float = 0.0,
               fan_share: float = 1.0, airflow_share: float = 1.0) -> None:
        """Publish the sensors for room air ``air_c`` (°C) and heater power ``power_w`` (W); ``surface_c`` is
        the panel's true temperature (default: in balance with the power), ``dt_s`` the time since the last
        update, ``fan_share`` and ``airflow_share`` the fans' speed and the air path's flow (1: healthy)."""
        share = min(1.0, max(0.0, power_w / MAX_POWER_W))
        rpm = (FAN_RPM_MIN + (FAN_RPM_MAX - FAN_RPM_MIN) * share) * fan_share
        flow = max(NATURAL_DRAFT_M3_S, FAN_FLOW_M3_S * rpm / FAN_RPM_MAX * airflow_share)
        jitter = (lambda sd: float(self.rng.normal(0.0, sd))) if self.noise else (lambda sd: 0.0)
        panel_c = air_c + SURFACE_K_PER_W * power_w if surface_c is None else surface_c
        probe_c = self.surface.step(dt_s, air_c, panel_c)
        if probe_c is not None and self.surface.fault != "sentinel":
            probe_c += jitter(0.05)
        outlet_c = air_c + power_w / (AIR_RHO_CP_J_M3K * flow)
        values = {"temp1_input": air_c + jitter(0.05), "temp2_input": outlet_c + jitter(0.05), "temp3_input": probe_c,
                  "fan1_input": (rpm + jitter(10)) if rpm else 0.0,
                  "fan2_input": (rpm * 0.98 + jitter(10)) if rpm else 0.0}
        if self.fault == "stuck":
            return
        for name, value in values.items():
            if value is None:  # the attribute vanished
                self._files[name].path.unlink(missing_ok=True)
                self._files[name] = PublishedFile(self._files[name].path)
                self.truth.pop(name, None)
                continue
            raw = millidegrees(value) if name.startswith("temp") else max(0, int(round(value)))
            if self.fault == "garbage":
                self._files[name].publish("0x##")
                continue
            self.truth[name] = raw / 1000.0 if name.startswith("temp") else float(raw)
            self._files[name].publish(raw)

    def set_fault(self, kind: str) -> None:
        """"ok", "stuck" (files frozen) or "garbage" (unparsable text); the surface probe has its own."""
        if kind not in ("ok", "stuck", "garbage"):
            raise ValueError(f"board sensors have no fault {kind!r} (surface probe faults: device 'surface')")
        self.fault = kind
