"""Benchmark of platform sync on loopback against a real mosquitto (mutual TLS, ACL, persistence).

Cases:
  throughput  one heater enqueues N telemetry batches as fast as the outbox takes them (durability full and
              normal); messages/s from the first enqueue to the last arrival at the platform stand-in
  latency     one heater, one batch every 20 ms: end-to-end latency (enqueue -> platform), p50/p99
  fleet       hw-sim's Fleet: 500 heaters' sync clients on one loop, one batch per heater per 10 s
              (staggered), against one broker: messages/s, p50/p99 latency, memory per heater (RSS delta)

``.venv/bin/python benchmarks/sync.py [--heaters 500] [--duration 30] [--count 5000]`` prints a table.
"""

from __future__ import annotations

import argparse
import logging
import asyncio
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path

import psutil
import structlog

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.config import SyncConfig
from qrad_agent.sync.contract import Kind, Reading, TelemetryBatch
from qrad_agent.sync.devbroker import DevBroker, Pki, make_pki
from qrad_agent.sync.outbox import Outbox
from qrad_hwsim.platform import Fleet, Platform


def batch(i: int, channels: int = 8) -> TelemetryBatch:
    return TelemetryBatch(readings=[Reading(channel=f"ch{c}", t=time.time(), value=20.0 + (i + c) % 5, unit="C")
                                    for c in range(channels)])


def cfg_for(pki: Pki, port: int, device: str, work: Path, durability: str = "full") -> SyncConfig:
    cert, key = pki.client(device)
    return SyncConfig(host="127.0.0.1", port=port, ca_file=pki.ca, cert_file=cert, key_file=key,
                      keepalive_s=30, backoff_initial_s=0.5, backoff_max_s=5,
                      outbox_path=work / f"{device}.db", outbox_durability=durability)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def single(platform: Platform, pki: Pki, port: int, work: Path, device: str, count: int,
                 period_s: float, durability: str) -> dict[str, float]:
    client = SyncClient(cfg_for(pki, port, device, work, durability), device,
                        Outbox(work / f"{device}.db", 1_000_000, durability))
    task = asyncio.create_task(client.run())
    while not client.connected:
        await asyncio.sleep(0.01)
    start_lat = len(platform.latencies_s)
    t0 = time.perf_counter()
    for i in range(count):
        await client.enqueue(Kind.TELEMETRY, batch(i))
        if period_s:
            await asyncio.sleep(period_s)
    ok = await platform.wait(lambda p: len(p.devices[device].seen) >= count, 120)
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    lat = platform.latencies_s[start_lat:]
    return {"messages": count, "ok": ok, "msg_s": count / elapsed, "p50_ms": 1e3 * pct(lat, 0.5),
            "p99_ms": 1e3 * pct(lat, 0.99), "dups": platform.devices[device].duplicates}


async def fleet(platform: Platform, pki: Pki, port: int, work: Path, heaters: int,
                duration_s: float, period_s: float, durability: str) -> dict[str, float]:
    names = [f"sim-{i:04d}" for i in range(heaters)]
    for name in names:
        pki.client(name)  # certificates first: their cost is not the heaters' memory
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    clients = [SyncClient(cfg_for(pki, port, n, work, durability), n, Outbox(work / f"{n}.db", 10_000, durability))
               for n in names]
    start_lat = len(platform.latencies_s)
    received0 = platform.received
    async with Fleet(clients) as running:
        t_conn = time.perf_counter()
        connected = await running.connected(120)
        connect_s = time.perf_counter() - t_conn
        rng = random.Random(1)

        async def heater(client: SyncClient) -> int:
            await asyncio.sleep(rng.uniform(0, period_s))
            sent = 0
            while True:
                await client.enqueue(Kind.TELEMETRY, batch(sent))
                sent += 1
                await asyncio.sleep(period_s)

        t0 = time.perf_counter()
        producers = [asyncio.create_task(heater(c)) for c in clients]
        await asyncio.sleep(duration_s)
        for task in producers:
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        await asyncio.sleep(1.0)
        elapsed = time.perf_counter() - t0
        rss1 = proc.memory_info().rss
    lat = platform.latencies_s[start_lat:]
    msgs = platform.received - received0
    return {"heaters": heaters, "connected": connected, "connect_s": connect_s, "messages": msgs,
            "msg_s": msgs / elapsed, "p50_ms": 1e3 * pct(lat, 0.5), "p99_ms": 1e3 * pct(lat, 0.99),
            "max_ms": 1e3 * max(lat, default=float("nan")), "mb_per_heater": (rss1 - rss0) / heaters / 2**20}


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for durability in args.fleet_durability:
            (work / durability).mkdir()
        pki = make_pki(work / "pki", ("platform",))
        broker = DevBroker(work / "broker", pki)
        broker.start()
        try:
            cert, key = pki.client("platform")
            with Platform("127.0.0.1", broker.platform_port, pki.ca, cert, key, clean=True) as platform:
                rows = []
                for durability in ("full", "normal"):
                    r = await single(platform, pki, broker.port, work, f"tp-{durability}", args.count, 0, durability)
                    rows.append((f"throughput, 1 heater, outbox {durability}", r))
                r = await single(platform, pki, broker.port, work, "lat", 500, 0.02, "full")
                rows.append(("latency, 1 heater, 50 batches/s", r))
                for durability in args.fleet_durability:
                    r = await fleet(platform, pki, broker.port, work / durability, args.heaters, args.duration,
                                    10.0, durability)
                    rows.append((f"fleet, {args.heaters} heaters, 1/10 s, outbox {durability}", r))
        finally:
            broker.stop()
    print(f"\n{'case':<44} {'msgs':>7} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'MB/heater':>10}")
    for name, r in rows:
        print(f"{name:<44} {r['messages']:>7} {r['msg_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r.get('mb_per_heater', float('nan')):>10.3f}")
    for name, f in rows[-len(args.fleet_durability):]:
        print(f"{name}: connected={f['connected']} in {f['connect_s']:.1f} s, max latency {f['max_ms']:.1f} ms; "
              f"goals p99 < 20 ms: {'met' if f['p99_ms'] < 20 else 'NOT met'}, "
              f"< 1 MB/heater: {'met' if f['mb_per_heater'] < 1 else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heaters", type=int, default=500)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--fleet-durability", nargs="+", default=["full", "normal"], choices=("full", "normal"))
    asyncio.run(main(parser.parse_args()))
