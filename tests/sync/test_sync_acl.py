"""Broker ACL and identity (deploy/mosquitto rules on the certificate's CN): each heater confined to its own
subtree, its client id bound to its certificate, a hostile CN reaching nothing."""

from __future__ import annotations

import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import ContractError
from qrad_agent.sync.outbox import Outbox


class Raw:
    """A bare paho MQTT 5 client with a given certificate and client id."""

    def __init__(self, broker, pki, cert_name: str | None, client_id: str, clean_start: bool = True) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        cert, key = pki.client(cert_name) if cert_name else (None, None)
        self.client.tls_set(ca_certs=str(pki.ca), certfile=str(cert) if cert else None,
                            keyfile=str(key) if key else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.assigned: str | None = None
        self.messages: list[tuple[str, bytes]] = []
        self.suback: list = []
        self.connack = threading.Event()
        self.ok = False
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.suback.extend(codes)
        self.client.on_disconnect = lambda c, u, f, reason, p: self.disconnects.append(str(reason))
        self.disconnects: list[str] = []
        port = broker.platform_port if (cert_name or "").startswith("platform") else broker.port
        self.client.connect("127.0.0.1", port, keepalive=5, clean_start=clean_start, properties=_session())
        self.client.loop_start()

    def _on_connect(self, c, u, f, reason, p) -> None:
        self.ok = not reason.is_failure
        self.assigned = getattr(p, "AssignedClientIdentifier", None)
        self.connack.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _session() -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    return props


def settle(predicate, timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_heater_confined_to_its_own_subtree(broker, pki) -> None:
    h1 = Raw(broker, pki, "heater-1", "heater-1")
    platform = Raw(broker, pki, "platform", "platform-acl")
    try:
        assert h1.connack.wait(5) and h1.ok and platform.connack.wait(5)
        platform.client.subscribe("qrad/v1/+/telemetry", qos=1)
        h1.client.subscribe([("qrad/v1/heater-2/cmd", 1), ("qrad/v1/heater-2/#", 1), ("qrad/v1/heater-1/cmd", 1)])
        assert settle(lambda: len(h1.suback) == 3 and len(platform.suback) == 1)
        # mosquitto 2.0 grants the SUBACK and applies the read ACL to every delivery: nothing arrives
        assert not h1.suback[2].is_failure
        platform.client.publish("qrad/v1/heater-2/cmd", b"{}", qos=1)
        platform.client.publish("qrad/v1/heater-1/cmd", b"mine", qos=1)
        h1.client.publish("qrad/v1/heater-2/telemetry", b"forged", qos=1)
        h1.client.publish("qrad/v1/heater-1/telemetry", b"own", qos=1)
        assert settle(lambda: ("qrad/v1/heater-1/telemetry", b"own") in platform.messages)
        assert settle(lambda: ("qrad/v1/heater-1/cmd", b"mine") in h1.messages)
        time.sleep(0.3)
        assert ("qrad/v1/heater-2/telemetry", b"forged") not in platform.messages
        assert all(topic == "qrad/v1/heater-1/cmd" for topic, _ in h1.messages)
    finally:
        h1.close()
        platform.close()


@pytest.mark.parametrize("client_id", ["heater-1/#", "+", "#", "heater-1+", "heater-2"])
def test_a_client_id_widens_nothing(broker, pki, client_id) -> None:
    """The heater listener replaces the client id by the certificate's CN (use_username_as_clientid), so a
    wildcard or another heater's client id gives no more than the certificate's own subtree."""
    sneaky = Raw(broker, pki, "heater-1", client_id)
    platform = Raw(broker, pki, "platform", "platform-acl")
    try:
        assert platform.connack.wait(5)
        platform.client.subscribe("qrad/v1/#", qos=1)
        assert settle(lambda: len(platform.suback) == 1)
        connected = sneaky.connack.wait(3) and sneaky.ok
        if connected:
            sneaky.client.subscribe([("qrad/v1/heater-2/cmd", 1), ("qrad/v1/+/cmd", 1)])
            sneaky.client.publish("qrad/v1/heater-2/telemetry", b"via-client-id", qos=1)
            platform.client.publish("qrad/v1/heater-2/cmd", b"cmd", qos=1)
            assert settle(lambda: len(sneaky.suback) == 2)
            platform.client.publish("qrad/v1/barrier", b"end", qos=1)
            assert settle(lambda: ("qrad/v1/barrier", b"end") in platform.messages)
            assert not sneaky.messages
            assert all(p != b"via-client-id" for _, p in platform.messages)
    finally:
        sneaky.close()
        platform.close()


def test_sync_client_refuses_wildcard_device_ids(sync_cfg, tmp_path) -> None:
    for bad in ("heater-1/#", "+", "#", "a/b", "", "x" * 65, "$SYS"):
        with pytest.raises(ContractError):
            SyncClient(sync_cfg(), bad, Outbox(tmp_path / "o.db"))


def test_client_without_certificate_cannot_connect(broker, pki) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        anon = Raw(broker, pki, None, "anonymous")
        # TLS 1.3 may report the missing certificate only on the first read: wait for the outcome
        try:
            assert not (anon.connack.wait(3) and anon.ok)
        finally:
            anon.close()
        raise ConnectionError("refused after the handshake")


def test_a_heater_cannot_take_over_another_heaters_session(broker, pki) -> None:
    """heater-2's valid certificate with heater-1's client id: the broker uses the certificate's CN as the
    client id, so heater-1 stays connected and keeps the commands queued for it."""
    victim = Raw(broker, pki, "heater-1", "heater-1", clean_start=False)
    platform = Raw(broker, pki, "platform", "platform-acl")
    attackers: list[Raw] = []
    try:
        assert victim.connack.wait(5) and victim.ok and platform.connack.wait(5) and platform.ok
        victim.client.subscribe("qrad/v1/heater-1/cmd", qos=1)
        assert settle(lambda: len(victim.suback) == 1)
        for i in range(3):
            attacker = Raw(broker, pki, "heater-2", "heater-1", clean_start=False)
            attackers.append(attacker)
            assert attacker.connack.wait(5)
            attacker.client.subscribe("qrad/v1/heater-1/cmd", qos=1)
            sent = ("qrad/v1/heater-1/cmd", f"cmd-{i}".encode())
            platform.client.publish(*sent, qos=1)
            assert settle(lambda sent=sent: sent in victim.messages), i
        assert victim.disconnects == [] and victim.client.is_connected()
        assert all(not a.messages for a in attackers)
        assert "heater-1 already connected" not in broker.log()
    finally:
        for client in (victim, platform, *attackers):
            client.close()


def test_a_cn_with_a_slash_reaches_nothing_of_another_heater(broker, pki) -> None:
    """A certificate a careless CA issued with CN "heater-2/resp": each topic its patterns would open is in
    heater-2's subtree, and the ACL's deny lines refuse every one of them."""
    hostile = Raw(broker, pki, "heater-2/resp", "heater-2/resp")
    platform = Raw(broker, pki, "platform", "platform-acl")
    try:
        assert platform.connack.wait(5) and platform.ok
        platform.client.subscribe("qrad/v1/#", qos=1)
        assert settle(lambda: len(platform.suback) == 1)
        assert hostile.connack.wait(5)
        if hostile.ok:
            base = "qrad/v1/heater-2/resp"
            topics = [f"{base}/{leaf}" for leaf in ("telemetry", "state", "events", "alarms", "jobs",
                                                    "availability")] + [f"{base}/resp/platform"]
            hostile.client.subscribe(f"{base}/cmd", qos=1)
            for topic in topics:
                hostile.client.publish(topic, b"forged", qos=1)
            platform.client.publish(f"{base}/cmd", b"to-heater-2-resp", qos=1)
            hostile.client.publish("qrad/v1/heater-2/resp/marker", b"x", qos=1)  # not a pattern: refused
            # a barrier: the platform's own publish arrives after everything the hostile client sent
            platform.client.publish("qrad/v1/barrier", b"end", qos=1)
            assert settle(lambda: ("qrad/v1/barrier", b"end") in platform.messages)
            assert settle(lambda: len(hostile.suback) == 1)
        assert [m for m in platform.messages if m[1] == b"forged"] == []
        assert hostile.messages == []
    finally:
        hostile.close()
        platform.close()


def test_a_heater_certificate_is_refused_on_the_platform_listener(broker, pki) -> None:
    """The platform listener (free client ids) trusts only the platform CA."""
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="heater-1", protocol=mqtt.MQTTv5)
        cert, key = pki.client("heater-1")
        client.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key),
                       tls_version=ssl.PROTOCOL_TLS_CLIENT)
        connack = threading.Event()
        result: list[bool] = []
        client.on_connect = lambda c, u, f, reason, p: (result.append(not reason.is_failure), connack.set())
        client.connect("127.0.0.1", broker.platform_port, keepalive=5)
        client.loop_start()
        try:
            assert not (connack.wait(3) and result[0])
        finally:
            client.disconnect()
            client.loop_stop()
        raise ConnectionError("refused after the handshake")
