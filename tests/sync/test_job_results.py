"""A job's life reaches the platform: status messages through the outbox, the finished job's result
(stdout tail, output files with SHA-256, usage), and the platform's ``ack_job`` deleting its files.
Real broker, real agent, real sandbox (skipped where sandboxes cannot run)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from qrad_hwsim.heater import HeaterSpec, SimulatedHeater
from qrad_hwsim.weather import Weather

from qrad_agent.agent import Agent
from qrad_agent.clock import Clock
from qrad_agent.config import parse_config
from qrad_agent.jobs.bundle import write_manifest
from qrad_agent.jobs.cgroups import JobsCgroupTree
from qrad_agent.sdnotify import Notifier
from qrad_agent.sync.contract import Kind

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("bwrap") is None or not Path("/usr/bin/python3").exists()
    or subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "/bin/true"]).returncode != 0,
    reason="needs root, bubblewrap with user namespaces and /usr/bin/python3")

JOB = """import json
data = json.dumps({"answer": sum(range(1000))})
open("result.json", "w").write(data)
print(data)
"""


@pytest.fixture
def jobs_base():
    base = Path(f"/tmp/qrad-jobs-sync-{uuid.uuid4().hex[:8]}")
    base.mkdir(mode=0o755)
    cgroup = Path(f"/sys/fs/cgroup/qrad-test-{base.name[-8:]}")
    yield base, cgroup
    try:
        tree = JobsCgroupTree(cgroup)
        for d in set(tree.dirs.values()):
            for child in d.glob("job-*"):
                child.rmdir()
            if d.exists():
                d.rmdir()
    except Exception:  # noqa: BLE001 - the tree may never have been made
        pass
    shutil.rmtree(base, ignore_errors=True)


def _agent(heater_agent_data, base: Path, cgroup: Path, **sync_overrides) -> Agent:
    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.3, **sync_overrides)
    data["jobs"] = {"enabled": True, "jobs_dir": str(base / "jobs"), "cgroup": str(cgroup),
                    "allow_unsigned": True, "poll_s": 0.1, "disk_reserve_mb": 16}
    return Agent(parse_config(data), Clock(), Notifier({}))


async def test_job_result_reaches_the_platform_and_ack_deletes_it(tmp_path, heater_agent_data, platform,
                                                                 jobs_base):
    base, cgroup = jobs_base
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    agent = _agent(heater_agent_data, base, cgroup)
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        bundle = base / "bundle"
        bundle.mkdir()
        (bundle / "job.py").write_text(JOB)
        write_manifest(bundle, {"id": "answer-1", "command": ["python3", "job.py"]})
        assert agent.jobs is not None
        assert agent.jobs.submit(bundle).status.value == "queued"

        def finished(p) -> bool:
            return any(m["status"] == "succeeded" for m in p.job_statuses("heater-1", "answer-1"))

        assert await platform.wait(finished, 30), platform.job_statuses("heater-1", "answer-1")
        statuses = [m["status"] for m in platform.job_statuses("heater-1", "answer-1")]
        assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1, statuses
        body = platform.job_statuses("heater-1", "answer-1")[-1]
        expected = '{"answer": 499500}'
        assert body["exit_code"] == 0 and expected in body["result"]["stdout_tail"]
        assert body["result"]["outputs"] == {
            "result.json": {"bytes": len(expected), "sha256": hashlib.sha256(expected.encode()).hexdigest()}}
        assert "job.py" not in body["result"]["outputs"]  # inputs are not results
        assert body["cpu_s"] and body["cpu_s"] > 0
        assert body["energy_wh"] is not None and body["energy_wh"] > 0  # set for every job (jobs/energy.py)
        assert "heat_delivered_kwh" in agent.status()["energy"]

        job_dir = base / "jobs" / "answer-1"
        assert job_dir.exists(), "kept until the platform acknowledges"
        response = await asyncio.to_thread(platform.response, platform.ack_job("heater-1", "answer-1"), 15)
        assert response is not None and response.get("ok") is True, response
        assert not job_dir.exists()
        again = await asyncio.to_thread(platform.response, platform.ack_job("heater-1", "answer-1"), 15)
        assert again is not None and again.get("ok") is False and "answer-1" in again.get("detail", "")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)


class _BundleStore:
    """The platform's bundle store: HTTPS with client certificates required (the test PKI), GET /<sha256>."""

    def __init__(self, pki, blobs: dict[str, bytes]) -> None:
        import http.server
        import ssl
        import threading

        store = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = store.blobs.get(self.path.rsplit("/", 1)[-1])
                store.requests.append((self.path, self.connection.getpeercert()["subject"]))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.blobs, self.requests = blobs, []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(str(pki.server_cert), str(pki.server_key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/bundles"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _archive(directory: Path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return buf.getvalue()


async def test_platform_job_is_fetched_by_digest_over_mutual_tls(tmp_path, heater_agent_data, platform, pki,
                                                                 jobs_base):
    base, cgroup = jobs_base
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "job.py").write_text(JOB)
    write_manifest(bundle, {"id": "fetched-1", "command": ["python3", "job.py"]})
    good = _archive(bundle)
    good_sha = hashlib.sha256(good).hexdigest()
    liar_sha = hashlib.sha256(b"what the platform signed").hexdigest()
    store = _BundleStore(pki, {good_sha: good, liar_sha: good})  # the second one's content is not its digest
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    agent = _agent(heater_agent_data, base, cgroup, bundle_url=store.url)
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        def manifest(job_id: str, sha: str) -> dict:
            return {"job_id": job_id, "image_sha256": sha, "argv": ["python3", "job.py"], "cpus": 1.0,
                    "max_runtime_s": 600.0, "checkpoint": False, "not_after": time.time() + 600}

        assert await platform.wait(lambda p: p.devices["heater-1"].state is not None, 15)  # subscribed
        response = await asyncio.to_thread(platform.response,
                                           platform.submit_job("heater-1", manifest("fetched-1", good_sha)), 15)
        assert response is not None and response.get("ok") is True, response
        assert await platform.wait(lambda p: any(m["status"] == "succeeded"
                                                 for m in p.job_statuses("heater-1", "fetched-1")), 30)
        body = platform.job_statuses("heater-1", "fetched-1")[-1]
        assert '{"answer": 499500}' in body["result"]["stdout_tail"]
        assert store.requests[0][0] == f"/bundles/{good_sha}"
        assert ((("commonName", "heater-1"),),) == store.requests[0][1]  # the heater's own certificate
        assert not (base / "jobs" / "incoming" / good_sha).exists()  # the job has its own copy

        await asyncio.to_thread(platform.response, platform.submit_job("heater-1", manifest("liar-1", liar_sha)), 15)
        assert await platform.wait(lambda p: any(m["status"] == "failed"
                                                 for m in p.job_statuses("heater-1", "liar-1")), 30)
        failed = platform.job_statuses("heater-1", "liar-1")[-1]
        assert failed["result"]["reason"] == "bad_bundle" and "SHA-256" in failed["result"]["detail"]
        assert not list((base / "jobs" / "incoming").iterdir())  # nothing half-downloaded left
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
        store.close()


HOSTILE = {
    # 1 100 nested directories with a 16 kB file each: 22 MB under a 2 MB limit
    "deep-1": (("import os\nfd = os.open('.', os.O_RDONLY)\nfor i in range(1100):\n    os.mkdir('d', dir_fd=fd)\n"
                "    n = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
                "    with open(os.open('f', os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=n), 'wb') as f:\n"
                "        f.write(b'x' * 16000)\n    os.close(fd)\n    fd = n\n"), {"output_mb": 2}),
    "badname-1": ("open(b'bad\\xffname', 'wb').write(b'1')\n", {}),
    "longnames-1": (("import os\nfor i in range(64):\n"
                     "    d = '/'.join(f'{i:02d}' + 'd' * 240 for _ in range(12))\n    os.makedirs(d)\n"
                     "    open(os.path.join(d, 'f' * 200), 'w').write(str(i))\n"), {}),
}


async def test_hostile_results_left_at_start_are_reported_bounded_and_the_agent_runs_on(
        tmp_path, heater_agent_data, platform, jobs_base):
    """Issue 13: results of a deep tree, a non-UTF-8 name and 64 long names, left unreported when the daemon
    stopped, made `qrad-agent run` exit 70 at every start. Now each reaches the platform, bounded, and the
    agent keeps running and runs the next job."""
    from qrad_agent.jobs.runner import JobRunner
    from qrad_agent.sync.contract import envelope_bytes

    base, cgroup = jobs_base
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.3)
    data["jobs"] = {"enabled": True, "jobs_dir": str(base / "jobs"), "cgroup": str(cgroup),
                    "allow_unsigned": True, "poll_s": 0.1, "disk_reserve_mb": 16}
    cfg = parse_config(data)
    runner = JobRunner(cfg.jobs, device_id=cfg.device_id)  # the previous run of the daemon
    runner.setup()
    previous = asyncio.create_task(runner.run())
    for job_id, (code, limits) in HOSTILE.items():
        bundle = base / "bundles" / job_id
        bundle.mkdir(parents=True)
        (bundle / "job.py").write_text(code)
        write_manifest(bundle, {"id": job_id, "command": ["python3", "job.py"], **limits})
        assert runner.submit(bundle).status.value == "queued"
    deadline = time.monotonic() + 60
    while not all(runner.get(j).status.terminal for j in HOSTILE):
        assert time.monotonic() < deadline, {j: runner.get(j).status for j in HOSTILE}
        await asyncio.sleep(0.1)
    previous.cancel()
    await asyncio.gather(previous, return_exceptions=True)

    agent = Agent(cfg, Clock(), Notifier({}))  # starts with the three results unreported
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))
    try:
        def reported(p) -> bool:
            return all(any(m["status"] in ("succeeded", "failed") for m in p.job_statuses("heater-1", j))
                       for j in HOSTILE)

        assert await platform.wait(reported, 60), [platform.job_statuses("heater-1", j) for j in HOSTILE]
        bodies = {j: platform.job_statuses("heater-1", j)[-1] for j in HOSTILE}
        for body in bodies.values():
            assert len(envelope_bytes("heater-1", 1, 0.0, Kind.JOB, body)) < 17 * 1024
        assert bodies["deep-1"]["status"] == "failed"
        assert bodies["deep-1"]["result"]["reason"] in ("output_depth", "killed_output")
        assert bodies["badname-1"]["result"]["outputs"]["bad\\xffname"]["escaped"] is True
        assert bodies["longnames-1"]["result"]["outputs_total"] == 64
        assert bodies["longnames-1"]["result"]["outputs_omitted"] > 0
        assert not task.done()
        for job_id in HOSTILE:
            response = await asyncio.to_thread(platform.response, platform.ack_job("heater-1", job_id), 15)
            assert response is not None and response.get("ok") is True, response
            assert not (base / "jobs" / job_id).exists()
        bundle = base / "bundles" / "after-1"
        bundle.mkdir()
        (bundle / "job.py").write_text(JOB)
        write_manifest(bundle, {"id": "after-1", "command": ["python3", "job.py"]})
        assert agent.jobs is not None and agent.jobs.submit(bundle).status.value == "queued"
        assert await platform.wait(lambda p: any(m["status"] == "succeeded"
                                                 for m in p.job_statuses("heater-1", "after-1")), 30)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)


async def test_signed_submit_job_is_not_run_again(tmp_path, heater_agent_data, platform, platform_key, jobs_base):
    """Issue 13: a validly signed job ran again after ack_job, and its signed manifest could be re-sent in a
    new command. Now the manifest is bound to one heater and one nonce, and remembered past ack_job."""
    import io
    import tarfile

    from qrad_agent.jobs.bundle import replay_fields, sign_manifest

    base, cgroup = jobs_base
    heater = SimulatedHeater(tmp_path / "sys", HeaterSpec(initial_air_c=18.0), Weather.constant(5.0),
                             datetime(2026, 1, 5), seed=3)
    data = heater_agent_data(telemetry_period_s=1.0, state_period_s=0.3)
    data["jobs"] = {"enabled": True, "jobs_dir": str(base / "jobs"), "cgroup": str(cgroup), "poll_s": 0.1,
                    "disk_reserve_mb": 16, "public_key": str(platform_key[1])}
    agent = Agent(parse_config(data), Clock(), Notifier({}))
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "job.py").write_text(JOB)
    write_manifest(bundle, {"id": "paid-1", "command": ["python3", "job.py"], **replay_fields(["heater-1"])})
    sign_manifest(bundle, platform_key[0])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(bundle.iterdir()):
            tar.add(path, arcname=path.name)
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    (base / "jobs" / "incoming").mkdir(parents=True)
    (base / "jobs" / "incoming" / sha).write_bytes(buf.getvalue())
    manifest = {"job_id": "paid-1", "image_sha256": sha, "argv": ["python3", "job.py"], "cpus": 1.0,
                "max_runtime_s": 600.0, "checkpoint": False, "not_after": time.time() + 600}
    stop = asyncio.Event()
    sim = asyncio.create_task(heater.run(step_s=10.0, speed=60.0))
    task = asyncio.create_task(agent.run(stop))

    async def submit(signed) -> dict:
        response = await asyncio.to_thread(platform.response, platform.submit_job("heater-1", {}, signed=signed), 15)
        assert response is not None
        return response

    try:
        assert await platform.wait(lambda p: p.devices["heater-1"].state is not None, 15)
        elsewhere = platform.sign_job("heater-2", manifest)  # signed for another heater
        refused = await submit(elsewhere)
        assert refused["ok"] is False and "heater-2" in refused["detail"]
        signed = platform.sign_job("heater-1", manifest)
        assert (await submit(signed))["ok"] is True
        assert await platform.wait(lambda p: any(m["status"] == "succeeded"
                                                 for m in p.job_statuses("heater-1", "paid-1")), 30)
        ack = await asyncio.to_thread(platform.response, platform.ack_job("heater-1", "paid-1"), 15)
        assert ack is not None and ack["ok"] is True and not (base / "jobs" / "paid-1").exists()
        # the same signed manifest in a new command (new command id and issued_at), after the ack
        replayed = await submit(signed)
        assert replayed["ok"] is False and "replayed" in replayed["detail"], replayed
        # even signed afresh with a new nonce, the job id has run: the platform must name a new job
        again = await submit(platform.sign_job("heater-1", manifest))
        assert again["ok"] is False and "already run" in again["detail"], again
        assert [m["status"] for m in platform.job_statuses("heater-1", "paid-1")].count("succeeded") == 1
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sim.cancel()
        await asyncio.gather(sim, return_exceptions=True)
