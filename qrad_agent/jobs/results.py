"""A finished job's result for the platform, built from hostile output and bounded in size.

The job chose its file names (any bytes but '/' and NUL, up to 255 bytes a level, `tree.MAX_DEPTH` levels),
how many files it made and what its stdout holds. The summary:

- lists at most `MAX_LISTED_FILES` output files, each path at most `MAX_PATH_CHARS` characters; the rest
  are counted (``outputs_total``, ``outputs_omitted``) and the cut is said (``truncated``);
- writes a name that is not UTF-8 with its bad bytes as ``\\xNN`` escapes (``escaped: true`` on the file);
  a backslash in a name is written ``\\\\``, so an escaped name never collides with a real one;
- keeps its JSON (UTF-8) under `MAX_RESULT_BYTES`, far below the broker's packet limit
  (docs/sync.md: the dev broker allows 256 KiB), cutting the stdout tail, then the file list, to fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from typing import Any

from qrad_agent.jobs.model import JobRecord
from qrad_agent.jobs.store import JobStore
from qrad_agent.jobs.tree import TreeWalk

MAX_RESULT_BYTES = 16 * 1024
"""JSON bytes of a result summary (the envelope around it adds < 1 KiB)."""
MAX_LISTED_FILES = 32
MAX_PATH_CHARS = 512
STDOUT_TAIL_BYTES = 2048
MAX_DETAIL_CHARS = 500


def escape_name(raw: bytes) -> tuple[str, bool]:
    """A path as printable UTF-8 text: valid UTF-8 is kept (backslashes doubled), invalid bytes become
    ``\\xNN``; control characters become ``\\xNN`` too. Returns (text, escaped)."""
    doubled = raw.replace(b"\\", b"\\\\")
    try:
        text, escaped = doubled.decode("utf-8"), False
    except UnicodeDecodeError:
        text, escaped = doubled.decode("utf-8", errors="backslashreplace"), True
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        text = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
        escaped = True
    return text, escaped


def _sha256_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def summary(record: JobRecord, store: JobStore, inputs: set[str], work_fd: int | None = None) -> dict[str, Any]:
    """The result of a finished job (its files reclaimed by the launcher): status, reason, detail, stdout
    tail, usage, ``disk_limits`` (kernel, or user_space: degraded) and its output files (path -> bytes,
    SHA-256). ``work_fd``: a descriptor of its work directory (the launcher's view of the job's own
    filesystem); None: the path in the store. Raises OSError when its directory cannot be read (the caller
    turns it into `unreadable`)."""
    outputs: dict[str, dict[str, Any]] = {}
    total = listed_bytes = 0
    cut_paths = escaped_paths = 0
    work = store.work_dir(record.id)
    walk = TreeWalk(work if work_fd is None else work_fd)
    if work_fd is not None or work.is_dir():
        for entry in walk:
            if not stat.S_ISREG(entry.st.st_mode):
                continue
            text, escaped = escape_name(entry.rel)
            if not escaped and text in inputs:
                continue
            total += 1
            if len(outputs) >= MAX_LISTED_FILES:
                continue
            item: dict[str, Any] = {"bytes": entry.st.st_size}
            if escaped:
                item["escaped"] = True
                escaped_paths += 1
            if len(text) > MAX_PATH_CHARS:
                item["path_truncated"] = True
                text = text[:MAX_PATH_CHARS] + f"...#{len(outputs)}"
                cut_paths += 1
            try:
                item["sha256"] = _sha256_at(entry.dir_fd, entry.name)
            except OSError as exc:
                item["error"] = exc.strerror or type(exc).__name__
            outputs[text] = item
            listed_bytes += entry.st.st_size
    result: dict[str, Any] = {
        "status": record.status.value, "reason": record.reason,
        "detail": (record.detail or "")[:MAX_DETAIL_CHARS] or None,
        "stdout_tail": store.tail(record.id, "stdout", STDOUT_TAIL_BYTES), "outputs": outputs,
        "outputs_total": total, "usage": record.usage.model_dump()}
    if record.disk_limits is not None:
        result["disk_limits"] = record.disk_limits
    notes = []
    if total > len(outputs):
        notes.append(f"{total - len(outputs)} more output files not listed")
        result["outputs_omitted"] = total - len(outputs)
    if walk.too_deep:
        notes.append("directories deeper than the depth bound not listed")
    if cut_paths:
        notes.append(f"{cut_paths} paths cut at {MAX_PATH_CHARS} characters")
    if escaped_paths:
        notes.append(f"{escaped_paths} names not UTF-8, written with \\xNN escapes")
    if notes:
        result["truncated"] = "; ".join(notes)
    return bound(result)


def bound(result: dict[str, Any], limit: int = MAX_RESULT_BYTES) -> dict[str, Any]:
    """``result`` cut to at most ``limit`` bytes of JSON: the stdout tail first, then listed files."""
    def size() -> int:
        return len(json.dumps(result, separators=(",", ":")).encode())

    while size() > limit and result.get("stdout_tail"):
        result["stdout_tail"] = result["stdout_tail"][len(result["stdout_tail"]) // 2 + 1:]
    outputs = result.get("outputs", {})
    while size() > limit and outputs:
        outputs.pop(next(reversed(outputs)))
        result["outputs_omitted"] = result.get("outputs_total", 0) - len(outputs)
        result["truncated"] = "result bounded: output list cut"
    if size() > limit:  # only the fixed fields are left: something is very wrong, say so plainly
        return {"status": result.get("status"), "reason": "result_too_large", "truncated": "result dropped"}
    return result


def unreadable(record: JobRecord, exc: BaseException) -> dict[str, Any]:
    """The result of a job whose output could not be read: a failed result with a specific reason."""
    return {"status": "failed", "reason": "result_unreadable",
            "detail": f"job ended {record.status.value} ({record.reason}); its output could not be read: "
                      f"{type(exc).__name__}: {exc}"[:MAX_DETAIL_CHARS],
            "outputs": {}, "outputs_total": 0, "usage": record.usage.model_dump()}
