"""MQTT packets for publishers that go straight to the socket (the ingest benchmark, test
backlogs): far less CPU per message than a client library.

The packets are encoded by ``devices.mqttwire``, the project's one MQTT codec, which the
ingestor's subscriber decodes with; this module only names what the publishers use.
"""

from __future__ import annotations

from devices.mqttwire import (
    MQTT_5,
    MQTT_311,
    MalformedPacket,
    connect_packet,
    disconnect_packet,
    field,
    publish_head,
    publish_packet,
    split_pubacks,
    varint,
)

__all__ = [
    "MQTT_5",
    "MQTT_311",
    "MalformedPacket",
    "connect_packet",
    "disconnect_packet",
    "field",
    "publish_head",
    "publish_packet",
    "split_pubacks",
    "varint",
]
