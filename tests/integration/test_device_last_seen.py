"""device_last_seen: each device's last message and latest health values, kept by the
ingestor's writer in each batch's transaction on all three of its paths (COPY, the
redelivery fallback, message by message) and reconciled with the raw rows by the
maintenance job; the health routes read it (sql/metrics/device_health.sql)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    Reading,
    WifiApStats,
    WifiSession,
)
from ingest.batch import Batch
from ingest.metrics import Metrics
from ingest.writer import BatchWriter
from tests.integration.ingest_helpers import make_dead

pytestmark = pytest.mark.stack

T0 = datetime(2026, 11, 30, 8, tzinfo=UTC)
M = timedelta(minutes=1)


def _batch(messages: list[list[Reading]]) -> Batch:
    batch = Batch(asyncio.get_running_loop())
    for i, readings in enumerate(messages):
        batch.add(f"test/last-seen/{i}", b"{}", datetime.now(UTC), readings)
    return batch


def _row(db_url: str, device: str) -> dict[str, Any] | None:
    with psycopg.connect(db_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute("SELECT * FROM device_last_seen WHERE device_id = %s",
                            (device,)).fetchone()


def _health(row: dict[str, Any] | None) -> tuple[Any, ...]:
    assert row is not None
    return (row["last_seen"], row["health_time"], row["battery"], row["rssi_dbm"],
            row["snr_db"], row["paper"], row["fault_code"], row["clients"], row["radio_up"])


async def test_the_writer_keeps_the_newest_on_every_path(db_url: str, uid: str) -> None:
    spot, meter, grid, ap = (f"{uid}-{k}" for k in ("spot", "meter", "grid", "ap"))
    writer = BatchWriter(db_url, Metrics(), make_dead=make_dead)
    try:
        # COPY: the newest of several reports, health of the latest one.
        await writer.write(_batch([
            [ParkingSpotState(T0 + 2 * M, spot, "free", 0.5, -100, 7.5)],
            [ParkingSpotState(T0 + M, spot, "occupied", 0.75, -90, 9.0)],
            [ParkingMeterStatus(T0 + M, meter, 0.25, 0.5, "E42")],
            [ParkingTransaction(T0 + 3 * M, meter, "tx-1", 250, 3600, "card")],
            [GridReading(T0, grid, 1000, None, None, None, None, None, None, None, None,
                         None)],
            [WifiApStats(T0, ap, 4, None, None, True)],
            [WifiSession(T0 + 9 * M, ap, b"\x01" * 16, "associated", -60, None)]]))
        assert _health(_row(db_url, spot)) == (T0 + 2 * M, T0 + 2 * M, 0.5, -100, 7.5,
                                               None, None, None, None)
        # A payment shows the meter alive; its health is that of its status report.
        assert _health(_row(db_url, meter)) == (T0 + 3 * M, T0 + M, 0.25, None, None,
                                                0.5, "E42", None, None)
        assert _health(_row(db_url, grid)) == (T0, None, *(None,) * 7)
        # A wifi client's session is no report of the access point's.
        assert _health(_row(db_url, ap)) == (T0, T0, None, None, None, None, None, 4, True)

        # Older reports that arrive late move nothing back.
        await writer.write(_batch([
            [ParkingSpotState(T0, spot, "free", 0.9, -80, 10.0)],
            [ParkingMeterStatus(T0, meter, 0.9, 0.9, None)]]))
        assert _row(db_url, spot)["battery"] == 0.5  # type: ignore[index]
        assert _row(db_url, meter)["paper"] == 0.5  # type: ignore[index]

        # A redelivery sends the batch through the staging fallback: the new report counts;
        # a NULL the latest report carries replaces the older value.
        await writer.write(_batch([
            [ParkingSpotState(T0 + 2 * M, spot, "free", 0.5, -100, 7.5)],
            [ParkingSpotState(T0 + 4 * M, spot, "free", 0.5, -100, None)]]))
        assert _health(_row(db_url, spot))[:5] == (T0 + 4 * M, T0 + 4 * M, 0.5, -100, None)

        # Message by message (a CHECK refuses one): the refused report is not the latest.
        await writer.write(_batch([
            [ParkingSpotState(T0 + 9 * M, spot, "free", 2.0, None, None)],  # battery > 1
            [ParkingSpotState(T0 + 5 * M, spot, "occupied", 0.25, -95, 8.0)]]))
        assert _health(_row(db_url, spot))[:5] == (T0 + 5 * M, T0 + 5 * M, 0.25, -95, 8.0)
    finally:
        await writer.close()


def test_reconcile_brings_rows_written_elsewhere_forward(db_url: str, uid: str) -> None:
    spot, meter = f"{uid}-spot", f"{uid}-meter"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO sites (id, kind, name, insee) "
                     "VALUES (%s, 'parking_zone', 'z', '59350')",
                     (f"{uid}-z",))
        for dev, family in ((spot, "parking_spot"), (meter, "parking_meter")):
            conn.execute("INSERT INTO devices (id, family, site_id, name, report_interval_s) "
                         "VALUES (%s, %s, %s, %s, 600)", (dev, family, f"{uid}-z", dev))
        conn.execute("INSERT INTO device_last_seen (device_id, last_seen, health_time, "
                     "battery) VALUES (%s, %s, %s, 0.5)", (spot, T0, T0))
        for t, battery in ((T0 - M, 0.9), (T0 + M, 0.25)):
            conn.execute("INSERT INTO parking_spot_state (time, device_id, state, battery) "
                         "VALUES (%s, %s, 'free', %s)", (t, spot, battery))
        conn.execute("INSERT INTO parking_meter_status (time, device_id, paper) "
                     "VALUES (%s, %s, 0.75)", (T0, meter))
        conn.execute("INSERT INTO parking_transactions (time, device_id, transaction_id, "
                     "amount_cents, duration_s, payment_method) "
                     "VALUES (%s, %s, 'tx', 100, 600, 'card')", (T0 + 2 * M, meter))
        brought = conn.execute("SELECT metric.device_last_seen_reconcile()").fetchone()
        assert brought is not None and brought[0] >= 2
    assert _health(_row(db_url, spot))[:3] == (T0 + M, T0 + M, 0.25)
    assert _health(_row(db_url, meter))[:6] == (T0 + 2 * M, T0, None, None, None, 0.75)
