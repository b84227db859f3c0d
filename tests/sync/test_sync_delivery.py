"""Delivery across failures, against a real mosquitto (mutual TLS, ACL): outage, SIGKILL, in-flight loss."""

from __future__ import annotations

from qrad_hwsim.platform import Platform

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import Kind, Reading, TelemetryBatch
from qrad_agent.sync.outbox import Outbox

from sync_proxy import LinkProxy


def batch(i: int) -> TelemetryBatch:
    return TelemetryBatch(readings=[Reading(channel="room_temp", t=float(i), value=20.0)])


async def stop_task(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def wait_until(predicate, timeout_s: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_broker_outage_loses_nothing_and_keeps_order(sync_cfg, broker, platform) -> None:
    cfg = sync_cfg()
    outbox = Outbox(cfg.outbox_path, durability="normal")
    client = SyncClient(cfg, "heater-1", outbox)
    task = asyncio.create_task(client.run())
    assert await wait_until(lambda: client.connected)
    produced = 0
    for phase in ("before", "outage", "after"):
        if phase == "outage":
            await asyncio.to_thread(broker.stop)
        if phase == "after":
            await asyncio.to_thread(broker.start)
        for _ in range(60):
            produced = (await client.enqueue(Kind.TELEMETRY, batch(produced))).seq
            await asyncio.sleep(0.01)
        if phase == "outage":
            assert not client.connected and len(outbox) >= 60
    log = platform.devices["heater-1"]
    assert await platform.wait(lambda p: len(p.devices["heater-1"].seen) == produced, 20)
    assert log.seqs == list(range(1, produced + 1))  # first arrivals in order, none missing
    assert await wait_until(lambda: len(outbox) == 0)
    assert client.stats["connects"] >= 2
    await stop_task(task)


def _start_runner(cfg_path: Path, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "qrad_agent.sync.runner", str(cfg_path), "heater-1",
                             str(count)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_sigkill_mid_burst_loses_nothing_and_will_is_published(sync_cfg, platform, tmp_path, broker,
                                                                      pki) -> None:
    cfg = sync_cfg(outbox_durability="full")
    cfg_path = tmp_path / "sync.json"
    cfg_path.write_text(cfg.model_dump_json())
    proc = _start_runner(cfg_path, 100_000)
    stored: list[int] = []
    assert await platform.wait(lambda p: any(a[1] == "online" for a in p.devices["heater-1"].availability), 15)
    while len(stored) < 300:
        line = await asyncio.to_thread(proc.stdout.readline)
        if line.startswith("STORED"):
            stored.append(int(line.split()[1]))
    os.kill(proc.pid, signal.SIGKILL)
    killed_at = time.time()
    rest, _ = await asyncio.to_thread(proc.communicate)
    stored += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("STORED")]
    log = platform.devices["heater-1"]
    assert await platform.wait(lambda p: p.devices["heater-1"].availability[-1][1] == "offline", 2 * 1.5)
    offline_at = log.availability[-1][0]
    assert offline_at - killed_at <= 1.5 * cfg.keepalive_s
    # A live subscriber gets the will without the retain flag; a newcomer must get it as retained.
    cert, key = pki.client("platform")
    with Platform("127.0.0.1", broker.platform_port, pki.ca, cert, key, client_id="platform-late", clean=True) as late:
        assert await late.wait(lambda p: bool(p.devices["heater-1"].availability), 5)
        assert late.devices["heater-1"].availability[-1][1:] == ("offline", True)
    left = Outbox(cfg.outbox_path, durability="full")  # what the killed process had not delivered
    unsent = {row.seq for row in left.pending(limit=100_000)}
    left.close()
    assert unsent, "the kill left nothing to replay: the test would prove nothing"
    proc2 = _start_runner(cfg_path, 0)
    try:
        assert await platform.wait(lambda p: (set(stored) | unsent) <= p.devices["heater-1"].seen, 20), (
            f"missing {sorted((set(stored) | unsent) - log.seen)[:10]}")
        assert log.seqs == sorted(log.seqs)
    finally:
        proc2.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc2.communicate, timeout=10)
    # the retained availability a newcomer sees is "online" again, then "offline" after a clean stop
    assert await platform.wait(lambda p: p.devices["heater-1"].availability[-1][1] == "offline", 5)


async def test_publish_in_flight_when_link_drops_stays_until_puback(sync_cfg, broker, platform) -> None:
    async with LinkProxy(broker.port) as proxy:
        cfg = sync_cfg(port=proxy.port, keepalive_s=30)
        outbox = Outbox(cfg.outbox_path, durability="normal")
        client = SyncClient(cfg, "heater-1", outbox)
        task = asyncio.create_task(client.run())
        assert await wait_until(lambda: client.connected)
        proxy.swallow_downstream = True  # the broker's PUBACKs never reach the heater
        for i in range(5):
            await client.enqueue(Kind.TELEMETRY, batch(i))
        assert await platform.wait(lambda p: len(p.devices["heater-1"].seen) == 5)  # the broker has them
        await asyncio.sleep(0.2)
        assert len(outbox) == 5 and client.stats["acked"] == 0
        proxy.swallow_downstream = False
        proxy.cut()
        assert await wait_until(lambda: not client.connected)
        assert len(outbox) == 5  # no PUBACK came: nothing removed
        assert await wait_until(lambda: client.connected and len(outbox) == 0, 10)
        log = platform.devices["heater-1"]
        assert await platform.wait(lambda p: p.devices["heater-1"].duplicates == 5)
        assert log.seqs == [1, 2, 3, 4, 5]  # the replays carried the same sequence numbers
        await stop_task(task)
