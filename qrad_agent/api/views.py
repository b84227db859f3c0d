"""Readable tables of what the local API returns, for the CLI: every value with its unit, a missing one as
"-" with its reason, no Python reprs (see fmt.py)."""

from __future__ import annotations

import math
from typing import Any

from qrad_agent.api.fmt import RESOLUTION_BY_UNIT, duration, missing, number, plain


def sensors_table(status: dict[str, Any]) -> str:
    """One line per channel: name, value with unit, age, quality, reason; then the devices not open."""
    lines = [f"{'channel':<22}{'value':>14}  {'age':>8}  {'quality':<13}reason"]
    for name, ch in sorted(status["channels"].items()):
        value = number(ch["value"], ch["unit"], display_step(ch)) if ch["value"] is not None else f"- {ch['unit']}"
        age = "-" if ch["age_s"] is None else f"{ch['age_s']:.1f} s"
        quality = ch["quality"] or "no reading"
        reason = ch["reason"] or ("" if ch["quality"] else "no reading yet")
        lines.append(f"{name:<22}{value:>14}  {age:>8}  {quality:<13}{reason[:70]}".rstrip())
    troubled = {n: d for n, d in status["drivers"].items() if d["state"] != "open" or d["last_error"]}
    for name, d in sorted(troubled.items()):
        lines.append(f"device {name} ({d['type']}): {d['state']}, {d['consecutive_failures']} failure(s), "
                     f"{d['reconnects']} reconnect(s); last error: {d['last_error'][:80]}")
    return "\n".join(lines)


def display_step(ch: dict[str, Any]) -> float:
    """The resolution to show a channel at: its unit's (fmt.RESOLUTION_BY_UNIT), coarser when the channel
    itself only moves in coarser steps (coretemp: whole degrees)."""
    unit_step = RESOLUTION_BY_UNIT.get(ch["unit"], 0.01)
    seen = ch.get("step")
    if not isinstance(seen, (int, float)) or seen <= 0:
        return unit_step
    return max(unit_step, 10.0 ** math.floor(math.log10(seen) + 1e-9))


def status_table(status: dict[str, Any]) -> str:
    """The `status` view: verdict first, then what the heater does and why (see ops/status.py)."""
    t, p, s = status["thermostat"], status["power"], status["safety"]
    control = status.get("control", {})
    step_age = control.get("last_step_age_s")
    step = "no control step yet" if step_age is None else (
        f"last control step {duration(step_age)} ago, every {duration(control.get('period_s'))}")
    lines = [f"verdict     {status.get('verdict', '-')}",
             f"device      {status['device_id']}  up {duration(status.get('uptime_s'))}",
             f"mode        {t['mode']}  setpoint {_c(t['setpoint_c'], 'mode off')}  ({t['algorithm']})"
             + _override_end(t)]
    room = status.get("room")
    if room is not None:
        if room["channel"] is None:
            lines.append(f"room        {missing(room['reason'])}")
        else:
            why = f"; passed over {'; '.join(room['skipped'])}" if room["skipped"] else ""
            lines.append(f"room        {number(room['value_c'], '°C')} from {room['channel']}{why}")
        lines.extend(f"            {note}" for note in room.get("notes", []))
    if s["conditions"]:
        lines.append("power       at minimum: safety holds it (" + "; ".join(s["conditions"]) + ")")
    elif p.get("forced_reason"):
        lines.append(f"power       at minimum: {p['forced_reason']}")
    else:
        lines.append(f"power       demand {number(p['demand_w'], 'W')}  expected {number(p['expected_w'], 'W')}")
    if p["measured_w"] is None:
        measured = missing("measured from the third control step on" if p.get("chain") else "no RAPL energy counter")
    else:
        ended = "" if step_age is None else f" that ended {duration(step_age)} ago"
        measured = f"{number(p['measured_w'], 'W')}, mean of the control period{ended}"
    lines.append(f"measured    {measured}")
    lines.append(f"control     {step}: {t['limit_reason']}")
    window = t.get("window")
    if window is not None and window.get("open"):
        lines.append(f"window      OPEN ({window['reason']}): heating paused at frost protection")
    quiet = t.get("quiet")
    if quiet is not None and quiet.get("reason"):
        lines.append(f"quiet       {quiet['reason']}")
    for request in (t.get("demand_response") or {}).get("requests", []):
        limit = number(request["limit_w"], "W")
        lines.append(f"grid        demand response {request['id']}: {request['kind']} {limit} "
                     f"from {request['start']} to {request['end']}")
    predict = t.get("predict")
    if predict is not None:
        lines.append(f"predict     {predict.get('reason', '-')}")
    lines.append(f"interfaces  {' -> '.join(p['chain']) or 'none'}"
                 + "".join(f"; dropped {n}: {e}" for n, e in p.get("failed", {}).items()))
    lines.append("safety      " + ("; ".join(f"{c}: {r}" for c, r in s["conditions"].items()) or "no condition"))
    if "fire" in status:
        lines.append(f"fire        {_fire(status['fire'])}")
    if "sync" in status:
        lines.append(f"sync        {_sync(status['sync'])}")
    if "jobs" in status:
        lines.append(f"jobs        {_jobs(status['jobs'])}")
    periodic = status.get("selftest")
    if periodic is not None:
        failed = ", ".join(map(str, periodic.get("failed", [])))
        lines.append(f"selftest    {periodic.get('runs', 0)} automatic run(s)"
                     + (f", the last failed: {failed}" if failed else (", the last passed" if periodic.get("runs") else
                                                                     " yet (10 min after start, then hourly)")))
    for name, why in status.get("disabled", {}).items():
        lines.append(f"{name:<12}disabled ({why})")
    events = status.get("events", [])
    lines.append("recent      " + ("(no warnings)" if not events else ""))
    lines.extend("  " + _event_line(e) for e in events)
    return "\n".join(line.rstrip() for line in lines)


def _override_end(thermostat: dict[str, Any]) -> str:
    """", override until 18:30 (in 2 h 00 min)" or ", override until cleared"; "" without an override."""
    if thermostat.get("override_c") is None:
        return ""
    until = thermostat.get("override_until")
    if until is None:
        return ", override until cleared"
    clock = str(until).replace("T", " ")
    return f", override until {clock} (in {duration(thermostat.get('override_remaining_s'))})"


def _c(value: Any, reason: str) -> str:
    text = number(value, "°C")
    return text if text != "-" else missing(reason)


def _fire(fire: dict[str, Any]) -> str:
    state = str(fire.get("state", "-"))
    decision = fire.get("decision") or {}
    text = state.upper() if state in ("fault", "alarm", "pre_alarm") else state
    if decision.get("score") is not None:
        text += f", score {number(decision['score'], '', 0.01)}"
    if decision.get("reason") and state != "normal":
        text += f": {decision['reason']}"
    alarm = fire.get("alarm")
    text += ", no alarm latched" if alarm is None else f", alarm latched: {plain((alarm or {}).get('reason'))}"
    return text


def _sync(sync: dict[str, Any]) -> str:
    outbox = sync.get("outbox", {})
    return (f"{'connected' if sync.get('connected') else 'not connected'} to {sync.get('broker')}, "
            f"{outbox.get('stored', 0)} message(s) in the outbox, {sync.get('inflight', 0)} in flight")


def _jobs(jobs: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(jobs.get("jobs", {}).items())) or "none"
    state = "frozen" if jobs.get("frozen") else ("on hold" if jobs.get("hold") else "running")
    return (f"{state}, {jobs.get('used_slots', 0)}/{jobs.get('slots', 0)} slot(s) used, {jobs.get('queued', 0)} "
            f"queued; jobs: {counts}; launcher {jobs.get('launcher', '-')}")


HIDDEN_FIELDS = ("timestamp", "level", "component", "event", "device_id", "seq")


def _event_line(e: dict[str, Any]) -> str:
    rest = " ".join(f"{k}={_field(v)}" for k, v in e.items() if k not in HIDDEN_FIELDS)
    stamp = str(e.get("timestamp", ""))[:19].replace("T", " ")
    return (f"{stamp} {e.get('level', '')!s:<8}"
            f"{e.get('component', '')!s:<12}{e.get('event', '')} {rest}").rstrip()


def _field(value: Any) -> str:
    text = plain(value)
    return f"({text})" if isinstance(value, (dict, list)) else text


def logs_table(events: list[dict[str, Any]]) -> str:
    """One line per event: time (UTC), level, component, event, then the other fields."""
    return "\n".join(_event_line(e) for e in events) or "(no events)"


def autotune_view(result: dict[str, Any]) -> str:
    """`autotune` answers: a plan, a start, a cancel, a status (phase, elapsed) or applied gains."""
    lines = []
    if "plan" in result:
        lines.append(("autotune started:\n" if result.get("started") else "autotune plan:\n") + result["plan"])
        if result.get("refused_now"):
            lines.append(f"a start now would be refused: {result['refused_now']}")
    if "cancelled" in result:
        lines.append("autotune cancelled; the thermostat drives the power again" if result["cancelled"]
                     else "no autotune running")
    if "running" in result:
        if result["running"]:
            lines.append(f"autotune running: phase {result.get('phase', '-')}, {duration(result.get('elapsed_s'))} "
                         f"elapsed of at most {duration(result.get('max_duration_s'))}")
        else:
            lines.append("no autotune running" + (" (the last one was cancelled)"
                                                  if result.get("phase") == "cancelled" else ""))
    last = result.get("result") or result.get("applied")
    if last:
        lines.append(("gains applied: " if "applied" in result else "last autotune: ") + _tune_result(last))
    return "\n".join(lines) or "-"


def _tune_result(r: dict[str, Any]) -> str:
    if r.get("aborted"):
        return f"aborted: {r['aborted']} ({r.get('samples', 0)} samples)"
    if r.get("error"):
        return f"no model: {r['error']}"
    m, g = r.get("model") or {}, r.get("gains") or {}
    return (f"room gain {number(m.get('gain_k_per_w'), 'K/W', 0.0001)}, time constant "
            f"{duration(m.get('tau_s'))}, dead time {duration(m.get('dead_time_s'))}, fit RMSE "
            f"{number(m.get('fit_rmse_k'), 'K', 0.001)}; proposed Kp {number(g.get('kp_w_per_k'), 'W/K', 1)}, "
            f"Ti {duration(g.get('ti_s'))} (confirm with qrad-agent autotune --confirm)")


def override_view(status: dict[str, Any]) -> str:
    """The thermostat after `override`: what it holds and until when."""
    override = status.get("override_c")
    if override is None:
        return f"override cleared: the thermostat follows mode {status.get('mode_setting', status.get('mode'))} again"
    until = status.get("override_remaining_s")
    span = "until cleared" if until is None else f"for {duration(until)}"
    return f"override: holding {number(override, '°C', 0.1)} {span}, from the next control step"


def thermostat_view(status: dict[str, Any]) -> str:
    """The thermostat after `mode`, `setpoint` or `schedule`: its mode setting, the mode and setpoint in force
    now (``mode_now``, ``setpoint_now_c``; the last control step's where those are absent)."""
    setpoint = status.get("setpoint_now_c", status.get("setpoint_c"))
    now = number(setpoint, "°C", 0.1) if isinstance(setpoint, (int, float)) and setpoint == setpoint else "-"
    setting = status.get("mode_setting")
    mode = status.get("mode_now", status.get("mode"))
    line = (f"mode auto: the schedule says {mode} now, setpoint {now}" if setting == "auto" else
            f"mode {setting}, setpoint {now}" if setting == mode else f"mode {setting} ({mode} now, setpoint {now})")
    if status.get("override_c") is not None:
        line += f"; an override holds {number(status['override_c'], '°C', 0.1)} until cleared or over"
    return line + "; applied from the next control step"


def identify_view(result: dict[str, Any]) -> str:
    """`identify`: which line blinks and how often."""
    return f"blinking the front LED (GPIO line {result['line']}) {result['blinking']} times"


def fire_test_view(result: dict[str, Any]) -> str:
    """`fire-test`: what the alarm path did."""
    lines = [f"fire test {'passed' if result.get('ok') else 'FAILED'} ({number(result.get('seconds'), 's', 0.1)})"]
    for step in result.get("steps", []):
        lines.append(f"  {'ok  ' if step['ok'] else 'FAIL'} {step['name']}: {step['detail']}")
    return "\n".join(lines)


def safety_view(safety: dict[str, Any]) -> str:
    """`reset-alarm`: the safety conditions left."""
    conditions = safety.get("conditions", {})
    return "alarm reset; " + ("safety conditions left: " + "; ".join(f"{c}: {r}" for c, r in conditions.items())
                              if conditions else "no safety condition left: the thermostat drives the power")
