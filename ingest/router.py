"""From one MQTT message to typed readings, or to a rejection with a reason code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devices.decoders import (
    DecodeContext,
    decode_chirpstack_uplink,
    decode_device_message,
    decode_teleinfo,
)
from devices.errors import DecodeError
from devices.families import DeviceTopic, MessageKind, parse_device_topic
from devices.privacy import MacHasher
from devices.readings import PER_CLIENT, Reading
from ingest.keys import PER_CLIENT_MAX_AGE
from ingest.registry_cache import RegistryCache

# Reason codes added by the ingestor (the decoders' are in devices.errors).
UNKNOWN_TOPIC = "unknown_topic"
UNKNOWN_DEVICE = "unknown_device"
FAMILY_MISMATCH = "family_mismatch"
INACTIVE_DEVICE = "inactive_device"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD = "too_old"
OVERSIZED = "oversized"
DB_REJECTED = "db_rejected"
CONFLICT = "conflict"

#: Device topics parsed once and kept (a city's devices publish on a few thousand topics);
#: emptied when full, so that topics of ever new device ids cannot grow it.
TOPIC_CACHE_MAX = 65536


@dataclass(slots=True)
class Rejection:
    """Why a message was not accepted."""

    reason: str
    detail: str
    device_id: str | None = None


@dataclass(slots=True)
class Routed:
    """Outcome of routing one message: readings, or a rejection."""

    readings: list[Reading]
    rejection: Rejection | None = None


class Router:
    """Validates and decodes messages against the registry cache."""

    def __init__(self, *, prefix: str, registry: RegistryCache, hasher: MacHasher,
                 max_payload_bytes: int, future_skew_s: float, max_age_days: float,
                 bridge_prefix: str = "") -> None:
        self.prefix = prefix
        self._device_root = prefix + "/"
        # Valid device topics (at most about 150 characters: DEVICE_ID_RE bounds the id).
        self._topics: dict[str, DeviceTopic] = {}
        self.bridge_root = f"{bridge_prefix}/" if bridge_prefix else ""
        self.registry = registry
        self.hasher = hasher
        self.max_payload_bytes = max_payload_bytes
        self.future_skew = timedelta(seconds=future_skew_s)
        self.max_age = timedelta(days=max_age_days)
        # One context reused for every message (only received_at changes): building one per
        # message cost about a tenth of the ingestor's CPU.
        self._ctx = DecodeContext(received_at=datetime.now(UTC), hasher=hasher,
                                  device_by_dev_eui=registry.device_by_dev_eui,
                                  device_by_meter_id=registry.device_by_meter_id)

    def route(self, topic: str, payload: bytes, received_at: datetime,
              content_type: str | None = None) -> Routed:
        """Decode ``payload`` received on ``topic``; never raises for bad input."""
        if len(payload) > self.max_payload_bytes:
            return _reject(OVERSIZED, f"payload of {len(payload)} bytes exceeds the limit of "
                           f"{self.max_payload_bytes} bytes")
        ctx = self._ctx
        ctx.received_at = received_at
        device_id: str | None = None
        try:
            if topic.startswith(self._device_root):
                parsed = self._topics.get(topic)
                if parsed is None:
                    try:
                        parsed = parse_device_topic(topic, self.prefix)
                    except ValueError as exc:
                        return _reject(UNKNOWN_TOPIC, str(exc))
                    if parsed is None:
                        return _reject(UNKNOWN_TOPIC, f"topic {topic!r} is not "
                                       f"{self.prefix}/<family>/<device>/<message>")
                    if len(self._topics) >= TOPIC_CACHE_MAX:
                        self._topics.clear()
                    self._topics[topic] = parsed
                device_id = parsed.device_id
                bad = self._check_device(device_id, parsed.kind)
                if bad is not None:
                    return Routed([], bad)
                readings = decode_device_message(device_id, parsed.kind, payload, ctx,
                                                 content_type=content_type)
            elif not topic.startswith(self.bridge_root):
                return _reject(UNKNOWN_TOPIC, f"no decoder for topic {topic!r}")
            elif (bridged := topic[len(self.bridge_root):]).startswith("application/") \
                    and bridged.endswith("/event/up"):
                parts = bridged.split("/")
                device_id, kind, readings = decode_chirpstack_uplink(
                    payload, ctx, topic_dev_eui=parts[3] if len(parts) == 6 else None)
                bad = self._check_device(device_id, kind)
                if bad is not None:
                    return Routed([], bad)
            elif bridged.startswith("teleinfo/"):
                meter_id = bridged.split("/", 1)[1] or None
                device_id, readings = decode_teleinfo(meter_id, payload, ctx)
                bad = self._check_device(device_id, None)
                if bad is not None:
                    return Routed([], bad)
            else:
                return _reject(UNKNOWN_TOPIC, f"no decoder for topic {topic!r}")
        except DecodeError as exc:
            return _reject(exc.reason, exc.detail, exc.device_id or device_id)
        if not readings:
            return _reject("invalid_payload", "message holds no reading", device_id)
        latest = received_at + self.future_skew
        oldest = received_at - self.max_age
        client_oldest = received_at - PER_CLIENT_MAX_AGE
        for r in readings:
            if r.time > latest:
                return _reject(FUTURE_TIMESTAMP, f"reading time {r.time.isoformat()} is more than "
                               f"{self.future_skew.total_seconds():.0f}s ahead of the "
                               f"ingestor's clock", device_id)
            if r.time < oldest:
                return _reject(TOO_OLD, f"reading time {r.time.isoformat()} is older than the "
                               f"retention window of {self.max_age.days} days", device_id)
            if r.time < client_oldest and type(r) in PER_CLIENT:
                return _reject(TOO_OLD, f"per-client reading time {r.time.isoformat()} is more "
                               f"than {PER_CLIENT_MAX_AGE.total_seconds() / 3600:.0f} h old "
                               "(pseudonymisation key lifetime, 24 h rule)", device_id)
        return Routed(readings)

    def _check_device(self, device_id: str, kind: MessageKind | None) -> Rejection | None:
        dev = self.registry.by_id.get(device_id)
        if dev is None:
            return Rejection(UNKNOWN_DEVICE, f"device {device_id!r} is not in the registry",
                             device_id)
        if kind is not None and dev.family is not kind.family:
            return Rejection(FAMILY_MISMATCH, f"device {device_id!r} is a {dev.family.value}, "
                             f"it cannot send {kind.segment}/{kind.name}", device_id)
        if kind is None and dev.family.value != "grid_meter":
            return Rejection(FAMILY_MISMATCH, f"device {device_id!r} is a {dev.family.value}, "
                             "not a grid meter", device_id)
        if not dev.active:
            return Rejection(INACTIVE_DEVICE, f"device {device_id!r} is marked inactive",
                             device_id)
        return None


def _reject(reason: str, detail: str, device_id: str | None = None) -> Routed:
    return Routed([], Rejection(reason, detail, device_id))
