"""Each metric's SQL functions (``sql/metrics/``) tested directly against the database:
known rows in, the values they must give out, for a site and for a device; the rollup's
fill function and the rollup reader give the raw function's answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from devices import store
from devices.registry import parse_registry

pytestmark = pytest.mark.stack

T0 = datetime(2025, 3, 30, 0, tzinfo=UTC)  # the spring-forward night, in UTC hours
HOURS = [T0 + timedelta(hours=h) for h in range(5)]


def _call(conn: psycopg.Connection[Any], fn: str, *args: Any) -> list[dict[str, Any]]:
    marks = ", ".join(["%s"] * len(args))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT * FROM metric.{fn}({marks})", args)
        return cur.fetchall()


def _fill(conn: psycopg.Connection[Any], table: str, fn: str, lo: datetime,
          hi: datetime) -> None:
    edges = [lo + timedelta(hours=h) for h in range(int((hi - lo) / timedelta(hours=1)) + 1)]
    conn.execute(f"DELETE FROM {table} WHERE hour >= %s AND hour < %s", (lo, hi))
    conn.execute(f"INSERT INTO {table} SELECT * FROM metric.{fn}(%s, %s, %s)",
                 (edges, lo, hi))


@pytest.fixture
def meters(conn: psycopg.Connection[Any], uid: str) -> str:
    """A zone with two meters and a meter of another zone; returns the id prefix."""
    p = uid
    store.import_registry(conn, parse_registry({
        "sites": [{"id": f"{p}z", "kind": "parking_zone", "name": "Zone",
                   "insee": "62041"},
                  {"id": f"{p}y", "kind": "parking_zone", "name": "Other",
                   "insee": "62041"}],
        "devices": [{"id": f"{p}m1", "family": "parking_meter", "site_id": f"{p}z",
                     "name": "m1"},
                    {"id": f"{p}m2", "family": "parking_meter", "site_id": f"{p}z",
                     "name": "m2"},
                    {"id": f"{p}m3", "family": "parking_meter", "site_id": f"{p}y",
                     "name": "m3"}]}))
    tx = [(HOURS[0] + timedelta(minutes=5), f"{p}m1", "a", 150, "card"),
          (HOURS[0] + timedelta(minutes=59, seconds=59), f"{p}m1", "b", 200, "card"),
          (HOURS[1], f"{p}m2", "c", 300, "coins"),  # an edge belongs to the bucket it starts
          (HOURS[1] + timedelta(minutes=30), f"{p}m1", "d", 50, "mobile"),
          (HOURS[1] + timedelta(minutes=31), f"{p}m3", "e", 999, "card"),  # other zone
          (HOURS[4], f"{p}m1", "f", 70, "card")]  # at the end: outside [lo, hi)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO parking_transactions (time, device_id, transaction_id, "
                        "amount_cents, duration_s, payment_method) VALUES (%s, %s, %s, %s, "
                        "600, %s)", tx)
        cur.executemany("INSERT INTO parking_meter_status (time, device_id, fault_code) "
                        "VALUES (%s, %s, %s)", [
                            (HOURS[2], f"{p}m1", "paper_out"),
                            (HOURS[2] + timedelta(minutes=9), f"{p}m1", "paper_out"),
                            (HOURS[2] + timedelta(minutes=20), f"{p}m2", "paper_out"),
                            (HOURS[2] + timedelta(minutes=30), f"{p}m2", "jam"),
                            (HOURS[3], f"{p}m1", None)])
    return p


def _revenue(rows: list[dict[str, Any]]) -> dict[tuple[int, str | None], tuple[Any, ...]]:
    return {(r["i"], r["method"]): (r["transactions"], r["revenue_cents"], r["meter_faults"])
            for r in rows}


def test_revenue_of_a_zone_and_of_a_meter(conn: psycopg.Connection[Any], meters: str) -> None:
    p, lo, hi = meters, HOURS[0], HOURS[4]
    zone = _revenue(_call(conn, "parking_revenue", f"{p}z", None, HOURS[:5], lo, hi))
    assert zone == {(1, "card"): (2, 350, None), (2, "coins"): (1, 300, None),
                    (2, "mobile"): (1, 50, None), (3, None): (None, None, 3)}
    meter = _revenue(_call(conn, "parking_revenue", None, f"{p}m2", HOURS[:5], lo, hi))
    assert meter == {(2, "coins"): (1, 300, None), (3, None): (None, None, 2)}
    two_hours = _revenue(_call(conn, "parking_revenue", f"{p}z", None,
                               [HOURS[0], HOURS[2], HOURS[4]], lo, hi))
    assert two_hours == {(1, "card"): (2, 350, None), (1, "coins"): (1, 300, None),
                         (1, "mobile"): (1, 50, None), (2, None): (None, None, 3)}


def test_revenue_from_its_rollups_equals_raw(conn: psycopg.Connection[Any],
                                              meters: str) -> None:
    p, lo, hi = meters, HOURS[0], HOURS[4]
    _fill(conn, "rollup_parking_tx_1h", "parking_tx_fill", lo, hi)
    _fill(conn, "rollup_parking_faults_1h", "parking_faults_fill", lo, hi)
    for edges in (HOURS[:5], [HOURS[0], HOURS[2], HOURS[4]], [lo, hi]):
        for site, device in ((f"{p}z", None), (None, f"{p}m1"), (None, f"{p}m3")):
            raw = _call(conn, "parking_revenue", site, device, edges, lo, hi)
            rolled = _call(conn, "parking_revenue_rollup", site, device, edges, lo, hi)
            assert raw, (site, device, edges)
            assert _revenue(rolled) == _revenue(raw), (site, device, edges)
