"""An in-memory copy of the device registry, refreshed periodically and on unknown ids."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg

from devices.families import Family

log = logging.getLogger(__name__)


def meter_index(devices: Iterable[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """Device id by Linky number, from ``(device id, PRM, meter serial)``.

    Every serial (12 digits) is a key; a PRM (14 digits) only for a device whose serial is
    not registered, so that a frame from another meter at a known delivery point (after a
    replacement) is refused rather than mixed with the old meter's indices.
    """
    index: dict[str, str] = {}
    for device_id, prm, serial in devices:
        if serial:
            index[serial] = device_id
        elif prm:
            index[prm] = device_id
    return index


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What the ingestor needs to know of a device."""

    id: str
    family: Family
    active: bool


class RegistryCache:
    """Device lookups by id, DevEUI and Linky number without a database round trip."""

    def __init__(self, *, min_refresh_interval_s: float = 5.0) -> None:
        self.by_id: dict[str, KnownDevice] = {}
        self.by_dev_eui: dict[str, str] = {}
        self.by_meter_id: dict[str, str] = {}
        self.loaded_at = 0.0
        self.min_refresh_interval_s = min_refresh_interval_s

    async def load(self, conn: psycopg.AsyncConnection) -> None:
        """Replace the cache with the registry's current content."""
        cur = await conn.execute(
            "SELECT id, family, active, dev_eui, meter_id, meter_serial FROM devices")
        rows = await cur.fetchall()
        await conn.commit()
        self.by_id = {r[0]: KnownDevice(r[0], Family(r[1]), r[2]) for r in rows}
        self.by_dev_eui = {r[3]: r[0] for r in rows if r[3]}
        self.by_meter_id = meter_index((r[0], r[4], r[5]) for r in rows)
        self.loaded_at = time.monotonic()
        log.debug("registry cache: %d devices", len(rows))

    def stale(self) -> bool:
        """True when a refresh on an unknown id is allowed again."""
        return time.monotonic() - self.loaded_at >= self.min_refresh_interval_s

    def device_by_dev_eui(self, dev_eui: str) -> str | None:
        """Device id of a LoRaWAN DevEUI (lower-case hex)."""
        return self.by_dev_eui.get(dev_eui.lower())

    def device_by_meter_id(self, meter_id: str) -> str | None:
        """Device id of a Linky serial (ADSC/ADCO), or of a PRM (see ``meter_index``)."""
        return self.by_meter_id.get(meter_id)
