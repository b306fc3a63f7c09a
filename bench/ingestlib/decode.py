"""Decoding stream messages into rows with the ingestor's own router (baseline, copy-only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bench.ingestlib.stream import BRIDGE_PREFIX, PREFIX, Device
from devices.families import Family
from devices.privacy import MacHasher
from devices.readings import TABLE_OF
from ingest.registry_cache import KnownDevice, RegistryCache, meter_index
from ingest.router import Router


def registry_from_devices(devices: Iterable[Device]) -> RegistryCache:
    """A registry cache holding the bench database's devices (demo city, bench ids)."""
    reg = RegistryCache()
    for d in devices:
        reg.by_id[d.id] = KnownDevice(d.id, Family(d.family), True)
        if d.dev_eui:
            reg.by_dev_eui[d.dev_eui] = d.id
    reg.by_meter_id = meter_index((d.id, None, d.meter_serial) for d in devices)
    return reg


def make_router(devices: Iterable[Device]) -> Router:
    """The ingestor's router over the bench registry, with a throwaway MAC-hashing key."""
    key = os.urandom(32)
    return Router(prefix=PREFIX, bridge_prefix=BRIDGE_PREFIX,
                  registry=registry_from_devices(devices),
                  hasher=MacHasher(lambda at: key), max_payload_bytes=65536,
                  future_skew_s=300, max_age_days=400)


class RowSink:
    """Rows per table, in arrival order, from routed messages."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.rejected: dict[str, int] = {}
        self.messages = 0
        self.readings = 0

    def add(self, topic: bytes, payload: bytes, now: datetime | None = None) -> None:
        """Route one message; keep its rows or count its rejection."""
        routed = self.router.route(topic.decode(), payload, now or datetime.now(UTC))
        self.messages += 1
        if routed.rejection is not None:
            r = routed.rejection.reason
            self.rejected[r] = self.rejected.get(r, 0) + 1
            return
        for reading in routed.readings:
            self.rows.setdefault(TABLE_OF[type(reading)], []).append(reading)
        self.readings += len(routed.readings)
