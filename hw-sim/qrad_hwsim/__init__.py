"""qrad_hwsim: a computing heater and its room, simulated behind the sysfs files of a real board.

Modules, one job each:
    weather       typical-year outdoor temperature and irradiance (Lyon-Bron TMYx)
    room          2R2C thermal model of the heated room
    power         CPU package power against frequency and load; RAPL throttle
    cpufreq, rapl, hwmon, cgroup
                  the simulated sysfs devices the agent reads and writes
    board         a compute module: those devices around the power model
    sensor        SHT4x-class room sensor with lag, noise, bias and faults
    heater        board + sensor + room, stepped together; ``run`` on the asyncio loop clock
    sim_clock     simulation seconds <-> dates <-> weather-year seconds
    virtual_time  an asyncio loop on virtual time, to run days in seconds
    cli           ``qrad-hwsim serve`` and ``qrad-hwsim fault``
"""

from .board import Board, BoardSpec, BoardStep
from .heater import HeaterSpec, HeaterState, SimulatedHeater
from .room import Room, RoomParams, steady_state
from .sensor import RoomSensor, SensorSpec
from .virtual_time import VirtualTimeLoop, VirtualTimeLoopPolicy, run_virtual
from .weather import Weather, default_weather_path

__all__ = [
    "Board", "BoardSpec", "BoardStep", "HeaterSpec", "HeaterState", "Room", "RoomParams", "RoomSensor",
    "SensorSpec", "SimulatedHeater", "VirtualTimeLoop", "VirtualTimeLoopPolicy", "Weather",
    "default_weather_path", "run_virtual", "steady_state",
]
