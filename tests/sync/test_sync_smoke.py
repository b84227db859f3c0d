"""Smoke: one heater publishes through the outbox to the platform stand-in over mutual TLS."""

from __future__ import annotations

import asyncio

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import Kind, Reading, TelemetryBatch
from qrad_agent.sync.outbox import Outbox


async def test_telemetry_reaches_platform(sync_cfg, platform) -> None:
    cfg = sync_cfg()
    outbox = Outbox(cfg.outbox_path)
    client = SyncClient(cfg, "heater-1", outbox)
    task = asyncio.create_task(client.run())
    for i in range(10):
        await client.enqueue(Kind.TELEMETRY, TelemetryBatch(readings=[Reading(channel="room", t=i, value=20.0)]))
    assert await platform.wait(lambda p: len(p.devices["heater-1"].seen) == 10)
    assert platform.devices["heater-1"].seqs == list(range(1, 11))
    assert await platform.wait(lambda p: any(a[1] == "online" for a in p.devices["heater-1"].availability))
    for _ in range(100):
        if len(outbox) == 0:
            break
        await asyncio.sleep(0.02)
    assert len(outbox) == 0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await platform.wait(lambda p: p.devices["heater-1"].availability[-1][1] == "offline")
