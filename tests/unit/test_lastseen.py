"""ingest.lastseen.newest: per device, the newest time of any kind and the newest health
report, in device order (the rows the batch's merge into device_last_seen takes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    WifiApStats,
    WifiSession,
)
from ingest.lastseen import HEALTH_FIELDS, newest

T = datetime(2026, 11, 30, 8, tzinfo=UTC)
M = timedelta(minutes=1)


def test_newest_time_and_report_per_device_in_device_order() -> None:
    rows: dict[str, list[tuple[Any, ...]]] = {
        "parking_spot_state": [ParkingSpotState(T + M, "s", "free", 0.5, -100, 7.5),
                               ParkingSpotState(T + 3 * M, "s", "occupied", 0.25, None, 8.0),
                               ParkingSpotState(T + 2 * M, "s", "free", 0.75, -90, 9.0)],
        "parking_meter_status": [ParkingMeterStatus(T, "m", 0.9, 0.5, "E42")],
        "parking_transactions": [ParkingTransaction(T + 5 * M, "m", "tx", 100, 60, "card"),
                                 ParkingTransaction(T + 4 * M, "p", "tx", 100, 60, "card")],
        "wifi_ap_stats": [WifiApStats(T, "a", 3, None, None, False)],
        "wifi_sessions": [WifiSession(T + 9 * M, "a", b"\x01" * 16, "associated", -60, None)],
        "grid_readings": [GridReading(T + 6 * M, "g", 1, None, None, None, None, None, None,
                                      None, None, None)],
    }
    got = {r[0]: r for r in newest(rows)}
    assert [r[0] for r in newest(rows)] == sorted(got)  # lock order of the merge
    assert list(HEALTH_FIELDS) == ["battery", "rssi_dbm", "snr_db", "radio_up", "clients",
                                   "paper", "fault_code"]
    # The latest report's values, its NULL included (no rssi in it).
    assert got["s"] == ["s", T + 3 * M, T + 3 * M, 0.25, None, 8.0, None, None, None, None]
    # A payment moves last_seen; the health is the status report's.
    assert got["m"] == ["m", T + 5 * M, T, 0.9, None, None, None, None, 0.5, "E42"]
    # Only payments: alive, no health report.
    assert got["p"] == ["p", T + 4 * M, *[None] * 8]
    # A wifi client's session is no report of the access point's.
    assert got["a"] == ["a", T, T, None, None, None, False, 3, None, None]
    assert got["g"] == ["g", T + 6 * M, *[None] * 8]


def test_nothing_of_a_device_nothing_to_merge() -> None:
    assert newest({}) == []
    assert newest({"wifi_sessions": [WifiSession(T, "a", b"\x01" * 16, "associated", None,
                                                 None)]}) == []
