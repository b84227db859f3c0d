"""Fixtures for the jobs tests (helpers in jobs_helpers.py); every test here is skipped, with the reason,
when this machine cannot run sandboxes."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from jobs_helpers import _REASON, start_harness, stop_harness

from qrad_agent.jobs import jobfs


def pytest_collection_modifyitems(items):
    if _REASON is not None:
        for item in items:
            if "tests/jobs" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason=_REASON))


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def base_dir():
    """A directory the job user can traverse (pytest's tmp_path is under a 0700 directory)."""
    d = Path(f"/tmp/qrad-jobs-test-{uuid.uuid4().hex[:8]}")
    d.mkdir(mode=0o755)
    yield d
    unmount_all(d)
    shutil.rmtree(d, ignore_errors=True)


def unmount_all(d: Path) -> None:
    """The job filesystems a test left mounted (unacknowledged results), so that no loop device leaks."""
    for point in jobfs.mounts_under(d):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


@pytest.fixture
async def harness(base_dir, signing_key):
    h, task = await start_harness(base_dir, signing_key)
    yield h
    await stop_harness(h, task)
