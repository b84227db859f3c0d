"""Replay-proof jobs (issue 13): a validly signed bundle used to run again after ``ack_job`` deleted its
job. A signed manifest now names its devices, a nonce and an expiry, and the heater remembers the job ids
and nonces it accepted until their expiry, across restarts. Real runner and sandbox."""

from __future__ import annotations

import json
import shutil
import time

from jobs_helpers import DEVICE_ID, start_harness, stop_harness

from qrad_agent.jobs.bundle import sign_manifest
from qrad_agent.jobs.model import Status


def _copy(bundle, dest):
    shutil.copytree(bundle, dest)
    return dest


def _resign(h, bundle, **changes):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    manifest = {k: v for k, v in manifest.items() if v is not None}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    sign_manifest(bundle, h.key)
    return bundle


async def test_signed_bundle_does_not_run_again_after_ack_even_after_a_restart(base_dir, signing_key):
    h, task = await start_harness(base_dir, signing_key)
    try:
        bundle = h.script_bundle("print('{\"ran\": 1}')", job_id="pay-1")
        kept = _copy(bundle, base_dir / "replayed")  # what an attacker recorded
        record = h.submit(bundle)
        assert (await h.wait(record.id)).status == Status.SUCCEEDED
        assert h.runner.ack("pay-1") and h.runner.get("pay-1") is None
        await h.runner.deletions_done()  # its files go off the loop: the replay is refused by the record alone
        again = h.submit(_copy(kept, base_dir / "replay-1"))
        assert again.status == Status.REJECTED and again.reason == "replayed", again
        assert h.runner.ack(again.id)  # the platform acknowledges the refusal too: nothing left of pay-1
    finally:
        await stop_harness(h, task)
    h, task = await start_harness(base_dir, signing_key)  # the record is on disk, not in memory
    try:
        again = h.submit(_copy(kept, base_dir / "replay-2"))
        assert again.status == Status.REJECTED and again.reason == "replayed", again
        for db in (base_dir / "jobs").glob(".seen-jobs.db*"):  # the record, its -wal and -shm: root only
            assert db.stat().st_mode & 0o777 == 0o600, db
        fresh, out = await h.run("print('{\"ran\": 2}')", job_id="pay-2")
        assert fresh.status == Status.SUCCEEDED and out == {"ran": 2}
    finally:
        await stop_harness(h, task)


async def test_same_nonce_under_another_id_is_a_replay(harness):
    first = harness.script_bundle("print('{}')", job_id="n-1")
    nonce = json.loads((first / "manifest.json").read_text())["nonce"]
    assert (await harness.wait(harness.submit(first).id)).status == Status.SUCCEEDED
    second = _resign(harness, harness.script_bundle("print('{}')", job_id="n-2"), nonce=nonce)
    record = harness.submit(second)
    assert record.status == Status.REJECTED and record.reason == "replayed" and "nonce" in record.detail


async def test_wrong_device_expired_and_missing_replay_fields_are_refused(harness):
    cases = {
        "other-device": ({"devices": ["heater-2", "heater-3"]}, "wrong_device"),
        "expired": ({"expires_at": time.time() - 1}, "expired"),
        "far-future": ({"expires_at": time.time() + 400 * 86400}, "malformed_manifest"),
        "no-nonce": ({"nonce": None}, "malformed_manifest"),
        "no-devices": ({"devices": None}, "malformed_manifest"),
        "short-nonce": ({"nonce": "abc"}, "malformed_manifest"),
    }
    for job_id, (changes, reason) in cases.items():
        bundle = _resign(harness, harness.script_bundle("print('{}')", job_id=job_id), **changes)
        record = harness.submit(bundle)
        assert record.status == Status.REJECTED and record.reason == reason, (job_id, record)
    # a set of devices that includes this heater is fine
    ok = _resign(harness, harness.script_bundle("print('{}')", job_id="fleet-1"), devices=["heater-9", DEVICE_ID])
    assert (await harness.wait(harness.submit(ok).id)).status == Status.SUCCEEDED
