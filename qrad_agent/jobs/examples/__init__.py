"""Example workloads, shipped as bundles for tests, benchmarks and technicians (`make_bundle`).

``montecarlo``: European option price and 1-day value at risk of a basket by Monte Carlo (numpy),
reporting paths per second and a checksum reproducible from the seed. ``sweep``: a parameter sweep of the
logistic map's Lyapunov exponent (pure CPU), checkpointing on SIGTERM and resuming.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qrad_agent.jobs.bundle import replay_fields, sign_manifest, write_manifest

EXAMPLES = {"montecarlo": "montecarlo.py", "sweep": "sweep.py"}


def make_bundle(name: str, dest: Path, job_id: str, args: list[str] | None = None,
                key: Ed25519PrivateKey | None = None, devices: list[str] | None = None, **limits: object) -> Path:
    """A bundle directory running example ``name`` with ``args``; signed when ``key`` is given, for
    ``devices`` (required then: a signed manifest names its heaters, a nonce and an expiry in a day)."""
    if key is not None and not devices:
        raise ValueError("a signed bundle must name the devices it is for")
    dest.mkdir(parents=True, exist_ok=True)
    script = EXAMPLES[name]
    shutil.copyfile(Path(__file__).with_name(script), dest / script)
    replay = replay_fields(devices) if key is not None and devices else {}
    fields = {"id": job_id, "command": ["python3", script, *(args or [])], **replay, **limits}
    write_manifest(dest, fields)
    if key is not None:
        sign_manifest(dest, key)
    return dest
