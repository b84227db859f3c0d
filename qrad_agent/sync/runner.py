"""A minimal sync process for tests and demos: ``python -m qrad_agent.sync.runner CONFIG.json DEVICE [COUNT]``.

Runs one `SyncClient` from a SyncConfig JSON file and enqueues COUNT telemetry batches as fast as the outbox
takes them, printing ``STORED <seq>`` (flushed) once each is committed, then keeps draining until SIGTERM or
SIGKILL. The tests kill it mid-burst to check that nothing handed to the outbox is lost.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.config import SyncConfig
from qrad_agent.sync.contract import Kind, Reading, TelemetryBatch
from qrad_agent.sync.outbox import Outbox


async def main(cfg: SyncConfig, device_id: str, count: int) -> None:
    outbox = Outbox(cfg.outbox_path, cfg.outbox_max_messages, cfg.outbox_durability)
    client = SyncClient(cfg, device_id, outbox)
    task = asyncio.create_task(client.run(), name="sync")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    for i in range(count):
        batch = TelemetryBatch(readings=[Reading(channel="room_temp", t=float(i), value=20.0 + i % 7)])
        stored = await client.enqueue(Kind.TELEMETRY, batch)
        print(f"STORED {stored.seq}", flush=True)
    print("DONE", flush=True)
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    outbox.close()


if __name__ == "__main__":
    config = SyncConfig.model_validate_json(Path(sys.argv[1]).read_text())
    asyncio.run(main(config, sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0))
