"""Device families and the MQTT topic scheme ``{prefix}/{segment}/{device_id}/{message}``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Family(StrEnum):
    """Kinds of equipment Beffroi knows."""

    WIFI_AP = "wifi_ap"
    PARKING_SPOT = "parking_spot"
    PARKING_METER = "parking_meter"
    GRID_METER = "grid_meter"


@dataclass(frozen=True, slots=True)
class MessageKind:
    """One kind of message: its topic segment and name, the family that sends it, its table."""

    segment: str
    name: str
    family: Family
    table: str


MESSAGE_KINDS: tuple[MessageKind, ...] = (
    MessageKind("wifi", "stats", Family.WIFI_AP, "wifi_ap_stats"),
    MessageKind("wifi", "sessions", Family.WIFI_AP, "wifi_sessions"),
    MessageKind("parking", "state", Family.PARKING_SPOT, "parking_spot_state"),
    MessageKind("parking", "transaction", Family.PARKING_METER, "parking_transactions"),
    MessageKind("parking", "status", Family.PARKING_METER, "parking_meter_status"),
    MessageKind("grid", "reading", Family.GRID_METER, "grid_readings"),
)
KIND_BY_TOPIC: dict[tuple[str, str], MessageKind] = {(k.segment, k.name): k for k in MESSAGE_KINDS}
KIND_BY_TABLE: dict[str, MessageKind] = {k.table: k for k in MESSAGE_KINDS}
SEGMENT_OF_FAMILY: dict[Family, str] = {k.family: k.segment for k in MESSAGE_KINDS}
#: The topic segments of the device families (``wifi``, ``parking``, ``grid``).
SEGMENTS: tuple[str, ...] = tuple(dict.fromkeys(k.segment for k in MESSAGE_KINDS))
KINDS_OF_FAMILY: dict[Family, tuple[MessageKind, ...]] = {
    f: tuple(k for k in MESSAGE_KINDS if k.family is f) for f in Family
}

DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    device_id: str
    kind: MessageKind


#: Topic filters of the bridges: ChirpStack v4 uplink events, Linky TIC frames.
CHIRPSTACK_UPLINKS = "application/+/device/+/event/up"
TELEINFO_FRAMES = "teleinfo/#"


def bridge_topics(bridge_prefix: str = "") -> tuple[str, str]:
    """The bridges' topic filters, under ``bridge_prefix`` when they publish under one."""
    root = f"{bridge_prefix}/" if bridge_prefix else ""
    return f"{root}{CHIRPSTACK_UPLINKS}", f"{root}{TELEINFO_FRAMES}"


#: Bridge broker accounts and the topic tree each owns (``ChirpStack``'s events and
#: commands, teleinfo2mqtt's frames).
BRIDGE_TREES: dict[str, str] = {"chirpstack": "application/#", "teleinfo": "teleinfo/#"}


def bridge_tree(bridge: str, bridge_prefix: str = "") -> str:
    """The topic tree of bridge account ``bridge``, under ``bridge_prefix`` if set."""
    root = f"{bridge_prefix}/" if bridge_prefix else ""
    return f"{root}{BRIDGE_TREES[bridge]}"


#: Device ids that would clash with the broker accounts of Beffroi and of the bridges.
RESERVED_ID_PREFIX = "beffroi-"


def reserved_device_id(device_id: str) -> bool:
    """True if ``device_id`` is a broker account name Beffroi keeps for itself."""
    return device_id.startswith(RESERVED_ID_PREFIX) or device_id in BRIDGE_TREES


def parse_device_topic(topic: str, prefix: str) -> DeviceTopic | None:
    """Parse ``{prefix}/{segment}/{device_id}/{message}``; None if the topic is not of that shape.

    Raises ``ValueError`` when the shape matches but the segment/message pair is unknown
    or the device id is not a valid id.
    """
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != prefix:
        return None
    _, segment, device_id, name = parts
    kind = KIND_BY_TOPIC.get((segment, name))
    if kind is None:
        raise ValueError(f"unknown message {segment}/{name}")
    if not DEVICE_ID_RE.match(device_id):
        raise ValueError(f"invalid device id {device_id!r}")
    return DeviceTopic(device_id, kind)


def device_topic(prefix: str, kind: MessageKind, device_id: str) -> str:
    """Build the topic a device publishes ``kind`` messages on."""
    return f"{prefix}/{kind.segment}/{device_id}/{kind.name}"
