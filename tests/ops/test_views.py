"""The technicians' CLI without a daemon: value formatting, the status verdict, config check errors, argument
forms and the exit codes decided before the agent is asked."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from qrad_agent.api.fmt import duration, number, plain
from qrad_agent.cli import _age_s, main
from qrad_agent.log import COMPONENTS
from qrad_agent.ops.selftest import _loop_timing, as_table
from qrad_agent.ops.status import verdict

REPR = re.compile(r"\bNone\b|\bnan\b|\bTrue\b|\bFalse\b|\{|\}|[0-9]\.[0-9]{6,}")
"""What a Python repr leaves in a table: None, nan, booleans, dict braces, float noise."""
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "unit", "text"), [
    (26.493000000000002, "°C", "26.49 °C"), (50.03632643976955, "W", "50.0 W"), (-0.0, "W", "0.0 W"),
    (-0.04, "W", "0.0 W"), (None, "W", "-"), (float("nan"), "°C", "-"), (418.0, "ppm", "418 ppm"),
    (40.0, "%RH", "40.0 %RH"), (1.0, "bool", "1"), (True, "W", "-"),
])
def test_number_has_the_unit_and_its_resolution(value, unit, text) -> None:
    assert number(value, unit) == text


def test_plain_and_duration_have_no_reprs() -> None:
    for text in (plain({"a": 1.5, "b": None, "c": [True, False]}), plain(0.1 + 0.2), plain(float("inf")),
                 duration(None), duration(float("nan")), duration(7300), duration(200000)):
        assert not REPR.search(text), text
    assert duration(250) == "4 min 10 s"


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                               ("45", 45), ("1.5h", 5400)])
def test_log_ages(text: str, seconds: float) -> None:
    assert _age_s(text) == seconds


def test_log_components_are_the_loggers_own() -> None:
    found = set()
    for path in (ROOT / "qrad_agent").rglob("*.py"):
        found |= set(re.findall(r'component="([a-z_-]+)"', path.read_text()))
    assert found == set(COMPONENTS)


def _status(**overrides) -> dict:
    status = {
        "device_id": "d", "thermostat": {"limit_reason": "setpoint"},
        "power": {"forced_reason": None, "failed": {}, "chain": ["cpufreq"]},
        "safety": {"forced_minimum": False, "conditions": {}},
        "sensors": {"channels": {"room_temp": {"quality": "ok"}}},
        "room": {"channel": "room_temp", "value_c": 20.0, "reason": "", "skipped": [], "notes": []},
        "control": {"period_s": 30.0, "last_step_age_s": 5.0}, "uptime_s": 600.0,
    }
    status.update(overrides)
    return status


def test_verdict_ok_degraded_safe_state() -> None:
    assert verdict(_status()) == "ok"
    safe = verdict(_status(safety={"forced_minimum": True, "conditions": {"cpu_overtemperature": "97 °C > 95 °C"}}))
    assert safe.startswith("safe state: cpu_overtemperature (97 °C") and "reset-alarm" not in safe
    latched = verdict(_status(safety={"forced_minimum": True, "latched": ["cpu_overtemperature"],
                                      "conditions": {"cpu_overtemperature": "97 °C > 95 °C"}}))
    assert latched == ("safe state: cpu_overtemperature (97 °C > 95 °C; latched: qrad-agent reset-alarm "
                       "cpu_overtemperature once its cause is gone)")
    skipped = {"channel": "room_temp_ds18b20", "value_c": 20.0, "reason": "", "notes": [],
               "skipped": ["room_temp: stale: unchanged for 600 s"]}
    assert verdict(_status(room=skipped)).startswith("degraded: room temperature from room_temp_ds18b20")
    fire = {"state": "fault", "decision": {"reason": "inputs missing: sound (no audio)"}}
    assert "fire detection fault: inputs missing: sound" in verdict(_status(fire=fire))


def test_verdict_right_after_start_says_when_the_room_reading_is_taken() -> None:
    status = _status(thermostat={"limit_reason": "no valid room temperature: room_temp: no reading yet"},
                     uptime_s=12.0, control={"period_s": 30.0, "last_step_age_s": 12.0})
    assert verdict(status) == ("starting: the thermostat had no room temperature at its last step; it takes "
                               "room_temp at its next, in about 18 s")


def test_selftest_right_after_start_waits_for_the_loop_timing() -> None:
    agent = SimpleNamespace(thermostat=SimpleNamespace(step_times_s=[0.0], cfg=SimpleNamespace(period_s=30.0)))
    check = _loop_timing(agent)
    assert check.ok and check.pending and "in about 60 s" in check.detail
    report = {"ok": True, "checks": [{"name": check.name, "ok": check.ok, "detail": check.detail,
                                      "pending": check.pending}]}
    assert as_table(report).startswith("WAIT  control loop timing")


BAD_CONFIG = """
device_id = "x"
[thermostat]
period_ss = 3
mode = "sometimes"
[[sensors]]
type = "hwmon"
name = "room"
chipp = "sht4x"
inputs = { room_temp = "temp1_input" }
"""


def test_config_check_shows_bad_values_and_nearest_keys(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_CONFIG)
    assert main(["config", "check", str(bad)]) == 78
    err = capsys.readouterr().err
    assert "thermostat.period_ss: unknown key 'period_ss'; did you mean 'period_s'?" in err
    assert "(got 'sometimes')" in err
    assert "sensors[0].hwmon.chipp: unknown key 'chipp'; did you mean 'chip'?" in err


def test_config_check_json_prints_the_errors_as_json(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_CONFIG)
    assert main(["config", "check", str(bad), "--json"]) == 78
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["file"] == str(bad)
    assert {"path": "thermostat.period_ss",
            "reason": "unknown key 'period_ss'; did you mean 'period_s'?"} in report["problems"]
    assert main(["config", "check", str(tmp_path / "absent.toml"), "--json"]) == 78
    assert json.loads(capsys.readouterr().out)["problems"][0]["path"] == "(file)"


def _config(tmp_path: Path, jobs: bool) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(f'device_id = "x"\nstate_dir = "{tmp_path}"\n[api]\nsocket_path = "{tmp_path}/api.sock"\n'
                      f'[[sensors]]\ntype = "hwmon"\nname = "room"\nchip = "sht4x"\n'
                      f'inputs = {{ room_temp = "temp1_input" }}\n'
                      f'[jobs]\nenabled = {str(jobs).lower()}\njobs_dir = "{tmp_path}/jobs"\n')
    return config


@pytest.mark.parametrize("where", ["before", "after"])
def test_jobs_takes_config_before_or_after_its_subcommand(tmp_path: Path, capsys, where: str) -> None:
    config = str(_config(tmp_path, jobs=True))
    argv = ["jobs", "--config", config, "list"] if where == "before" else ["jobs", "list", "--config", config]
    assert main(argv) == 69  # the agent never ran jobs here: no jobs directory
    assert "no jobs directory" in capsys.readouterr().err
    (tmp_path / "jobs").mkdir()
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("no jobs in")


def test_jobs_on_a_heater_with_jobs_disabled_says_so(tmp_path: Path, capsys) -> None:
    assert main(["jobs", "list", "--config", str(_config(tmp_path, jobs=False))]) == 69
    assert "jobs are disabled on this heater ([jobs] enabled = false" in capsys.readouterr().err
    assert main(["jobs", "list"]) == 2
    assert "--config FILE is required" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["override", "22", "--hours", "-1"], ["override", "22", "--hours", "0"], ["override", "21", "--clear"],
    ["override"], ["override", "--clear", "--hours", "2"], ["fire-test", "--seconds", "0"],
    ["identify", "--count", "0"], ["logs", "--since", "ten minutes"], ["logs", "--limit", "0"],
    ["sensors", "--watch", "0"],
])
def test_usage_errors_exit_2_before_asking_the_agent(tmp_path: Path, argv: list[str], capsys) -> None:
    assert _exit_status([*argv, "--socket", str(tmp_path / "nobody.sock")]) == 2
    err = capsys.readouterr().err
    assert err and "Traceback" not in err
    if argv[:3] == ["override", "22", "--hours"]:
        assert "--hours must be > 0" in err
    if argv == ["override", "21", "--clear"]:
        assert "give a setpoint in °C, or --clear (not both)" in err


def test_an_absent_agent_is_69(tmp_path: Path, capsys) -> None:
    assert _exit_status(["status", "--socket", str(tmp_path / "nobody.sock")]) == 69
    assert "agent unreachable" in capsys.readouterr().err


def _exit_status(argv: list[str]) -> int:
    """main's status, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_jobs_list_and_show_are_readable(tmp_path: Path, capsys) -> None:
    from qrad_agent.jobs.model import JobRecord
    from qrad_agent.jobs.store import JobStore

    config = _config(tmp_path, jobs=True)
    store = JobStore(tmp_path / "jobs")
    (tmp_path / "jobs").mkdir()
    store.make_job_dir("sweep-1")
    record = JobRecord(id="sweep-1", status="succeeded", exit_code=0, submitted_at=1733320000.123456)
    record.usage.cpu_s, record.usage.wall_s = 12.345678901, 3.000000001
    store.save(record)
    assert main(["jobs", "list", "--config", str(config)]) == 0
    listed = capsys.readouterr().out
    assert "sweep-1" in listed and "12.3 s" in listed and not REPR.search(listed), listed
    assert main(["jobs", "show", "sweep-1", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert "submitted_at    2024-12-04 13:46:40 UTC" in shown and not REPR.search(shown), shown


def _status_view_input(thermostat: dict) -> dict:
    return _status(thermostat={"mode": "override", "setpoint_c": 23.0, "algorithm": "pid",
                               "limit_reason": "setpoint", **thermostat},
                   power={"forced_reason": None, "failed": {}, "chain": ["cpufreq"], "demand_w": 200.0,
                          "expected_w": 210.0, "measured_w": 205.0},
                   safety={"forced_minimum": False, "conditions": {}}, verdict="ok")


def test_status_shows_when_an_override_ends() -> None:
    from qrad_agent.api.views import status_table

    timed = status_table(_status_view_input({"override_c": 23.0, "override_until": "2026-01-05T18:30",
                                             "override_remaining_s": 7200.0}))
    mode = next(line for line in timed.splitlines() if line.startswith("mode"))
    assert mode == "mode        override  setpoint 23.00 °C  (pid), override until 2026-01-05 18:30 (in 2 h 00 min)"
    held = status_table(_status_view_input({"override_c": 23.0, "override_until": None,
                                            "override_remaining_s": None}))
    assert "override until cleared" in held and not REPR.search(held)
    plain_mode = status_table(_status_view_input({"override_c": None, "mode": "comfort"}))
    assert "override" not in next(line for line in plain_mode.splitlines() if line.startswith("mode"))


def test_thermostat_view_shows_the_mode_and_setpoint_in_force_now() -> None:
    from qrad_agent.api.views import thermostat_view

    last_step = {"mode": "comfort", "setpoint_c": 20.0, "override_c": None}
    assert thermostat_view({**last_step, "mode_setting": "eco", "mode_now": "eco",
                            "setpoint_now_c": 18.5}).startswith("mode eco, setpoint 18.5 °C;")
    assert thermostat_view({**last_step, "mode_setting": "auto", "mode_now": "comfort",
                            "setpoint_now_c": 21.0}).startswith(
        "mode auto: the schedule says comfort now, setpoint 21.0 °C;")
