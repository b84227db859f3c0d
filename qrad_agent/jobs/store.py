"""The jobs directory on disk: one directory per job, its status record, logs and working directory.

Layout (``jobs_dir`` is root:<job group> 0710, so the job user can reach a job's ``work`` but list nothing)::

    <jobs_dir>/<id>/status.json   JobRecord, rewritten atomically at each change (root 0644)
    <jobs_dir>/<id>/stdout|stderr capped logs, opened by the agent (root 0600)
    <jobs_dir>/<id>/work/         the bundle's files, the job's only writable place (job user 0700)
    <jobs_dir>/<id>/cancel        a cancel request left by `qrad-agent jobs cancel`
    <jobs_dir>/spool/             bundles left by `qrad-agent jobs submit`, taken by the runner
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

from qrad_agent.jobs.model import JobRecord
from qrad_agent.jobs.tree import remove_tree

log = structlog.get_logger(component="jobs")


class JobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def setup(self, job_gid: int) -> None:
        for d in (self.root, self.spool):
            d.mkdir(parents=True, exist_ok=True)
        os.chown(self.root, 0, job_gid)
        os.chmod(self.root, 0o710)
        os.chmod(self.spool, 0o700)

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def work_dir(self, job_id: str) -> Path:
        return self.root / job_id / "work"

    def make_job_dir(self, job_id: str) -> Path:
        """A new job directory, root 0700 until the launcher's ``prepare`` gives its group to the jobs."""
        d = self.job_dir(job_id)
        d.mkdir(mode=0o700)
        return d

    def save(self, record: JobRecord) -> bool:
        """Write the record atomically. Fails soft: on a full filesystem (blocks or inodes) the error is
        logged, the old file stays and False is returned; the runner keeps the record in memory."""
        d = self.job_dir(record.id)
        tmp = d / "status.json.tmp"
        try:
            tmp.write_text(record.model_dump_json(indent=1))
            os.replace(tmp, d / "status.json")
        except OSError as exc:
            log.error("job status not written", job=record.id, error=str(exc))
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        return True

    def load(self, job_id: str) -> JobRecord | None:
        try:
            return JobRecord.model_validate_json((self.job_dir(job_id) / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def load_all(self) -> list[JobRecord]:
        if not self.root.is_dir():
            return []
        found = (self.load(p.name) for p in sorted(self.root.iterdir())
                 if p.is_dir() and p != self.spool and not p.name.startswith("."))
        return [r for r in found if r is not None]

    def remove(self, job_id: str) -> None:
        """Delete the job's directory, however deep its tree (tree.remove_tree); failures are logged."""
        try:
            remove_tree(self.job_dir(job_id))
        except OSError as exc:
            log.error("job directory not deleted", job=job_id, error=str(exc))

    def request_cancel(self, job_id: str) -> bool:
        d = self.job_dir(job_id)
        if not d.is_dir():
            return False
        (d / "cancel").write_text("")
        return True

    def cancel_requested(self, job_id: str) -> bool:
        return (self.job_dir(job_id) / "cancel").exists()

    def tail(self, job_id: str, name: str, max_bytes: int = 4096) -> str:
        try:
            with (self.job_dir(job_id) / name).open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def spooled(self) -> list[Path]:
        try:
            return sorted(p for p in self.spool.iterdir() if not p.name.startswith("."))
        except OSError:
            return []


def dump(records: list[JobRecord]) -> str:
    return json.dumps([r.model_dump(mode="json") for r in records], indent=1)
