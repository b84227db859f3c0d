"""Configuration loading: the example file, every wrong field named by its path, env overrides, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import SecretStr

from qrad_agent.cli import main
from qrad_agent.config import channel_names, AgentConfig, apply_env, load_config, parse_config
from qrad_agent.errors import EX_CONFIG, ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT_ROOT / "hw-sim/qrad_hwsim/agent.toml"

BAD_TOML = """\
device_id = "dev-1"

[power]
max_w = "lots"

[thermostat]
pidd = 3

[thermostat.pid]
ti_s = -1

[[sensors]]
type = "hwmon"
name = "room_sht4x"
chip = "sht4x"
inputs = { room_temp = "temp1_input" }
periodd = 3
"""
BAD_PATHS = ("power.max_w", "thermostat.pidd", "thermostat.pid.ti_s", "sensors[0].hwmon.periodd")


def minimal(**overrides) -> dict:
    """A valid decoded config with one room sensor, updated with ``overrides``."""
    data = {"device_id": "dev-1",
            "sensors": [{"type": "hwmon", "name": "room_sht4x", "chip": "sht4x",
                         "inputs": {"room_temp": "temp1_input"}}]}
    data.update(overrides)
    return data


def problem_paths(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [path for path, _ in exc.value.problems]


# --- the example file --------------------------------------------------------------------------------


def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE, environ={})
    assert isinstance(cfg, AgentConfig)
    assert cfg.device_id == "hwsim-0001"
    assert cfg.power.platform_overhead_w == 30.0
    assert cfg.sensors[0].name == "room_sht4x"
    assert cfg.thermostat.room_channels == ["room_temp", "room_temp_ds18b20", "room_temp_bme280"]
    assert len(channel_names(cfg.sensors)) >= 20  # the 20+ channels on one heater


def test_config_check_cli_accepts_the_example(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QRAD_DEVICE_ID", raising=False)
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert "ok (device hwsim-0001" in capsys.readouterr().out


def test_config_is_frozen() -> None:
    cfg = parse_config(minimal())
    with pytest.raises(ValueError):
        cfg.power.max_w = 1.0  # type: ignore[misc]


# --- bad files ---------------------------------------------------------------------------------------


def test_every_wrong_field_is_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_TOML)
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    assert sorted(problem_paths(exc)) == sorted(BAD_PATHS)
    assert exc.value.source == str(path)


def test_cli_exits_78_and_prints_every_wrong_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_TOML)
    assert main(["config", "check", str(path)]) == EX_CONFIG == 78
    err = capsys.readouterr().err
    for dotted in BAD_PATHS:
        assert f"  {dotted}: " in err


def test_invalid_toml_exits_78_with_the_toml_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.toml"
    text = 'device_id = "dev-1"\n[power\nmax_w = 3\n'
    path.write_text(text)
    with pytest.raises(tomllib.TOMLDecodeError) as toml_error:
        tomllib.loads(text)
    assert main(["config", "check", str(path)]) == 78
    err = capsys.readouterr().err
    assert "(toml)" in err and str(toml_error.value) in err


def test_missing_file_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "absent.toml"
    assert main(["config", "check", str(path)]) == 78
    err = capsys.readouterr().err
    assert str(path) in err and "No such file" in err


def test_idle_at_or_above_max_is_refused() -> None:
    for idle_w in (500.0, 600.0):
        with pytest.raises(ConfigError) as exc:
            parse_config(minimal(power={"idle_w": idle_w, "max_w": 500.0}))
        assert problem_paths(exc) == ["power"]
        assert "idle_w" in exc.value.problems[0][1]
    assert parse_config(minimal(power={"idle_w": 499.0, "max_w": 500.0})).power.idle_w == 499.0


def test_a_stop_power_above_the_heater_or_not_finite_is_refused() -> None:
    for stop_w in (700.0, 1e9):  # a typo for 70 or 140: above power.max_w (500 W)
        with pytest.raises(ConfigError) as exc:
            parse_config(minimal(thermostat={"predict": {"stop_w": stop_w}}))
        assert problem_paths(exc) == ["(root)"] and "thermostat.predict.stop_w" in exc.value.problems[0][1]
    for stop_w in (float("inf"), float("nan"), -5.0):
        with pytest.raises(ConfigError) as exc:
            parse_config(minimal(thermostat={"predict": {"stop_w": stop_w}}))
        assert problem_paths(exc) == ["thermostat.predict.stop_w"]
    assert parse_config(minimal(thermostat={"predict": {"stop_w": 500.0}})).thermostat.predict.stop_w == 500.0
    # the default (140 W) on a smaller heater is not an error: the predictor clamps it to the heater's range
    assert parse_config(minimal(power={"idle_w": 20.0, "max_w": 120.0})).thermostat.predict.stop_w == 140.0


def test_room_channel_naming_an_unknown_sensor_is_refused_with_the_names() -> None:
    data = minimal(thermostat={"room_channels": ["room_temp", "hall_temp"]})
    data["sensors"].append({"type": "hwmon", "name": "floor", "chip": "sht4x",
                            "inputs": {"floor_temp": "temp2_input"}})
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    reason = exc.value.problems[0][1]
    assert "hall_temp" in reason and "room_temp" in reason and "floor_temp" in reason


def test_duplicate_sensor_names_are_refused() -> None:
    data = minimal()
    data["sensors"].append(dict(data["sensors"][0]))
    with pytest.raises(ConfigError, match="room_sht4x"):
        parse_config(data)


def test_unknown_sensor_type_lists_the_known_ones() -> None:
    data = minimal()
    data["sensors"].append({"type": "thermocouple", "name": "x"})
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    path, reason = exc.value.problems[0]
    assert path == "sensors[1]" and "hwmon" in reason and "thermocouple" in reason


# --- environment overrides ---------------------------------------------------------------------------


def test_env_device_id_replaces_the_file(tmp_path: Path) -> None:
    assert load_config(EXAMPLE, environ={"QRAD_DEVICE_ID": "radiator-42"}).device_id == "radiator-42"


@pytest.mark.parametrize("device_id", ["a/b", "a+b", "a#b", "a b", "dev\n", "", "-dev", "x" * 65, "a.b", "a_b",
                                       "dev-"])
def test_unsafe_device_id_is_refused(device_id: str) -> None:
    """A bad QRAD_DEVICE_ID is reported as the variable's, not as the file's."""
    with pytest.raises(ConfigError) as exc:
        load_config(EXAMPLE, environ={"QRAD_DEVICE_ID": device_id})
    assert exc.value.source == "environment" and problem_paths(exc) == ["QRAD_DEVICE_ID"]


def test_env_password_is_a_secret_hidden_everywhere(tmp_path: Path) -> None:
    secret = "hunter2-s3cret"
    cfg = load_config(EXAMPLE, environ={"QRAD_MQTT_PASSWORD": secret, "QRAD_MQTT_USERNAME": "heater"})
    assert isinstance(cfg.platform.password, SecretStr)
    assert cfg.platform.password.get_secret_value() == secret
    assert cfg.platform.username == "heater"
    for text in (repr(cfg), str(cfg), repr(cfg.platform), str(cfg.platform.password)):
        assert secret not in text


def test_config_check_json_hides_the_password(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hunter2-s3cret"
    monkeypatch.setenv("QRAD_MQTT_PASSWORD", secret)
    monkeypatch.setenv("QRAD_DEVICE_ID", "radiator-42")
    assert main(["config", "check", "--json", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert secret not in out
    effective = json.loads(out)
    assert effective["device_id"] == "radiator-42"
    assert effective["platform"]["password"] not in (None, secret)


def test_config_check_console_script(tmp_path: Path) -> None:
    """The installed entry point itself: 0 on the example, 78 with the paths on stderr for a bad file."""
    script = Path(sys.executable).with_name("qrad-agent")
    if not script.exists():
        pytest.skip("qrad-agent console script not installed next to the interpreter")
    env = {"PATH": str(script.parent)}
    ok = subprocess.run([script, "config", "check", EXAMPLE], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(BAD_TOML)
    run = subprocess.run([script, "config", "check", bad], capture_output=True, text=True, env=env)
    assert run.returncode == 78
    assert all(dotted in run.stderr for dotted in BAD_PATHS)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('device_id = "dev-1"\nsensors = [{type = "hwmon", name = "room", chip = "sht4x", '
                     'inputs = {room_temp = "temp1_input"}, ranges = {"°C" = [0, 1]}}]\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    assert problem_paths(exc) == ["(file)"] and "UTF-8" in exc.value.problems[0][1]
    assert main(["config", "check", str(path)]) == 78
    assert "UTF-8" in capsys.readouterr().err


def test_env_override_into_a_section_of_the_wrong_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(apply_env(minimal(platform=3), {"QRAD_MQTT_PASSWORD": "x"}))
    assert problem_paths(exc) == ["platform"]
