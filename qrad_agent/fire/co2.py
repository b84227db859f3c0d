"""CO2 and particles against what the room's occupancy explains.

The CO2 balance of a ventilated room, ``V dC/dt = G - Q (C - C_out)``, gives the generation implied by a
measurement: ``G = V (dC/dt + n (C - C_out))`` with ``n`` the air changes per second; ``dC/dt`` is the larger of the
lower bounds of the slopes over ``slope_window_s`` and over the short ``fall_window_s``. Divided by one
person's 0.3 L/min it is a number of persons. People present (an occupancy sensor, speech-level sound in
the last ``presence_hold_s``, or, with neither, the ``occupied_hours`` of the day) explain up to
``max_occupants`` plus ``appliance_persons`` (a gas hob); an empty or sleeping room explains
``absent_persons``. The excess, over ``span_persons``, is the confidence. The rate counts only
``noise_sigmas`` standard errors above zero (an NDIR sensor is noisy at ±(50 ppm + 5 %)). A flaming fire
of 40 kW makes about 40 L/min of CO2, >130 persons.

Plausibility: well-mixed room air cannot lose CO2 faster than ventilation removes it,
``n_max (C - C_out)`` with ``max_air_changes_per_h`` (a wide-open window). A fall faster than that over
``fall_window_s`` (by ``noise_sigmas`` standard errors) means the sensor reads a local source (a person
breathing at it, a glitch), not the room: its CO2 gives no evidence for ``implausible_hold_s`` and says
why. The UCI office shows such spikes at night with nobody present (22:10, 9 Feb 2015: 619 -> 1365 ->
894 -> 1165 -> 622 ppm in five minutes), which replayed at 2 s otherwise read as a fire's generation.

Particles (a PMS5003's PM2.5 where present): smoke is evidence as a level above a floor that depends on
presence (cooking makes hundreds of µg/m³ while someone cooks; nobody is cooking in an empty room) and,
earlier, as a sustained rise that presence does not explain. The rise is the lower bound (``noise_sigmas``
standard errors) of the slope over ``pm_slope_window_s``; present people explain a cooking-like rise of
up to ``pm_rise_present_ug_m3_min`` (frying: about 100 µg/m³/min in a 70 m³ room, hw-sim's cooking
scenario), an empty room only ``pm_rise_absent_ug_m3_min`` (dust, outdoor air). A level that is clearly
decaying is smoke from an earlier event (cooking before the people left), not evidence; every slope
assumes at least the rounding noise of the reading's resolution, so a sensor held at its full scale (a
PMS5003 at 1000 µg/m³ while frying) is not decaying. Smoke alone, weighted 0.6, stays a PRE_ALARM: a
cooking-like event cannot reach ALARM without CO2 or heat beyond what the people explain.
"""

from __future__ import annotations

import math

from qrad_agent.fire.config import Co2Config
from qrad_agent.fire.evidence import Evidence, clip01, missing
from qrad_agent.fire.trend import WindowSlope

LEVEL_CONFIDENCE = 0.8
FAST_MIN_SAMPLES = 8
"""The short window's slope counts only with this many samples in it (a 2 s sensor gives 15 in 30 s; a
few samples' slope and standard error are themselves noise)."""


class Co2Detector:
    """``update(t_s, co2_ppm, pm_ug_m3, present)`` per sample; returns (co2 evidence, particle evidence)."""

    def __init__(self, cfg: Co2Config) -> None:
        self.cfg = cfg
        self.trend = WindowSlope(cfg.slope_window_s, cfg.co2_resolution_ppm)
        self.fall = WindowSlope(cfg.fall_window_s, cfg.co2_resolution_ppm)
        self.implausible_until_s = -math.inf
        self.implausible_why = ""
        self.pm_trend = WindowSlope(30.0, cfg.pm_resolution_ug_m3)
        self.pm_rise = WindowSlope(cfg.pm_slope_window_s, cfg.pm_resolution_ug_m3)
        self.last_co2: Evidence = missing("co2", 0.0, "no CO2 yet")
        self.last_pm: Evidence = missing("particles", 0.0, "no particle sensor")

    def update(self, t_s: float, co2_ppm: float | None, pm_ug_m3: float | None,
               present: bool | None) -> tuple[Evidence, Evidence]:
        present_ = True if present is None else present  # unknown: assume people (fewer false alarms)
        self.last_co2 = self._co2(t_s, co2_ppm, present_)
        self.last_pm = self._pm(t_s, pm_ug_m3, present_)
        return self.last_co2, self.last_pm

    def _co2(self, t_s: float, ppm: float | None, present: bool) -> Evidence:
        c = self.cfg
        if ppm is None or not math.isfinite(ppm):
            self.trend.clear()
            return missing("co2", t_s, "no fresh CO2 reading")
        self.trend.add(t_s, ppm)
        self.fall.add(t_s, ppm)
        slope, se = self.trend.slope()
        fast, fast_se = self.fall.slope()
        if (len(self.fall.samples) >= FAST_MIN_SAMPLES and math.isfinite(fast_se)
                and fast - c.noise_sigmas * fast_se > slope - c.noise_sigmas * se):
            slope, se = fast, fast_se  # a fire growing fast: the short window sees it a minute sooner
        level = self.trend.median_last() or ppm
        fall, fall_se = fast, fast_se
        max_fall = c.max_air_changes_per_h / 3600.0 * max(0.0, level - c.outdoor_ppm)
        if (len(self.fall.samples) >= FAST_MIN_SAMPLES and math.isfinite(fall_se)
                and -(fall + c.noise_sigmas * fall_se) > max_fall):
            self.implausible_until_s = t_s + c.implausible_hold_s
            self.implausible_why = (f"CO2 fell {-fall * 60:.0f} ppm/min where ventilation removes at most "
                                    f"{max_fall * 60:.0f}: the sensor reads a local source, not the room")
        if t_s < self.implausible_until_s:
            return Evidence("co2", 0.0, {"co2_ppm": round(level), "quality": "implausible"},
                            self.implausible_why, t_s)
        # the rate's lower bound, negative while the level falls: a room emptying of CO2 generates nothing
        # (clipping the rate at 0 left the ventilation term alone, read as 15 persons after a crowd left)
        rising = slope - c.noise_sigmas * se if math.isfinite(se) else -math.inf
        decay = c.air_changes_per_h / 3600.0 * max(0.0, level - c.outdoor_ppm)
        persons = max(0.0, c.room_volume_m3 * (rising + decay) * 1e-6 / (c.person_l_per_min / 60000.0))
        explained = c.max_occupants + c.appliance_persons if present else c.absent_persons
        conf = clip01((persons - explained) / (c.span_persons if present else c.span_persons_absent))
        values = {"co2_ppm": round(level), "rate_ppm_per_min": round(slope * 60.0, 1),
                  "persons_equivalent": round(persons, 1), "persons_explained": explained, "present": present}
        if not present and level >= c.level_ppm and conf < LEVEL_CONFIDENCE:
            return Evidence("co2", LEVEL_CONFIDENCE, values, f"CO2 at {level:.0f} ppm >= {c.level_ppm:.0f}", t_s)
        if conf <= 0:
            return Evidence("co2", 0.0, values, "CO2 explained by occupancy", t_s)
        return Evidence("co2", conf, values, f"CO2 generation of {persons:.0f} persons where "
                        f"{explained:.0f} are explained ({'present' if present else 'nobody present'})", t_s)

    def _pm(self, t_s: float, pm: float | None, present: bool) -> Evidence:
        c = self.cfg
        if pm is None or not math.isfinite(pm):
            return missing("particles", t_s, "no fresh particle reading")
        self.pm_trend.add(t_s, pm)
        self.pm_rise.add(t_s, pm)
        level = self.pm_trend.median_last(5) or pm
        floor = c.pm_floor_present_ug_m3 if present else c.pm_floor_absent_ug_m3
        slope, se = self.pm_rise.slope()
        decaying = math.isfinite(se) and slope + c.noise_sigmas * se < 0.0
        c_level = 0.0 if decaying else clip01((level - floor) / c.pm_span_ug_m3)
        rise = (slope - c.noise_sigmas * se) * 60.0 if math.isfinite(se) else 0.0
        explained = c.pm_rise_present_ug_m3_min if present else c.pm_rise_absent_ug_m3_min
        c_rise = clip01((rise - explained) / c.pm_rise_span_ug_m3_min)
        conf = max(c_level, c_rise)
        values = {"pm_ug_m3": round(level, 1), "floor_ug_m3": floor, "rise_ug_m3_min": round(rise, 1),
                  "decaying": decaying,
                  "rise_explained_ug_m3_min": explained, "present": present}
        if conf <= 0:
            reason = "particles normal"
        elif c_rise >= c_level:
            reason = (f"PM2.5 rising {rise:.0f} µg/m³/min where {explained:.0f} is explained "
                      f"({'present' if present else 'nobody present'})")
        else:
            reason = f"PM2.5 {level:.0f} µg/m³ over {floor:.0f}"
        return Evidence("particles", conf, values, reason, t_s)
