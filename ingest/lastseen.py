"""Each device's last message and latest health values, merged into ``device_last_seen``
in the transaction of the batch that carries them (``metric.device_last_seen_merge``,
sql/metrics/device_health.sql): the health routes then read one row per device.

One pass over the batch's rows keeps, per device, its newest time of any kind and its
newest health report; the merge in SQL keeps whichever is newer than the stored row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncCursor
from psycopg.types.json import Jsonb

from devices.readings import ParkingMeterStatus, ParkingSpotState, WifiApStats

#: The health columns of device_last_seen, in the merge function's order.
HEALTH_FIELDS = ("battery", "rssi_dbm", "snr_db", "radio_up", "clients", "paper",
                 "fault_code")


def _positions(reading: type[ParkingSpotState | ParkingMeterStatus | WifiApStats]
               ) -> tuple[int | None, ...]:
    fields = reading._fields
    return tuple(fields.index(f) if f in fields else None for f in HEALTH_FIELDS)


#: Tables whose rows are health reports: where each health column is in their rows.
HEALTH_TABLES: dict[str, tuple[int | None, ...]] = {
    "parking_spot_state": _positions(ParkingSpotState),
    "parking_meter_status": _positions(ParkingMeterStatus),
    "wifi_ap_stats": _positions(WifiApStats),
}
#: Tables whose rows only show the device is alive (a payment, a meter reading). Per-client
#: wifi sessions are not a device's health and are left out.
SEEN_TABLES = ("parking_transactions", "grid_readings")

MERGE = "SELECT metric.device_last_seen_merge(%s::jsonb)"


def newest(rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> list[list[Any]]:
    """One row per device of ``rows`` (by table; each row is (time, device_id, ...)), as
    the merge takes them: device, newest time of any kind, time of the newest health
    report and its values (None without one)."""
    seen: dict[str, datetime] = {}
    reports: dict[str, tuple[datetime, tuple[Any, ...], tuple[int | None, ...]]] = {}
    for table in (*SEEN_TABLES, *HEALTH_TABLES):
        positions = HEALTH_TABLES.get(table)
        for r in rows.get(table, ()):
            t, dev = r[0], r[1]
            last = seen.get(dev)
            if last is None or t > last:
                seen[dev] = t
            if positions is not None:
                report = reports.get(dev)
                if report is None or t > report[0]:
                    reports[dev] = (t, r, positions)
    out: list[list[Any]] = []
    empty = [None] * (1 + len(HEALTH_FIELDS))
    # In device order: two workers of a shared subscription may merge the same devices at
    # once; locking their rows in the same order, they wait for each other instead of
    # deadlocking.
    for dev in sorted(seen):
        t = seen[dev]
        report = reports.get(dev)
        if report is None:
            out.append([dev, t, *empty])
        else:
            health_time, row, positions = report
            out.append([dev, t, health_time,
                        *(None if i is None else row[i] for i in positions)])
    return out


async def merge(cur: AsyncCursor[Any], rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
    """Merge the newest of ``rows`` into device_last_seen, in the cursor's transaction."""
    devices = newest(rows)
    if devices:
        # orjson: C speed; datetimes as RFC 3339 with their offset, to the microsecond.
        await cur.execute(MERGE, (Jsonb(devices, dumps=orjson.dumps),))
