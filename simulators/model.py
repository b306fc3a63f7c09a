"""The simulator's own types: simulated devices, what they report, and the message stream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from devices.families import Family

KINDS = ("wifi/stats", "wifi/sessions", "parking/state", "parking/transaction",
         "parking/status", "grid/reading")
"""Message kinds, ``segment/name``."""

TABLE_OF_KIND = {
    "wifi/stats": "wifi_ap_stats",
    "wifi/sessions": "wifi_sessions",
    "parking/state": "parking_spot_state",
    "parking/transaction": "parking_transactions",
    "parking/status": "parking_meter_status",
    "grid/reading": "grid_readings",
}
FAMILY_OF_KIND = {
    "wifi/stats": Family.WIFI_AP,
    "wifi/sessions": Family.WIFI_AP,
    "parking/state": Family.PARKING_SPOT,
    "parking/transaction": Family.PARKING_METER,
    "parking/status": Family.PARKING_METER,
    "grid/reading": Family.GRID_METER,
}

# Fault labels carried by messages.
MALFORMED = "malformed"
DUPLICATE = "duplicate"
OUT_OF_ORDER = "out_of_order"
UNKNOWN_DEVICE = "unknown_device"
OVERSIZED = "oversized"
FAULTS = (MALFORMED, DUPLICATE, OUT_OF_ORDER, UNKNOWN_DEVICE, OVERSIZED)
"""Every fault but ``out_of_order`` is an extra message that must not become a row."""


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A device as the simulator drives it."""

    id: str
    family: Family
    site_id: str
    index: int  # position within its family, for seeding
    report_interval_s: int
    format: str
    ts_style: str  # iso_utc | iso_local | unix
    skew_s: int = 0
    dev_eui: str | None = None
    meter_id: str | None = None  # PRM, 14 digits
    meter_serial: str | None = None  # ADSC of its TIC frames, 12 digits
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(slots=True)
class Emission:
    """A clean reading a device reports: ``values`` uses native JSON field names.

    ``time_s`` is the true time (seconds after the start; the device clock adds its skew);
    ``publish_s`` when it goes out (later for meters that report through a concentrator).
    """

    time_s: int
    publish_s: float
    device: SimDevice
    kind: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT message of the stream; ``offset`` is seconds after the scenario start."""

    offset: float
    topic: str
    qos: int
    payload: bytes
    content_type: str | None = None
    kind: str | None = None
    device_id: str | None = None
    fault: str | None = None

    @property
    def family(self) -> str:
        """The family label used in progress lines, from the kind or else the topic."""
        if self.kind is not None:
            return FAMILY_OF_KIND[self.kind].value
        if self.topic.startswith("application/"):
            return Family.PARKING_SPOT.value
        if self.topic.startswith("teleinfo/"):
            return Family.GRID_METER.value
        parts = self.topic.split("/")
        family = FAMILY_OF_KIND.get(f"{parts[1]}/{parts[3]}") if len(parts) == 4 else None
        return family.value if family is not None else "other"


__all__ = [
    "DUPLICATE",
    "FAMILY_OF_KIND",
    "FAULTS",
    "KINDS",
    "MALFORMED",
    "OUT_OF_ORDER",
    "OVERSIZED",
    "TABLE_OF_KIND",
    "UNKNOWN_DEVICE",
    "Emission",
    "SimDevice",
    "SimMessage",
]
