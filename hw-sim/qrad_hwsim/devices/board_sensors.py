"""The heater's own board sensors on a hwmon chip (an NCT7802-class monitor): air in, air out, the
radiator's front surface and two fans.

Physics, chosen and stated: the fans move about 0.04 m³/s at full speed (two 120 mm fans), so the outlet
air rises by P / (ρ·c_p·Q) above the inlet (ρ·c_p = 1200 J/(m³·K)); fan speed follows power from 600 to
2000 RPM; the front surface sits 0.06 K/W above the room (30 K at 500 W, a touch-safe radiator panel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..hwmon import allocate_hwmon_dir, millidegrees
from ..sysfs_io import PublishedFile, write_files

AIR_RHO_CP_J_M3K = 1200.0
FAN_FLOW_M3_S = 0.04
SURFACE_K_PER_W = 0.06
FAN_RPM_MIN, FAN_RPM_MAX = 600.0, 2000.0
MAX_POWER_W = 500.0


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
        self.truth: dict[str, float] = {}

    def update(self, air_c: float, power_w: float) -> None:
        """Publish the sensors for room air ``air_c`` (°C) and heater power ``power_w`` (W)."""
        share = min(1.0, max(0.0, power_w / MAX_POWER_W))
        rpm = FAN_RPM_MIN + (FAN_RPM_MAX - FAN_RPM_MIN) * share
        flow = FAN_FLOW_M3_S * rpm / FAN_RPM_MAX
        jitter = (lambda sd: float(self.rng.normal(0.0, sd))) if self.noise else (lambda sd: 0.0)
        values = {"temp1_input": air_c + jitter(0.05), "temp2_input": air_c + power_w / (AIR_RHO_CP_J_M3K * flow)
                  + jitter(0.05), "temp3_input": air_c + SURFACE_K_PER_W * power_w + jitter(0.05),
                  "fan1_input": rpm + jitter(10), "fan2_input": rpm * 0.98 + jitter(10)}
        if self.fault == "stuck":
            return
        for name, value in values.items():
            raw = millidegrees(value) if name.startswith("temp") else int(round(value))
            if self.fault == "garbage":
                self._files[name].publish("0x##")
                continue
            self.truth[name] = raw / 1000.0 if name.startswith("temp") else float(raw)
            self._files[name].publish(raw)

    def set_fault(self, kind: str) -> None:
        """"ok", "stuck" (files frozen) or "garbage" (unparsable text)."""
        if kind not in ("ok", "stuck", "garbage"):
            raise ValueError(f"board sensors have no fault {kind!r}")
        self.fault = kind
