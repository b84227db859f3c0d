"""Environment variables: one allow-list, each value checked, a misspelt QRAD_* variable an error naming the
nearest known one (for `run` and `config check`), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from qrad_agent.cli import main
from qrad_agent.config import load_config
from qrad_agent.envvars import check_environment
from qrad_agent.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "hw-sim" / "qrad_hwsim" / "agent.toml"
AGENT = str(Path(sys.executable).with_name("qrad-agent"))


@pytest.mark.parametrize("var, hint", [("QRAD_MQTT_PASSWRD", "QRAD_MQTT_PASSWORD"),
                                       ("QRAD_DEVICEID", "QRAD_DEVICE_ID"),
                                       ("QRAD_MQTT_USER", "QRAD_MQTT_USERNAME"),
                                       ("QRAD_WEATHER", "QRAD_WEATHER_FILE")])
def test_misspelt_variable_is_named_with_the_nearest(var: str, hint: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(EXAMPLE, environ={var: "x"}, strict_env=True)
    assert exc.value.source == "environment"
    assert exc.value.problems == [(var, f"unknown variable; did you mean {hint}?")]
    os.environ[var] = "x"
    try:
        assert main(["config", "check", str(EXAMPLE)]) == 78
    finally:
        del os.environ[var]
    err = capsys.readouterr().err
    assert var in err and hint in err and "Traceback" not in err


def test_known_variables_pass_and_other_commands_are_lenient() -> None:
    env = {"QRAD_WEATHER_FILE": "/x.csv", "QRAD_JOB_ID": "j", "QRAD_CORES": "2", "QRAD_DEVICE_ID": "radiator-42",
           "QRAD_MQTT_USERNAME": "heater", "QRAD_MQTT_PASSWORD": "s3cret", "HOME": "/root"}
    assert load_config(EXAMPLE, environ=env, strict_env=True).device_id == "radiator-42"
    assert load_config(EXAMPLE, environ={"QRAD_TYPO": "1"}).device_id  # status & co only read the file


@pytest.mark.parametrize("env, var", [
    ({"QRAD_MQTT_PASSWORD": ""}, "QRAD_MQTT_PASSWORD"),
    ({"QRAD_MQTT_USERNAME": "two words"}, "QRAD_MQTT_USERNAME"),
    ({"QRAD_DEVICE_ID": "heater-2/resp"}, "QRAD_DEVICE_ID"),
    ({"WATCHDOG_USEC": "30s"}, "WATCHDOG_USEC"),
    ({"WATCHDOG_USEC": "0"}, "WATCHDOG_USEC"),
    ({"NOTIFY_SOCKET": "relative/path"}, "NOTIFY_SOCKET"),
])
def test_bad_values_name_their_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError) as exc:
        check_environment(env, strict=True)
    assert [p for p, _ in exc.value.problems] == [var] and exc.value.source == "environment"


def test_the_daemon_refuses_a_misspelt_variable_with_exit_78(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRAD_")}
    env["QRAD_MQTT_PASSWRD"] = "hunter2"
    result = subprocess.run([AGENT, "run", "--config", str(EXAMPLE)], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    assert result.returncode == 78
    assert "QRAD_MQTT_PASSWRD" in result.stderr and "QRAD_MQTT_PASSWORD" in result.stderr
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr
