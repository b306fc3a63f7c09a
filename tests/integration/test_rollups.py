"""Rollups equal the raw computation: the same routes answered both ways (``source=raw``
forces the raw rows), on irregular synthetic data across the 25-hour day of 2025-10-26,
with meter resets, communication gaps, counter restarts and late data."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.maintenance import run_once
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.integration.api_helpers import ApiReader, seeded_api
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

T0 = datetime(2025, 10, 25, 20, tzinfo=UTC)  # data from here for 52 hours
NOW = datetime(2025, 10, 28, 3, 25, tzinfo=UTC)  # "now" of the maintenance runs


def _insert(conn: psycopg.Connection[Any], table: str, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                        f"({', '.join(['%s'] * len(cols))}) ON CONFLICT DO NOTHING",
                        [tuple(r[c] for c in cols) for r in rows])


def _seed(conn: psycopg.Connection[Any], p: str) -> None:
    rng = random.Random(7)
    store.import_registry(conn, tiny_city(prefix=p))
    grid, spots, tx, status, stats = [], [], [], [], []
    for m in range(1, 5):
        index, t = 10_000 * m, T0 + timedelta(seconds=rng.randint(0, 599))
        while t < T0 + timedelta(hours=52):
            index += rng.randint(0, 900)
            if m == 2 and abs(t - (T0 + timedelta(hours=30))) < timedelta(minutes=5):
                index = rng.randint(0, 50)  # meter replaced
            grid.append({"time": t, "device_id": f"{p}linky-{m}", "energy_import_wh": index,
                         "energy_export_wh": 0 if m % 2 else rng.randint(0, 10) + t.hour,
                         "power_w": float(rng.randint(100, 9000)),
                         "voltage_l1_v": float(rng.choice([198, 215, 230, 231, 240, 255]))})
            # 10-minute reports, sometimes a 40-to-90-minute gap across hour edges
            t += timedelta(minutes=rng.choice([10] * 12 + [40, 90]),
                           seconds=rng.randint(-20, 20))
    for s in range(1, 7):
        t = T0 + timedelta(seconds=rng.randint(0, 3000))
        while t < T0 + timedelta(hours=52):
            spots.append({"time": t, "device_id": f"{p}spot-{s}",
                          "state": rng.choice(["free", "occupied", "occupied", "unknown"])})
            t += timedelta(seconds=rng.choice([300, 700, 1500, 4000, 9000]))
    for k in range(150):
        tx.append({"time": T0 + timedelta(seconds=rng.randint(0, 52 * 3600)),
                   "device_id": f"{p}pm-1", "transaction_id": f"tx{k}",
                   "amount_cents": rng.randint(50, 800), "duration_s": 3600,
                   "payment_method": rng.choice(["card", "coins", "mobile"])})
    for k in range(52 * 4):
        status.append({"time": T0 + timedelta(minutes=15 * k), "device_id": f"{p}pm-1",
                       "battery": 0.8, "paper": 0.5,
                       "fault_code": rng.choice([None] * 8 + ["E1", "E2"])})
    for a in (1, 2):
        rx = tx_b = 0
        t = T0
        while t < T0 + timedelta(hours=52):
            if rng.random() < 0.01:
                rx = tx_b = rng.randint(0, 100)  # reboot: counters restart
            rx += rng.randint(0, 10**6)
            tx_b += rng.randint(0, 10**5)
            stats.append({"time": t, "device_id": f"{p}ap-{a}", "clients": rng.randint(0, 40),
                          "rx_bytes": rx, "tx_bytes": tx_b})
            t += timedelta(seconds=rng.choice([30, 60, 60, 60, 75, 600]))
    _insert(conn, "grid_readings", grid)
    _insert(conn, "parking_spot_state", spots)
    _insert(conn, "parking_transactions", tx)
    _insert(conn, "parking_meter_status", status)
    _insert(conn, "wifi_ap_stats", stats)


class World(ApiReader):
    def __init__(self, client: TestClient, token: str, p: str, url: str,
                 settings: Settings) -> None:
        super().__init__(client, token)
        self.p, self.url, self.settings = p, url, settings

    def maintain(self, now: datetime) -> None:
        import asyncio

        async def go() -> None:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as c:
                report = await run_once(c, self.settings, now, rollups_only=True)
                assert report.ran

        asyncio.run(go())


@pytest.fixture(scope="module")
def world(stack: Stack, settings: Settings) -> Iterator[World]:
    with seeded_api(stack, settings, "rollup", "r", _seed) as a:
        w = World(a.client, a.token, a.p, a.url, a.settings)
        w.maintain(NOW)
        yield w


def assert_same(rolled: dict[str, Any], raw: dict[str, Any]) -> None:
    assert len(rolled["data"]) == len(raw["data"]) > 0
    for a, b in zip(rolled["data"], raw["data"], strict=True):
        assert set(a) == set(b)
        for k, va in a.items():
            vb = b[k]
            if isinstance(va, float) and isinstance(vb, float):
                tol = 0.1001 if abs(vb) >= 10 else 1.001e-4
                assert abs(va - vb) <= tol, (k, a, b)
            else:
                assert va == vb, (k, a, b)


ROUTES = [
    "/v1/parking/zones/{p}pz/occupancy", "/v1/parking/spots/{p}spot-3/occupancy",
    "/v1/parking/zones/{p}pz/revenue", "/v1/parking/meters/{p}pm-1/revenue",
    "/v1/parking/zones/{p}pz/turnover", "/v1/parking/spots/{p}spot-2/turnover",
    "/v1/grid/districts/{p}dist/energy", "/v1/grid/meters/{p}linky-2/energy",
    "/v1/grid/districts/{p}dist/voltage", "/v1/grid/meters/{p}linky-3/voltage",
    "/v1/grid/districts/{p}dist/export", "/v1/grid/meters/{p}linky-2/export",
    "/v1/wifi/squares/{p}sq/clients", "/v1/wifi/aps/{p}ap-1/clients",
    "/v1/wifi/squares/{p}sq/traffic", "/v1/wifi/aps/{p}ap-2/traffic",
]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("frm", "to", "bucket", "tz"), [
    ("2025-10-25", "2025-10-28", "1d", "Europe/Paris"),  # includes the 25-hour day
    ("2025-10-26", "2025-10-27", "1h", "Europe/Paris"),
    ("2025-10-20", "2025-10-27", "1w", "Europe/Paris"),
    ("2025-10-25T20:00Z", "2025-10-27T23:00Z", "1h", "UTC"),
])
def test_rollup_answers_equal_raw(world: World, route: str, frm: str, to: str, bucket: str,
                                  tz: str) -> None:
    url = route.format(p=world.p) + f"?from={frm}&to={to}&bucket={bucket}&tz={tz}"
    rolled = world.get(url)
    raw = world.get(url + "&source=raw")
    assert rolled["source"] == "rollup" and raw["source"] == "raw"
    assert_same(rolled, raw)


@pytest.mark.parametrize("route", ["/v1/grid/districts/{p}dist/peaks",
                                   "/v1/grid/meters/{p}linky-4/peaks"])
def test_peaks_from_rollups_equal_raw(world: World, route: str) -> None:
    url = route.format(p=world.p) + "?from=2025-10-25&to=2025-10-28&bucket=1d"
    rolled, raw = world.get(url), world.get(url + "&source=raw")
    assert rolled["source"] == "rollup"
    assert_same(rolled, raw)
    assert len(rolled["data"]) == 3 and all(d["peak_power_w"] for d in rolled["data"])


def test_data_is_not_trivial(world: World) -> None:
    e = world.get(f"/v1/grid/districts/{world.p}dist/energy?from=2025-10-25&to=2025-10-28"
                  "&bucket=1h")
    assert any(d["reset"] for d in e["data"]) and any(d["estimated"] for d in e["data"])
    assert any(d["gap"] for d in e["data"])
    t = world.get(f"/v1/wifi/squares/{world.p}sq/traffic?from=2025-10-25&to=2025-10-28"
                  "&bucket=1d")
    assert sum(d["counter_resets"] for d in t["data"]) >= 1
    assert all(d["rx_bytes"] is None or d["rx_bytes"] >= 0 for d in t["data"])
    turn = world.get(f"/v1/parking/zones/{world.p}pz/turnover?from=2025-10-26&to=2025-10-28"
                     "&bucket=1d")
    assert turn["source"] == "rollup"
    assert len(turn["data"]) == 2
    assert all(d["arrivals"] > 0 and d["mean_stay_s"] for d in turn["data"])


@pytest.mark.parametrize(("frm", "to", "bucket"), [
    ("2025-10-26", "2025-10-27", "15m"),  # the 25-hour day, quarter by quarter
    ("2025-10-25T20:00Z", "2025-10-27T23:00Z", "30m"),
])
def test_zone_quarter_hours_equal_raw(world: World, frm: str, to: str, bucket: str) -> None:
    url = (f"/v1/parking/zones/{world.p}pz/occupancy?from={frm}&to={to}&bucket={bucket}")
    rolled, raw = world.get(url), world.get(url + "&source=raw")
    assert rolled["source"] == "rollup" and raw["source"] == "raw"
    assert_same(rolled, raw)
    assert any(d["occupied_spot_s"] > 0 for d in rolled["data"])
    # a spot's own rollup is hourly: its quarter hours come from raw rows
    spot = world.get(f"/v1/parking/spots/{world.p}spot-1/occupancy?from={frm}&to={to}"
                     f"&bucket={bucket}")
    assert spot["source"] == "raw"


def test_district_days_come_from_the_daily_rollup(world: World) -> None:
    with psycopg.connect(world.url) as conn:
        rows = conn.execute("SELECT day, meters, reset, gap FROM rollup_grid_site_1d "
                            "WHERE site_id = %s AND tz = 'Europe/Paris' ORDER BY day",
                            (f"{world.p}dist",)).fetchall()
    # the local days with data that end below the watermark (2025-10-28T03:00Z), with the
    # 25-hour 2025-10-26; the data starts on 2025-10-25 at 22:00 local time
    assert [str(r[0]) for r in rows] == ["2025-10-25", "2025-10-26", "2025-10-27"]
    assert [r[1] for r in rows] == [4, 4, 4]
    url = (f"/v1/grid/districts/{world.p}dist/energy?from=2025-10-25&to=2025-10-28"
           "&bucket=1d")
    rolled, raw = world.get(url), world.get(url + "&source=raw")
    assert rolled["source"] == "rollup"
    assert_same(rolled, raw)
    assert [d["reset"] for d in rolled["data"]] == [r[2] for r in rows]


def test_revenue_days_come_from_the_meters_daily_rollup(world: World) -> None:
    """A zone's revenue per local day reads its meters' days (equal to raw, above): without
    the hourly rows it still answers; hours, which read them, do not."""
    days = f"/v1/parking/zones/{world.p}pz/revenue?from=2025-10-25&to=2025-10-28&bucket=1d"
    hours = days.replace("bucket=1d", "bucket=1h")
    before, hourly = world.get(days), world.get(hours)
    assert sum(d["revenue_cents"] for d in before["data"]) > 0
    with psycopg.connect(world.url, autocommit=True) as conn:
        saved = conn.execute("SELECT * FROM rollup_parking_tx_1h").fetchall()
        try:
            conn.execute("DELETE FROM rollup_parking_tx_1h")
            assert world.get(days) == before
            assert sum(d["revenue_cents"] for d in world.get(hours)["data"]) == 0
        finally:
            conn.execute("DELETE FROM rollup_parking_tx_1h")
            with conn.cursor() as cur:
                marks = ", ".join(["%s"] * len(saved[0]))
                cur.executemany(f"INSERT INTO rollup_parking_tx_1h VALUES ({marks})", saved)
    assert world.get(hours) == hourly


@pytest.mark.parametrize(("frm", "to"), [("2025-10-26", "2025-10-27"),  # 25 hours
                                         ("2025-10-25T20:00Z", "2025-10-28T03:00Z")])
def test_district_half_hours_equal_raw(world: World, frm: str, to: str) -> None:
    url = f"/v1/grid/districts/{world.p}dist/energy?from={frm}&to={to}&bucket=30m"
    rolled, raw = world.get(url), world.get(url + "&source=raw")
    assert rolled["source"] == "rollup" and raw["source"] == "raw"
    assert_same(rolled, raw)
    assert any(d["estimated"] for d in rolled["data"])
    assert sum(d["meters"] == 4 for d in rolled["data"]) > len(rolled["data"]) // 2
    meter = world.get(f"/v1/grid/meters/{world.p}linky-1/energy?from={frm}&to={to}"
                      "&bucket=30m")
    assert meter["source"] == "raw"  # a meter's own rollup is hourly


def test_short_buckets_and_unaligned_zones_read_raw(world: World) -> None:
    base = f"/v1/grid/districts/{world.p}dist/energy?from=2025-10-26&to=2025-10-27"
    assert world.get(base + "&bucket=15m")["source"] == "raw"
    assert world.get(base + "&bucket=1d&tz=Asia/Kolkata")["source"] == "raw"


def test_range_past_the_watermark_is_mixed_and_still_equal(world: World) -> None:
    # The watermark is 2025-10-28T03:00Z: the last day is read raw.
    url = (f"/v1/grid/districts/{world.p}dist/energy?from=2025-10-26&to=2025-10-29"
           "&bucket=1d")
    mixed = world.get(url)
    assert mixed["source"] == "mixed"
    assert_same(mixed, world.get(url + "&source=raw"))


def test_late_data_below_the_watermark_is_rolled_up_again(world: World) -> None:
    url = f"/v1/parking/meters/{world.p}pm-1/revenue?from=2025-10-27&to=2025-10-28&bucket=1d"
    before = world.get(url)["data"][0]["revenue_cents"]
    with psycopg.connect(world.url, autocommit=True) as conn:
        _insert(conn, "parking_transactions", [{
            "time": datetime(2025, 10, 27, 12, 30, tzinfo=UTC), "device_id": f"{world.p}pm-1",
            "transaction_id": "late-1", "amount_cents": 12345, "duration_s": 60,
            "payment_method": "card"}])
    stale = world.get(url)
    assert stale["source"] == "rollup" and stale["data"][0]["revenue_cents"] == before
    world.maintain(NOW + timedelta(minutes=5))  # no new hour, refresh not due yet
    assert world.get(url)["data"][0]["revenue_cents"] == before
    world.maintain(NOW + timedelta(minutes=11))  # refresh due: the last 24 h are re-rolled
    assert world.get(url)["data"][0]["revenue_cents"] == before + 12345
    assert_same(world.get(url), world.get(url + "&source=raw"))
