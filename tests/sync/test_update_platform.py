"""Updates from the platform: the ``update_agent`` command starts the updater, which fetches the bundle by
digest over mutual TLS and verifies it; every outcome comes back to the platform as an ``update`` event,
with the agent's version in the retained state."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
import sysconfig
import tarfile
from datetime import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather
from test_job_results import _BundleStore

import qrad_agent
from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.sdnotify import Notifier
from qrad_agent.update.bundle import build_bundle
from qrad_agent.update.install import this_python
from qrad_agent.update.layout import Layout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "update"))
from release_helpers import build_agent_wheel

pytestmark = pytest.mark.slow


def _toml_value(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _toml(data: dict) -> str:
    """Enough TOML for the agent's config data: top-level keys, tables, arrays of tables."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if v is not None and not isinstance(v, (dict, list))]
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines.append(f"[[{key}]]")
                lines += [f"{k} = {_toml_value(v)}" for k, v in item.items() if v is not None]
        elif isinstance(value, list):
            lines.insert(0, f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _tar(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


def _events(platform, name: str) -> list[dict]:
    with platform.cond:
        log = platform.devices["heater-1"]
        return [log.messages[s]["body"]["detail"] for s in sorted(log.seen)
                if log.messages[s]["kind"] == "event" and log.messages[s]["body"]["name"] == name]


async def test_update_command_fetches_verifies_and_reports(tmp_path, heater_agent_data, platform, pki) -> None:
    release_key, other_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    key_path = tmp_path / "release.pem"
    key_path.write_bytes(release_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo))
    wheel = build_agent_wheel(tmp_path / "wheels", "0.9.0")
    good = _tar(build_bundle(tmp_path / "good", [wheel], "0.9.0", wheel.name, release_key))
    forged = _tar(build_bundle(tmp_path / "forged", [wheel], "0.9.0", wheel.name, other_key))
    good_sha, forged_sha = hashlib.sha256(good).hexdigest(), hashlib.sha256(forged).hexdigest()
    store = _BundleStore(pki, {good_sha: good, forged_sha: forged})
    root = tmp_path / "opt"
    Layout(root).setup()
    Layout(root).record({"outcome": "succeeded", "from": "0.0.9", "to": qrad_agent.__version__})  # before start

    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.3, bundle_url=store.url)
    data["update"] = {"root": str(root), "release_public_key": str(key_path), "python": str(this_python()),
                      "base_site_packages": sysconfig.get_paths()["purelib"], "restart": "supervisor"}
    config = tmp_path / "agent.toml"
    config.write_text(_toml(data))
    agent = Agent(parse_config(data), Clock(), Notifier({}))
    agent.run_info.config_path = config
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        assert await platform.wait(lambda p: len(_events(p, "update")) == 1, 20)
        (earlier,) = _events(platform, "update")
        assert earlier["outcome"] == "succeeded" and earlier["running_version"] == qrad_agent.__version__
        assert await platform.wait(lambda p: (p.devices["heater-1"].state or {}).get("agent_version")
                                   == qrad_agent.__version__, 10)

        for sha in (forged_sha, good_sha):
            cmd = platform.new_command("update_agent", bundle_sha256=sha)
            response = await asyncio.to_thread(platform.response, platform.command("heater-1", cmd), 15)
            assert response is not None and response.get("ok") is True, response
            count = 2 if sha == forged_sha else 3
            assert await platform.wait(lambda p, n=count: len(_events(p, "update")) >= n, 120), \
                (root / "update.log").read_text()
        refused, installed = _events(platform, "update")[1:3]
        assert refused["outcome"] == "refused" and refused["code"] == "bad_signature", refused
        assert installed["outcome"] == "installed" and installed["to"] == "0.9.0", installed
        assert Layout(root).current_version() == "0.9.0"
        assert [r[0] for r in store.requests] == [f"/bundles/{forged_sha}", f"/bundles/{good_sha}"]
        assert all(r[1] == ((("commonName", "heater-1"),),) for r in store.requests)  # the heater's certificate

        bad = platform.new_command("update_agent", bundle_sha256="not-a-digest")
        response = await asyncio.to_thread(platform.response, platform.command("heater-1", bad), 15)
        assert response is not None and response["ok"] is False and response["reason"] == "invalid"
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
        store.close()
