"""Heater identity: certificates issued only for strict device ids, the agent's certificate must carry its
own device id, and TLS may be off only for a loopback broker."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from test_private_files import dump_toml
from test_sync_acl import Raw, settle

from qrad_agent.cli import main
from qrad_agent.sync.config import SyncConfig
from qrad_agent.sync.provision import certificate_cn

PROVISION = [sys.executable, "-m", "qrad_agent.sync.provision", "issue"]


def _issue(pki, device: str, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROVISION, "--ca-cert", str(pki.ca), "--ca-key", str(pki.directory / "ca.key"),
                           f"--device={device}", "--out", str(out)], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.mark.parametrize("device", ["heater-2/resp", "heater+", "heater#", "heater 1", "heater.1", "heater_1",
                                    "-heater", "heater-", "", "x" * 64, "platform", "Platform-1", "héater",
                                    "heater\n1", "$SYS"])
def test_provisioning_refuses_every_other_cn(pki, tmp_path: Path, device: str) -> None:
    result = _issue(pki, device, tmp_path / "out")
    assert result.returncode == 2, result
    assert "refused" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_provisioned_heater_connects_as_itself(pki, broker, tmp_path: Path) -> None:
    result = _issue(pki, "heater-77", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    cert, key = tmp_path / "out" / "heater-77.crt", tmp_path / "out" / "heater-77.key"
    assert certificate_cn(cert) == "heater-77" and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _issue(pki, "heater-77", tmp_path / "out").returncode == 1  # never overwrites
    pki.clients["heater-77"] = (cert, key)
    heater = Raw(broker, pki, "heater-77", "anything")
    platform = Raw(broker, pki, "platform", "platform-id")
    try:
        assert heater.connack.wait(5) and heater.ok and platform.connack.wait(5)
        platform.client.subscribe("qrad/v1/+/telemetry", qos=1)
        assert settle(lambda: len(platform.suback) == 1)
        heater.client.publish("qrad/v1/heater-77/telemetry", b"hello", qos=1)
        assert settle(lambda: ("qrad/v1/heater-77/telemetry", b"hello") in platform.messages)
    finally:
        heater.close()
        platform.close()


def test_the_agent_refuses_a_certificate_of_another_identity(heater_agent_data, pki, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = heater_agent_data()
    cert, key = pki.client("heater-2")
    data["sync"].update(cert_file=str(cert), key_file=str(key))
    config = tmp_path / "agent.toml"
    config.write_text(dump_toml(data))
    assert main(["config", "check", str(config)]) == 78
    err = capsys.readouterr().err
    assert "sync.cert_file" in err and "'heater-2'" in err and "'heater-1'" in err
    umask = os.umask(0o022)
    try:
        assert main(["run", "--config", str(config)]) == 78  # refused before anything starts
    finally:
        os.umask(umask)


def test_tls_off_only_on_loopback() -> None:
    for host in ("localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"):
        assert SyncConfig(host=host, tls=False).tls is False
    for host in ("broker.example.com", "10.0.0.5", "192.168.1.2", "localhost.evil.com", "0.0.0.0"):
        with pytest.raises(ValidationError, match="loopback"):
            SyncConfig(host=host, tls=False)


def test_the_agent_refuses_a_private_key_others_can_read(heater_agent_data, pki, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data = heater_agent_data()
    key = tmp_path / "heater-1.key"
    key.write_bytes(Path(data["sync"]["key_file"]).read_bytes())
    key.chmod(0o644)
    data["sync"]["key_file"] = str(key)
    config = tmp_path / "agent.toml"
    config.write_text(dump_toml(data))
    assert main(["config", "check", str(config)]) == 78
    err = capsys.readouterr().err
    assert "sync.key_file" in err and "0644" in err
    key.chmod(0o640)  # a group that reads it is allowed
    assert main(["config", "check", str(config)]) == 0
