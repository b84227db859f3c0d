"""Platform sync over MQTT 5: the topic contract, a durable outbox, the client and the command handler.

Layers: ``contract`` (topics and versioned message models), ``outbox`` (SQLite WAL store, written before
publishing, deleted on PUBACK), ``client`` (paho-mqtt driven by the event loop), ``commands`` and
``signing`` (validated platform commands, Ed25519), ``config`` (the ``[sync]`` section).
"""

from qrad_agent.sync.config import SyncConfig

__all__ = ["SyncConfig"]
