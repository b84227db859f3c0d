"""Room temperature and humidity sensor: an SHT4x-class chip behind the Linux sht4x hwmon driver.

``class/hwmon/hwmonK/`` (first free K) with name "sht4x", temp1_input (m°C, integer, quantised to
the 0.01 °C resolution of the chip) and humidity1_input (milli-%RH), as the kernel's sht4x driver
shows them (Documentation/hwmon/sht4x.rst).

Imperfections, all in ``SensorSpec``: a first-order lag toward the true air temperature (60 s: the
sensor sits in a housing on the wall), Gaussian noise (0.02 °C), a fixed bias (+0.05 °C, inside the
SHT4x ±0.1-0.2 °C accuracy quoted in thermal-and-control.md). Humidity is a plausible 40 %RH plus
noise, not a model. Faults, settable at run time: "stuck" (the files stop changing), "missing" (the
input files are removed) and "ok".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .hwmon import allocate_hwmon_dir
from .sysfs_io import publish_text, write_files

SENSOR_FAULTS = ("ok", "stuck", "missing")
INPUT_FILES = ("temp1_input", "humidity1_input")


@dataclass(frozen=True)
class SensorSpec:
    """Sensor imperfections: s, °C, %RH."""

    tau_s: float = 60.0
    noise_sd_c: float = 0.02
    bias_c: float = 0.05
    resolution_c: float = 0.01
    humidity_pct: float = 40.0
    humidity_noise_pct: float = 0.3
    update_interval_ms: int = 1000


class RoomSensor:
    """The simulated sht4x device; ``step`` follows the air and publishes a reading."""

    def __init__(self, sys_root: Path, spec: SensorSpec, air_c: float,
                 rng: np.random.Generator | None = None) -> None:
        self.spec = spec
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.dir = allocate_hwmon_dir(Path(sys_root))
        self.fault = "ok"
        self.lagged_c = float(air_c)
        self.reading_mc = self._quantise_mc(air_c + spec.bias_c)
        self.humidity_pct = spec.humidity_pct
        write_files(self.dir, {"name": "sht4x", "update_interval": spec.update_interval_ms})
        self._publish()

    def _quantise_mc(self, temp_c: float) -> int:
        """°C to integer m°C on the chip's resolution grid."""
        step_mc = max(1, int(round(self.spec.resolution_c * 1000.0)))
        return int(round(temp_c * 1000.0 / step_mc)) * step_mc

    @property
    def reading_c(self) -> float:
        """Last value the sensor produced, °C (frozen while stuck)."""
        return self.reading_mc / 1000.0

    def _publish(self) -> None:
        publish_text(self.dir / "temp1_input", str(self.reading_mc))
        publish_text(self.dir / "humidity1_input", str(int(round(self.humidity_pct * 1000.0))))

    def set_fault(self, fault: str) -> None:
        """Switch to ``fault`` ("ok", "stuck" or "missing"); "missing" removes the input files at
        once, "ok" brings them back at the next step, "stuck" after "missing" brings them back at once,
        frozen at the last value the sensor produced."""
        if fault not in SENSOR_FAULTS:
            raise ValueError(f"sensor fault must be one of {SENSOR_FAULTS}, not {fault!r}")
        was_missing = self.fault == "missing"
        self.fault = fault
        if fault == "stuck" and was_missing:
            self._publish()
        if fault == "missing":
            for name in INPUT_FILES:
                (self.dir / name).unlink(missing_ok=True)

    @property
    def published_c(self) -> float | None:
        """Temperature the file shows now, °C (None while the file is missing)."""
        return None if self.fault == "missing" else self.reading_c

    def step(self, dt_s: float, air_c: float) -> float | None:
        """Advance ``dt_s`` s toward ``air_c`` °C; publish unless faulty; return the shown value."""
        spec = self.spec
        decay = math.exp(-dt_s / spec.tau_s) if spec.tau_s > 0 else 0.0
        self.lagged_c = air_c + (self.lagged_c - air_c) * decay
        noise_c, noise_pct = self.rng.normal(0.0, 1.0, size=2)  # drawn even when faulty: same sequence
        if self.fault == "ok":
            self.reading_mc = self._quantise_mc(self.lagged_c + spec.bias_c + spec.noise_sd_c * noise_c)
            self.humidity_pct = min(100.0, max(0.0, spec.humidity_pct + spec.humidity_noise_pct * noise_pct))
            self._publish()
        return self.published_c
