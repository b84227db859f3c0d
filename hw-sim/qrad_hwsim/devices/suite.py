"""Every sensor of a heater, emulated over its real interface and driven by the room model.

One `DeviceSuite` owns: the MH-Z19B CO2 sensor and the PMS5003 particle sensor on pseudo-terminals, the
SDM120 mains meter (Modbus RTU) on a pseudo-terminal, the board's hwmon chip (air in/out, surface, fans),
a BME280 and a light sensor on IIO, a DS18B20 on 1-Wire, PIR presence and window/door contacts on GPIO,
and the microphone as a FIFO. The serial ports appear as symlinks under ``<root>/dev``; the sysfs devices
under ``<root>`` (standing for /sys). `update` moves every value after each heater step; `set_fault`
injects a fault into one device by name ("surface" is the board's panel probe, temp3; the heater's own
cooling faults belong to the heater, see faults.py); `truth` is what each device shows, for tests.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np

from ..occupancy import SENSIBLE_HEAT_PER_PERSON_W, Co2Room, OfficeOccupancy
from .audio import AudioSource
from .board_sensors import BoardSensors
from .gpio import GpioLines
from .iio import Bme280Device, LightSensorDevice
from .mhz19 import Mhz19Device
from .pms5003 import Pms5003Device
from .sdm120 import Sdm120Device
from .w1 import Ds18b20Device

GPIO_PRESENCE, GPIO_WINDOW, GPIO_DOOR = 17, 27, 22
DS18B20_ID = "28-0316a2791aff"
FIRE_AIR_FRACTION = 0.35
"""Share of a fire's heat release that warms the room air the heater's sensors see (the rest goes to the
plume, the ceiling layer and the walls); a flaming item's CO2 is about 0.055 L per kJ released."""
FIRE_CO2_M3_PER_KJ = 0.055e-3
LUX_PER_W_M2 = 0.9
"""Indoor daylight near a window, lux per W/m² of horizontal irradiance outside (luminous efficacy of
daylight ~110 lm/W times a daylight factor of ~0.8 %); plus 300 lux of lighting when occupied."""


class DeviceSuite:
    """All emulated sensors of one heater; ``noise=False`` makes every value exact (integration tests)."""

    def __init__(self, root: Path, rng: np.random.Generator, noise: bool = True, occupancy=None) -> None:
        self.root = root
        dev = root / "dev"
        dev.mkdir(parents=True, exist_ok=True)
        self.noise = noise
        self.occupancy = occupancy or OfficeOccupancy()
        self.co2_room = Co2Room()
        self.co2 = Mhz19Device(dev / "ttyCO2", rng, noise_ppm=3.0 if noise else 0.0)
        self.pm = Pms5003Device(dev / "ttyPM", rng, noise_ugm3=1.0 if noise else 0.0)
        self.meter = Sdm120Device(dev / "ttyMETER", rng=rng)
        if not noise:
            self.meter.voltage_noise_v = self.meter.frequency_noise_hz = 0.0
        self.board = BoardSensors(root, rng, noise)
        self.bme280 = Bme280Device(root, 0)
        self.light = LightSensorDevice(root, 1)
        self.ds18b20 = Ds18b20Device(root, DS18B20_ID)
        self.gpio = GpioLines(root, {GPIO_PRESENCE: 0, GPIO_WINDOW: 0, GPIO_DOOR: 0})
        self.audio = AudioSource(dev / "mic.fifo", 16000, rng)
        self.occupants = 0
        self.fire_hrr_w = 0.0  # heat release rate of a fire in the room (W), set by a scenario or a test
        self._tasks: list[asyncio.Task] = []

    @property
    def devices(self) -> dict[str, object]:
        """Fault-injectable devices by name."""
        return {"co2": self.co2, "pm": self.pm, "meter": self.meter, "board": self.board,
                "surface": self.board.surface, "bme280": self.bme280, "light": self.light,
                "ds18b20": self.ds18b20, "gpio": self.gpio, "audio": self.audio}

    async def start(self) -> None:
        """Start the serial and audio servers; returns once the ports exist."""
        for name, device in (("co2", self.co2), ("pm", self.pm), ("meter", self.meter)):
            self._tasks.append(asyncio.create_task(device.run(), name=f"hwsim:{name}"))
        self.audio.start()
        await asyncio.wait_for(asyncio.gather(self.co2.ready.wait(), self.pm.ready.wait(),
                                              self.meter.ready.wait()), 10)

    async def stop(self) -> None:
        """Stop every server and remove the ports."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.audio.aclose()

    def update(self, state, moment, dt_s: float, pressure_pa: float, ghi_w_m2: float) -> None:
        """Move every device after a heater step (``state``: HeaterState; ``moment``: the sim calendar)."""
        self.occupants = self.occupancy.occupants(moment)
        fire_co2_m3_h = self.fire_hrr_w / 1000.0 * FIRE_CO2_M3_PER_KJ * 3600.0
        co2_ppm = self.co2_room.step(dt_s, self.occupants, fire_co2_m3_h)
        self.co2.co2_ppm = co2_ppm
        self.co2.temperature_c = state.air_c
        self.pm.pm1_0, self.pm.pm2_5, self.pm.pm10 = 4.0, 6.0, 9.0
        self.meter.update(state.power_w, dt_s)
        self.board.update(state.air_c, state.power_w, state.surface_c, dt_s, state.fan_share,
                          state.airflow_share)
        humidity = 40.0 + 3.0 * self.occupants
        self.bme280.update(pressure_hpa=pressure_pa / 100.0, temp_c=state.air_c + 0.3, humidity_pct=humidity)
        self.light.update(ghi_w_m2 * LUX_PER_W_M2 + (300.0 if self.occupants else 0.0))
        self.ds18b20.update(state.air_c - 0.1)
        self.gpio.set(GPIO_PRESENCE, 1 if self.occupants else 0)
        self.audio.set_occupants(self.occupants)
        self.audio.set_background(32.0)

    @property
    def internal_gains_w(self) -> float:
        """Heat from the occupants and any fire (W), for the room model."""
        return self.occupants * SENSIBLE_HEAT_PER_PERSON_W + FIRE_AIR_FRACTION * self.fire_hrr_w

    def set_fault(self, device: str, kind: str) -> None:
        """Inject ``kind`` into ``device``. Raises KeyError/ValueError naming what is valid."""
        if device not in self.devices:
            raise KeyError(f"no device {device!r}; devices: {sorted(self.devices)}")
        self.devices[device].set_fault(kind)  # type: ignore[attr-defined]

    def truth(self) -> dict[str, float]:
        """What each device shows now, by the channel names of hw-sim's example agent config."""
        values = {
            "co2": float(round(self.co2.co2_ppm)),
            "pm_pm1_0": self.pm.pm1_0, "pm_pm2_5": self.pm.pm2_5, "pm_pm10": self.pm.pm10,
            "mains_voltage": self.meter.voltage_v, "mains_current": self.meter.current_a,
            "mains_power": self.meter.power_w, "mains_energy": self.meter.energy_kwh,
            "mains_frequency": self.meter.frequency_hz,
            "pressure": self.bme280.pressure_hpa, "room_temp_bme280": self.bme280.temp_c,
            "room_humidity_bme280": self.bme280.humidity_pct,
            "light": self.light.lux, "room_temp_ds18b20": self.ds18b20.temp_c,
            "presence": float(self.occupants > 0), "window": 0.0, "door": 0.0,
        }
        names = {"temp1_input": "inlet_temp", "temp2_input": "outlet_temp", "temp3_input": "surface_temp",
                 "fan1_input": "fan1", "fan2_input": "fan2"}
        values |= {names[k]: v for k, v in self.board.truth.items()}
        return {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
