"""Each device's last message and latest health values, merged into ``device_last_seen``
in the transaction of the batch that carries them (``metric.device_last_seen_merge``,
sql/metrics/device_health.sql): the health routes then read one row per device.

One pass over the batch's rows keeps, per device, its newest time of any kind and its
newest health report; the merge in SQL keeps whichever is newer than the stored row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncCursor

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

MERGE = ("SELECT metric.device_last_seen_merge(%s::text[], %s::timestamptz[], "
         "%s::timestamptz[], %s::real[], %s::smallint[], %s::real[], %s::boolean[], "
         "%s::integer[], %s::real[], %s::text[])")


def newest(rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> list[list[Any]] | None:
    """The merge's arguments (one array per column) for ``rows`` by table, None when they
    hold nothing a device's health is made of. Rows are (time, device_id, ...)."""
    seen: dict[str, datetime] = {}
    reports: dict[str, tuple[datetime, tuple[Any, ...], tuple[int | None, ...]]] = {}
    for table in SEEN_TABLES:
        for r in rows.get(table, ()):
            t, dev = r[0], r[1]
            last = seen.get(dev)
            if last is None or t > last:
                seen[dev] = t
    for table, positions in HEALTH_TABLES.items():
        for r in rows.get(table, ()):
            t, dev = r[0], r[1]
            last = seen.get(dev)
            if last is None or t > last:
                seen[dev] = t
            report = reports.get(dev)
            if report is None or t > report[0]:
                reports[dev] = (t, r, positions)
    if not seen:
        return None
    return _columns(seen, reports)


def _columns(seen: dict[str, datetime],
             reports: dict[str, tuple[datetime, tuple[Any, ...], tuple[int | None, ...]]]
             ) -> list[list[Any]]:
    out: list[list[Any]] = [[] for _ in range(3 + len(HEALTH_FIELDS))]
    empty = (None,) * len(HEALTH_FIELDS)
    for dev, t in seen.items():
        report = reports.get(dev)
        if report is None:
            values: Iterable[Any] = empty
            health_time = None
        else:
            health_time, row, positions = report
            values = (None if i is None else row[i] for i in positions)
        for column, value in zip(out, (dev, t, health_time, *values), strict=True):
            column.append(value)
    return out


async def merge(cur: AsyncCursor[Any], rows: Mapping[str, Sequence[tuple[Any, ...]]]) -> None:
    """Merge the newest of ``rows`` into device_last_seen, in the cursor's transaction."""
    params = newest(rows)
    if params is not None:
        await cur.execute(MERGE, params)
