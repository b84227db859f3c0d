"""The driver registry: config ``type`` name -> driver class, imported lazily.

Adding a driver is one line here. Driver modules import their heavy or optional libraries (gpiod)
inside their methods, so loading a module to validate a config costs nothing and a missing optional
library only breaks a config that uses it.
"""

from __future__ import annotations

import importlib

from qrad_drivers.base import Driver, DriverConfig, DriverContext

DRIVERS: dict[str, tuple[str, str]] = {
    "hwmon": ("qrad_drivers.hwmon", "HwmonDriver"),
    "mhz19": ("qrad_drivers.mhz19", "Mhz19Driver"),
    "pms5003": ("qrad_drivers.pms5003", "Pms5003Driver"),
    "iio": ("qrad_drivers.iio", "IioDriver"),
    "w1_therm": ("qrad_drivers.w1", "W1ThermDriver"),
    "gpio": ("qrad_drivers.gpio", "GpioDriver"),
    "audio": ("qrad_drivers.audio", "AudioDriver"),
    "sdm120": ("qrad_drivers.sdm120", "Sdm120Driver"),
}
"""type name -> (module, class)."""


def driver_class(type_name: str) -> type[Driver]:
    """The driver class registered as ``type_name``. Raises KeyError listing the known names."""
    if type_name not in DRIVERS:
        raise KeyError(f"unknown sensor type {type_name!r}; known: {sorted(DRIVERS)}")
    module, cls = DRIVERS[type_name]
    return getattr(importlib.import_module(module), cls)


def config_models() -> list[type[DriverConfig]]:
    """Every registered driver's config model (each with a Literal ``type``), for the config union."""
    return [driver_class(name).config_model for name in DRIVERS]


def build_driver(cfg: DriverConfig, context: DriverContext) -> Driver:
    """Instantiate the driver for one validated sensor entry."""
    return driver_class(cfg.type)(cfg, context)
