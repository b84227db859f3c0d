"""A platform stand-in for demos, tests and benchmarks: the other end of qrad-agent's platform sync.

`Platform` connects with the platform's certificate (persistent session), subscribes to a fleet's
telemetry, state, heat-demand forecast, events, alarms, jobs, availability and command responses, deduplicates outbox messages
by (device, seq), measures delivery latency from the envelope's timestamp, and sends commands (setpoints,
Ed25519-signed jobs) with MQTT 5 request/response. `Fleet` runs many simulated heaters' sync clients on
one event loop (the fleet benchmark). Needs qrad-agent installed (it speaks the agent's contract).

paho's network thread delivers messages; everything the platform records is guarded by one condition.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from qrad_agent.sync.signing import sign


@dataclass
class DeviceLog:
    """What the platform received from one device."""

    seqs: list[int] = field(default_factory=list)  # first arrival of each seq, in arrival order
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    availability: list[tuple[float, str, bool]] = field(default_factory=list)  # (time, payload, retained)
    state: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None  # the retained heat-demand forecast (docs/schema/forecast.json)
    forecasts: list[dict[str, Any]] = field(default_factory=list)  # every one received, in order

    def missing(self, upto: int) -> list[int]:
        return [s for s in range(1, upto + 1) if s not in self.seen]


class Platform:
    """Subscriber and commander for a fleet under ``prefix``. Use as a context manager."""

    def __init__(self, host: str, port: int, ca: Path, cert: Path, key: Path, prefix: str = "qrad/v1",
                 client_id: str = "platform-standin", signing_key: Any = None, clean: bool = False) -> None:
        self.prefix = prefix
        self.signing_key = signing_key
        self.cond = threading.Condition()
        self.devices: dict[str, DeviceLog] = defaultdict(DeviceLog)
        self.latencies_s: list[float] = []
        self.responses: dict[bytes, dict[str, Any]] = {}
        self.received = 0
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self._client.tls_set(ca_certs=str(ca), certfile=str(cert), keyfile=str(key),
                             tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.2, 2)
        self._host, self._port, self._clean = host, port, clean
        self._connected = threading.Event()

    def __enter__(self) -> Platform:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._client.connect(self._host, self._port, keepalive=10, clean_start=self._clean, properties=props)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("platform stand-in could not connect")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            return
        p = self.prefix
        client.subscribe([(f"{p}/+/{leaf}", 1) for leaf in
                          ("telemetry", "events", "alarms", "jobs", "availability", "state", "forecast")]
                         + [(f"{p}/+/resp/#", 1)])
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.time()
        parts = msg.topic.split("/")
        device, leaf = parts[-2], parts[-1]
        if parts[-2] == "resp" or (len(parts) >= 3 and "resp" in parts[-3:]):
            device = parts[parts.index("resp") - 1]
            leaf = "resp"
        with self.cond:
            log = self.devices[device]
            self.received += 1
            if leaf == "availability":
                log.availability.append((now, msg.payload.decode(errors="replace"), bool(msg.retain)))
            elif leaf == "state":
                log.state = json.loads(msg.payload) if msg.payload else None
            elif leaf == "forecast":
                log.forecast = json.loads(msg.payload) if msg.payload else None
                if log.forecast is not None:
                    log.forecasts.append(log.forecast)
            else:
                self._record(log, msg, now)
            self.cond.notify_all()

    def _record(self, log: DeviceLog, msg: mqtt.MQTTMessage, now: float) -> None:
        envelope = json.loads(msg.payload)
        seq = int(envelope["seq"])
        if seq in log.seen:
            log.duplicates += 1
            return
        log.seen.add(seq)
        log.seqs.append(seq)
        log.messages[seq] = envelope
        if not msg.retain:
            self.latencies_s.append(now - float(envelope["ts"]))
        correlation = getattr(getattr(msg, "properties", None), "CorrelationData", None)
        if envelope["kind"] == "response" and correlation is not None:
            self.responses[bytes(correlation)] = envelope["body"]

    # ---- waiting ---------------------------------------------------------------------------------------

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout_s)

    async def wait(self, predicate: Any, timeout_s: float = 10.0) -> bool:
        return await asyncio.to_thread(self.wait_for, predicate, timeout_s)

    # ---- commands ----------------------------------------------------------------------------------------

    def command(self, device: str, command: dict[str, Any], expiry_s: int | None = 60,
                raw: bytes | None = None) -> bytes:
        """Send a command (or raw bytes) to ``device``; returns the correlation data to await."""
        correlation = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = f"{self.prefix}/{device}/resp/platform"
        props.CorrelationData = correlation
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        payload = raw if raw is not None else json.dumps(command).encode()
        self._client.publish(f"{self.prefix}/{device}/cmd", payload, qos=1, properties=props)
        return correlation

    def new_command(self, name: str, **fields_: Any) -> dict[str, Any]:
        now = time.time()
        return {"v": 1, "command": name, "command_id": uuid.uuid4().hex, "issued_at": now,
                "expires_at": now + 300, **fields_}

    def set_setpoint(self, device: str, mode: str, setpoint_c: float) -> bytes:
        return self.command(device, self.new_command("set_setpoint", mode=mode, setpoint_c=setpoint_c))

    def set_weather(self, device: str, points: list[dict[str, float]]) -> bytes:
        """Send an outdoor forecast: points {"t": unix s, "outdoor_c": °C, "ghi_w_m2": W/m²}."""
        return self.command(device, self.new_command("set_weather", points=points))

    def demand_response(self, device: str, start: float, end: float, limit_w: float, kind: str = "shed",
                        dry_run: bool = False) -> bytes:
        """Ask for a demand response: from ``start`` to ``end`` (unix s) at most (``shed``) or at least
        (``absorb``) ``limit_w`` W; ``dry_run`` only asks what discomfort the heater expects."""
        return self.command(device, self.new_command("demand_response", start=start, end=end, kind=kind,
                                                     limit_w=limit_w, dry_run=dry_run))

    def signed_command(self, device: str, name: str, **fields_: Any) -> dict[str, Any]:
        """A command addressed to ``device`` and signed as a whole (command id, issued_at, expires_at,
        payload) with the platform's Ed25519 key."""
        document = self.new_command(name, device_id=device, **fields_)
        return {**document, "signature": sign(self.signing_key, document)}

    def sign_job(self, device: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest bound to ``device``: its ``device_id`` and a fresh ``nonce`` filled in when absent."""
        return {"device_id": device, "nonce": uuid.uuid4().hex, **manifest}

    def submit_job(self, device: str, manifest: dict[str, Any], signed: dict[str, Any] | None = None) -> bytes:
        """A job in a command signed as a whole with the platform's Ed25519 key (``signed``: an already
        bound manifest, e.g. to replay one in a new command)."""
        bound = signed or self.sign_job(device, manifest)
        return self.command(device, self.signed_command(device, "submit_job", manifest=bound))

    def ack_job(self, device: str, job_id: str) -> bytes:
        """Tell ``device`` that the platform has ``job_id``'s result (it may delete the job's files)."""
        return self.command(device, self.new_command("ack_job", job_id=job_id))

    def job_statuses(self, device: str, job_id: str) -> list[dict[str, Any]]:
        """Bodies of the job status messages received for ``job_id``, in sequence order."""
        with self.cond:
            log = self.devices[device]
            return [log.messages[s]["body"] for s in sorted(log.seen)
                    if log.messages[s]["kind"] == "job" and log.messages[s]["body"]["job_id"] == job_id]

    def response(self, correlation: bytes, timeout_s: float = 10.0) -> dict[str, Any] | None:
        self.wait_for(lambda p: correlation in p.responses, timeout_s)
        with self.cond:
            return self.responses.get(correlation)

    def report(self) -> dict[str, Any]:
        """Per-device counts: unique messages, duplicates, missing sequence numbers."""
        with self.cond:
            return {d: {"unique": len(log.seen), "duplicates": log.duplicates,
                        "missing": len(log.missing(max(log.seen, default=0)))}
                    for d, log in sorted(self.devices.items())}


class Fleet:
    """``n`` simulated heaters' sync clients on one event loop, each with its own certificate and outbox."""

    def __init__(self, clients: list[Any]) -> None:
        self.clients = clients
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Fleet:
        self._tasks = [asyncio.create_task(c.run(), name=f"heater-{i}") for i, c in enumerate(self.clients)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def connected(self, timeout_s: float = 60.0) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not all(c.connected for c in self.clients):
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
