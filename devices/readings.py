"""Typed readings, one type per hypertable, fields in the table's column order.

Decoders of every payload format produce these; the ingestor writes them with COPY, so a
reading's tuple *is* the row. Range limits here mirror the SQL CHECK constraints of the
migrations (``sql/``).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple


class WifiApStats(NamedTuple):
    """Counters of a wifi access point."""

    time: datetime
    device_id: str
    clients: int
    rx_bytes: int | None
    tx_bytes: int | None
    radio_up: bool | None


class WifiSession(NamedTuple):
    """A client (dis)association seen by an AP; ``client_key`` is a keyed hash, never a MAC."""

    time: datetime
    device_id: str
    client_key: bytes
    event: str
    rssi_dbm: int | None
    session_s: int | None


class ParkingSpotState(NamedTuple):
    """State of one parking spot (an event or a heartbeat)."""

    time: datetime
    device_id: str
    state: str
    battery: float | None
    rssi_dbm: int | None
    snr_db: float | None


class ParkingTransaction(NamedTuple):
    """A payment at a parking meter. Never carries a licence plate."""

    time: datetime
    device_id: str
    transaction_id: str
    amount_cents: int
    duration_s: int
    payment_method: str


class ParkingMeterStatus(NamedTuple):
    """Health report of a parking meter."""

    time: datetime
    device_id: str
    battery: float | None
    paper: float | None
    fault_code: str | None


class GridReading(NamedTuple):
    """An electricity meter reading; energies are cumulative indices."""

    time: datetime
    device_id: str
    energy_import_wh: int | None
    energy_export_wh: int | None
    power_w: float | None
    voltage_l1_v: float | None
    voltage_l2_v: float | None
    voltage_l3_v: float | None
    current_l1_a: float | None
    current_l2_a: float | None
    current_l3_a: float | None
    frequency_hz: float | None


Reading = (
    WifiApStats
    | WifiSession
    | ParkingSpotState
    | ParkingTransaction
    | ParkingMeterStatus
    | GridReading
)

TABLE_OF: dict[type[Reading], str] = {
    WifiApStats: "wifi_ap_stats",
    WifiSession: "wifi_sessions",
    ParkingSpotState: "parking_spot_state",
    ParkingTransaction: "parking_transactions",
    ParkingMeterStatus: "parking_meter_status",
    GridReading: "grid_readings",
}
READING_OF_TABLE: dict[str, type[Reading]] = {t: r for r, t in TABLE_OF.items()}

# PostgreSQL types of each table's columns, in order, for binary COPY.
PG_TYPES: dict[str, tuple[str, ...]] = {
    "wifi_ap_stats": ("timestamptz", "text", "int4", "int8", "int8", "bool"),
    "wifi_sessions": ("timestamptz", "text", "bytea", "text", "int2", "int4"),
    "parking_spot_state": ("timestamptz", "text", "text", "float4", "int2", "float4"),
    "parking_transactions": ("timestamptz", "text", "text", "int4", "int4", "text"),
    "parking_meter_status": ("timestamptz", "text", "float4", "float4", "text"),
    "grid_readings": (
        "timestamptz", "text", "int8", "int8", "float4",
        "float4", "float4", "float4", "float4", "float4", "float4", "float4",
    ),
}

# Natural key of each table: the columns of its unique index (sql/
# 002_readings.sql). A row whose key is already stored is a redelivery when every other
# column matches, else a conflict.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "wifi_ap_stats": ("device_id", "time"),
    "wifi_sessions": ("device_id", "client_key", "event", "time"),
    "parking_spot_state": ("device_id", "time"),
    "parking_transactions": ("device_id", "transaction_id", "time"),
    "parking_meter_status": ("device_id", "time"),
    "grid_readings": ("device_id", "time"),
}

# Readings about one person's device, keyed by a pseudonym under the daily key: they are kept
# at most 24 h and only while their day's key lives (CNIL), see ingest.keys.
PER_CLIENT: frozenset[type[Reading]] = frozenset({WifiSession})
