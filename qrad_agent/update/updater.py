"""One update, end to end, with automatic rollback; and the recovery of an update that was interrupted.

`Updater.update(bundle)` (the ``qrad-agent update`` process, never the agent itself: it must outlive the
agent's restart) runs these steps under the update lock, writing the journal before each one:

 1. verify     unpack into ``releases/.staging-*``, check signature and hashes (bundle.py), version (a
               downgrade only when the manifest allows it; the installed version is refused), free disk.
               Nothing has changed if this fails.
 2. safety     wait while a latched safety condition or a fire alarm holds (the agent's status; its saved
               state when it is down), up to ``update.safety_wait_s``, else refuse. The agent keeps running
               and keeps the heater safe all along: safety never waits for the update.
 3. drain      ask the agent (``prepare_update``) to start no job and checkpoint the checkpointable ones;
               wait up to ``update.drain_timeout_s`` for the others to end. Stopping the agent then
               checkpoints or stops what is left, with power at its minimum.
 4. install    ``releases/<version>/venv`` built offline from the bundle; ``.complete`` written last.
 5. switch     ``previous`` -> the running version, ``current`` -> the new one (atomic renames).
 6. restart    the agent and its launcher (systemd units, or the supervisor stand-in).
 7. check      until ``update.health_timeout_s``: the agent answers, runs the new version, its self-test
               passes (control loop running and on time, sensors, actuators) and, where sync is configured,
               it is connected to the platform. A crash loop (the supervisor's flag) fails the check at once.
 8. outcome    healthy: "succeeded"; else "rolled_back": ``current`` -> the previous version, restart, and
               check it too. The outcome goes to ``update-history.jsonl``; the agent reports it to the
               platform with its version (platform.py).

`recover()` runs before every start of the agent (the supervisor, or ``ExecStartPre=qrad-agent update
--recover`` under systemd) and at the start of every update. If the lock is free but a journal remains, the
updater died mid-way: partial releases are removed and, if the switch may have happened, ``current`` goes
back to the version that ran before, which is known to work. A crash loop soon after an update (within
``update.probation_s``) rolls back too.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import Version

import qrad_agent
from qrad_agent.api.client import AgentUnreachable, RequestFailed, call
from qrad_agent.config import AgentConfig
from qrad_agent.safety import SafetyLayer
from qrad_agent.state import load_state
from qrad_agent.sync.signing import SigningError, load_public_key
from qrad_agent.update import bundle as bundle_mod
from qrad_agent.update.bundle import UpdateRefused
from qrad_agent.update.install import build_venv
from qrad_agent.update.layout import Layout, LockBusy

PHASES = ("verify", "safety", "drain", "install", "switch", "restart", "check", "rollback")
FAULT_ENV = "QRAD_UPDATE_FAULT_AT"
"""Fault injection for the kill-at-each-step tests: the updater SIGKILLs itself when it enters this phase."""
SWITCHED = ("switch", "restart", "check", "rollback")


class Updater:
    """Updates of one heater's agent (module docstring). ``say`` receives progress lines."""

    def __init__(self, cfg: AgentConfig, say: Callable[[str], None] = lambda line: None) -> None:
        self.cfg = cfg
        self.ucfg = cfg.update
        self.layout = Layout(self.ucfg.root)
        self.say = say
        self.socket = cfg.api.socket_path

    # -- helpers --

    def _phase(self, phase: str, **fields: Any) -> None:
        self.layout.write_journal(phase=phase, pid=os.getpid(), **fields)
        self.say(f"update: {phase}")
        if os.environ.get(FAULT_ENV) == phase:
            os.kill(os.getpid(), signal.SIGKILL)

    def _key(self) -> Ed25519PublicKey:
        if self.ucfg.release_public_key is None:
            raise UpdateRefused("no_release_key", "update.release_public_key is not configured: updates refused")
        if self.cfg.jobs.public_key is not None and self.ucfg.release_public_key.resolve() == \
                self.cfg.jobs.public_key.resolve():
            raise UpdateRefused("no_release_key", "update.release_public_key is the jobs key; a release key "
                                "must be its own")
        try:
            return load_public_key(self.ucfg.release_public_key)
        except SigningError as exc:
            raise UpdateRefused("no_release_key", str(exc)) from exc

    def _api(self, method: str, params: dict | None = None, timeout_s: float = 5.0) -> Any:
        return call(self.socket, method, params, timeout_s)

    def running_version(self) -> str:
        """The installed version ``current`` points to (the running agent's own when there is no layout)."""
        return self.layout.current_version() or qrad_agent.__version__

    # -- steps --

    def _check_version(self, manifest: bundle_mod.UpdateManifest) -> None:
        current = self.layout.current_version()
        if current is None:
            return
        new, old = Version(manifest.version), Version(current)
        if new == old:
            raise UpdateRefused("same_version", f"version {current} is already installed")
        if new < old and not manifest.allow_downgrade:
            raise UpdateRefused("downgrade", f"{manifest.version} is older than {current} and the manifest "
                                "does not allow a downgrade")

    def _check_disk(self, staging: Path) -> None:
        size = sum(p.stat().st_size for p in staging.iterdir())
        free = shutil.disk_usage(self.layout.root).free
        needed = 4 * size + (self.ucfg.min_free_mb << 20)
        if free < needed:
            raise UpdateRefused("disk_full", f"{free >> 20} MiB free at {self.layout.root}, {needed >> 20} MiB "
                                "needed (4x the bundle + update.min_free_mb)")

    def safety_hold(self) -> str | None:
        """Why an update must wait now (a latched condition or a fire alarm), or None."""
        try:
            status = self._api("status")
            conditions = status.get("safety", {}).get("conditions", {})
            latched = sorted(c for c in conditions if c in SafetyLayer.LATCHED)
            return f"latched: {', '.join(latched)}" if latched else None
        except (AgentUnreachable, RequestFailed, AttributeError):
            saved = load_state(self.cfg.state_dir / "state.json")
            return "fire alarm latched (saved state)" if saved.get("fire_alarm") else None

    def _wait_safe(self) -> None:
        deadline = time.monotonic() + self.ucfg.safety_wait_s
        while (reason := self.safety_hold()) is not None:
            if time.monotonic() >= deadline:
                raise UpdateRefused("safety_hold", f"{reason}: still holding after {self.ucfg.safety_wait_s:g} s")
            self.say(f"update: waiting, {reason}")
            time.sleep(self.ucfg.poll_s)

    def _drain(self) -> None:
        try:
            running = int(self._api("prepare_update", {}).get("running", 0))
        except (AgentUnreachable, RequestFailed, AttributeError, TypeError, ValueError):
            return  # no agent, or no jobs: nothing to drain
        deadline = time.monotonic() + self.ucfg.drain_timeout_s
        while running > 0 and time.monotonic() < deadline:
            time.sleep(self.ucfg.poll_s)
            try:
                running = int(self._api("status").get("jobs", {}).get("used_slots", 0))
            except (AgentUnreachable, RequestFailed, AttributeError, TypeError, ValueError):
                return
        if running:
            self.say(f"update: {running} job slot(s) still busy after the drain time; the stop checkpoints them")

    def _release_hold(self) -> None:
        try:
            self._api("prepare_update", {"release": True})
        except (AgentUnreachable, RequestFailed):
            pass

    def restart(self) -> None:
        """Restart the agent (and its launcher) the way this heater runs it. Raises OSError."""
        if self.ucfg.restart == "supervisor":
            pid = int((self.layout.root / "supervisor.pid").read_text().strip())
            os.kill(pid, signal.SIGHUP)
            return
        done = subprocess.run(["systemctl", "restart", *self.ucfg.systemd_units], capture_output=True, text=True,
                              check=False,
                              timeout=120)
        if done.returncode != 0:
            raise OSError(f"systemctl restart: {done.stderr.strip()}")

    def health(self, version: str) -> str | None:
        """None when the agent is healthy on ``version``, else why not."""
        try:
            status = self._api("status", timeout_s=3.0)
            if status.get("version") != version:
                return f"agent runs version {status.get('version')}, not {version}"
            report = self._api("selftest", timeout_s=10.0)
        except (AgentUnreachable, RequestFailed, AttributeError) as exc:
            return f"agent not answering: {exc}"
        failed = [c["name"] for c in report.get("checks", []) if not c.get("ok")]
        if failed:
            return f"self-test failing: {', '.join(failed)}"
        if self.cfg.sync is not None and not status.get("sync", {}).get("connected"):
            return "not connected to the platform"
        return None

    def wait_healthy(self, version: str, since: float) -> str | None:
        """Poll `health` until it passes (None) or the health timeout; a crash loop flagged after ``since``
        (wall time) fails at once. Returns the last reason on failure."""
        deadline = time.monotonic() + self.ucfg.health_timeout_s
        reason = "no health report"
        while time.monotonic() < deadline:
            if self._crash_loop_since(since):
                return "crash loop"
            reason = self.health(version) or ""
            if not reason:
                return None
            time.sleep(self.ucfg.poll_s)
        return f"not healthy within {self.ucfg.health_timeout_s:g} s: {reason}"

    def _crash_loop_since(self, since: float) -> bool:
        try:
            return float(self.layout.crash_flag.read_text().strip() or 0) >= since
        except (OSError, ValueError):
            return False

    # -- the update --

    def update(self, source: Path) -> dict[str, Any]:
        """Apply the bundle at ``source`` (directory or tar). Returns the recorded outcome. Raises
        UpdateRefused when refused before anything changed, LockBusy when another update runs."""
        key = self._key()
        self.layout.setup()
        with self.layout.lock():
            self._recover_locked(crash_loop=False)
            staging = self.layout.releases / f".staging-{uuid.uuid4().hex[:8]}"
            try:
                self._phase("verify")
                bundle_mod.unpack(source, staging)
                manifest = bundle_mod.verify(staging, key)
                self._check_version(manifest)
                self._check_disk(staging)
                self._phase("safety", to=manifest.version)
                self._wait_safe()
                self._phase("drain", to=manifest.version)
                self._drain()
                return self._apply(staging, manifest)
            except UpdateRefused as exc:
                self._release_hold()
                self.layout.remove_partial({v for v in (self.layout.current_version(),
                                                        self.layout.previous_version()) if v})
                self.layout.clear_journal()
                if exc.code not in ("same_version",):
                    self.layout.record({"outcome": "refused", "from": self.layout.current_version(),
                                        "code": exc.code, "reason": exc.detail})
                raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)

    def _apply(self, staging: Path, manifest: bundle_mod.UpdateManifest) -> dict[str, Any]:
        old, new = self.layout.current_version(), manifest.version
        release = self.layout.release_dir(new)
        self._phase("install", **{"from": old, "to": new})
        shutil.rmtree(release, ignore_errors=True)
        release.mkdir(parents=True)
        build_venv(release, staging, manifest, self.ucfg.python, self.ucfg.base_site_packages)
        shutil.copyfile(staging / bundle_mod.MANIFEST, release / bundle_mod.MANIFEST)
        (release / ".complete").write_text(f"{time.time()}\n")
        self.layout.fsync_root()
        self._phase("switch", **{"from": old, "to": new})
        self.layout.switch(new, old)
        if old is None:  # the first installation: nothing runs yet, the unit starts it
            self.layout.clear_journal()
            return self.layout.record({"outcome": "installed", "from": None, "to": new})
        self._phase("restart", **{"from": old, "to": new})
        since = time.time()
        try:
            self.restart()
            self._phase("check", **{"from": old, "to": new})
            reason = self.wait_healthy(new, since)
        except OSError as exc:
            reason = f"restart failed: {exc}"
        if reason is None:
            self.layout.prune({v for v in (new, old) if v is not None})
            self.layout.clear_journal()
            entry = self.layout.record({"outcome": "succeeded", "from": old, "to": new})
            self.say(f"update: {old} -> {new} succeeded")
            return entry
        return self._rollback(old, new, reason)

    def _rollback(self, old: str | None, new: str, reason: str) -> dict[str, Any]:
        self.say(f"update: {new} failed ({reason}); rolling back to {old}")
        if old is None or not self.layout.is_complete(old):
            self.layout.clear_journal()
            return self.layout.record({"outcome": "failed", "from": old, "to": new, "reason": reason})
        self._phase("rollback", **{"from": old, "to": new, "reason": reason})
        self.layout.switch(old, None)
        since = time.time()
        try:
            self.restart()
            after = self.wait_healthy(old, since)
        except OSError as exc:
            after = f"restart failed: {exc}"
        shutil.rmtree(self.layout.release_dir(new), ignore_errors=True)
        self.layout.crash_flag.unlink(missing_ok=True)
        self.layout.clear_journal()
        return self.layout.record({"outcome": "rolled_back", "from": old, "to": new, "reason": reason,
                                   "previous_healthy": after is None, "previous_detail": after})

    # -- recovery --

    def recover(self, crash_loop: bool = False) -> dict[str, Any] | None:
        """Finish or undo what a dead updater left; with ``crash_loop``, roll back a recent update. Returns
        the recorded outcome, or None when there was nothing to do (or an updater is at work)."""
        self.layout.setup()
        try:
            with self.layout.lock():
                return self._recover_locked(crash_loop)
        except LockBusy:
            if crash_loop:  # the updater at work sees the flag and rolls back itself
                self.layout.crash_flag.write_text(f"{time.time()}\n")
            return None

    def _recover_locked(self, crash_loop: bool) -> dict[str, Any] | None:
        journal = self.layout.journal()
        phase, old, new = journal.get("phase"), journal.get("from"), journal.get("to")
        keep = {v for v in (self.layout.current_version(), self.layout.previous_version(), old) if v}
        if not journal:
            self.layout.remove_partial(keep)
            return self._crash_loop_rollback() if crash_loop else None
        if phase in SWITCHED and old is not None and self.layout.is_complete(old):
            self.layout.switch(old, None)
            keep.discard(str(new))
            if new:
                shutil.rmtree(self.layout.release_dir(str(new)), ignore_errors=True)
            outcome = "rolled_back"
        else:  # verify .. install: current never moved; a partial release is garbage
            outcome = "interrupted"
            if new and self.layout.current_version() != new:
                keep.discard(str(new))
        self.layout.remove_partial(keep)
        self.layout.clear_journal()
        self.layout.crash_flag.unlink(missing_ok=True)
        return self.layout.record({"outcome": outcome, "from": old, "to": new,
                                   "reason": f"updater stopped during {phase}"
                                             + (" (crash loop)" if crash_loop else "")})

    def _crash_loop_rollback(self) -> dict[str, Any] | None:
        history = [e for e in self.layout.history() if e.get("outcome") == "succeeded"]
        current, previous = self.layout.current_version(), self.layout.previous_version()
        if not history or previous is None or not self.layout.is_complete(previous):
            return None
        last = history[-1]
        if last.get("to") != current or time.time() - float(last.get("at", 0)) > self.ucfg.probation_s:
            return None
        self.layout.switch(previous, None)
        return self.layout.record({"outcome": "rolled_back", "from": previous, "to": current,
                                   "reason": "crash loop within the probation time after the update"})
