"""The ``[fire]`` configuration section: thresholds and weights of every fire detector and of the fusion.

Every default is justified by ``benchmarks/fire.py`` (scenarios in hw-sim/qrad_hwsim/fire/scenarios and
the public data sets it replays: UL FSRI, UCI occupancy, smoke sensors) or by a standard; the docstrings
say which figure or clause each one protects. Like the other sections, unknown fields are errors and values
are frozen after load.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SoundConfig(_Section):
    """Alarm-sound detection on the 16 kHz stream (qrad_agent.fire.alarm_sound).

    Bands: piezo smoke alarms lie anywhere in 2.8-3.8 kHz (the band is widened by one FFT bin each side);
    low-frequency alarms are 520 Hz ±10 %. Timing windows are wide because cheap alarms time their beeps
    outside ISO 8201 (0.5 ± 0.05 s): on and short-off times anywhere in [0.2, 0.9] s, the three beeps alike
    (longest / shortest <= ``similarity``), then a long off of at least ``long_gap_min_s`` and at least
    ``long_gap_ratio`` times the short gaps. T4 (100 ms pulses) and steady tones fail the on-time window.
    """

    enabled: bool = True
    segmenter: Literal["ridge", "bin"] = Field(
        "ridge", description="piezo band: 'ridge' tracks a beep's lines and envelope (qrad_agent.fire.ridges); "
                             "'bin' keys a beep to one FFT bin (the detector before issue 16, kept to compare)")
    high_band_hz: tuple[float, float] = (2740.0, 3860.0)
    low_band_hz: tuple[float, float] = (460.0, 580.0)
    contrast_db: float = Field(9.0, gt=0, description="tone peak over the band's median bin, dB")
    floor_margin_db: float = Field(6.0, ge=0, description="tone peak over the adaptive noise floor, dB")
    on_min_s: float = Field(0.2, gt=0)
    on_max_s: float = Field(0.9, gt=0)
    gap_min_s: float = Field(0.2, gt=0)
    gap_max_s: float = Field(0.9, gt=0)
    long_gap_min_s: float = Field(1.0, gt=0)
    long_gap_max_s: float = Field(3.5, gt=0)
    long_gap_ratio: float = Field(1.4, ge=1)
    similarity: float = Field(1.7, ge=1)
    next_beep_min_s: float = Field(0.12, gt=0, description="the next cycle's first beep confirms a cycle")
    hold_s: float = Field(12.0, gt=0, description="a confirmation counts as evidence this long")
    first_confidence: float = Field(0.8, gt=0, le=1, description="after one confirmed cycle")

    @model_validator(mode="after")
    def _ordered(self) -> SoundConfig:
        if not (self.on_min_s < self.on_max_s and self.gap_min_s < self.gap_max_s
                and self.long_gap_min_s < self.long_gap_max_s):
            raise ValueError("sound timing windows must have min < max")
        return self


class HeatConfig(_Section):
    """Heat detection on the best room temperature (qrad_agent.fire.heat), EN 54-5 class A1R.

    ``static_alarm_c`` 56 °C and ``ror_alarm_c`` 46 °C above ``ror_k_per_min`` 4 K/min: the A1R algorithm
    the notes cite, which meets EN 54-5's A1 response-time windows from 25 °C at every tabulated rate (see
    heat.py). ``fixed_rate_*``: a rate-of-rise element (UL 521's 8.3 K/min) that answers a fire growing
    fast in a cold room before the air near the floor reaches 46 °C, never before EN 54-5's lower limits.
    ``rate_*``: the earlier, graded evidence from a rise the heater's own power does not explain.
    """

    static_alarm_c: float = Field(56.0, ge=54.0, le=65.0, description="EN 54-5 A1 static response")
    ror_alarm_c: float = Field(46.0, ge=30.0, le=65.0)
    ror_k_per_min: float = Field(4.0, gt=0)
    slope_window_s: float = Field(120.0, ge=20.0)
    fixed_rate_k_per_min: float = Field(
        8.3, gt=0, description="rate-of-rise element: the fixed rate of UL 521 / NFPA 72 rate-of-rise heat "
                               "detectors (15 °F/min), beyond what the heater's own power explains")
    fixed_rate_window_s: float = Field(30.0, ge=10.0, description="window of the rate-of-rise slope, s")
    fixed_rate_rise_k: float = Field(
        10.0, gt=0, description="rate-of-rise element: rise above the lowest level of the last "
                                "fixed_rate_lookback_s; EN 54-5 A1's lower response limits at 10, 20 and 30 K/min "
                                "(60, 30 and 20 s) are each a 10 K rise, so the element never answers earlier")
    fixed_rate_lookback_s: float = Field(600.0, ge=60.0)
    rate_floor_k_per_min: float = Field(1.0, ge=0, description="unexplained rise giving no evidence")
    rate_full_k_per_min: float = Field(4.0, gt=0, description="unexplained rise giving rate_max_confidence")
    rate_max_confidence: float = Field(0.6, ge=0, le=1)
    noise_sigmas: float = Field(4.0, ge=0, description="a rate counts only this many standard errors up")
    model_step_s: float = Field(60.0, gt=0, description="sampling period of the online room model")
    model_forgetting: float = Field(0.999, gt=0.9, le=1.0)
    prior_c_air_j_k: float = Field(0.4e6, gt=0, description="prior room air capacity for the model")
    prior_loss_w_k: float = Field(20.0, gt=0)


class Co2Config(_Section):
    """CO2 and particles against what occupancy explains (qrad_agent.fire.co2).

    A person at rest breathes out about 0.3 L/min of CO2; the generation rate implied by the measured
    rise and the room's ventilation, ``V (dC/dt + n (C - C_out))``, is expressed in persons. Present
    people explain up to ``max_occupants`` plus ``appliance_persons`` (a gas hob burns about 12 L/min of
    CO2, 40 persons); an empty or sleeping room explains ``absent_persons``.
    """

    room_volume_m3: float = Field(70.0, gt=0)
    air_changes_per_h: float = Field(0.5, gt=0)
    outdoor_ppm: float = Field(420.0, gt=0)
    person_l_per_min: float = Field(0.3, gt=0)
    max_occupants: float = Field(30.0, ge=0)
    appliance_persons: float = Field(40.0, ge=0)
    absent_persons: float = Field(3.0, ge=0)
    slope_window_s: float = Field(120.0, ge=20.0)
    noise_sigmas: float = Field(4.0, ge=0)
    span_persons: float = Field(30.0, gt=0, description="excess persons giving full confidence")
    span_persons_absent: float = Field(
        10.0, gt=0, description="the same in an empty room: 13 persons' CO2 where nobody is, is not people")
    level_ppm: float = Field(6000.0, gt=0, description="with nobody present, a level this high is evidence")
    max_air_changes_per_h: float = Field(
        10.0, gt=0, description="fastest ventilation of the room (a wide-open window): a faster CO2 fall "
                                "is a local source at the sensor")
    fall_window_s: float = Field(30.0, ge=6.0, description="window of the fall-rate slope, s")
    implausible_hold_s: float = Field(900.0, ge=0, description="CO2 gives no evidence this long after an "
                                                                "implausible fall, s")
    co2_resolution_ppm: float = Field(
        1.0, ge=0, description="resolution of the CO2 reading (an MH-Z19 reports whole ppm); its rounding is "
                               "the least noise a rate's standard error assumes (trend.WindowSlope)")
    pm_resolution_ug_m3: float = Field(
        1.0, ge=0, description="resolution of the PM2.5 reading (PMS5003: 1 µg/m³, full scale 1000): a "
                               "window held at full scale is then no slope either way, never a decay")
    pm_floor_present_ug_m3: float = Field(300.0, ge=0)
    pm_floor_absent_ug_m3: float = Field(100.0, ge=0)
    pm_span_ug_m3: float = Field(300.0, gt=0)
    pm_slope_window_s: float = Field(120.0, ge=20.0, description="window of the PM2.5 rise slope, s")
    pm_rise_present_ug_m3_min: float = Field(150.0, ge=0, description="rise people explain (cooking)")
    pm_rise_absent_ug_m3_min: float = Field(5.0, ge=0, description="rise an empty room explains")
    pm_rise_span_ug_m3_min: float = Field(20.0, gt=0, description="unexplained rise giving full confidence")
    presence_db_a: float = Field(45.0, description="a sound level above this means people are present")
    presence_hold_s: float = Field(900.0, ge=0)
    occupied_hours: tuple[float, float] = (7.0, 23.0)


class FusionConfig(_Section):
    """Weighted evidence with persistence (qrad_agent.fire.fusion).

    score = sum(weight_i * confidence_i). PRE_ALARM once score >= ``pre_alarm_score`` for
    ``pre_alarm_persist_s``, until it has been below for ``pre_alarm_clear_s``; ALARM (latched) once
    score >= ``alarm_score`` for ``alarm_persist_s``.
    Weights: a detector that is definite on its own (a confirmed T3 repeated, an EN 54-5 heat response)
    weighs 1; CO2 and particles weigh 0.6 each, so either alone is a PRE_ALARM and both together an ALARM.
    """

    weights: dict[str, float] = Field(default_factory=lambda: {
        "sound": 1.0, "heat": 1.0, "co2": 0.6, "particles": 0.6})
    pre_alarm_score: float = Field(0.5, gt=0)
    alarm_score: float = Field(1.0, gt=0)
    pre_alarm_persist_s: float = Field(
        60.0, ge=0, description="a minute: at a 2 s sensor rate the UCI office's night-time CO2 blips (a "
                                "person or a draught at the sensor, rising for about a minute) gave PRE_ALARMs "
                                "at 10 s (benchmarks/fire.py); ALARM keeps its own, shorter persistence")
    alarm_persist_s: float = Field(4.0, ge=0)
    pre_alarm_clear_s: float = Field(
        300.0, ge=0, description="PRE_ALARM ends once the score has stayed below pre_alarm_score this long: an "
                                 "off-delay against chattering (IEC 62682 / EEMUA 191 alarm management), so one "
                                 "event (an evening's cooking smoke rising, saturating, decaying) is one PRE_ALARM")

    @model_validator(mode="after")
    def _ordered(self) -> FusionConfig:
        if self.pre_alarm_score >= self.alarm_score:
            raise ValueError("pre_alarm_score must be below alarm_score")
        unknown = set(self.weights) - {"sound", "heat", "co2", "particles"}
        if unknown:
            raise ValueError(f"unknown detectors in weights: {sorted(unknown)}")
        return self


class ThermalProtectionConfig(_Section):
    """Heater surface and CPU limits and the verify_heater-style plausibility checks (thermal_protection)."""

    surface_max_c: float = Field(85.0, gt=30, le=120)
    cpu_max_c: float = Field(95.0, gt=40, le=110)
    stale_after_s: float = Field(5.0, gt=0, description="an older reading is invalid (Klipper: 5 s)")
    invalid_fault_s: float = Field(15.0, gt=0, description="invalid this long is a fault")
    gain_power_w: float = Field(200.0, gt=0, description="power above this must warm the surface")
    gain_k: float = Field(2.0, gt=0)
    gain_time_s: float = Field(300.0, gt=0)
    gain_settled_k: float = Field(15.0, gt=0, description="surface this far above room: already warm")
    idle_power_w: float = Field(80.0, ge=0, description="power below this must not warm the surface")
    unpowered_rise_k: float = Field(8.0, gt=0)
    unpowered_time_s: float = Field(600.0, gt=0)


class FireConfig(_Section):
    """The fire detector: which hub channels it reads and the settings of each part."""

    enabled: bool = True
    period_s: float = Field(2.0, gt=0, description="sensor evaluation period")
    stale_after_s: float = Field(60.0, gt=0)
    room_channels: list[str] | None = Field(
        None, min_length=1, description="room temperatures, best first; default: the thermostat's "
                                        "room_channels, so a failed sensor is replaced as it is for control")
    co2_channels: list[str] = Field(default_factory=list)
    pm_channels: list[str] = Field(default_factory=list)
    sound_level_channels: list[str] = Field(default_factory=list)
    occupancy_channels: list[str] = Field(default_factory=list)
    audio_stale_s: float = Field(5.0, gt=0, description="no audio block this long: sound input missing")
    sound: SoundConfig = Field(default_factory=SoundConfig)
    heat: HeatConfig = Field(default_factory=HeatConfig)
    co2: Co2Config = Field(default_factory=Co2Config)
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    thermal: ThermalProtectionConfig = Field(default_factory=ThermalProtectionConfig)
