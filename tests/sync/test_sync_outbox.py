"""The outbox: order, sequence numbers across restarts, and the drop policy when full (with the broker too)."""

from __future__ import annotations

import asyncio
import json

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import AlarmMessage, JobStatusMessage, Kind
from qrad_agent.sync.outbox import Outbox


def put(box: Outbox, kind: Kind, tag: str):
    return box.put(kind, f"t/{kind.name}", lambda seq: json.dumps({"seq": seq, "tag": tag}).encode())


def tags(box: Outbox) -> list[str]:
    return [json.loads(r.payload)["tag"] for r in box.pending(0, 1000)]


def test_order_and_seq_survive_reopen(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db")
    ids = [put(box, Kind.TELEMETRY, str(i)).id for i in range(5)]
    box.delete(ids[:2])
    box.close()
    box = Outbox(tmp_path / "o.db")
    assert tags(box) == ["2", "3", "4"] and len(box) == 3
    assert put(box, Kind.EVENT, "e").seq == 6  # the sequence continues after a restart


def test_full_drops_oldest_telemetry_first_and_never_alarms_or_jobs(tmp_path) -> None:
    box = Outbox(tmp_path / "o.db", max_messages=10)
    for i in range(6):
        put(box, Kind.TELEMETRY, f"t{i}")
    put(box, Kind.EVENT, "e0")
    for i in range(3):
        put(box, Kind.ALARM, f"a{i}")
    assert len(box) == 10
    put(box, Kind.TELEMETRY, "t6")  # evicts t0
    put(box, Kind.EVENT, "e1")  # evicts t1 (telemetry before events)
    assert tags(box)[:4] == ["t2", "t3", "t4", "t5"]
    for i in range(3, 9):
        put(box, Kind.ALARM, f"a{i}")  # evicts t2..t6, then e0
    assert len(box) == 10 and [t for t in tags(box) if t[0] != "a"] == ["e1"]
    put(box, Kind.ALARM, "a9")  # evicts e1
    assert put(box, Kind.TELEMETRY, "late").dropped  # nothing droppable left: the new telemetry goes
    assert put(box, Kind.EVENT, "late-e").dropped
    put(box, Kind.JOB, "j0")  # job results and alarms are stored above the bound
    put(box, Kind.ALARM, "a10")
    assert tags(box) == [f"a{i}" for i in range(10)] + ["j0", "a10"]
    assert box.status()["dropped"] == 2 and box.status()["evicted"] == 9


async def test_full_outbox_offline_then_delivered_alarms_survive(sync_cfg, broker, platform) -> None:
    cfg = sync_cfg(outbox_max_messages=20)
    await asyncio.to_thread(broker.stop)
    box = Outbox(cfg.outbox_path, cfg.outbox_max_messages, "normal")
    client = SyncClient(cfg, "heater-1", box)
    task = asyncio.create_task(client.run())
    alarms, jobs = [], []
    for i in range(60):
        if i % 10 == 0:
            alarms.append((await client.enqueue(Kind.ALARM, AlarmMessage(
                code=f"A{i}", severity="critical", state="raised"))).seq)
        elif i % 10 == 5:
            jobs.append((await client.enqueue(Kind.JOB, JobStatusMessage(job_id=f"j{i}", status="succeeded"))).seq)
        else:
            await client.enqueue(Kind.TELEMETRY, {"readings": []})
    assert len(box) == 20
    await asyncio.to_thread(broker.start)
    want = set(alarms) | set(jobs)
    assert await platform.wait(lambda p: want <= p.devices["heater-1"].seen, 20)
    log = platform.devices["heater-1"]
    assert await platform.wait(lambda p: len(p.devices["heater-1"].seen) == 20, 5)
    assert log.seqs == sorted(log.seqs)
    kinds = [log.messages[s]["kind"] for s in log.seqs]
    assert kinds.count("telemetry") == 8  # only the newest telemetry survived
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
