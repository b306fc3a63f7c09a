"""Each bucket is answered from where its data is, whatever the range around it, and a
bucket the API cannot compute is null with a reason (or the request a 422), never a zero.

The data of ``test_rollups`` plus wifi sessions is rolled up and aggregated, then the
maintenance job runs ten days later with a 3-day raw retention: every raw row is gone, only
the rollups and the wifi aggregates remain (as they would after retention)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.maintenance import run_once
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.api_helpers import ApiReader, seeded_api
from tests.integration.test_rollups import NOW, T0, _insert, _seed

pytestmark = pytest.mark.stack

LATER = NOW + timedelta(days=10)  # second run: the raw rows are past the 3-day retention
RAW = ("grid_readings", "parking_spot_state", "parking_transactions", "parking_meter_status",
       "wifi_ap_stats", "wifi_sessions")

# route, the column that must carry data, the buckets it accepts
ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("/v1/parking/zones/{p}pz/occupancy", "occupied_spot_s", ("1h", "1d")),
    ("/v1/parking/spots/{p}spot-3/occupancy", "occupied_spot_s", ("1h", "1d")),
    ("/v1/parking/zones/{p}pz/revenue", "revenue_cents", ("1h", "1d")),
    ("/v1/parking/meters/{p}pm-1/revenue", "revenue_cents", ("1h", "1d")),
    ("/v1/parking/zones/{p}pz/turnover", "arrivals", ("1h", "1d")),
    ("/v1/parking/spots/{p}spot-2/turnover", "arrivals", ("1h", "1d")),
    ("/v1/grid/districts/{p}dist/energy", "import_wh", ("1h", "1d")),
    ("/v1/grid/meters/{p}linky-2/energy", "import_wh", ("1h", "1d")),
    ("/v1/grid/districts/{p}dist/export", "import_wh", ("1h", "1d")),
    ("/v1/grid/meters/{p}linky-3/export", "import_wh", ("1h", "1d")),
    ("/v1/grid/districts/{p}dist/peaks", "peak_power_w", ("1d",)),
    ("/v1/grid/meters/{p}linky-4/peaks", "peak_power_w", ("1d",)),
    ("/v1/grid/districts/{p}dist/voltage", "values", ("1h", "1d")),
    ("/v1/grid/meters/{p}linky-3/voltage", "values", ("1h", "1d")),
    ("/v1/wifi/squares/{p}sq/clients", "clients_mean", ("1h", "1d")),
    ("/v1/wifi/aps/{p}ap-1/clients", "clients_mean", ("1h", "1d")),
    ("/v1/wifi/squares/{p}sq/traffic", "rx_bytes", ("1h", "1d")),
    ("/v1/wifi/aps/{p}ap-2/traffic", "rx_bytes", ("1h", "1d")),
    ("/v1/wifi/squares/{p}sq/visitors", "unique_visitors", ("1h", "1d")),
    ("/v1/wifi/aps/{p}ap-1/visitors", "unique_visitors", ("1h", "1d")),
    ("/v1/wifi/squares/{p}sq/dwell", "sessions", ("1h", "1d")),
    ("/v1/wifi/aps/{p}ap-2/dwell", "sessions", ("1h", "1d")),
]
SINCE = datetime(2025, 10, 25, 3, tzinfo=UTC)  # the rollups' start (first run's horizon)
# (bucket, from inside the rolled-up range, from before it, to); the rolled-up range
# starts at 2025-10-25T03:00Z (the retention horizon of the first run) and ends at its
# watermark 2025-10-28T03:00Z
RANGES = {"1h": ("2025-10-25T20:00Z", "2025-10-20T00:00Z", "2025-10-28T03:00Z"),
          "1d": ("2025-10-26", "2025-10-01", "2025-10-28")}


def _sessions(p: str) -> list[dict[str, Any]]:
    rng = random.Random(3)
    rows = []
    for k in range(52 * 15):
        t = T0 + timedelta(seconds=rng.randint(0, 52 * 3600 - 1))
        key = rng.randbytes(16)
        ap = f"{p}ap-{rng.choice((1, 2))}"
        stay = rng.choice([40, 200, 700, 1500, 3000, 6000, 9000, 20000])
        rows.append({"time": t, "device_id": ap, "client_key": key, "event": "associated",
                     "session_s": None})
        rows.append({"time": t + timedelta(seconds=stay), "device_id": ap, "client_key": key,
                     "event": "disassociated", "session_s": stay if k % 3 else None})
    return rows


class Past(ApiReader):
    def __init__(self, client: TestClient, token: str, p: str, url: str,
                 before: dict[str, Any]) -> None:
        super().__init__(client, token)
        self.p, self.url, self.before = p, url, before


def _url(route: str, p: str, frm: str, to: str, bucket: str, tz: str = "") -> str:
    return (route.format(p=p) + f"?from={frm}&to={to}&bucket={bucket}"
            + (f"&tz={tz}" if tz else ""))


def _seed_with_sessions(conn: psycopg.Connection[Any], p: str) -> None:
    _seed(conn, p)
    _insert(conn, "wifi_sessions", _sessions(p))


@pytest.fixture(scope="module")
def past(stack: Stack, settings: Settings) -> Iterator[Past]:
    with seeded_api(stack, settings, "cover", "c", _seed_with_sessions, retention_raw_days=3,
                    timezone="Europe/Paris") as a:
        p, url, s = a.p, a.url, a.settings

        async def maintain(now: datetime) -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
                assert (await run_once(c, s, now)).ran

        w = Past(a.client, a.token, p, url, {})
        asyncio.run(maintain(NOW))
        for route, _col, buckets in ROUTES:
            for bucket in buckets:
                inside, _, to = RANGES[bucket]
                w.before[route + bucket] = w.get(_url(route, p, inside, to, bucket))
        asyncio.run(maintain(LATER))
        with psycopg.connect(url, autocommit=True) as conn:
            for table in RAW:
                # what drop_chunks left of the retained chunks goes too, as it will
                conn.execute(f"DELETE FROM {table} WHERE time < %s",
                             (LATER - timedelta(days=3),))
                assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
        yield w


def _rolled(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["start"]: d for d in body["data"]}


@pytest.mark.parametrize(("route", "col", "bucket"),
                         [(r, c, b) for r, c, bs in ROUTES for b in bs])
def test_a_bucket_does_not_depend_on_where_the_range_starts(past: Past, route: str, col: str,
                                                            bucket: str) -> None:
    inside, before, to = RANGES[bucket]
    then = past.before[route + bucket]
    assert then["source"] == "rollup"
    assert sum(d[col] or 0 for d in then["data"]) > 0  # the rolled-up buckets carry data
    now_inside = past.get(_url(route, past.p, inside, to, bucket))
    now_before = past.get(_url(route, past.p, before, to, bucket))
    assert now_inside["data"] == then["data"]  # the raw rows are gone: all from rollups
    rolled = _rolled(now_before)
    for d in then["data"]:
        assert rolled[d["start"]] == d
    assert now_before["source"] == "rollup"
    early = [d for d in now_before["data"] if datetime.fromisoformat(d["start"]) < SINCE]
    assert early
    if "/wifi/" in route and col in ("unique_visitors", "sessions"):
        # the session aggregates cover the whole past (sessions cannot come later than
        # 24 hours): they answer those buckets too
        assert "unavailable" not in now_before
        assert all(isinstance(d[col], int) for d in early)
        return
    # what lies before the rollups has no raw rows left: null with the reason, not 0
    assert all(d[col] is None for d in early)
    (gap,) = now_before["unavailable"]
    assert gap["from"] == early[0]["start"] and gap["to"] == early[-1]["end"]
    assert "gone (retention)" in gap["reason"] and "rollup covers" in gap["reason"]


def test_visitors_per_day_of_another_zone_are_refused(past: Past) -> None:
    for route in ("/v1/wifi/squares/{p}sq/visitors", "/v1/wifi/aps/{p}ap-1/visitors"):
        r = past.call(_url(route, past.p, "2025-10-26", "2025-10-28", "1d",
                           "America/New_York"))
        assert r.status_code == 422, r.text
        assert "midnight in Europe/Paris" in r.json()["detail"]["message"]
        # an hour of a half-hour zone across the change of keys (22:00Z in summer time)
        r = past.call(_url(route, past.p, "2025-10-25T21:30Z", "2025-10-25T23:30Z", "1h",
                           "Asia/Kolkata"))
        assert r.status_code == 422, r.text


@pytest.mark.parametrize(("route", "col", "bucket", "tz", "frm", "to"), [
    ("/v1/wifi/squares/{p}sq/dwell", "sessions", "1h", "Asia/Kolkata",
     "2025-10-26T06:00", "2025-10-27T06:00"),
    ("/v1/wifi/aps/{p}ap-1/visitors", "unique_visitors", "1h", "Asia/Kolkata",
     "2025-10-26T06:00", "2025-10-26T09:00"),
    ("/v1/wifi/squares/{p}sq/dwell", "sessions", "1d", "Asia/Kolkata",
     "2025-10-26", "2025-10-28"),
    ("/v1/parking/zones/{p}pz/revenue", "revenue_cents", "1d", "Asia/Kolkata",
     "2025-10-26", "2025-10-28"),
    ("/v1/grid/districts/{p}dist/energy", "import_wh", "1h", "Asia/Kolkata",
     "2025-10-26T06:00", "2025-10-27T06:00"),
    ("/v1/parking/zones/{p}pz/turnover", "arrivals", "1h", "Asia/Kolkata",
     "2025-10-26T06:00", "2025-10-27T06:00"),
    ("/v1/wifi/squares/{p}sq/clients", "clients_mean", "1h", "Europe/Paris",
     "2025-10-26T06:00&source=raw", "2025-10-27T06:00"),
])
def test_buckets_no_source_can_answer_are_null_with_a_reason(past: Past, route: str, col: str,
                                                             bucket: str, tz: str, frm: str,
                                                             to: str) -> None:
    body = past.get(_url(route, past.p, frm, to, bucket, tz))
    assert body["data"] and all(d[col] is None for d in body["data"])
    assert body["source"] == "none"
    (gap,) = body["unavailable"]
    assert gap["from"] == body["data"][0]["start"] and gap["to"] == body["data"][-1]["end"]
    assert "gone (retention)" in gap["reason"]
    assert ("source=raw" in gap["reason"]) == ("source=raw" in frm)
    csv = past.call(_url(route, past.p, frm, to, bucket, tz) + "&format=csv").text
    assert ",0," not in csv.splitlines()[1] + ","


def test_days_of_a_whole_hour_zone_still_come_from_the_hourly_rollups(past: Past) -> None:
    body = past.get(_url("/v1/wifi/squares/{p}sq/dwell", past.p, "2025-10-26", "2025-10-27",
                         "1d", "America/New_York"))
    assert body["source"] == "rollup" and body["data"][0]["sessions"] > 0


@pytest.mark.parametrize(("route", "col"), [(r, c) for r, c, _ in ROUTES])
def test_buckets_that_have_not_started_are_null_not_zero(past: Past, route: str,
                                                         col: str) -> None:
    today = datetime.now(ZoneInfo("Europe/Paris")).date()  # the routes' default zone
    frm, to = today - timedelta(days=1), today + timedelta(days=3)
    body = past.get(_url(route, past.p, frm.isoformat(), to.isoformat(), "1d"))
    later = [d for d in body["data"]
             if datetime.fromisoformat(d["start"]) > datetime.now(UTC)]
    assert len(later) >= 2
    assert all(d[col] is None for d in later)
    gap = body["unavailable"][-1]
    assert gap["reason"] == "in the future: no data yet"
    assert gap["from"] == later[0]["start"] and gap["to"] == later[-1]["end"]
