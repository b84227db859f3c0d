"""`qrad-agent jobs list|show|submit|cancel`: plain functions taking the parsed args and the [jobs] config.

They talk to the running daemon through the jobs directory (store.py): statuses are read from
``status.json``, a bundle is submitted by dropping it into ``spool/`` (the runner verifies it like any
platform job), a cancel by leaving ``<id>/cancel``. Each returns the process exit code.
"""

from __future__ import annotations

import errno
import json
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from qrad_agent.api.fmt import number, plain
from qrad_agent.errors import EX_CANTCREAT, EX_UNAVAILABLE
from qrad_agent.jobs.config import JobsConfig
from qrad_agent.jobs.store import JobStore
from qrad_agent.jobs.tree import remove_tree


def cmd_list(args, cfg: JobsConfig) -> int:
    """args.json: bool. Exit 69 when the jobs directory does not exist (jobs never ran here)."""
    if not cfg.jobs_dir.is_dir():
        print(f"qrad-agent jobs: no jobs directory {cfg.jobs_dir}: jobs have not run on this heater",
              file=sys.stderr)
        return EX_UNAVAILABLE
    records = JobStore(cfg.jobs_dir).load_all()
    if getattr(args, "json", False):
        print(json.dumps([r.summary() for r in records], indent=1))
        return 0
    if not records:
        print(f"no jobs in {cfg.jobs_dir}")
        return 0
    print(f"{'id':24} {'status':16} {'reason':20} {'exit':>5} {'CPU':>10} {'wall':>10}")
    for r in records:
        s = r.summary()
        exit_code = "-" if s["exit_code"] is None else str(s["exit_code"])
        print(f"{s['id']:24} {s['status']:16} {s['reason'] or '-':20} {exit_code:>5} "
              f"{number(s['cpu_s'], 's'):>10} {number(s['wall_s'], 's'):>10}")
    return 0


def cmd_show(args, cfg: JobsConfig) -> int:
    """args.job_id: str."""
    store = JobStore(cfg.jobs_dir)
    record = store.load(args.job_id)
    if record is None:
        print(f"no job {args.job_id}")
        return 1
    tails = {name: store.tail(args.job_id, name, 2000) for name in ("stdout", "stderr")}
    if getattr(args, "json", False):
        print(json.dumps({**record.model_dump(mode="json"), "stdout_tail": tails["stdout"],
                          "stderr_tail": tails["stderr"]}, indent=1))
        return 0
    print(record_table(record))
    for name, tail in tails.items():
        if tail:
            print(f"--- {name} (tail) ---\n{tail}")
    return 0


def cmd_submit(args, cfg: JobsConfig) -> int:
    """args.bundle: a bundle directory or archive; args.wait: seconds to wait for the end (0: no).

    Exit 0 spooled (or, with --wait, succeeded), 1 refused, failed or not finished in time, 2 no such
    bundle or a job with its id exists, 69 the agent's jobs directory is missing (agent not running), 73 the
    bundle could not be copied into the spool (the jobs' filesystem is full: blocks or inodes)."""
    store = JobStore(cfg.jobs_dir)
    source = Path(args.bundle)
    if not source.exists():
        print(f"qrad-agent jobs: no bundle at {source}", file=sys.stderr)
        return 2
    if not store.spool.is_dir():
        print(f"qrad-agent jobs: {store.spool} missing: is the agent running with jobs enabled?", file=sys.stderr)
        return EX_UNAVAILABLE
    job_id = _manifest_id(source)
    existing = store.load(job_id) if job_id else None
    if existing is not None:
        print(f"qrad-agent jobs: job {job_id} exists ({existing.status.value}); "
              "give the bundle a new id", file=sys.stderr)
        return 2
    spooled_at = time.time()
    name = f"{int(spooled_at)}-{uuid.uuid4().hex[:8]}-{source.name}"
    tmp = store.spool / f".{name}"
    try:
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, tmp)
        tmp.rename(store.spool / name)  # the runner only takes names without a leading dot: atomic hand-over
    except (OSError, shutil.Error, RecursionError) as exc:  # a full disk (blocks or inodes), a deep tree
        try:
            remove_tree(tmp)
        except OSError:
            pass
        print(f"qrad-agent jobs: bundle not spooled into {store.spool}: {_why(exc)}", file=sys.stderr)
        return EX_CANTCREAT
    print(f"spooled {source} as {name}", file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    wait = float(getattr(args, "wait", 0) or 0)
    if not wait:
        return 0
    deadline = time.monotonic() + wait
    record = None
    while time.monotonic() < deadline:
        record = store.load(job_id) if job_id else None
        if record is None:  # refused before its id was known: the newest rejected record is ours
            record = _rejected_since(store, spooled_at)
        if record is not None and record.status.terminal:
            print(record.model_dump_json(indent=1) if getattr(args, "json", False) else record_table(record))
            return 0 if record.status.value == "succeeded" else 1
        time.sleep(0.2)
    state = record.status.value if record is not None else "not taken by the agent yet"
    print(f"qrad-agent jobs: not finished after {wait:g} s: {state}", file=sys.stderr)
    return 1


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on the jobs' filesystem (blocks or inodes); the agent keeps its reserve"
    if isinstance(exc, RecursionError):
        return "directories nested too deep"
    return str(exc)[:300]


def record_table(record) -> str:
    """A job record as "field value" lines, nested values spelled out, times in UTC (no JSON, no reprs)."""
    lines = []
    for key, value in record.model_dump(mode="json").items():
        if key.endswith("_at") and isinstance(value, (int, float)) and value > 0:
            text = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        else:
            text = plain(value)
        lines.append(f"{key:<16}{text}")
    return "\n".join(lines)


def _rejected_since(store: JobStore, since: float):
    found = [r for r in store.load_all() if r.status.value == "rejected" and r.submitted_at >= since]
    return max(found, key=lambda r: r.submitted_at) if found else None


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
