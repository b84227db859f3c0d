"""Bad bundles are refused before start with a specific reason, and leave nothing behind."""

from __future__ import annotations

import json
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qrad_agent.jobs.bundle import sign_manifest
from qrad_agent.jobs.model import Status


def _assert_nothing_left(harness, record):
    store = harness.runner.store
    assert [p.name for p in store.job_dir(record.id).iterdir()] == ["status.json"]
    assert not list(store.root.glob(".staging-*"))
    assert harness.runner.tree.leftovers() == [] and not harness.runner.active


def _bundle(harness, **limits):
    return harness.script_bundle("print('{}')", job_id="bad", **limits)


def _malformed_json(h):
    d = _bundle(h)
    (d / "manifest.json").write_text("{not json")
    sign_manifest(d, h.key)
    return d


def _wrong_type(h):
    d = _bundle(h)
    m = json.loads((d / "manifest.json").read_text())
    m["cores"] = "many"
    (d / "manifest.json").write_text(json.dumps(m))
    sign_manifest(d, h.key)
    return d


def _tampered(h):
    d = _bundle(h)
    m = json.loads((d / "manifest.json").read_text())
    m["memory_mb"] = 128
    (d / "manifest.json").write_text(json.dumps(m))  # changed after the platform signed it
    return d


def _other_key(h):
    d = _bundle(h)
    sign_manifest(d, Ed25519PrivateKey.generate())
    return d


def _unsigned(h):
    return harness_unsigned(h)


def harness_unsigned(h):
    d = _bundle(h)
    (d / "manifest.sig").unlink()
    return d


def _missing(h):
    d = _bundle(h)
    (d / "job.py").unlink()
    return d


def _modified(h):
    d = _bundle(h)
    (d / "job.py").write_text("import os; os.system('evil')")
    return d


def _unlisted(h):
    d = _bundle(h)
    (d / "extra.py").write_text("x")
    return d


def _too_big(h):
    return _bundle(h, memory_mb=10**6, cores=999)


def _path_escape(h):
    d = _bundle(h)
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["../../etc/passwd"] = "0" * 64
    (d / "manifest.json").write_text(json.dumps(m))
    sign_manifest(d, h.key)
    return d


def _evil_archive(h):
    d = _bundle(h)
    archive = h.base / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(d / "manifest.json", "manifest.json")
        info = tarfile.TarInfo("link")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(info)
    return archive


CASES = {
    "malformed_json": (_malformed_json, "malformed_manifest"),
    "wrong_type": (_wrong_type, "malformed_manifest"),
    "tampered_manifest": (_tampered, "bad_signature"),
    "other_key": (_other_key, "bad_signature"),
    "unsigned": (_unsigned, "unsigned"),
    "missing_file": (_missing, "missing_file"),
    "modified_file": (_modified, "file_mismatch"),
    "unlisted_file": (_unlisted, "unlisted_file"),
    "limits_above_heater": (_too_big, "limits_exceeded"),
    "path_escape": (_path_escape, "malformed_manifest"),
    "symlink_archive": (_evil_archive, "bad_bundle"),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_refused_before_start(harness, case):
    make, reason = CASES[case]
    record = harness.submit(make(harness))
    assert record.status == Status.REJECTED and record.reason == reason, (record.reason, record.detail)
    assert record.started_at is None and record.detail
    _assert_nothing_left(harness, record)
    assert harness.runner.ack(record.id)
    await harness.runner.deletions_done()  # its filesystem is unmounted off the loop, then its files go
    assert not harness.runner.store.job_dir(record.id).exists()


async def test_signed_archive_accepted_and_result_kept_until_ack(harness):
    d = harness.script_bundle("print('{\"ok\": true}')", job_id="good")
    archive = harness.base / "good.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in d.iterdir():
            tar.add(p, p.name)
    record = harness.submit(archive)
    assert record.status == Status.QUEUED and record.signed
    record = await harness.wait(record.id)
    assert record.status == Status.SUCCEEDED and harness.result("good") == {"ok": True}
    assert [r.id for r in harness.runner.results()] == ["good"]
    assert harness.submit(d).reason == "duplicate_id"
    assert harness.runner.ack("good") and harness.runner.get("good") is None
