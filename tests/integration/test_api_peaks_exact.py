"""District peaks are exact and repeatable: the powers (float4 in the database) of many
meters are summed in double precision, so the answer equals a float64 computation made
here from the stored values, whatever the order PostgreSQL sums them in, raw or rolled up."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.maintenance import run_once
from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.api_helpers import seeded_api

pytestmark = pytest.mark.stack

DAY = datetime(2026, 3, 10, 23, tzinfo=UTC)  # 2026-03-11 in Europe/Paris
METERS = 300
NOW = DAY + timedelta(days=1, hours=2)


class Peaks:
    def __init__(self, client: TestClient, token: str, p: str, url: str,
                 settings: Settings) -> None:
        self.client, self.token, self.p, self.url = client, token, p, url
        self.settings = settings

    def get(self, path: str) -> bytes:
        r = self.client.get(path, headers={"Authorization": f"Bearer {self.token}"})
        assert r.status_code == 200, r.text
        body: bytes = r.content
        return body


def _seed(conn: psycopg.Connection[Any], p: str) -> None:
    rng = random.Random(11)
    conn.execute("INSERT INTO sites (id, kind, name, insee) VALUES (%s, 'district', 'D', "
                 "'62041')", (f"{p}dist",))
    with conn.cursor() as cur:
        with cur.copy("COPY devices (id, family, site_id, name, report_interval_s) "
                      "FROM STDIN") as cp:
            for m in range(METERS):
                cp.write_row((f"{p}m{m}", "grid_meter", f"{p}dist", f"M{m}", 600))
        with cur.copy("COPY grid_readings (time, device_id, energy_import_wh, power_w) "
                      "FROM STDIN") as cp:
            for m in range(METERS):
                for k in range(24 * 6):
                    # powers with fractional parts near a few kW: their float4 sum over the
                    # district (~500 kW) is off by several tenths of a watt
                    cp.write_row((DAY + timedelta(minutes=10 * k, seconds=m % 50),
                                  f"{p}m{m}", 1000 * k, rng.uniform(300.0, 3200.0)))


@pytest.fixture(scope="module")
def peaks(stack: Stack, settings: Settings) -> Iterator[Peaks]:
    with seeded_api(stack, settings, "peaks", "k", _seed) as a:
        yield Peaks(a.client, a.token, a.p, a.url, a.settings)


def _expected(url: str, p: str) -> tuple[float, datetime]:
    """The highest float64 sum of the stored powers on one 10-minute mark."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT g.time, g.power_w FROM grid_readings g JOIN devices d "
                            "ON d.id = g.device_id WHERE d.site_id = %s",
                            (f"{p}dist",)).fetchall()
    slots: dict[datetime, list[float]] = defaultdict(list)
    for t, w in rows:
        slots[t.replace(minute=t.minute - t.minute % 10, second=0)].append(w)
    best = max(slots, key=lambda s: (math.fsum(slots[s]), -s.timestamp()))
    return math.fsum(slots[best]), best


def _check(body: dict[str, Any], expected: tuple[float, datetime]) -> None:
    (day,) = body["data"]
    assert day["peak_power_w"] == round(expected[0], 1)
    assert datetime.fromisoformat(day["peak_at"]) == expected[1]


def test_district_peak_equals_a_float64_sum_and_repeats_byte_for_byte(peaks: Peaks) -> None:
    import orjson

    url = f"/v1/grid/districts/{peaks.p}dist/peaks?from=2026-03-11&to=2026-03-12&bucket=1d"
    expected = _expected(peaks.url, peaks.p)
    assert expected[0] > 400_000  # float4 resolution there is 1/32 W
    raw = [peaks.get(url + "&source=raw") for _ in range(3)]
    assert raw[0] == raw[1] == raw[2]
    _check(orjson.loads(raw[0]), expected)

    async def maintain() -> None:
        async with await psycopg.AsyncConnection.connect(peaks.url, autocommit=True) as c:
            assert (await run_once(c, peaks.settings, NOW,
                                   rollups_only=True)).ran

    asyncio.run(maintain())
    rolled = [peaks.get(url) for _ in range(3)]
    assert rolled[0] == rolled[1] == rolled[2]
    body = orjson.loads(rolled[0])
    assert body["source"] == "rollup"
    _check(body, expected)
