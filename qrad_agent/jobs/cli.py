"""`qrad-agent jobs list|show|submit|cancel`: plain functions taking the parsed args and the [jobs] config.

They talk to the running daemon through the jobs directory (store.py): statuses are read from
``status.json``, a bundle is submitted by dropping it into ``spool/`` (the runner verifies it like any
platform job), a cancel by leaving ``<id>/cancel``. Each returns the process exit code.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.store import JobStore


def cmd_list(args, cfg: JobsConfig) -> int:
    """args.json: bool."""
    records = JobStore(cfg.jobs_dir).load_all()
    if getattr(args, "json", False):
        print(json.dumps([r.summary() for r in records], indent=1))
        return 0
    print(f"{'id':24} {'status':16} {'reason':20} {'exit':>5} {'cpu_s':>8} {'wall_s':>8}")
    for r in records:
        s = r.summary()
        print(f"{s['id']:24} {s['status']:16} {str(s['reason'] or ''):20} {str(s['exit_code'] or ''):>5} "
              f"{s['cpu_s']:>8} {s['wall_s']:>8}")
    return 0


def cmd_show(args, cfg: JobsConfig) -> int:
    """args.job_id: str."""
    store = JobStore(cfg.jobs_dir)
    record = store.load(args.job_id)
    if record is None:
        print(f"no job {args.job_id}")
        return 1
    print(record.model_dump_json(indent=1))
    for name in ("stdout", "stderr"):
        tail = store.tail(args.job_id, name, 2000)
        if tail:
            print(f"--- {name} (tail) ---\n{tail}")
    return 0


def cmd_submit(args, cfg: JobsConfig) -> int:
    """args.bundle: path of a bundle directory or archive; args.wait: seconds to wait for the end (0: no)."""
    store = JobStore(cfg.jobs_dir)
    source = Path(args.bundle)
    if not source.exists() or not store.spool.is_dir():
        print(f"{source} missing, or {store.spool} missing (is the agent running with jobs enabled?)")
        return 1
    name = f"{int(time.time())}-{uuid.uuid4().hex[:8]}-{source.name}"
    tmp = store.spool / f".{name}"
    (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp)
    tmp.rename(store.spool / name)  # the runner only takes names without a leading dot: atomic hand-over
    print(f"spooled {source} as {name}")
    wait = float(getattr(args, "wait", 0) or 0)
    job_id = _manifest_id(source)
    deadline = time.monotonic() + wait
    while wait and job_id and time.monotonic() < deadline:
        record = store.load(job_id)
        if record is not None and record.status.terminal:
            print(record.model_dump_json(indent=1))
            return 0 if record.status.value == "succeeded" else 1
        time.sleep(0.5)
    return 0


def cmd_cancel(args, cfg: JobsConfig) -> int:
    """args.job_id: str."""
    if not JobStore(cfg.jobs_dir).request_cancel(args.job_id):
        print(f"no job {args.job_id}")
        return 1
    print(f"cancel requested for {args.job_id}")
    return 0


def _manifest_id(source: Path) -> str | None:
    try:
        return json.loads((source / "manifest.json").read_text()).get("id") if source.is_dir() else None
    except (OSError, ValueError):
        return None
