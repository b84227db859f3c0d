"""Configuration: one TOML file, validated once at load by pydantic models, immutable afterwards.

Every field has a documented default; an unknown field is an error (a typo must not be silently ignored).
Environment variables override the device id and the secrets, so that a fleet image carries one file:
``QRAD_DEVICE_ID``, ``QRAD_MQTT_USERNAME``, ``QRAD_MQTT_PASSWORD`` (the allow-list and its checks:
`qrad_agent.envvars`). A bad file raises `ConfigError` listing every wrong field by its path
(``thermostat.pid.ti_s``); a bad variable raises one whose source is "environment", naming the variable.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from qrad_drivers.base import DriverContext
from qrad_drivers.registry import build_driver, config_models

from qrad_agent.schedule_grammar import ScheduleRuleSpec
from qrad_agent.envvars import DEVICE_ID_PATTERN, SETTINGS, check_environment
from qrad_agent.errors import ConfigError
from qrad_agent.fire.config import FireConfig
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.sync.config import SyncConfig
from qrad_agent.update.config import UpdateConfig

PositiveS = Annotated[float, Field(gt=0, description="seconds")]


class Section(BaseModel):
    """Base of every section: unknown fields are errors; values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LoggingConfig(Section):
    """Log output. ``format = "auto"`` writes readable lines on a terminal and JSON lines otherwise."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class PowerConfig(Section):
    """Power actuation: where the kernel interfaces are and what the boards draw.

    ``interfaces`` lists the P-state/limit interfaces in order of preference; the first one present carries
    the power range above the lowest P-state, and ``cgroup`` (the jobs' CPU quota) carries the range below
    it, or all of it when neither cpufreq nor RAPL exists.
    """

    sysfs_root: Path = Path("/sys")
    jobs_cgroup: Path | None = Path("/sys/fs/cgroup/qrad-jobs")
    interfaces: list[Literal["cpufreq", "rapl", "cgroup"]] = ["cpufreq", "rapl", "cgroup"]
    idle_w: float = Field(50.0, ge=0, description="electrical power with the jobs stopped, W")
    max_w: float = Field(500.0, gt=0, description="electrical power at full compute, W")
    platform_overhead_w: float = Field(
        0.0, ge=0, description="power drawn outside the RAPL packages (PSU loss, memory, fans), W")
    quota_share: float = Field(0.2, gt=0, lt=1, description="part of the level range carried by the quota")
    learning_rate: float = Field(0.3, gt=0, le=1)
    rapl_package_min_w: float = Field(5.0, gt=0)
    heartbeat_timeout_s: PositiveS = 120.0
    mains_power_channel: str | None = Field(
        "mains_power", description="the mains meter's power channel (W): measures the heater where there is "
        "no RAPL, and checks it everywhere; None or a channel no sensor has: no meter")
    follow_margin_w: float = Field(
        125.0, gt=0, description="measured power this far above what the current level should draw ... (W)")
    follow_grace_s: PositiveS = Field(
        180.0, description="... or an interface reading back other than what was written, for this long "
        "(s), latches power_not_following: the board ignores its caps")

    @model_validator(mode="after")
    def _idle_below_max(self) -> PowerConfig:
        if self.idle_w >= self.max_w:
            raise ValueError(f"idle_w ({self.idle_w}) must be below max_w ({self.max_w})")
        return self


class PidConfig(Section):
    """PID gains in the ideal (ISA) form on room air temperature, output in W.

    Defaults: SIMC (Skogestad 2003) with τc = 2θ on the fast pole of a 28 m² room heated by a 500 W
    heater (gain 1/273 K/W, τ1 ≈ 1320 s, θ ≈ 90 s of sensor lag and sampling): Kc ≈ 1400 W/K,
    τI = min(τ1, 4(τc + θ)) ≈ 1100 s. `qrad-agent sim` and benchmarks/thermostat.py measure them.
    Setpoint weight b = 0: a setpoint change moves the output through the integral only (1.3 W/s per K of
    error with these gains: +0.3 K is 11 W per 30 s period, a +5 K override from the floor reaches 500 W in
    about a minute), the same setpoint response as b = 1 behind the filter 1/(τI·s + 1) that cancels the
    PI zero (no overshoot), without the filter's lag while saturated (control/pid.py).
    """

    kp_w_per_k: float = Field(1400.0, gt=0)
    ti_s: float = Field(1100.0, gt=0, description="integral time; inf disables the integral")
    td_s: float = Field(0.0, ge=0, description="derivative time, on measurement")
    derivative_filter_n: float = Field(8.0, gt=0)
    setpoint_weight: float = Field(
        0.0, ge=0, le=1, description="proportional setpoint weight b: a setpoint step moves the output by "
        "Kp·b·Δr at once, the rest through the integral; 0: every setpoint change is bumpless")
    setpoint_filter_s: float | None = Field(
        None, gt=0, description="time constant of an optional reference trajectory after a setpoint change, "
        "s; None: none")
    setpoint_ramp_k_per_h: float | None = Field(
        None, gt=0, description="largest rate of the reference trajectory, K/h; None: P moves the output "
        "range in a quarter of the filter time constant (no trajectory without a filter)")


class ModeSetpointsConfig(Section):
    """Setpoints (°C) of the schedule's modes; comfort >= eco >= frost."""

    comfort_c: float = Field(20.0, ge=5, le=30)
    eco_c: float = Field(17.0, ge=5, le=30)
    frost_c: float = Field(7.0, ge=5, le=30)

    @model_validator(mode="after")
    def _ordered(self) -> ModeSetpointsConfig:
        if not (self.comfort_c >= self.eco_c >= self.frost_c):
            raise ValueError("need comfort_c >= eco_c >= frost_c")
        return self


ScheduleRuleConfig = ScheduleRuleSpec
"""From ``start`` on ``days`` the room is in ``mode``: the one schedule grammar (control/schedule.py)."""


class SummerConfig(Section):
    """Summer mode: with no heat demand, keep ``floor_w`` of compute while the room is below ``comfort_max_c``."""

    enabled: bool = False
    floor_w: float = Field(120.0, ge=0)
    comfort_max_c: float = Field(24.0, ge=15, le=35)


class QuietConfig(Section):
    """Quiet hours (qrad_agent/control/quiet.py): from ``start`` to ``end`` (local HH:MM, may cross midnight)
    the heat demand is capped at ``max_w``, a level whose fan noise the occupant accepts; with
    ``presence_channel`` (a sensor channel reading > 0.5 when someone is there) only while someone is present.
    Off by default: the acceptable level depends on the heater's fans and the room."""

    enabled: bool = False
    start: str = Field("22:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field("07:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    max_w: float = Field(250.0, ge=0)
    presence_channel: str | None = None


class WindowConfig(Section):
    """Open-window detection (qrad_agent/control/window.py): a window contact (``contact_channel``, a channel
    reading > 0.5 when open) or a fall of ``drop_k`` within ``drop_window_s`` beyond what the room model
    expects pauses heating at frost protection; it resumes when the contact closes, or for a fall when the room
    has risen ``recover_k`` from its lowest point or after ``max_pause_s``. In `qrad-agent sim`'s week the
    largest 5-min fall without a window is 0.30 K (coasting at minimum power after a setback)."""

    enabled: bool = True
    contact_channel: str | None = None
    drop_k: float = Field(0.6, gt=0)
    drop_window_s: PositiveS = 300.0
    recover_k: float = Field(0.3, gt=0)
    max_pause_s: PositiveS = 1800.0


class DemandResponseConfig(Section):
    """Demand response (qrad_agent/control/demand_response.py): before a shed window the target is raised
    ``band_k`` above the setpoint for ``preheat_s``; the room never goes below the frost setpoint.
    Defaults: in `qrad-agent sim`, 2 h at 50 W from 18:00 on 2 January, 6 h at +1.5 K cut the discomfort
    during and after the window to 0.25x of no pre-heat (2 h at +1 K: 0.93x; docs/predict.md)."""

    enabled: bool = True
    preheat_s: float = Field(6 * 3600.0, ge=0, le=12 * 3600.0)
    band_k: float = Field(1.5, ge=0, le=3.0)
    recovery_s: float = Field(2 * 3600.0, ge=0, le=86400.0, description="the outcome counts the discomfort "
                              "this long after the window")


class PredictConfig(Section):
    """Predictive heating (qrad_agent/control/predict.py): a room model learned online, used for optimal
    start/stop and the heat-demand forecast once its 2-h free-run error is at most ``max_fit_k`` after
    ``min_slots`` 15-min slots; until then the thermostat follows the schedule as without it.

    ``max_lead_s``: longest pre-heat (6 h: a 500 W heater recovering 1 K in a cold week needs 3-5 h in
    `qrad-agent sim`); ``forgetting``: RLS forgetting per slot (0.998: a memory of about 5 days);
    ``assumed_outdoor_c``: the outdoor temperature used while the platform has sent no weather.
    On by default (`qrad-agent sim --no-predict` or ``enabled = false`` turns it off); on the default week of
    `qrad-agent sim` it cuts discomfort several-fold against the PID alone for under 1 % more energy
    (docs/predict.md).
    """

    enabled: bool = True
    order: Literal[1, 2] = 2
    forgetting: float = Field(0.998, gt=0.9, le=1.0)
    max_fit_k: float = Field(0.25, gt=0)
    min_slots: int = Field(96, ge=10)
    max_lead_s: float = Field(6 * 3600.0, gt=0, le=86400.0)
    arrival_tolerance_k: float = Field(0.23, ge=0, le=2, description="the pre-heat aims at the raised setpoint "
                                       "less this (K, on the room sensor: 0.3 K less the sensor's error and the "
                                       "landing's scatter)")
    precharge_s: float = Field(10 * 3600.0, ge=0, le=86400.0, description="before a raise on a heavy-load day, "
                               "hold the top of the current band this long (s): the envelope warms, the last "
                               "rise is quicker (its time constant is about 3 h while the air is held)")
    max_sprint_s: float = Field(3600.0, ge=0, le=86400.0, description="aim at arrival_tolerance_k below the raised "
                                "setpoint only when the model's last rise there from the bottom of its band is "
                                "this short (s); else at that bottom")
    stop_margin_k: float = Field(0.45, ge=0, le=2)
    stop_w: float = Field(140.0, ge=0, allow_inf_nan=False,
                          description="power held through an optimal stop while the room is not above the "
                          "setpoint (W; 0: the minimum; at most the heater's maximum): a low compute load just "
                          "above the board's most core-hours per kWh (every core busy at the lowest P-state, "
                          "about 110 W on hw-sim's board), where the idle floor heats with no compute at all; "
                          "140 W measured best of 110-300 W in benchmarks/thermostat.py (docs/predict.md)")
    coast_margin_k: float = Field(0.3, ge=0, le=2, description="after a setback, minimum power while the room is "
                                  "more than this above the lower setpoint (K)")
    optimal_stop: bool = True
    precharge_band_k: float = Field(0.45, ge=0, le=2, description="pre-heat target above the current setpoint "
                                    "while ahead of the plan")
    boost_hysteresis_s: float = Field(900.0, ge=0, le=7200)
    assumed_outdoor_c: float = Field(5.0, ge=-40, le=40)
    forecast_period_s: float = Field(3600.0, gt=0, description="publish the heat-demand forecast this often")
    forecast_change_w: float = Field(100.0, gt=0, description="and when a slot's demand moves this much")


class ThermostatConfig(Section):
    """The room thermostat. ``mode = "auto"`` follows the schedule; a fixed mode overrides it."""

    algorithm: Literal["pid", "hysteresis"] = "pid"
    period_s: PositiveS = 30.0
    mode: Literal["auto", "comfort", "eco", "frost", "off"] = "auto"
    room_channels: list[str] = Field(default_factory=lambda: ["room_temp"], min_length=1)
    stale_after_s: PositiveS = 300.0
    setpoints: ModeSetpointsConfig = ModeSetpointsConfig()
    schedule: list[ScheduleRuleConfig] | None = Field(
        None, description="weekly rules; None uses the built-in home schedule")
    pid: PidConfig = PidConfig()
    hysteresis_differential_k: float = Field(0.5, gt=0, le=5)
    output_min_w: float = Field(0.0, ge=0)
    output_max_w: float | None = Field(None, gt=0, description="defaults to power.max_w")
    summer: SummerConfig = SummerConfig()
    predict: PredictConfig = Field(default_factory=PredictConfig)
    quiet: QuietConfig = Field(default_factory=QuietConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    demand_response: DemandResponseConfig = Field(default_factory=DemandResponseConfig)


def _sensor_union() -> Any:
    """The ``[[sensors]]`` entry: a union of every registered driver's config, told apart by ``type``."""
    models = tuple(config_models())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


SensorConfig = _sensor_union()


class SensorHubConfig(Section):
    """Plausibility and scheduling of the sensor hub.

    ``max_rate_per_s``: largest believable change per second by quantity (for temperatures, only the
    room channels: board and CPU temperatures follow power within seconds); a jump larger than
    ``max_rate_per_s * dt + spike_floor`` between two samples is a spike (FAULT); the floor absorbs noise.
    Defaults: room temperature 1 K/s (a flaming fire raises a room sensor by well under that per second
    over the first minutes: UL FSRI armchair compartment fire test), CO2 200 ppm/s.
    ``redundancy_tolerance_k``: redundant room temperatures further than this from their median are
    flagged (with three or more sensors) or reported as disagreeing (with two).
    ``frozen_vs_redundant_s``: a room temperature unchanged for at least this long (s) while another room
    channel moved over the same time by ``frozen_move_k`` or more (its running mean of 3 samples, and by three
    of the frozen one's own steps) is STALE, even if it never showed noise of its own; 0 turns the check off.
    60 s: six samples at the usual 10 s, so the check answers within a sample of the peers' move (the goal:
    within 2 minutes), while the peers' move, not the hold, is the evidence (a DS18B20 holds one 1/16 K step
    for many minutes in a steady room; its peers then move by their noise only).
    """

    history_len: int = Field(360, ge=2, le=100_000)
    frozen_vs_redundant_s: float = Field(60.0, ge=0)
    frozen_move_k: float = Field(0.2, gt=0)
    max_rate_per_s: dict[str, float] = Field(default_factory=lambda: {
        "temperature": 1.0, "relative_humidity": 5.0, "carbon_dioxide": 200.0, "pressure": 5.0})
    spike_floor: dict[str, float] = Field(default_factory=lambda: {
        "temperature": 1.0, "relative_humidity": 5.0, "carbon_dioxide": 100.0, "pressure": 2.0})
    redundancy_tolerance_k: float = Field(1.5, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    timeouts_before_reconnect: int = Field(3, ge=1)


class ApiConfig(Section):
    """The local API socket: JSON over a Unix socket, mode 0660, owned by the technicians' ``group``."""

    socket_path: Path = Path("/run/qrad-agent/api.sock")
    group: str | None = Field(None, description="group owning the socket: who may look")
    privileged_group: str | None = Field(None, description="group whose members may change things")


class SafetyConfig(Section):
    """Safety layer: how often it checks and the CPU package temperature limit (°C)."""

    check_period_s: PositiveS = 1.0
    cpu_temp_max_c: float = Field(95.0, gt=40, le=110)
    surface_channel: str | None = Field(
        "surface_temp", description='heater surface channel for thermal protection; "" (or None): off')
    alarm_gpio_line: int | None = Field(
        None, ge=0, description="GPIO output driven high on a fire alarm (sysfs class/gpio/gpioN/value)")
    identify_gpio_line: int | None = Field(
        None, ge=0, description="GPIO output of the front LED/beeper that `identify` blinks")
    fan_channels: list[str] = Field(
        default_factory=lambda: ["fan1", "fan2"],
        description="tachometer channels (RPM) that must turn while power is above the floor; [] : no check")
    fan_min_rpm: float = Field(
        300.0, ge=0, description="a fan below this speed with power above the floor has failed (RPM); "
        "typical 120 mm PWM fans stall below 200-400 RPM (fan makers' datasheets)")
    fan_grace_s: PositiveS = Field(15.0, description="spin-up time a fan is given before it is judged (s)")
    fan_proof_w: float = Field(
        150.0, gt=0, description="after a fan_failure reset, the demand ceiling (W) until every fan has turned "
        "above fan_min_rpm under power for fan_grace_s (the proof)")


class PlatformConfig(Section):
    """Platform broker account (used by platform sync); secrets come from the environment."""

    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None


class AgentConfig(Section):
    """The whole agent configuration file."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    state_dir: Path = Path("/var/lib/qrad-agent")
    logging: LoggingConfig = LoggingConfig()
    power: PowerConfig = PowerConfig()
    thermostat: ThermostatConfig = ThermostatConfig()
    sensors: list[SensorConfig] = Field(default_factory=list)  # type: ignore[valid-type]
    sensor_hub: SensorHubConfig = SensorHubConfig()
    safety: SafetyConfig = SafetyConfig()
    api: ApiConfig = ApiConfig()
    jobs: JobsConfig = JobsConfig()
    sync: SyncConfig | None = Field(None, description="platform sync over MQTT; None: no sync")
    fire: FireConfig = FireConfig()
    platform: PlatformConfig = PlatformConfig()
    update: UpdateConfig = UpdateConfig()

    @model_validator(mode="after")
    def _channels_exist(self) -> AgentConfig:
        names = [s.name for s in self.sensors]  # type: ignore[attr-defined]  # a union built at import
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"sensor names must be unique, repeated: {duplicates}")
        channels = channel_names(self.sensors)
        repeated = sorted({c for c in channels if channels.count(c) > 1})
        if repeated:
            raise ValueError(f"channel names must be unique, repeated: {repeated}")
        missing = [c for c in self.thermostat.room_channels if c not in channels]
        if missing:
            raise ValueError(f"thermostat.room_channels names unknown channels {missing}; known: {channels}")
        top_w = self.thermostat.output_max_w or self.power.max_w
        predict = self.thermostat.predict  # the default is clamped to a smaller heater's range, a value set is checked
        if "stop_w" in predict.model_fields_set and predict.stop_w > top_w:
            raise ValueError(f"thermostat.predict.stop_w ({predict.stop_w:g} W) is above the "
                             f"heater's maximum ({top_w:g} W, thermostat.output_max_w or power.max_w)")
        if self.sync is not None and self.sync.privacy:
            self._check_privacy(self.sync.privacy)
        return self

    def _check_privacy(self, privacy: Mapping[str, str]) -> None:
        from qrad_agent.sync.privacy import personal_kind

        quantities = channel_quantities(self.sensors)
        unknown = sorted(set(privacy) - set(quantities))
        if unknown:
            raise ValueError(f"sync.privacy names unknown channels {unknown}; known: {sorted(quantities)}")
        odd = sorted(name for name, policy in privacy.items() if policy == "aggregate"
                     and personal_kind(name, quantities[name], self.fire.occupancy_channels) is None)
        if odd:
            raise ValueError(f"sync.privacy: 'aggregate' is defined for presence, sound level and contact "
                             f"channels only, not {odd} (use send or local)")


def channel_quantities(sensors: list[Any]) -> dict[str, str]:
    """Channel name -> quantity, for every channel the configured sensors declare (built without I/O)."""
    context = DriverContext()
    return {spec.name: spec.quantity for entry in sensors for spec in build_driver(entry, context).channels}


def channel_names(sensors: list[Any]) -> list[str]:
    """Every channel the configured sensors declare, in config order (drivers are built without I/O)."""
    context = DriverContext()
    return [spec.name for entry in sensors for spec in build_driver(entry, context).channels]


ENV_OVERRIDES = SETTINGS
"""Variable -> the configuration path it overrides (see `qrad_agent.envvars`)."""


def apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Return ``data`` with the `ENV_OVERRIDES` set in ``environ`` written in."""
    for var, path in ENV_OVERRIDES.items():
        if var in environ:
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
                if not isinstance(node, dict):  # e.g. `platform = 3`: left for validation to report
                    break
            else:
                node[path[-1]] = environ[var]
    return data


def parse_config(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    """Validate a decoded config. Raises ConfigError with one (path, reason) per wrong field."""
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [(_loc(e["loc"]), _reason(e)) for e in exc.errors()]) from exc


def _reason(error: Any) -> str:
    """A pydantic error as a reason a technician can act on: the bad value, or for an unknown key the
    nearest valid one (difflib) or the valid ones."""
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        valid = sorted(valid_keys(loc[:-1]))
        near = difflib.get_close_matches(str(loc[-1]), valid, n=1, cutoff=0.6)
        if near:
            return f"unknown key {loc[-1]!r}; did you mean {near[0]!r}?"
        return f"unknown key {loc[-1]!r}; valid keys here: {', '.join(valid) or 'none'}"
    value = error.get("input")
    if error["type"] == "missing" or isinstance(value, (dict, list)):
        return str(error["msg"])
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{error['msg']} (got {shown})"


def valid_keys(loc: tuple[int | str, ...]) -> set[str]:
    """The keys allowed at ``loc`` (a pydantic error location without its last part) of `AgentConfig`."""
    models: list[type[BaseModel]] = [AgentConfig]
    for part in loc:
        if isinstance(part, int):
            continue
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        if fields:
            models = [m for f in fields for m in _models(f.annotation)]
        else:  # a union member's tag (e.g. the sensor type "hwmon")
            tagged = [m for m in models if "type" in m.model_fields and m.model_fields["type"].default == part]
            models = tagged or models
    return {name for m in models for name in m.model_fields}


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models(arg)]


def load_config(path: Path, environ: dict[str, str] | None = None, *, strict_env: bool = False) -> AgentConfig:
    """Read, override from the environment and validate ``path``. Raises ConfigError: from the file, or
    with source "environment" for a bad setting variable (and with ``strict_env``, for an unknown
    ``QRAD_*`` variable or a malformed systemd one: see `qrad_agent.envvars.check_environment`)."""
    env = dict(os.environ) if environ is None else environ
    check_environment(env, strict=strict_env)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", exc.strerror or str(exc))]) from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8; e.g. a "°C" saved as Latin-1
        raise ConfigError(str(path), [("(file)", f"not UTF-8: {exc}")]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("(toml)", str(exc))]) from exc
    try:
        return parse_config(apply_env(data, env), str(path))
    except ConfigError as exc:  # a value that came from a variable is reported as the variable's
        overridden = {_loc(p): var for var, p in ENV_OVERRIDES.items() if var in env}
        problems = [(f"{loc} (from ${overridden[loc]})" if loc in overridden else loc, reason)
                    for loc, reason in exc.problems]
        raise ConfigError(exc.source, problems) from exc


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"
