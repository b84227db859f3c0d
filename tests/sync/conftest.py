"""Fixtures of the sync tests: a real mosquitto with mutual TLS + ACL on a free port, its own throwaway CA.

``pki`` (session): CA, server certificate, client certificates for the platform and two heaters.
``broker``: a fresh mosquitto (own config, ACL, persistence dir) per test, with stop/start/restart.
``sync_cfg``: a SyncConfig for one heater against that broker, outbox in tmp_path, 2 s keepalive.
``platform``: the hw-sim platform stand-in, connected.
``heater_agent_data``: config data of a whole agent on hw-sim's tree syncing to that broker.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

from qrad_agent.sync.config import SyncConfig
from qrad_agent.sync.devbroker import MOSQUITTO, DevBroker, Pki, make_pki
from qrad_hwsim.platform import Platform

if not Path(MOSQUITTO).exists() and shutil.which("mosquitto") is None:
    pytest.skip("mosquitto is not installed (tests/run.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ("platform", "heater-1", "heater-2"))


@pytest.fixture(scope="session")
def platform_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("keys") / "platform.pub"
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, path


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[DevBroker]:
    b = DevBroker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def sync_cfg(tmp_path: Path, broker: DevBroker, pki: Pki,
             platform_key: tuple[Ed25519PrivateKey, Path]) -> Callable[..., SyncConfig]:
    def make(device: str = "heater-1", **overrides: Any) -> SyncConfig:
        cert, key = pki.client(device)
        fields: dict[str, Any] = dict(
            host="127.0.0.1", port=broker.port, ca_file=pki.ca, cert_file=cert, key_file=key,
            keepalive_s=2, backoff_initial_s=0.1, backoff_max_s=0.5, connect_timeout_s=5,
            outbox_path=tmp_path / f"{device}-outbox.db", outbox_durability="normal",
            platform_public_key=platform_key[1])
        fields.update(overrides)
        return SyncConfig(**fields)
    return make


@pytest.fixture
def platform(broker: DevBroker, pki: Pki, platform_key: tuple[Ed25519PrivateKey, Path]) -> Iterator[Platform]:
    cert, key = pki.client("platform")
    with Platform("127.0.0.1", broker.platform_port, pki.ca, cert, key, signing_key=platform_key[0]) as p:
        yield p


@pytest.fixture
def heater_agent_data(tmp_path: Path, sync_cfg) -> Callable[..., dict[str, Any]]:
    """Config data of a whole agent for ``heater-1`` on hw-sim's tree under ``tmp_path/sys``: only the room
    SHT4x, comfort mode, a 1 s control period, platform sync to the test broker (sync fields overridable)."""
    from qrad_agent.sim import example_config_data

    def make(**sync_overrides: Any) -> dict[str, Any]:
        data = example_config_data()
        root = tmp_path / "sys"
        data.update(device_id="heater-1", state_dir=str(tmp_path / "state"))
        data["api"] = {"socket_path": str(tmp_path / "api.sock")}
        data["power"].update(sysfs_root=str(root), jobs_cgroup=str(root / "fs/cgroup/qrad-jobs"))
        data["sensors"] = [s for s in data["sensors"] if s["type"] == "hwmon" and s["chip"] == "sht4x"]
        data["thermostat"].update(room_channels=["room_temp"], mode="comfort", period_s=1.0)
        sync = sync_cfg(**sync_overrides).model_dump(mode="json")
        data["sync"] = {k: v for k, v in sync.items() if v is not None}
        return data
    return make
