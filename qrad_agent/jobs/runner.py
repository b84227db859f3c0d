"""The job runner: a priority queue, slots per core, one supervised sandbox per running job.

`JobRunner.run` is the agent's ``jobs`` component (a named task). Each running job has its own task that
spawns the sandbox inside a fresh cgroup, polls its limits (wall time counted while not frozen, output
bytes), and on exit classifies it, reads its usage, kills whatever is left in its cgroup and removes the
cgroup, whatever happened. Results stay on disk until `ack` (the sync layer calls it once the platform has
them). Stopping work for heat is in heat.py; it uses `freeze`, `thaw` and `checkpoint_all` here.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from qrad_agent.jobs import bundle, jobfs, results
from qrad_agent.jobs.cgroups import JobCgroup, JobsCgroupTree
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.launcher import (KERNEL, LAUNCHER_LOST, JobProcess, Launcher, LauncherError,
                                     LauncherUnavailable, RemoteLauncher)
from qrad_agent.jobs.model import (CHECKPOINTED_EXIT, JOB_ID_PATTERN, JobRecord, JobRejected, Manifest, RejectReason,
                                  Status)
from qrad_agent.jobs.sandbox import SANDBOX_START_FAILED, JobUser
from qrad_agent.jobs.seen import MAX_LIFETIME_S, SEEN_DB, SeenJobs
from qrad_agent.jobs.store import JobStore
from qrad_agent.jobs.tree import MAX_DEPTH, TreeUsage, file_usage, remove_tree

log = structlog.get_logger(component="jobs")

CGROUP_REMOVE_TIMEOUT_S = 5.0
"""Longest wait (s, loop clock) for a job's cgroup to empty after SIGKILL before it is left, logged."""
CGROUP_REMOVE_RETRY_S = 0.05
LAUNCHER_RETRY_S = 5.0
"""With the launcher service unreachable, queued jobs wait this long before the next start attempt."""
LAUNCHER_PING_S = 10.0
"""Period (s, loop clock) of the launcher reachability check whose result `status` and `selftest` show."""
DISK_KILL_MIN_BYTES = 1 << 20
"""A job that wrote less than this is never stopped for the disk reserve (someone else filled it)."""
TRASH_PREFIX = ".trash-"
"""Job files being deleted, renamed aside in the jobs directory (no job id starts with a dot)."""
DISK_KILL_MIN_INODES = 256
"""Likewise for the inode reserve."""


@dataclass
class _Active:
    """A running job's live state."""

    manifest: Manifest
    cgroup: JobCgroup
    proc: JobProcess
    task: asyncio.Task | None = None
    stop_reason: str | None = None  # cancel, walltime, output, inodes, depth, disk, checkpoint
    kill_at: float | None = None
    active_s: float = 0.0
    input: TreeUsage = field(default_factory=TreeUsage)  # the bundle's files at start
    output_bytes: int = 0  # allocated, at the last poll
    output_inodes: int = 0
    too_deep: bool = False
    log_bytes: int = 0  # allocated bytes of its stdout and stderr
    fs_full: str | None = None  # "blocks" or "inodes": its own filesystem is full (the kernel says ENOSPC)

    @property
    def kernel_fs(self) -> bool:
        """Whether the job writes in a filesystem of its own (jobfs.py), whose limits the kernel keeps."""
        return self.input.fs_free_bytes is not None


@dataclass
class _Starting:
    """A job whose sandbox is being started off the loop (prepare, measure, spawn in a worker thread); its
    cores count as used. ``stop``: a cancel that came meanwhile, as (reason, grace_s), applied once it runs."""

    manifest: Manifest
    task: asyncio.Task | None = None
    stop: tuple[str, float | None] | None = None


class JobRunner:
    """Queue, slots, sandboxes and results of the heater's jobs."""

    def __init__(self, cfg: JobsConfig, tree: JobsCgroupTree | None = None, device_id: str | None = None) -> None:
        """``device_id``: this heater's id; a signed manifest must name it among its ``devices``."""
        self.cfg = cfg
        self.device_id = device_id
        self._seen: SeenJobs | None = None
        self.tree = tree or JobsCgroupTree(cfg.cgroup)
        self.store = JobStore(cfg.jobs_dir)
        self.launcher: Launcher | RemoteLauncher = (
            RemoteLauncher(cfg, cfg.launcher_socket) if cfg.launcher_socket is not None
            else Launcher(cfg, self.tree, self.store))
        self.key = bundle.load_public_key(cfg.public_key) if cfg.public_key else None
        self.records: dict[str, JobRecord] = {}
        self.manifests: dict[str, Manifest] = {}
        self.active: dict[str, _Active] = {}
        self.hold = False  # no new starts (heat demand met, or frozen)
        self.frozen = False
        self._queue: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self.user: JobUser | None = None
        self._held_for_disk = False
        self._launcher_retry_at = -float("inf")  # loop time before which no start is tried
        self._removals: set[asyncio.Task] = set()  # deletions of job files in worker threads
        # cgroup removals still waiting for the kernel, by job id (owned here, awaited by shutdown); a job
        # whose old cgroup is still being removed does not start
        self._cgroup_removals: dict[str, asyncio.Task[bool]] = {}
        self._leftovers: list[str] = []  # cgroups setup() could not remove at once: run() removes them
        self.update_hold = False  # an update is being prepared: no new start (agent.prepare_update)
        self.on_job_end: Callable[[JobRecord], None] | None = None  # the energy monitor's, with final usage
        self._fs_ready: dict[str, jobfs.FsLimits] = {}  # jobs whose own filesystem is made and mounted
        self._making_fs: dict[str, asyncio.Task] = {}  # jobfs images being made in worker threads
        self._held_for_fs: str | None = None  # the job whose image does not fit above the reserve (logged once)
        self._starting: dict[str, _Starting] = {}  # sandboxes being started in worker threads
        # launcher calls made for callers that cannot await (cancel, ack, a failed start): each in a worker
        # thread with the launcher's own bounded wait, owned here and awaited by shutdown
        self._launcher_calls: set[asyncio.Task] = set()
        self._launcher_state = "not checked yet"
        self._launcher_checked_at = -float("inf")

    # -- setup and shutdown --

    def setup(self) -> None:
        """Job user, tools, cgroups, directories; kill and remove what a previous run left.

        Raises SandboxError/LauncherError when sandboxes cannot be started here, ActuatorError on cgroups."""
        self.user = self.launcher.setup()
        self._launcher_state = self._answered_state()
        self.tree.setup()
        self.tree.thaw()
        for job_id in self.tree.leftovers():  # one try here; run() waits for the ones still busy
            self._privileged("kill", job_id)
            if not self.tree.job(job_id).try_remove():
                self._leftovers.append(job_id)
        for record in self.store.load_all():
            self._restore(record)
        for trash in self.store.root.glob(f"{TRASH_PREFIX}*"):
            _remove_quietly(trash)

    def _privileged(self, op: str, job_id: str) -> object:
        """A launcher operation that must not break the caller (cleanup, stop): failures are logged."""
        try:
            return getattr(self.launcher, op)(job_id)
        except (LauncherError, OSError) as exc:
            log.error("launcher operation failed", op=op, job=job_id, error=str(exc))
            return None

    def _restore(self, record: JobRecord) -> None:
        if record.status.terminal:
            self._privileged("reclaim", record.id)
        else:
            manifest = self._load_manifest(record.id)
            if manifest is None:
                record.status, record.reason = Status.FAILED, "agent_restart"
                self.store.save(record)
            else:
                record.status = Status.QUEUED
                self._enqueue(record, manifest)
        self.records[record.id] = record

    def _load_manifest(self, job_id: str) -> Manifest | None:
        try:
            return Manifest.model_validate_json((self.store.job_dir(job_id) / "manifest.json").read_text())
        except (OSError, ValueError):
            return None

    async def run(self) -> None:
        """The ``jobs`` component: start queued jobs into free slots, take spooled bundles and cancels."""
        try:
            for job_id in self._leftovers:
                self._remove_cgroup_later(job_id)
            self._leftovers.clear()
            while True:
                await self._take_spool()
                await self._check_launcher()
                self._take_cancels()
                self._expire_results()
                self._start_ready()
                self._wake.clear()
                try:  # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                    async with asyncio.timeout(max(self.cfg.poll_s, 0.5)):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            await self.shutdown()

    async def deletions_done(self) -> None:
        """Wait until the job files being deleted in worker threads are gone (their space is free again),
        with the job filesystems being unmounted before them."""
        while self._launcher_calls:
            await asyncio.gather(*list(self._launcher_calls), return_exceptions=True)
        while self._removals:
            await asyncio.gather(*list(self._removals), return_exceptions=True)

    async def shutdown(self) -> None:
        """Let the starts in progress end (bounded by the launcher's spawn timeout), kill every running job
        (checkpointable ones get their grace first when the tree is thawed), then let the launcher calls,
        deletions and cgroup removals in progress finish (each bounded)."""
        if self._starting:  # worker threads cannot be cancelled: a start ends, then its job is stopped below
            await asyncio.gather(*(s.task for s in self._starting.values() if s.task is not None),
                                 return_exceptions=True)
        if self.active:
            await self.checkpoint_all(self.cfg.checkpoint_grace_s if not self.frozen else 0.0)
        if self._making_fs:  # worker threads cannot be cancelled: they finish (the image stays for the restart)
            await asyncio.gather(*self._making_fs.values(), return_exceptions=True)
        while self._launcher_calls:
            await asyncio.gather(*list(self._launcher_calls), return_exceptions=True)
        await self.deletions_done()
        while self._cgroup_removals:
            await asyncio.gather(*list(self._cgroup_removals.values()), return_exceptions=True)

    # -- submission, queries, acknowledgement --

    def submit(self, source: Path, expected_id: str | None = None) -> JobRecord:
        """Verify and queue a bundle; a refused one gets a REJECTED record, and nothing else remains.
        Blocking (it unpacks the bundle and hands it to the job user): on the event loop, `submit_async`.

        ``expected_id``: the job id the platform's command named; a bundle of another job is refused."""
        staged = None
        try:
            staged = bundle.stage(source, self.cfg, self.key, self.store.root)
            self._admit(staged.manifest, expected_id)
            self._place(staged)
            return self._accept(staged.manifest, self._hand_over(staged.manifest.id), staged.signed)
        except (JobRejected, OSError) as exc:
            return self._refuse(source, staged, exc, expected_id)

    async def submit_async(self, source: Path, expected_id: str | None = None) -> JobRecord:
        """`submit` for the event loop: unpacking, verifying and handing the files to the job user run in
        worker threads (a bundle of ``max_bundle_mb`` takes seconds; the launcher's wait is bounded)."""
        staged = None
        try:
            staged = await asyncio.to_thread(bundle.stage, source, self.cfg, self.key, self.store.root)
            self._admit(staged.manifest, expected_id)  # after the wait: an id queued meanwhile is a duplicate
            self._place(staged)
            handed = await asyncio.to_thread(self._hand_over, staged.manifest.id)
            return self._accept(staged.manifest, handed, staged.signed)
        except (JobRejected, OSError) as exc:
            return self._refuse(source, staged, exc, expected_id)

    def _refuse(self, source: Path, staged: bundle.StagedBundle | None, exc: JobRejected | OSError,
                expected_id: str | None) -> JobRecord:
        if staged is not None:
            staged.discard()
        if isinstance(exc, OSError):  # the jobs' filesystem is full (blocks or inodes), or not writable
            exc = JobRejected(RejectReason.NO_SPACE, _os_detail(exc))
        return self._reject(source, exc, expected_id)

    def _admit(self, manifest: Manifest, expected_id: str | None) -> None:
        """The checks a verified manifest must pass to be queued here; raises JobRejected."""
        if expected_id is not None and manifest.id != expected_id:
            raise JobRejected(RejectReason.MALFORMED_MANIFEST,
                              f"bundle is job {manifest.id}, the command named {expected_id}")
        if manifest.id in self.records or self.store.job_dir(manifest.id).exists():
            raise JobRejected(RejectReason.DUPLICATE_ID, f"job {manifest.id} exists")
        self._check_replay(manifest)

    @property
    def seen(self) -> SeenJobs:
        """The persistent record of accepted job ids and nonces (opened on first use)."""
        if self._seen is None:
            self._seen = SeenJobs(self.store.root / SEEN_DB)
        return self._seen

    def _check_replay(self, manifest: Manifest) -> None:
        """Device, expiry and once-only checks of a manifest that names them (every signed one does); then
        its id and nonce are remembered until its expiry. Raises JobRejected."""
        if manifest.nonce is None or manifest.expires_at is None or manifest.devices is None:
            return  # unsigned, without replay fields: a lab or a technician's local job
        now = time.time()
        if self.device_id is None or self.device_id not in manifest.devices:
            raise JobRejected(RejectReason.WRONG_DEVICE, f"manifest is for {', '.join(manifest.devices[:5])}"
                              f"{' ...' if len(manifest.devices) > 5 else ''}, this heater is {self.device_id}")
        if manifest.expires_at < now:
            raise JobRejected(RejectReason.EXPIRED, f"manifest expired {now - manifest.expires_at:.0f} s ago")
        if manifest.expires_at - now > MAX_LIFETIME_S:
            raise JobRejected(RejectReason.MALFORMED_MANIFEST, f"expires_at more than {MAX_LIFETIME_S:.0f} s ahead")
        try:
            held = self.seen.claim([f"job:{manifest.id}", f"bundle-nonce:{manifest.nonce}"], manifest.expires_at,
                                   now)
        except sqlite3.Error as exc:
            raise JobRejected(RejectReason.NO_SPACE, f"replay record not written: {exc}") from exc
        if held is not None:
            raise JobRejected(RejectReason.REPLAYED, f"{held.split(':')[0]} already run on this heater "
                              "(remembered until the manifest expires)")

    def command_seen(self, job_id: str, nonce: str, not_after: float) -> str | None:
        """For a ``submit_job`` command: remember its manifest's nonce until ``not_after``; returns why it is
        a replay (the job id or that nonce was seen) or None. Raises sqlite3.Error on a full disk."""
        now = time.time()
        if self.seen.held(f"job:{job_id}", now):
            return f"job {job_id} already run on this heater"
        if self.seen.claim([f"command-nonce:{nonce}"], min(not_after, now + MAX_LIFETIME_S), now) is not None:
            return "manifest nonce already seen"
        return None

    def reject(self, job_id: str, reason: RejectReason, detail: str) -> JobRecord:
        """Record a job refused before its bundle could be staged (e.g. its download failed)."""
        return self._reject(None, JobRejected(reason, detail), job_id)

    def _place(self, staged: bundle.StagedBundle) -> None:
        """Move the verified files to the job's directory (renames on one filesystem). Raises OSError."""
        assert self.user is not None, "setup() first"
        manifest = staged.manifest
        job_dir = self.store.make_job_dir(manifest.id)
        try:
            staged.path.rename(job_dir / "work")
            (job_dir / "manifest.json").write_text(manifest.model_dump_json())
            (job_dir / "work" / "manifest.json").unlink(missing_ok=True)
        except OSError:  # a full filesystem: nothing of the job may stay without its record
            self.store.remove(manifest.id)
            raise

    def _hand_over(self, job_id: str) -> JobRejected | None:
        """Give the placed files to the job user (blocking: the launcher walks the tree). Returns the
        rejection of a bundle it refuses (a hard link), its files removed; None when handed over, or kept to
        be handed over at start when the launcher cannot be reached."""
        try:
            self.launcher.prepare(job_id)
        except LauncherUnavailable as exc:  # not the bundle's fault: handed over at start instead
            log.warning("launcher unavailable; job kept, prepared at start", job=job_id, error=str(exc))
        except (LauncherError, OSError) as exc:
            self._privileged("reclaim", job_id)
            self.store.remove(job_id)
            return JobRejected(RejectReason.BAD_BUNDLE, f"not handed to the job user: {exc}")
        return None

    def _accept(self, manifest: Manifest, refused: JobRejected | None, signed: bool) -> JobRecord:
        if refused is not None:
            raise refused
        record = JobRecord(id=manifest.id, priority=manifest.priority, cores=manifest.cores,
                           submitted_at=time.time(), signed=signed)
        self.records[record.id] = record
        self.store.save(record)
        self._enqueue(record, manifest)
        log.info("job queued", job=record.id, priority=record.priority, cores=record.cores)
        return record

    def _reject(self, source: Path | None, exc: JobRejected, job_id: str | None = None) -> JobRecord:
        if job_id is None or not re.match(JOB_ID_PATTERN, job_id):
            job_id = _guess_id(source) if source is not None else None
        if job_id is None or job_id in self.records or self.store.job_dir(job_id).exists():
            job_id = f"rejected-{uuid.uuid4().hex[:12]}"
        record = JobRecord(id=job_id, status=Status.REJECTED, reason=exc.reason.value, detail=exc.detail,
                           submitted_at=time.time(), ended_at=time.time())
        try:
            self.store.make_job_dir(job_id)
        except OSError as mk:  # no room even for the record: it is kept in memory and reported
            log.error("rejected job's record not written", job=job_id, error=str(mk))
        self.store.save(record)
        self.records[job_id] = record
        log.warning("job rejected", job=job_id, reason=exc.reason.value, detail=exc.detail)
        return record

    def _enqueue(self, record: JobRecord, manifest: Manifest) -> None:
        self.manifests[record.id] = manifest
        heapq.heappush(self._queue, (-record.priority, next(self._seq), record.id))
        self._wake.set()

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def results(self) -> list[JobRecord]:
        """Finished jobs the platform has not acknowledged yet."""
        return [r for r in self.records.values() if r.status.terminal and not r.acked]

    def ack(self, job_id: str) -> bool:
        """The platform has the result: delete the job's files and forget it. False if not finished."""
        record = self.records.get(job_id)
        if record is None or not record.status.terminal:
            return False
        self._retire(job_id, self.store.job_dir(job_id))
        del self.records[job_id]
        self.manifests.pop(job_id, None)
        return True

    def mark_reported(self, job_id: str, status: str) -> None:
        """The platform has been sent ``status`` for this job (persisted: not re-sent after a restart)."""
        record = self.records.get(job_id)
        if record is not None:
            record.reported = status
            self.store.save(record)

    def result_summary(self, job_id: str) -> dict:
        """A finished job's result for the platform (results.py: end reason, stdout tail, the files it wrote,
        bounded to results.MAX_RESULT_BYTES of JSON). Reads files: call it off the event loop. Never raises:
        a result that cannot be read becomes a failed one with reason ``result_unreadable``."""
        record = self.records.get(job_id)
        if record is None or not record.status.terminal:
            return {}
        try:
            manifest = self.manifests.get(job_id) or self._load_manifest(job_id)
            inputs = set(manifest.files) if manifest is not None else set()
            try:  # the launcher's view: under systemd its mounts are in its own mount namespace
                work_fd: int | None = self.launcher.open_work(job_id)
            except (LauncherError, OSError) as exc:
                log.warning("job directory read in the agent's own view", job=job_id, error=str(exc))
                work_fd = None
            try:
                return results.summary(record, self.store, inputs, work_fd)
            finally:
                if work_fd is not None:
                    os.close(work_fd)
        except Exception as exc:
            log.error("job result unreadable", job=job_id, error=f"{type(exc).__name__}: {exc}")
            return results.unreadable(record, exc)

    def _expire_results(self) -> None:
        now = time.time()
        for job_id, record in list(self.records.items()):
            if (record.status.terminal and record.reported is not None and record.ended_at is not None
                    and now - record.ended_at > self.cfg.result_retention_s):
                log.warning("job result expired unacknowledged", job=job_id)
                self.ack(job_id)

    def cancel(self, job_id: str, grace_s: float | None = None) -> bool:
        """Cancel a queued or running job (running: SIGTERM, its grace, then SIGKILL)."""
        record = self.records.get(job_id)
        if record is None or record.status.terminal:
            return False
        if job_id in self.active:
            self._stop(job_id, "cancel", grace_s)
        elif job_id in self._starting:  # its sandbox is being started: stopped as soon as it runs
            self._starting[job_id].stop = ("cancel", grace_s)
        else:
            self._finish(record, Status.CANCELLED, reason="cancelled before start")
        return True

    def hold_for_update(self, hold: bool) -> int:
        """``hold``: an update is coming: start no new job and ask the checkpointable ones to save and stop
        (frozen jobs cannot save: the stop's checkpoint_all thaws them first); False: start jobs again.
        Returns the busy job slots."""
        self.update_hold = hold
        if not hold:
            self._wake.set()
        elif not self.frozen:
            for job_id, active in list(self.active.items()):
                if active.manifest.checkpointable:
                    self._stop(job_id, "checkpoint", None)
            for starting in self._starting.values():
                if starting.manifest.checkpointable and starting.stop is None:
                    starting.stop = ("checkpoint", None)
        return self.used_slots()

    def used_slots(self) -> int:
        """Cores of the running jobs and of those being started."""
        return (sum(a.manifest.cores for a in self.active.values())
                + sum(s.manifest.cores for s in self._starting.values()))

    def status(self) -> dict:
        """Plain-JSON status of the runner; ``below_reserve``: why no job starts for lack of disk or inodes."""
        by_status: dict[str, int] = {}
        for r in self.records.values():
            by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
        return {"slots": self.cfg.total_slots, "used_slots": self.used_slots(), "hold": self.hold,
                "frozen": self.frozen, "queued": len(self._queue), "jobs": by_status,
                "launcher": self.launcher_state(), "below_reserve": self._disk_low_reason(),
                "disk_limits": self.disk_limits}

    @property
    def disk_limits(self) -> str:
        """"kernel" (each job in a filesystem of its own, jobfs.py), or "user_space: <why>" (degraded: only
        the runner's polling and the reserve stop a job that fills the disk)."""
        return self.launcher.disk_limits

    def launcher_state(self) -> str:
        """"in process", "reachable", or "unreachable: <why>", as the last check found it (every
        LAUNCHER_PING_S while the runner runs; "not checked yet" before). Never blocks."""
        return self._launcher_state

    def _answered_state(self) -> str:
        """The launcher's state once it has answered a call: the in-process one never needs reaching."""
        return "in process" if isinstance(self.launcher, Launcher) else "reachable"

    def check_launcher(self) -> str:
        """Ask the launcher now (blocking, bounded by its request timeout) and remember the answer."""
        try:
            self._launcher_state = self.launcher.ping()
        except LauncherError as exc:
            self._launcher_state = f"unreachable: {exc}"
        return self._launcher_state

    async def _check_launcher(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._launcher_checked_at >= LAUNCHER_PING_S:
            self._launcher_checked_at = now
            await asyncio.to_thread(self.check_launcher)

    # -- starting --

    def disk_free_bytes(self) -> int:
        """Free bytes for unprivileged writers on the jobs directory's filesystem (statvfs f_bavail)."""
        st = os.statvfs(self.store.root)
        return st.f_bavail * st.f_frsize

    def disk_free_inodes(self) -> int | None:
        """Free inodes for unprivileged writers (statvfs f_favail); None on filesystems without a count."""
        st = os.statvfs(self.store.root)
        return st.f_favail if st.f_files else None

    def _disk_low_reason(self, need_bytes: int = 0) -> str | None:
        """Why the jobs' filesystem is below the agent's reserve (blocks or inodes), or None; ``need_bytes``:
        what the next job's image will take (preallocated) on top of the reserve."""
        try:
            free_b, free_i = self.disk_free_bytes(), self.disk_free_inodes()
        except OSError as exc:
            return f"jobs directory unusable: {_os_detail(exc)}"
        if free_b - need_bytes < self.cfg.disk_reserve_mb << 20:
            extra = f" after the next job's {need_bytes >> 20} MiB filesystem" if need_bytes else ""
            return f"free disk {free_b >> 20} MiB{extra} below the reserve of {self.cfg.disk_reserve_mb} MiB"
        if free_i is not None and free_i < self.cfg.inode_reserve:
            return f"free inodes {free_i} below the reserve of {self.cfg.inode_reserve}"
        return None

    def _disk_low(self) -> bool:
        return self._disk_low_reason() is not None

    def _start_ready(self) -> None:
        if self._queue and not self.hold and not self.frozen and self._disk_low():
            if not self._held_for_disk:
                log.warning("jobs held: the jobs' filesystem is below the agent's reserve",
                            why=self._disk_low_reason())
                self._held_for_disk = True
            return
        self._held_for_disk = False
        while self._queue and not self.hold and not self.frozen and not self.update_hold:
            if asyncio.get_running_loop().time() < self._launcher_retry_at:
                return
            _, _, job_id = self._queue[0]
            if job_id in self._cgroup_removals:
                return  # its previous cgroup is still being removed: the head of line waits for it
            record = self.records.get(job_id)
            if record is None or record.status != Status.QUEUED:
                heapq.heappop(self._queue)
                continue
            manifest = self.manifests[job_id]
            if manifest.cores > self.cfg.total_slots - self.used_slots():
                return  # head of line waits for slots: no starvation of big jobs
            if self.disk_limits == KERNEL and job_id not in self._fs_ready:
                self._make_fs(record, manifest)  # in a worker thread; the job starts once it is mounted
                return
            heapq.heappop(self._queue)
            self._start(record, manifest)

    def _start(self, record: JobRecord, manifest: Manifest) -> None:
        """Start the head job: its cgroup here (a few sysfs writes), the launcher's part in a task."""
        starting = _Starting(manifest)
        self._starting[record.id] = starting
        starting.task = asyncio.get_running_loop().create_task(self._launch(record, manifest, starting),
                                                               name=f"job-start:{record.id}")

    def _make_fs(self, record: JobRecord, manifest: Manifest) -> None:
        """Make the head job's own filesystem (jobfs.py) in a worker thread, once the jobs' filesystem keeps
        the reserve after its preallocated image; then wake the loop to start it."""
        if record.id in self._making_fs:
            return
        need = (manifest.output_mb << 20) + self.cfg.max_output_inodes * jobfs.INODE_BYTES + (8 << 20)
        low = self._disk_low_reason(need)
        if low is not None:
            if self._held_for_fs != record.id:
                log.warning("jobs held: the jobs' filesystem is below the agent's reserve", why=low)
                self._held_for_fs = record.id
            return
        self._held_for_fs = None
        task = asyncio.get_running_loop().create_task(self._make_fs_task(record, manifest), name=f"jobfs:{record.id}")
        self._making_fs[record.id] = task

    async def _make_fs_task(self, record: JobRecord, manifest: Manifest) -> None:
        try:
            made = await asyncio.to_thread(self.launcher.make_fs, record.id, manifest.output_mb << 20)
        except LauncherUnavailable as exc:  # infrastructure, not the job: it waits for the launcher
            self._launcher_state = f"unreachable: {exc}"
            log.error("launcher unavailable; job filesystem not made", job=record.id, error=str(exc),
                      retry_s=LAUNCHER_RETRY_S)
            record.reason = "launcher_unavailable"
            self.store.save(record)
            self._launcher_retry_at = asyncio.get_running_loop().time() + LAUNCHER_RETRY_S
            return
        except Exception as exc:  # mkfs or mount refused: this job cannot run, the next may
            await asyncio.to_thread(self._privileged, "destroy_fs", record.id)
            self._finish(record, Status.FAILED, reason="job_fs", detail=f"its filesystem was not made: {exc}")
            # its queue entry is dropped by _start_ready (no longer QUEUED)
            return
        finally:
            self._making_fs.pop(record.id, None)
            self._wake.set()
        if made is not None:
            self._fs_ready[record.id] = made
            log.info("job filesystem mounted", job=record.id, free_bytes=made.bytes, free_inodes=made.inodes)
        else:  # the launcher fell back to user-space accounting meanwhile (it restarted without loop devices)
            self._fs_ready[record.id] = jobfs.FsLimits(0, 0)

    def _spawn(self, job_id: str, manifest: Manifest) -> tuple[TreeUsage, JobProcess]:
        """The launcher's part of a start (blocking, each call bounded by the launcher's timeouts): hand the
        work to the job user, measure the input, spawn the sandbox. Raises what the launcher raises."""
        self.launcher.prepare(job_id)  # again after a checkpoint: the work came back to root
        input_usage = self.launcher.work_usage(job_id)
        job_dir = self.store.job_dir(job_id)
        with open(job_dir / "stdout", "ab") as out, open(job_dir / "stderr", "ab") as err:
            proc = self.launcher.spawn(job_id, manifest.cores, manifest.output_mb << 20, manifest.command,
                                       out.fileno(), err.fileno())
        return input_usage, proc

    async def _launch(self, record: JobRecord, manifest: Manifest, starting: _Starting) -> None:
        try:
            await self._launch_owned(record, manifest, starting)
        finally:
            self._starting.pop(record.id, None)
            self._wake.set()

    async def _launch_owned(self, record: JobRecord, manifest: Manifest, starting: _Starting) -> None:
        assert self.user is not None, "setup() first"
        cgroup = None
        try:
            cgroup = self.tree.create(record.id, manifest.cores, manifest.memory_mb << 20, manifest.pids)
            input_usage, proc = await asyncio.to_thread(self._spawn, record.id, manifest)
            self._launcher_state = self._answered_state()
        except LauncherUnavailable as exc:  # infrastructure, not the job: it waits for the launcher
            self._launcher_state = f"unreachable: {exc}"
            if cgroup is not None:
                self._remove_cgroup_later(record.id)
            log.error("launcher unavailable; job back in the queue", job=record.id, error=str(exc),
                      retry_s=LAUNCHER_RETRY_S)
            record.reason = "launcher_unavailable"
            self.store.save(record)
            self._launcher_retry_at = asyncio.get_running_loop().time() + LAUNCHER_RETRY_S
            if starting.stop is None:
                self._enqueue(record, manifest)
            else:
                self._finish(record, Status.CANCELLED, reason="cancelled before start")
            return
        except Exception as exc:  # a start failure (cgroup, bwrap, fork) is the job's, never the agent's
            if cgroup is not None:
                self._remove_cgroup_later(record.id)
            await asyncio.to_thread(self._privileged, "reclaim", record.id)
            if starting.stop is not None and starting.stop[0] == "cancel":
                self._finish(record, Status.CANCELLED, reason="cancelled before start")
            else:
                self._finish(record, Status.FAILED, reason="sandbox_start", detail=str(exc))
            return
        active = _Active(manifest, cgroup, proc, input=input_usage)
        self.active[record.id] = active
        record.disk_limits = (KERNEL if input_usage.fs_free_bytes is not None
                              else self.disk_limits if self.disk_limits != KERNEL else "user_space")
        record.status, record.started_at = Status.RUNNING, record.started_at or time.time()
        self.store.save(record)
        active.task = asyncio.get_running_loop().create_task(self._supervise(record, active),
                                                             name=f"job:{record.id}")
        log.info("job started", job=record.id, pid=proc.pid)
        if starting.stop is not None:  # cancelled while it was being started
            self._stop(record.id, *starting.stop)

    # -- supervision --

    async def _supervise(self, record: JobRecord, active: _Active) -> None:
        loop = asyncio.get_running_loop()
        started = last = loop.time()
        try:
            while active.proc.poll() is None:
                await asyncio.sleep(self.cfg.poll_s)
                now = loop.time()
                if not self.frozen:
                    active.active_s += now - last
                else:
                    record.usage.frozen_s += now - last
                last = now
                await self._check_limits(record, active, now)
            returncode = active.proc.returncode
        finally:
            record.usage.wall_s = loop.time() - started
            await self._cleanup(record, active)
        self._classify(record, active, returncode)

    async def _check_limits(self, record: JobRecord, active: _Active, now: float) -> None:
        if active.kill_at is not None and now >= active.kill_at:
            await asyncio.to_thread(self._privileged, "kill", record.id)
            return
        if active.stop_reason is None and active.active_s > active.manifest.walltime_s:
            self._stop(record.id, "walltime", 0.0)
            return
        await asyncio.to_thread(self._measure_output, record.id, active)
        # on its own filesystem the kernel keeps the job's bytes and inodes: it got ENOSPC, and is stopped
        # with its grace (it may save what it has); its logs, on the jobs' filesystem, are counted here in
        # both modes (and capped by RLIMIT_FSIZE)
        kernel = active.kernel_fs
        counted = active.log_bytes if kernel else active.output_bytes
        if active.stop_reason is None and active.fs_full is not None:
            self._stop(record.id, "inodes" if active.fs_full == "inodes" else "output", None)
        elif active.stop_reason is None and counted >= active.manifest.output_mb << 20:
            self._stop(record.id, "output", 0.0)
        elif active.stop_reason is None and not kernel and active.output_inodes >= self.cfg.max_output_inodes:
            self._stop(record.id, "inodes", 0.0)
        elif active.stop_reason is None and active.too_deep:
            self._stop(record.id, "depth", 0.0)
        elif active.stop_reason is None and not kernel and self._biggest_writer_over_reserve(active):
            self._stop(record.id, "disk", 0.0)

    def _biggest_writer_over_reserve(self, active: _Active) -> bool:
        """With the jobs' filesystem below the reserve, whether ``active`` is the job to stop: the one that
        wrote most bytes (blocks low) or made most inodes (inodes low), if it made a real share of it."""
        low = self._disk_low_reason()
        if low is None:
            return False
        if "inodes" in low:
            return (active.output_inodes >= DISK_KILL_MIN_INODES
                    and active is max(self.active.values(), key=lambda a: a.output_inodes))
        return (active.output_bytes >= DISK_KILL_MIN_BYTES
                and active is max(self.active.values(), key=lambda a: a.output_bytes))

    def _measure_output(self, job_id: str, active: _Active) -> None:
        """The job's output so far, as its filesystem counts it: allocated blocks of its logs and of what
        its work directory gained since the start (files, directories, preallocated space), and inodes."""
        job_dir = self.store.job_dir(job_id)
        logs = active.log_bytes = sum(file_usage(job_dir / n) for n in ("stdout", "stderr"))
        work = self._privileged("work_usage", job_id)
        if isinstance(work, TreeUsage):
            active.output_bytes = logs + max(0, work.allocated_bytes - active.input.allocated_bytes)
            active.output_inodes = max(0, work.inodes - active.input.inodes)
            active.too_deep = active.too_deep or work.too_deep
            active.fs_full = self._fs_full(active, work)
        else:
            active.output_bytes = max(active.output_bytes, logs)

    def _fs_full(self, active: _Active, work: TreeUsage) -> str | None:
        """"inodes" or "blocks" when the job's own filesystem is at its limit, as the kernel counts it (what
        it took since the start, metadata included; ext4 may refuse a large write with a few blocks still
        free, so "nearly no space left" is not enough); None when it is not, or on no filesystem of its own.
        As it is now: a job that hit ENOSPC, freed its scratch files and went on is not flagged."""
        start_b, start_i = active.input.fs_free_bytes, active.input.fs_free_inodes
        if start_b is None or start_i is None or work.fs_free_bytes is None or work.fs_free_inodes is None:
            return None
        if work.fs_free_inodes <= 0 or start_i - work.fs_free_inodes >= self.cfg.max_output_inodes:
            return "inodes"
        if (work.fs_free_bytes < jobfs.FULL_BYTES
                or start_b - work.fs_free_bytes >= active.manifest.output_mb << 20):
            return "blocks"
        return None

    def _stop(self, job_id: str, reason: str, grace_s: float | None) -> None:
        """SIGTERM the job's own processes (not bwrap's), SIGKILL everything after ``grace_s``."""
        active = self.active.get(job_id)
        if active is None:
            return
        if active.stop_reason is None or reason == "cancel":
            active.stop_reason = reason
        grace = active.manifest.grace_s if grace_s is None else grace_s
        if grace <= 0 or self.frozen:
            self._privileged_soon("kill", job_id)
            active.kill_at = 0.0
            return
        self._privileged_soon("terminate", job_id)
        deadline = asyncio.get_running_loop().time() + grace
        active.kill_at = deadline if active.kill_at is None else min(active.kill_at, deadline)

    async def _cleanup(self, record: JobRecord, active: _Active) -> None:
        cg = active.cgroup
        record.usage.cpu_s = cg.cpu_s()
        record.usage.memory_peak_bytes = cg.memory_peak()
        record.usage.oom_kills = cg.oom_kills()
        record.usage.pids_limit_hits = cg.pids_limit_hits()
        try:
            await asyncio.to_thread(self._measure_output, record.id, active)
        except Exception as exc:
            log.error("job output not measured", job=record.id, error=f"{type(exc).__name__}: {exc}")
        record.usage.output_bytes = active.output_bytes
        record.usage.output_inodes = active.output_inodes
        if self.on_job_end is not None:
            try:
                self.on_job_end(record)
            except Exception:  # accounting must never keep a job's cgroup alive
                log.exception("job end hook failed", job=record.id)
        await self._remove_cgroup(record.id, cg)
        await asyncio.to_thread(self._privileged, "reclaim", record.id)  # a deep tree takes seconds to cut
        self.active.pop(record.id, None)
        self._wake.set()

    def _classify(self, record: JobRecord, active: _Active, returncode: int | None) -> None:
        rc = returncode if returncode is None or returncode < 128 else -(returncode - 128)
        record.exit_code = rc
        stop = active.stop_reason
        if stop == "cancel":
            self._finish(record, Status.CANCELLED)
        elif stop == "walltime":
            self._finish(record, Status.KILLED_WALLTIME, detail=f"over {active.manifest.walltime_s} s")
        elif stop == "disk":  # its partial output goes too, or the reserve stays eaten
            self._remove_work(record.id)
            self._finish(record, Status.KILLED_OUTPUT, reason="disk_reserve",
                         detail=f"the jobs' filesystem fell below the agent's reserve ({self.cfg.disk_reserve_mb} "
                                f"MiB, {self.cfg.inode_reserve} inodes); its {record.usage.output_bytes >> 20} MiB, "
                                f"{record.usage.output_inodes} inodes of output deleted")
        elif active.fs_full == "inodes" or (active.kernel_fs and stop == "inodes"):  # its own inodes: output kept
            self._finish(record, Status.KILLED_OUTPUT, reason="output_inodes",
                         detail=f"its filesystem's {self.cfg.max_output_inodes} inodes are used up: the kernel "
                                "refused more files and directories with ENOSPC")
        elif stop == "inodes" or (not active.kernel_fs and active.output_inodes >= self.cfg.max_output_inodes):
            self._remove_work(record.id)
            self._finish(record, Status.KILLED_OUTPUT, reason="output_inodes",
                         detail=f"over {self.cfg.max_output_inodes} files and directories; output deleted")
        elif stop == "depth" or active.too_deep:
            self._finish(record, Status.KILLED_OUTPUT, reason="output_depth",
                         detail=f"directories nested deeper than {MAX_DEPTH} levels (the deeper ones deleted)")
        elif active.fs_full == "blocks":
            self._finish(record, Status.KILLED_OUTPUT, reason="output_full",
                         detail=f"its filesystem of {active.manifest.output_mb} MiB is full: the kernel refused "
                                "more writes with ENOSPC")
        elif stop == "output" or (not active.kernel_fs
                                  and record.usage.output_bytes >= active.manifest.output_mb << 20):
            self._finish(record, Status.KILLED_OUTPUT, detail=f"over {active.manifest.output_mb} MiB")
        elif record.usage.oom_kills > 0:
            self._finish(record, Status.KILLED_MEMORY, detail=f"over {active.manifest.memory_mb} MiB")
        elif rc == 0:
            self._finish(record, Status.SUCCEEDED)
        elif stop == "checkpoint":
            record.checkpoints += 1
            record.status = Status.QUEUED
            record.reason = "checkpointed" if rc == CHECKPOINTED_EXIT else "killed_after_grace"
            self.store.save(record)
            self._enqueue(record, active.manifest)
        elif rc == LAUNCHER_LOST and isinstance(self.launcher, RemoteLauncher):
            record.status, record.reason = Status.QUEUED, "launcher_lost"  # killed with the service: again
            record.detail = "the launcher service went away and took the job with it; queued again"
            self.store.save(record)
            log.error("launcher lost; job queued again", job=record.id)
            self._launcher_retry_at = asyncio.get_running_loop().time() + LAUNCHER_RETRY_S
            self._enqueue(record, active.manifest)
        elif rc == SANDBOX_START_FAILED:
            self._finish(record, Status.FAILED, reason="sandbox_start",
                         detail=self.store.tail(record.id, "stderr", 500))
        else:
            self._finish(record, Status.FAILED, reason="exit_code" if rc and rc > 0 else "signal")

    def _remove_work(self, job_id: str) -> None:
        self._retire(job_id, self.store.work_dir(job_id))

    def _retire(self, job_id: str, path: Path) -> None:
        """Unmount the job's own filesystem, then delete ``path`` (its work or its whole directory), both off
        the loop when one runs: the launcher's unmount first (a renamed directory is no longer the job's).
        A job known to have no filesystem of its own (never made, or not started on one) is renamed aside at
        once, so its id is free again; a mount left by a crash is swept by the launcher's next setup."""
        made = self._fs_ready.pop(job_id, None) is not None
        record = self.records.get(job_id)
        own_fs = made or (record is not None and record.disk_limits == KERNEL)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (setup, the CLI): here
            self._privileged("destroy_fs", job_id)
            self._discard(path)
            return
        if not own_fs:
            self._discard(path)
            return

        async def retire() -> None:
            await asyncio.to_thread(self._privileged, "destroy_fs", job_id)
            self._discard(path)

        self._own_launcher_call(retire(), f"retire:{job_id}")

    def _own_launcher_call(self, call: Coroutine[Any, Any, object], name: str) -> None:
        """Run ``call`` (launcher calls in worker threads) in a task owned here; shutdown awaits it."""
        task = asyncio.get_running_loop().create_task(call, name=name)
        self._launcher_calls.add(task)
        task.add_done_callback(self._launcher_calls.discard)

    def _privileged_soon(self, op: str, job_id: str) -> None:
        """`_privileged` in a worker thread, for callers on the loop that cannot await (cancel, stop)."""
        self._own_launcher_call(asyncio.to_thread(self._privileged, op, job_id), f"launcher-{op}:{job_id}")

    def _discard(self, path: Path) -> None:
        """Delete a job's files without blocking the event loop: renamed aside at once (a new job may take
        the id), deleted in a worker thread (tens of thousands of files take seconds); a ``.trash-*``
        directory left by a crash is deleted at the next setup."""
        trash = self.store.root / f"{TRASH_PREFIX}{uuid.uuid4().hex}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("job files not deleted", path=str(path), error=str(exc))
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (setup, the CLI): delete here
            _remove_quietly(trash)
            return
        task = loop.create_task(asyncio.to_thread(_remove_quietly, trash), name=f"discard:{trash.name}")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _finish(self, record: JobRecord, status: Status, reason: str | None = None,
                detail: str | None = None) -> None:
        record.status, record.ended_at = status, time.time()
        record.reason = reason or (status.value if status != Status.SUCCEEDED else None)
        record.detail = detail
        self.store.save(record)
        log.info("job ended", job=record.id, status=status.value, exit_code=record.exit_code,
                 cpu_s=round(record.usage.cpu_s, 2))

    async def _remove_cgroup(self, job_id: str, cgroup: JobCgroup | None = None) -> bool:
        """Kill what is left in the job's cgroup and remove it, retrying every CGROUP_REMOVE_RETRY_S on the
        loop's clock for at most CGROUP_REMOVE_TIMEOUT_S; False, logged with the pids left, if it stays."""
        cgroup = cgroup or self.tree.job(job_id)
        loop = asyncio.get_running_loop()
        timeout_s = CGROUP_REMOVE_TIMEOUT_S
        deadline = loop.time() + timeout_s
        while True:
            await asyncio.to_thread(self._privileged, "kill", job_id)
            if cgroup.try_remove():
                return True
            if loop.time() >= deadline:
                log.error("job cgroup not removed", job=job_id, pids=cgroup.pids(), waited_s=timeout_s)
                return False
            await asyncio.sleep(CGROUP_REMOVE_RETRY_S)

    def _remove_cgroup_later(self, job_id: str) -> None:
        """`_remove_cgroup` in a task the runner owns (``shutdown`` awaits it); the job does not start again
        until it has ended. For callers that cannot await (a failed start)."""
        if job_id in self._cgroup_removals:
            return
        task = asyncio.get_running_loop().create_task(self._remove_cgroup(job_id), name=f"cgroup-remove:{job_id}")
        self._cgroup_removals[job_id] = task

        def done(finished: asyncio.Task[bool]) -> None:
            if self._cgroup_removals.get(job_id) is finished:
                del self._cgroup_removals[job_id]
            self._wake.set()

        task.add_done_callback(done)

    # -- heat primitives (heat.py) --

    def freeze(self) -> None:
        """Stop every job's CPU at once (synchronous; one cgroup write). Jobs keep their memory and work."""
        self.tree.freeze()
        self.frozen = True

    def thaw(self) -> None:
        self.tree.thaw()
        self.frozen = False
        self._wake.set()

    async def checkpoint_all(self, grace_s: float | None = None) -> None:
        """SIGTERM every running job, SIGKILL after the grace; checkpointable ones go back to the queue."""
        if self.frozen:
            self.thaw()
            self.hold = True
        if self._starting:  # the starts in progress end first (bounded), then their jobs are stopped too
            await asyncio.gather(*(s.task for s in self._starting.values() if s.task is not None),
                                 return_exceptions=True)
        tasks = []
        for job_id, active in list(self.active.items()):
            self._stop(job_id, "checkpoint" if active.manifest.checkpointable else "cancel",
                       grace_s if grace_s is not None else self.cfg.checkpoint_grace_s)
            if active.task is not None:
                tasks.append(active.task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- the CLI's file protocol --

    async def _take_spool(self) -> None:
        for path in self.store.spooled():
            try:
                await self.submit_async(path)
            finally:
                try:
                    remove_tree(path)
                except OSError as exc:
                    log.error("spooled bundle not deleted", path=str(path), error=str(exc))

    def _take_cancels(self) -> None:
        for job_id, record in list(self.records.items()):
            if not record.status.terminal and self.store.cancel_requested(job_id):
                (self.store.job_dir(job_id) / "cancel").unlink(missing_ok=True)
                self.cancel(job_id)


def _remove_quietly(path: Path) -> None:
    try:
        remove_tree(path)
    except OSError as exc:
        log.error("job files not deleted", path=str(path), error=str(exc))


def _os_detail(exc: OSError) -> str:
    """A refusal's detail for a filesystem error: ENOSPC/EDQUOT named plainly (blocks or inodes)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the jobs' filesystem (blocks or inodes): {exc.strerror}"
    return f"{exc.strerror or exc}"


def _guess_id(source: Path) -> str | None:
    """The manifest's id for a rejected bundle's record, when it is readable and safe; else None."""
    try:
        raw = json.loads((source / "manifest.json").read_bytes()) if source.is_dir() else None
        job_id = raw.get("id") if isinstance(raw, dict) else None
        return job_id if isinstance(job_id, str) and re.match(JOB_ID_PATTERN, job_id) else None
    except (OSError, ValueError):
        return None
