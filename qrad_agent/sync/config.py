"""The ``[sync]`` configuration section: broker, mutual TLS, session, outbox and command settings.

Validated once at load like every section (unknown keys are errors, values frozen). Credentials are not
here: the device authenticates with its client certificate (mutual TLS); an optional username/password
comes from ``[platform]`` (environment overrides) and is never logged.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); a name is not resolved."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


TOPIC_PREFIX_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
"""Topic prefix levels: no wildcards, no empty level, no leading or trailing '/'."""


class SyncConfig(BaseModel):
    """Platform sync over MQTT 5 (see docs/sync.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "localhost"
    port: int = Field(8883, ge=1, le=65535)
    tls: bool = Field(True, description="mutual TLS; false is refused unless host is loopback (a lab broker)")
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate (PEM)")
    cert_file: Path | None = Field(None, description="this heater's client certificate (PEM, CN = device id)")
    key_file: Path | None = Field(None, description="this heater's private key (PEM)")
    keepalive_s: int = Field(30, ge=2, le=65535)
    session_expiry_s: int = Field(7 * 86400, ge=0, le=0xFFFFFFFF, description="broker keeps the session this long")
    connect_timeout_s: float = Field(10.0, gt=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(120.0, gt=0)
    max_inflight: int = Field(20, ge=1, le=65535, description="QoS 1 publishes awaiting PUBACK")
    topic_prefix: str = Field("qrad/v1", pattern=TOPIC_PREFIX_PATTERN)
    outbox_path: Path = Path("/var/lib/qrad-agent/sync-outbox.db")
    outbox_max_messages: int = Field(100_000, ge=10)
    max_message_bytes: int = Field(
        128 * 1024, ge=4096, description="largest PUBLISH sent, bytes (lowered to the broker's CONNACK Maximum "
                                         "Packet Size); a larger outbox row is set aside as a dead letter. The "
                                         "platform broker allows 256 KiB (deploy/mosquitto/mosquitto.conf)")
    outbox_durability: Literal["full", "normal"] = Field(
        "full", description="full: fsync every commit (survives a power cut); normal: survives a crash")
    platform_public_key: Path | None = Field(
        None, description="platform's Ed25519 public key (PEM or raw 32 bytes); none: signed commands refused")
    command_replay_window_s: float = Field(86400.0, gt=0, description="command ids remembered; older refused")
    command_queue_size: int = Field(32, ge=1)
    bundle_url: str | None = Field(
        None, description="platform bundle store: a submit_job bundle missing here is fetched from "
                          "{bundle_url}/{image_sha256} with this heater's client certificate (https://)")
    bundle_allow_http: bool = Field(False, description="accept an http:// bundle_url (a lab only)")
    telemetry_period_s: float = Field(60.0, gt=0, description="a batch of every channel this often")
    state_period_s: float = Field(10.0, gt=0, description="the retained state refreshed this often")
    privacy: dict[str, Literal["send", "aggregate", "local"]] = Field(
        default_factory=dict, description="channel -> what leaves the home (qrad_agent/sync/privacy.py); "
        "default: aggregate for presence, sound level and door/window contacts, send for the rest")

    @model_validator(mode="after")
    def _tls_files(self) -> SyncConfig:
        if self.tls and None in (self.ca_file, self.cert_file, self.key_file):
            raise ValueError("tls needs ca_file, cert_file and key_file")
        if not self.tls and not is_loopback(self.host):
            raise ValueError(f"tls = false is allowed only for a loopback broker (localhost, 127.0.0.0/8, ::1), "
                             f"not {self.host!r}: the link would carry commands and data in clear")
        if self.backoff_initial_s > self.backoff_max_s:
            raise ValueError("backoff_initial_s must not exceed backoff_max_s")
        return self
