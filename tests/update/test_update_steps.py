"""The updater's steps without a running heater: hostile archives, the safety hold, the layout's atomic links."""

from __future__ import annotations

import io
import json
import sysconfig
import tarfile
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qrad_agent.config import parse_config
from qrad_agent.state import save_state
from qrad_agent.update.bundle import UpdateRefused, build_bundle, unpack, verify
from qrad_agent.update.install import this_python
from qrad_agent.update.layout import Layout, LockBusy
from qrad_agent.update.updater import Updater
from release_helpers import build_agent_wheel


def _cfg(tmp_path: Path, key: Ed25519PrivateKey, **update):
    pem = tmp_path / "release.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return parse_config({"device_id": "steps-1", "state_dir": str(tmp_path / "state"),
                         "api": {"socket_path": str(tmp_path / "no-agent.sock")},
                         "sensors": [{"type": "hwmon", "name": "room", "chip": "sht4x",
                                      "inputs": {"room_temp": "temp1_input"}}],
                         "update": {"root": str(tmp_path / "opt"), "release_public_key": str(pem),
                                    "python": str(this_python()), "restart": "supervisor", "poll_s": 0.1,
                                    "base_site_packages": sysconfig.get_paths()["purelib"], "min_free_mb": 1,
                                    **update}})


def _tar(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("members, symlink", [({"../escape.whl": b"x"}, None), ({"sub/a.whl": b"x"}, None),
                                              ({}, "link.whl"), ({".hidden": b"x"}, None)])
def test_hostile_archives_are_refused(tmp_path: Path, members, symlink) -> None:
    archive = tmp_path / "bundle.tar"
    archive.write_bytes(_tar(members, symlink))
    with pytest.raises(UpdateRefused) as err:
        unpack(archive, tmp_path / "staging")
    assert err.value.code == "bad_bundle"
    assert not (tmp_path / "escape.whl").exists() and list((tmp_path / "staging").iterdir()) == []


@pytest.mark.parametrize("manifest, code", [
    (b"not json", "malformed_manifest"),
    (json.dumps({"version": "x.y", "files": {"a.whl": "0" * 64}, "agent_wheel": "a.whl"}).encode(),
     "malformed_manifest"),
    (json.dumps({"version": "1.0", "files": {"../a.whl": "0" * 64}, "agent_wheel": "../a.whl"}).encode(),
     "malformed_manifest"),
    (json.dumps({"version": "1.0", "files": {"a.whl": "0" * 64}, "agent_wheel": "b.whl"}).encode(),
     "malformed_manifest"),
    (json.dumps({"version": "1.0", "files": {"a.whl": "0" * 64}, "agent_wheel": "a.whl"}).encode(),
     "missing_file"),
])
def test_signed_but_malformed_manifests(tmp_path: Path, manifest: bytes, code: str) -> None:
    key = Ed25519PrivateKey.generate()
    staging = tmp_path / "s"
    staging.mkdir()
    (staging / "manifest.json").write_bytes(manifest)
    (staging / "manifest.sig").write_bytes(key.sign(manifest))
    with pytest.raises(UpdateRefused) as err:
        verify(staging, key.public_key())
    assert err.value.code == code


def test_release_key_must_not_be_the_jobs_key(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    cfg = _cfg(tmp_path, key)
    cfg = cfg.model_copy(update={"jobs": cfg.jobs.model_copy(update={"public_key": tmp_path / "release.pem"})})
    with pytest.raises(UpdateRefused) as err:
        Updater(cfg).update(tmp_path / "whatever")
    assert err.value.code == "no_release_key"


@pytest.mark.slow
def test_update_waits_for_a_latched_fire_alarm(tmp_path: Path) -> None:
    """The agent is down and its saved state holds a latched fire alarm: the update waits; it is refused with
    nothing changed if the latch outlasts update.safety_wait_s, and goes on once the latch is reset."""
    key = Ed25519PrivateKey.generate()
    wheel = build_agent_wheel(tmp_path / "wheels", "0.1.0")
    bundle = build_bundle(tmp_path / "bundle", [wheel], "0.1.0", wheel.name, key)
    state = tmp_path / "state" / "state.json"
    save_state(state, {"fire_alarm": {"reason": "smoke and heat"}})
    updater = Updater(_cfg(tmp_path, key, safety_wait_s=0.5))
    assert updater.safety_hold() == "fire alarm latched (saved state)"
    with pytest.raises(UpdateRefused) as err:
        updater.update(bundle)
    assert err.value.code == "safety_hold"
    layout = Layout(tmp_path / "opt")
    assert layout.current_version() is None and [p.name for p in layout.releases.iterdir()] == []

    waiting = Updater(_cfg(tmp_path, key, safety_wait_s=120))
    lines: list[str] = []
    waiting.say = lines.append
    reset = threading.Timer(1.0, lambda: save_state(state, {}))  # a technician resets the alarm
    reset.start()
    started = time.monotonic()
    outcome = waiting.update(bundle)
    reset.join()
    assert time.monotonic() - started >= 1.0
    assert any("waiting, fire alarm latched" in line for line in lines)
    assert outcome["outcome"] == "installed" and layout.current_version() == "0.1.0"


def test_lock_and_atomic_links(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.setup()
    for v in ("1.0", "2.0"):
        (layout.release_dir(v) / "venv").mkdir(parents=True)
        (layout.release_dir(v) / ".complete").write_text("x")
    layout.switch("1.0", None)
    layout.switch("2.0", "1.0")
    assert (layout.current_version(), layout.previous_version()) == ("2.0", "1.0")
    assert not list(tmp_path.glob(".current.*"))
    with layout.lock():
        with pytest.raises(LockBusy):
            with Layout(tmp_path).lock():
                pass
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(ValueError):
            layout.release_dir(bad)
