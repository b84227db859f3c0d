"""Fixtures for the whole suite."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """Each test starts and ends with structlog's defaults: no configuration leaks between tests."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


LEAK_GRACE_S = 2.0
"""How long a thread a test started may take to end after the test (a daemon's reader closing its socket)."""


@pytest.fixture(autouse=True)
def _no_leftover_threads(request):
    """Fail a test that leaves a thread of its own running: every thread has an owner that ends it."""
    import threading
    import time

    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()
                and not t.name.startswith(("asyncio_", "ThreadPoolExecutor"))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if left:
        pytest.fail(f"{request.node.nodeid} left threads running: {[t.name for t in left]}", pytrace=False)



@pytest.fixture
def sysfs_agent_data():
    """A function root -> config data for an in-process, virtual-time heater (qrad_agent.sim)."""
    from qrad_agent.sim import virtual_time_agent_data

    return virtual_time_agent_data


def _loop_mounts() -> set[str]:
    """Mount points of loop devices in this mount namespace (/proc/self/mountinfo, field 5 and the source)."""
    try:
        lines = open("/proc/self/mountinfo").read().splitlines()
    except OSError:
        return set()
    points = set()
    for line in lines:
        fields = line.split()
        source = fields[fields.index("-") + 2] if "-" in fields else ""
        if source.startswith("/dev/loop"):
            points.add(fields[4].replace("\\040", " "))
    return points


@pytest.fixture(autouse=True)
def _no_leftover_job_mounts():
    """A job's filesystem outlives the agent by design (its result is reported after a restart), but not the
    test's temporary directory: unmount what the test mounted, so the loop devices it held are free again."""
    import subprocess

    before = _loop_mounts()
    yield
    for point in sorted(_loop_mounts() - before, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
