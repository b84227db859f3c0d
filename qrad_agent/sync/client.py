"""The sync client: paho-mqtt (MQTT 5) driven by the event loop, publishing the outbox in order.

One paho ``Client`` per connection: its socket is watched by the loop (``add_reader``/``add_writer``) and
``loop_misc`` runs every second for the keepalive, so paho's callbacks run on the loop thread. Only the
blocking TCP + TLS connect runs in a worker thread; the socket callbacks it fires reach the loop through
``call_soon_threadsafe``. A fresh paho client per connection means no stale in-memory queue: after a
reconnect the outbox alone is replayed, from its oldest row, within the in-flight window
(``max_inflight`` capped by the broker's Receive Maximum). A row is deleted only when its PUBACK (success
reason code) arrives on the connection that published it; a publish in flight when the link drops stays.

Session: clean start off and a session expiry, so the command subscription and QoS 1 commands queued while
the heater is offline survive. Availability: a retained "online" birth after each CONNACK and a retained
"offline" last will (and an explicit "offline" on a clean stop). Reconnect waits a jittered exponential
backoff ("full jitter"). The password, if any, is never logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import BaseModel

from qrad_agent.sync.commands import CommandHandler, CommandResponse, Reason
from qrad_agent.sync.config import SyncConfig
from qrad_agent.sync.contract import OFFLINE, ONLINE, EventMessage, Kind, StateMessage, Topics, envelope_bytes
from qrad_agent.sync.outbox import MAX_LINK_LOSSES, Outbox, OutboxRow, Stored

log = structlog.get_logger(component="sync")

MISC_PERIOD_S = 1.0
"""How often paho's keepalive bookkeeping (PINGREQ, keepalive timeout) runs."""
STABLE_AFTER_S = 30.0
"""A connection that lasted this long resets the reconnect backoff."""


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform in [initial/2, min(max, initial * 2**attempt)]."""
    cap = min(max_s, initial_s * (2 ** min(attempt, 32)))
    return rng.uniform(min(initial_s / 2, cap), cap)


class ConnectRefused(Exception):
    """The broker answered CONNACK with a failure reason code."""


class SyncClient:
    """One heater's MQTT link to the platform. Run `run` as a supervised component."""

    def __init__(self, cfg: SyncConfig, device_id: str, outbox: Outbox, commands: CommandHandler | None = None,
                 *, username: str | None = None, password: str | None = None,
                 rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.topics = Topics(cfg.topic_prefix, device_id)  # refuses a device id with wildcards
        self.device_id = device_id
        self.outbox = outbox
        self.commands = commands
        self._username = username
        self._password = password
        self._rng = rng or random.Random()
        self._client: mqtt.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int | None = None
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        self._connack: asyncio.Future[Any] | None = None
        self._inflight: dict[int, int] = {}  # mid -> outbox row id, current connection only
        self._acked: set[int] = set()  # acknowledged rows not yet deleted
        self._deleting = False
        self._cursor = 0
        self._window = cfg.max_inflight
        self._max_packet = cfg.max_message_bytes  # lowered by the broker's CONNACK Maximum Packet Size
        self._losses_noted = True  # counts may persist from an earlier run: the first PUBACK clears them
        self._state: bytes | None = None
        self._forecast: bytes | None = None
        self._cmd_queue: asyncio.Queue[tuple[bytes, str | None, bytes | None]] = asyncio.Queue(
            cfg.command_queue_size)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = False
        self.stats: dict[str, Any] = {"connects": 0, "disconnects": 0, "published": 0, "acked": 0, "refused_acks": 0,
                      "dead_lettered": 0, "commands": 0, "commands_dropped": 0, "last_error": ""}

    # ---- producer side -------------------------------------------------------------------------------

    async def enqueue(self, kind: Kind, body: BaseModel | dict[str, Any], *,
                      topic: str | None = None, correlation: bytes | None = None) -> Stored:
        """Store a message in the outbox (durably) and wake the publisher; returns its seq or drop."""
        data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        ts = time.time()
        build = partial(_build, self.device_id, ts, kind, data)
        stored = await asyncio.to_thread(self.outbox.put, kind, topic or kind.topic(self.topics), build,
                                         retain=kind.retain, correlation=correlation)
        self._wake.set()
        return stored

    def set_state(self, state: StateMessage) -> None:
        """Publish the retained state now if connected, and again after every reconnect (latest only)."""
        self._state = state.model_dump_json().encode()
        if self.connected and self._client is not None:
            self._client.publish(self.topics.state, self._state, qos=1, retain=True)

    def set_forecast(self, forecast: BaseModel) -> None:
        """Publish the retained heat-demand forecast now if connected, and after every reconnect."""
        self._forecast = forecast.model_dump_json().encode()
        if self.connected and self._client is not None:
            self._client.publish(self.topics.forecast, self._forecast, qos=1, retain=True)

    def status(self) -> dict[str, Any]:
        """Plain-JSON status for the agent's status()."""
        return {"connected": self.connected, "broker": f"{self.cfg.host}:{self.cfg.port}",
                "inflight": len(self._inflight), "window": self._window, "outbox": self.outbox.status(),
                **self.stats}

    # ---- the component ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, publish, reconnect with backoff, forever. Cancellation is a clean stop."""
        self._loop = asyncio.get_running_loop()
        worker = asyncio.create_task(self._command_worker(), name=f"sync-commands-{self.device_id}")
        attempt = 0
        try:
            while True:
                started = self._loop.time()
                try:
                    await self._session()
                except asyncio.CancelledError:
                    self._stop_cleanly()
                    raise
                except (OSError, ssl.SSLError, ConnectRefused, TimeoutError) as exc:
                    self.stats["last_error"] = f"{type(exc).__name__}: {exc}"[:200]
                    log.warning("broker connection failed", host=self.cfg.host, port=self.cfg.port,
                                error=self.stats["last_error"], attempt=attempt)
                finally:
                    self._teardown()
                if self._loop.time() - started > STABLE_AFTER_S:
                    attempt = 0
                delay = backoff_delay(attempt, self.cfg.backoff_initial_s, self.cfg.backoff_max_s, self._rng)
                attempt += 1
                await asyncio.sleep(delay)
        finally:
            worker.cancel()
            for task in list(self._tasks):
                task.cancel()

    async def _session(self) -> None:
        assert self._loop is not None
        client = self._new_client()
        self._client = client
        self._lost = asyncio.Event()
        self._connack = self._loop.create_future()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        props.ReceiveMaximum = self.cfg.command_queue_size
        connect = partial(client.connect, self.cfg.host, self.cfg.port, self.cfg.keepalive_s,
                          clean_start=False, properties=props)
        async with asyncio.timeout(self.cfg.connect_timeout_s):  # not wait_for: see jobs/runner.py
            await self._loop.run_in_executor(None, connect)
        misc = asyncio.create_task(self._misc(client), name=f"sync-misc-{self.device_id}")
        try:
            async with asyncio.timeout(self.cfg.connect_timeout_s):
                reason, connack_props = await self._connack
            if reason.is_failure:
                raise ConnectRefused(str(reason))
            self._on_connected(client, connack_props)
            pump = asyncio.create_task(self._pump(client), name=f"sync-pump-{self.device_id}")
            try:
                await self._lost.wait()
            finally:
                pump.cancel()
        finally:
            misc.cancel()

    def _on_connected(self, client: mqtt.Client, props: Properties | None) -> None:
        self.connected = True
        self.stats["connects"] += 1
        broker_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        self._window = min(self.cfg.max_inflight, broker_max or self.cfg.max_inflight)
        broker_packet = getattr(props, "MaximumPacketSize", None) if props is not None else None
        self._max_packet = min(self.cfg.max_message_bytes, broker_packet or self.cfg.max_message_bytes)
        client.subscribe(self.topics.commands, qos=1)
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        if self._state is not None:
            client.publish(self.topics.state, self._state, qos=1, retain=True)
        if self._forecast is not None:
            client.publish(self.topics.forecast, self._forecast, qos=1, retain=True)
        self._inflight.clear()
        self._cursor = 0
        self._wake.set()
        log.info("connected to broker", host=self.cfg.host, port=self.cfg.port, window=self._window,
                 outbox=len(self.outbox))

    async def _pump(self, client: mqtt.Client) -> None:
        """Publish outbox rows in id order, at most ``window`` awaiting PUBACK."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.connected and len(self._inflight) < self._window:
                room = self._window - len(self._inflight)
                rows = await asyncio.to_thread(self.outbox.pending, self._cursor, room, tuple(self._acked))
                if not rows or client is not self._client or not self.connected:
                    break
                for row in rows:
                    size = publish_size(row)
                    if size > self._max_packet:
                        await self._dead_letter(row.id, f"too_large: {size} bytes, the limit is {self._max_packet}")
                        continue
                    props = None
                    if row.correlation is not None:
                        props = Properties(PacketTypes.PUBLISH)
                        props.CorrelationData = row.correlation
                    info = client.publish(row.topic, row.payload, qos=1, retain=row.retain, properties=props)
                    if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        return  # link gone: on_disconnect follows; the row stays in the outbox
                    self._inflight[info.mid] = row.id
                    self._cursor = row.id
                    self.stats["published"] += 1

    async def _misc(self, client: mqtt.Client) -> None:
        while True:
            await asyncio.sleep(MISC_PERIOD_S)
            client.loop_misc()

    async def _command_worker(self) -> None:
        while True:
            payload, response_topic, correlation = await self._cmd_queue.get()
            if self.commands is None:
                continue
            response = await self.commands.handle(payload)
            await self._respond(response, response_topic, correlation)

    async def _respond(self, response: CommandResponse, response_topic: str | None,
                       correlation: bytes | None) -> None:
        await self.enqueue(Kind.RESPONSE, response, topic=self.topics.response_topic(response_topic),
                           correlation=correlation)

    # ---- paho wiring: every callback below runs on the loop thread ---------------------------------

    def _new_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id, protocol=mqtt.MQTTv5)
        if self.cfg.tls:
            client.tls_set(ca_certs=str(self.cfg.ca_file), certfile=str(self.cfg.cert_file),
                           keyfile=str(self.cfg.key_file), cert_reqs=ssl.CERT_REQUIRED,
                           tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages = self.cfg.max_inflight
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = self._threadsafe(self._on_socket_open)
        client.on_socket_close = self._threadsafe(self._on_socket_close)
        client.on_socket_register_write = self._threadsafe(self._on_register_write)
        client.on_socket_unregister_write = self._threadsafe(self._on_unregister_write)
        return client

    def _threadsafe(self, fn: Callable[..., None]) -> Callable[..., None]:
        loop = self._loop
        assert loop is not None
        loop_thread = threading.get_ident()

        def call(*args: Any) -> None:
            if threading.get_ident() == loop_thread:
                fn(*args)
            else:
                loop.call_soon_threadsafe(fn, *args)
        return call

    def _on_socket_open(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if client is not self._client or self._loop is None:
            return
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable, client, sock)

    def _readable(self, client: mqtt.Client, sock: Any) -> None:
        client.loop_read()
        while client.socket() is sock and isinstance(sock, ssl.SSLSocket) and sock.pending():
            client.loop_read()  # TLS may hold decrypted records the fd will not signal again

    def _on_socket_close(self, client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        self._unwatch()

    def _on_register_write(self, client: mqtt.Client, _userdata: Any, sock: Any) -> None:
        if client is self._client and self._loop is not None and self._fd is not None:
            self._loop.add_writer(self._fd, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, _userdata: Any, _sock: Any) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_writer(self._fd)

    def _unwatch(self) -> None:
        if self._loop is not None and self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = None

    def _on_connect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode,
                    props: Properties | None) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result((reason, props))

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _flags: Any, reason: ReasonCode,
                       _props: Properties | None) -> None:
        if client is not self._client:
            return
        if self.connected:
            self.stats["disconnects"] += 1
            (log.info if reason.value == 0 else log.warning)(
                "broker connection ended", reason=str(reason), inflight=len(self._inflight))
        self.connected = False
        if self._inflight:  # the oldest unacknowledged row may be what the broker closes the link on
            self._spawn(self._link_lost_with(min(self._inflight.values())))
        self._inflight.clear()  # no PUBACK came for these: they stay in the outbox and are replayed
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectRefused(f"disconnected before CONNACK: {reason}"))

    def _on_publish(self, client: mqtt.Client, _u: Any, mid: int, reason: ReasonCode,
                    _props: Properties | None) -> None:
        if client is not self._client:
            return
        row_id = self._inflight.pop(mid, None)
        if row_id is None:
            return  # birth, state: not outbox rows
        if reason.is_failure:
            # the broker refused it (e.g. not authorised, too large): retrying cannot help; kept aside
            self.stats["refused_acks"] += 1
            self._spawn(self._dead_letter(row_id, f"refused: {reason}"))
            self._wake.set()
            return
        if self._losses_noted:
            self._losses_noted = False
            self._spawn(asyncio.to_thread(self.outbox.clear_link_losses))
        self.stats["acked"] += 1
        self._acked.add(row_id)
        if not self._deleting:
            self._deleting = True
            self._spawn(self._delete_acked())
        self._wake.set()

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self._client:
            return
        self.stats["commands"] += 1
        props = getattr(msg, "properties", None)
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        try:
            self._cmd_queue.put_nowait((bytes(msg.payload), response_topic, correlation))
        except asyncio.QueueFull:
            self.stats["commands_dropped"] += 1
            busy = CommandResponse(command_id=_peek_id(bytes(msg.payload)), command=None, ok=False,
                                   reason=Reason.BUSY, detail="command queue full")
            self._spawn(self._respond(busy, response_topic, correlation))

    async def _link_lost_with(self, row_id: int) -> None:
        losses = await asyncio.to_thread(self.outbox.note_link_lost, row_id)
        self._losses_noted = True
        if losses < MAX_LINK_LOSSES:
            return
        rows = await asyncio.to_thread(self.outbox.pending, row_id - 1, 1)
        if rows and rows[0].id == row_id and rows[0].kind is not Kind.ALARM:  # an alarm is never set aside
            await self._dead_letter(row_id, f"link_lost: the broker closed the link {losses} times with it in flight")

    async def _dead_letter(self, row_id: int, reason: str) -> None:
        """Move a row the broker cannot take to the dead letters, say so in an event, and go on."""
        row: OutboxRow | None = await asyncio.to_thread(self.outbox.dead_letter, row_id, reason)
        if row is None:
            return
        self.stats["dead_lettered"] += 1
        log.error("outbox message set aside", seq=row.seq, kind=row.kind.name.lower(), bytes=len(row.payload),
                  reason=reason)
        event = EventMessage(name="outbox_dead_letter",
                             detail={"seq": row.seq, "kind": row.kind.name.lower(), "bytes": len(row.payload),
                                     "reason": reason[:200]})
        await self.enqueue(Kind.EVENT, event)

    async def _delete_acked(self) -> None:
        try:
            while self._acked:
                ids = tuple(self._acked)
                await asyncio.to_thread(self.outbox.delete, ids)
                self._acked.difference_update(ids)
        finally:
            self._deleting = False

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _teardown(self) -> None:
        client, self._client = self._client, None
        self.connected = False
        self._inflight.clear()
        self._unwatch()
        sock = client.socket() if client is not None else None
        if sock is not None:
            sock.close()

    def _stop_cleanly(self) -> None:
        """On cancellation: retained "offline", DISCONNECT, written synchronously (non-blocking socket)."""
        client = self._client
        if client is not None and self.connected:
            client.publish(self.topics.availability, OFFLINE, qos=0, retain=True)
            client.disconnect()
            for _ in range(3):
                if client.socket() is None or client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._teardown()


def _build(device_id: str, ts: float, kind: Kind, body: dict[str, Any], seq: int) -> bytes:
    return envelope_bytes(device_id, seq, ts, kind, body)


def publish_size(row: OutboxRow) -> int:
    """An upper bound of the PUBLISH packet's size for a row, bytes: payload, topic, packet id and
    properties (correlation data), fixed header (MQTT 5, 3.3)."""
    return len(row.payload) + len(row.topic.encode()) + len(row.correlation or b"") + 32


def _peek_id(payload: bytes) -> str | None:
    try:
        value = json.loads(payload).get("command_id")
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None
    return value[:64] if isinstance(value, str) else None
