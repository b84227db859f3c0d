"""Broker ACL (deploy/mosquitto rules on the certificate's CN): each heater confined to its own subtree."""

from __future__ import annotations

import ssl
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from qrad_agent.sync.client import SyncClient
from qrad_agent.sync.contract import ContractError
from qrad_agent.sync.outbox import Outbox


class Raw:
    """A bare paho MQTT 5 client with a given certificate and client id."""

    def __init__(self, broker, pki, cert_name: str | None, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        cert, key = pki.client(cert_name) if cert_name else (None, None)
        self.client.tls_set(ca_certs=str(pki.ca), certfile=str(cert) if cert else None,
                            keyfile=str(key) if key else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.messages: list[tuple[str, bytes]] = []
        self.suback: list = []
        self.connack = threading.Event()
        self.ok = False
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, codes, p: self.suback.extend(codes)
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()

    def _on_connect(self, c, u, f, reason, p) -> None:
        self.ok = not reason.is_failure
        self.connack.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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


@pytest.mark.parametrize("client_id", ["heater-1/#", "+", "#", "heater-1+"])
def test_wildcard_client_id_gets_no_access(broker, pki, client_id) -> None:
    """mosquitto denies every pattern ACL to a client id with + or # (CVE-2017-7650); some ids it refuses."""
    sneaky = Raw(broker, pki, "heater-1", client_id)
    platform = Raw(broker, pki, "platform", "platform-acl")
    try:
        assert platform.connack.wait(5)
        platform.client.subscribe("qrad/v1/#", qos=1)
        assert settle(lambda: len(platform.suback) == 1)
        connected = sneaky.connack.wait(3) and sneaky.ok
        if connected:
            sneaky.client.subscribe("qrad/v1/heater-1/cmd", qos=1)
            sneaky.client.publish("qrad/v1/heater-1/telemetry", b"via-wildcard-id", qos=1)
            platform.client.publish("qrad/v1/heater-1/cmd", b"cmd", qos=1)
            assert settle(lambda: len(sneaky.suback) == 1)
            time.sleep(0.3)
            assert not sneaky.messages
            assert all(p != b"via-wildcard-id" for _, p in platform.messages)
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
