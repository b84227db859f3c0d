"""A message the broker cannot take never blocks the outbox (issue 13): a job result of 0.73 MB used to be
resent at every reconnect, the broker closing the link each time, with everything behind it stuck. Real
mosquitto with the platform's 256 KiB message limit (deploy/mosquitto/mosquitto.conf)."""

from __future__ import annotations

import asyncio
import json

import pytest

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import AlarmMessage, JobStatusMessage, Kind, Reading, TelemetryBatch
from qrad_agent.sync.outbox import MAX_LINK_LOSSES, Outbox


async def wait_until(predicate, timeout_s: float = 20.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def huge_result(job_id: str) -> JobStatusMessage:
    """What a job with 64 long output names made of the result before it was bounded: ~0.73 MB."""
    outputs = {("d" * 220 + "/") * 50 + f"f{i}": {"bytes": 1, "sha256": "0" * 64} for i in range(64)}
    return JobStatusMessage(job_id=job_id, status="succeeded", exit_code=0, result={"outputs": outputs})


@pytest.mark.parametrize("client_limit", [None, 4 << 20], ids=["client_limit", "broker_limit"])
async def test_oversized_message_is_set_aside_and_the_rest_delivered(sync_cfg, broker, platform,
                                                                   client_limit) -> None:
    """client_limit: the heater's own bound catches it before sending; broker_limit: the heater is allowed
    more than the broker, so the broker's refusal (or its closing the link) is what must be survived."""
    cfg = sync_cfg(**({"max_message_bytes": client_limit} if client_limit else {}))
    outbox = Outbox(cfg.outbox_path, durability="normal")
    client = SyncClient(cfg, "heater-1", outbox)
    task = asyncio.create_task(client.run())
    try:
        big = await client.enqueue(Kind.JOB, huge_result("big-1"))
        assert len(json.dumps(huge_result("big-1").model_dump())) > 700_000
        alarm = await client.enqueue(Kind.ALARM, AlarmMessage(code="overheat", severity="critical", state="raised"))
        after = [(await client.enqueue(Kind.TELEMETRY, TelemetryBatch(readings=[
            Reading(channel="room_temp", t=float(i), value=20.0)]))).seq for i in range(5)]
        log = platform.devices["heater-1"]
        assert await platform.wait(lambda p: all(s in p.devices["heater-1"].seen for s in [alarm.seq, *after]),
                                   60), (client.stats, outbox.status())
        assert await wait_until(lambda: len(outbox.dead_letters()) == 1, 30), client.stats
        assert big.seq not in log.seen
        dead = outbox.dead_letters()
        assert [(d[1], d[2]) for d in dead] == [(big.seq, "job")], dead  # kept on disk, with its reason
        assert dead[0][3] > 700_000 and dead[0][4].split(":")[0] in ("too_large", "refused", "link_lost")
        if client_limit is None:
            assert dead[0][4].startswith("too_large") and client.stats["disconnects"] == 0
        # the platform is told, by an event naming the message
        assert await platform.wait(lambda p: any(m["kind"] == "event" and m["body"]["name"] == "outbox_dead_letter"
                                                 and m["body"]["detail"]["seq"] == big.seq
                                                 for m in list(p.devices["heater-1"].messages.values())), 20)
        assert await wait_until(lambda: len(outbox) == 0)
        assert client.stats["disconnects"] <= MAX_LINK_LOSSES
        assert outbox.status()["dead_letters"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()


def test_dead_letters_survive_a_restart_and_alarms_are_kept(tmp_path) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path, durability="normal")
    stored = outbox.put(Kind.JOB, "t", lambda seq: b"x" * 10)
    alarm = outbox.put(Kind.ALARM, "a", lambda seq: b"alarm")
    for _ in range(MAX_LINK_LOSSES):
        assert outbox.note_link_lost(alarm.id) > 0
    assert outbox.dead_letter(stored.id, "too_large: test") is not None
    assert outbox.dead_letter(stored.id, "again") is None  # moved once
    outbox.close()
    again = Outbox(path, durability="normal")
    assert [r.id for r in again.pending()] == [alarm.id]
    assert again.dead_letters() == [(stored.id, stored.seq, "job", 10, "too_large: test")]
    again.clear_link_losses()
    assert again.note_link_lost(alarm.id) == 1
    again.close()


async def test_publish_refused_by_the_broker_is_set_aside(sync_cfg, broker, platform) -> None:
    """A row for a topic this heater may not write: the broker's PUBACK refuses it (0x87, not authorised);
    it is moved to the dead letters with that reason instead of being deleted unseen."""
    cfg = sync_cfg()
    outbox = Outbox(cfg.outbox_path, durability="normal")
    client = SyncClient(cfg, "heater-1", outbox)
    task = asyncio.create_task(client.run())
    try:
        foreign = await client.enqueue(Kind.TELEMETRY, TelemetryBatch(readings=[]), topic="qrad/v1/heater-2/telemetry")
        after = await client.enqueue(Kind.TELEMETRY, TelemetryBatch(readings=[]))
        assert await platform.wait(lambda p: after.seq in p.devices["heater-1"].seen, 20)
        assert await wait_until(lambda: len(outbox.dead_letters()) == 1), client.stats
        dead = outbox.dead_letters()[0]
        assert dead[1] == foreign.seq and dead[4].startswith("refused"), dead
        assert client.stats["refused_acks"] == 1 and foreign.seq not in platform.devices["heater-2"].seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        outbox.close()
