"""IIO sensors under ``bus/iio/devices/iio:deviceN``: a BME280 and a raw+scale light sensor.

Layout and units from kernel Documentation/ABI/testing/sysfs-bus-iio: ``name``; ``in_pressure_input`` kPa,
``in_temp_input`` m°C, ``in_humidityrelative_input`` m%RH; ``in_illuminance_raw`` counts times
``in_illuminance_scale`` lux per count (lux = (raw + offset) * scale). Formats as the bmp280 driver prints
them: temperature an integer m°C on the chip's 0.01 °C grid, pressure and humidity fractional values with 9
decimals (IIO_VAL_FRACTIONAL), pressure on 1/256 Pa, humidity on 1/1024 %RH.

Faults (``set_fault``): "ok", "unplugged" (the device directory disappears), "garbage" (non-numeric
text), "stuck" (the files stop changing), "out_of_range" (BME280: pressure 0 kPa and 150 °C; light: a
negative count), and for the BME280 "spike" (one glitched sample: temperature +40 °C and pressure
+150 hPa, shown from ``set_fault`` until the next ``update``, which clears it) and "drift" (``drift_c`` °C
more at each update). The true values are kept apart from what a fault shows, so "ok" restores them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..sysfs_io import publish_text, write_files

BME280_FAULTS = ("ok", "unplugged", "garbage", "stuck", "out_of_range", "spike", "drift")
LIGHT_FAULTS = ("ok", "unplugged", "garbage", "stuck", "out_of_range")
GARBAGE = "EIO?#"
SPIKE = {"temp_c": 40.0, "pressure_hpa": 150.0}
BH1750_SCALE = 0.833333  # lux per count: 1/1.2 at the default measurement time (BH1750 datasheet)


def iio_dir(root: Path, index: int) -> Path:
    """``bus/iio/devices/iio:device<index>`` under ``root``."""
    return Path(root) / "bus" / "iio" / "devices" / f"iio:device{index}"


class IioDevice:
    """Common part: a directory of one-line files, a fault, an in-place writer skipping unchanged files."""

    faults: tuple[str, ...] = ()

    def __init__(self, root: Path, index: int, name: str) -> None:
        self.dir = iio_dir(root, index)
        self.name = name
        self.fault = "ok"
        self._shown: dict[str, str] = {}
        write_files(self.dir, {"name": name})

    def set_fault(self, kind: str) -> None:
        """Switch to fault ``kind`` (one of ``faults``) and show it now."""
        if kind not in self.faults:
            raise ValueError(f"{self.name} fault must be one of {self.faults}, not {kind!r}")
        self.fault = kind
        if kind == "unplugged":
            shutil.rmtree(self.dir, ignore_errors=True)
            self._shown.clear()
        elif kind != "stuck":
            self.publish()

    def publish(self) -> None:
        """Write what the device shows now (nothing while unplugged or stuck)."""
        if self.fault in ("unplugged", "stuck"):
            return
        if not self.dir.exists():
            write_files(self.dir, {"name": self.name, **self._static_files()})
        for file, text in self._files().items():
            text = GARBAGE if self.fault == "garbage" else text
            if self._shown.get(file) != text:
                publish_text(self.dir / file, text)
                self._shown[file] = text

    def _static_files(self) -> dict[str, object]:
        return {}

    def _files(self) -> dict[str, str]:
        raise NotImplementedError


class Bme280Device(IioDevice):
    """Bosch BME280 through the kernel's bmp280 IIO driver; ``update`` sets the true values."""

    faults = BME280_FAULTS

    def __init__(self, root: Path, index: int = 0, pressure_hpa: float = 1013.25, temp_c: float = 21.0,
                 humidity_pct: float = 40.0, drift_c: float = 0.05) -> None:
        super().__init__(root, index, "bme280")
        self.pressure_hpa, self.temp_c, self.humidity_pct = pressure_hpa, temp_c, humidity_pct
        self.drift_c = drift_c
        self.drift_offset_c = 0.0
        self.publish()

    def update(self, pressure_hpa: float | None = None, temp_c: float | None = None,
               humidity_pct: float | None = None) -> None:
        """Set the true values given (hPa, °C, %RH) and publish."""
        if pressure_hpa is not None:
            self.pressure_hpa = pressure_hpa
        if temp_c is not None:
            self.temp_c = temp_c
        if humidity_pct is not None:
            self.humidity_pct = humidity_pct
        if self.fault == "drift":
            self.drift_offset_c += self.drift_c
        elif self.fault == "spike":  # a glitch lasts one sample
            self.fault = "ok"
        self.publish()

    def set_fault(self, kind: str) -> None:
        self.drift_offset_c = 0.0
        super().set_fault(kind)

    def shown(self) -> tuple[float, float, float]:
        """(hPa, °C, %RH) the device shows with the current fault (before quantisation)."""
        pressure, temp, humidity = self.pressure_hpa, self.temp_c + self.drift_offset_c, self.humidity_pct
        if self.fault == "spike":
            pressure += SPIKE["pressure_hpa"]
            temp += SPIKE["temp_c"]
        elif self.fault == "out_of_range":
            pressure, temp = 0.0, 150.0
        return pressure, temp, humidity

    def _files(self) -> dict[str, str]:
        pressure_hpa, temp_c, humidity_pct = self.shown()
        pressure_kpa = round(pressure_hpa * 100.0 * 256.0) / 256_000.0
        humidity_mpct = round(humidity_pct * 1024.0) * 1000.0 / 1024.0
        return {"in_pressure_input": f"{pressure_kpa:.9f}",
                "in_temp_input": str(int(round(temp_c * 100.0)) * 10),
                "in_humidityrelative_input": f"{humidity_mpct:.9f}"}


class LightSensorDevice(IioDevice):
    """An ambient light sensor showing raw counts and a scale (bh1750-style); ``update`` sets the lux."""

    faults = LIGHT_FAULTS

    def __init__(self, root: Path, index: int = 1, lux: float = 300.0, name: str = "bh1750",
                 scale: float = BH1750_SCALE) -> None:
        super().__init__(root, index, name)
        self.scale = scale
        self.lux = lux
        write_files(self.dir, self._static_files())
        self.publish()

    def _static_files(self) -> dict[str, object]:
        return {"in_illuminance_scale": f"{self.scale:.6f}"}

    def update(self, lux: float) -> None:
        """Set the true illuminance, lux, and publish."""
        self.lux = lux
        self.publish()

    @property
    def raw(self) -> int:
        """Counts shown for the true illuminance (saturating at 0xFFFF)."""
        return min(0xFFFF, max(0, int(round(self.lux / self.scale))))

    def _files(self) -> dict[str, str]:
        raw = -100 if self.fault == "out_of_range" else self.raw
        return {"in_illuminance_raw": str(raw)}
