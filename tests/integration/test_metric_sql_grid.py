"""The grid metrics' SQL functions (``sql/metrics/grid_*.sql``) tested directly against the
database: known readings in, the values they must give out, for a district and for a
meter, at bucket edges; the rollups' fill functions and readers give the raw functions'
answers, hour by hour and over the local days around the 25-hour 2025-10-26 (Europe/Paris);
and the routes read the meters' daily rollup for days, weeks and months in that zone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row

from api.maintenance import run_once
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from devices.registry import parse_registry
from tests.conftest import throwaway_database
from tests.integration.api_helpers import ApiReader, api_client

pytestmark = pytest.mark.stack

TZ = "Europe/Paris"
T = datetime(2025, 10, 25, 22, tzinfo=UTC)  # 2025-10-26 00:00 local: the 25-hour day
H = [T + timedelta(hours=h) for h in range(4)]  # three hourly buckets
DAYS = [T - timedelta(hours=24), T, T + timedelta(hours=25), T + timedelta(hours=49)]
HOURS = [DAYS[0] + timedelta(hours=h) for h in range(73)]  # every hour of those 3 days
GAP, MAX_IV, VMIN, VMAX = 1.5, timedelta(days=1), 230 * 0.9, 230 * 1.1
NOW = datetime(2025, 11, 10, tzinfo=UTC)  # "now" of the maintenance run: October rolled up


def _m(minutes: float) -> datetime:
    return T + timedelta(minutes=minutes)


# (meter, minutes after T, import Wh, export Wh, power W, L1, L2, L3 volts)
READINGS = [
    ("m1", -10, 100, None, None, None, None, None),
    ("m1", 10, 120, None, 500, 230, None, None),
    ("m1", 50, 160, None, 700, 260, None, None),
    ("m1", 130, 300, None, 900, 200, None, None),
    ("m1", 180, 310, None, None, None, None, None),
    ("m1", 24 * 60 + 50, 400, None, 650, 229, None, None),
    ("m1", 25 * 60 + 10, 420, None, 640, 231, None, None),  # across the end of the 26th
    ("m1", 26 * 60, 500, None, 620, 232, None, None),
    ("m1", 48 * 60, 600, None, 610, 233, None, None),  # 22 hours later: a gap
    ("m1", 49 * 60 + 10, 700, None, 600, 234, None, None),  # across the end of the 27th
    ("m2", 0, 0, 0, 100, 231, None, None),
    ("m2", 30, 5, 50, 800, 232, 210, None),
    ("m2", 50, 3, 80, 300, 240, None, None),  # import index went down: meter replaced
    ("m2", 90, 10, 100, 50, 250, None, 254),
    ("m3", 0, 0, None, 5000, 100, None, None),  # another district
    ("m3", 60, 1000, None, None, None, None, None),
]


def _seed(conn: psycopg.Connection[Any], p: str) -> None:
    store.import_registry(conn, parse_registry({
        "sites": [{"id": f"{p}d", "kind": "district", "name": "D", "insee": "62041"},
                  {"id": f"{p}e", "kind": "district", "name": "E", "insee": "62041"}],
        "devices": [
            {"id": f"{p}m1", "family": "grid_meter", "site_id": f"{p}d", "name": "m1",
             "report_interval_s": 600},
            {"id": f"{p}m2", "family": "grid_meter", "site_id": f"{p}d", "name": "m2",
             "report_interval_s": 1800, "metadata": {"solar": True}},
            {"id": f"{p}m3", "family": "grid_meter", "site_id": f"{p}e", "name": "m3",
             "report_interval_s": 600}]}))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO grid_readings (time, device_id, energy_import_wh, energy_export_wh, "
            "power_w, voltage_l1_v, voltage_l2_v, voltage_l3_v) VALUES (%s, %s, %s, %s, %s, "
            "%s, %s, %s)", [(_m(t), p + m, *rest) for m, t, *rest in READINGS])


class Grid(ApiReader):
    def __init__(self, client: TestClient, token: str, p: str, url: str) -> None:
        super().__init__(client, token)
        self.p, self.url = p, url

    def call_fn(self, fn: str, *args: Any) -> list[dict[str, Any]]:
        marks = ", ".join(["%s"] * len(args))
        with psycopg.connect(self.url) as c, c.cursor(row_factory=dict_row) as cur:
            cur.execute(f"SELECT * FROM metric.{fn}({marks})", args)
            return cur.fetchall()

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(query, args)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def grid(stack: Stack, settings: Settings) -> Iterator[Grid]:
    """A database holding READINGS under a fresh prefix, rolled up by the maintenance job
    (hours, half hours and local days of Europe/Paris), and the API on it."""
    p = "g-"
    with throwaway_database(stack, settings, "gridsql") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            _seed(conn, p)
            token, _ = create_token(conn, f"{p}t", ["read"])

            async def maintain() -> None:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
                    assert (await run_once(c, settings, NOW, rollups_only=True)).ran

            asyncio.run(maintain())
        with api_client(settings, url, timezone=TZ) as (client, _s):
            yield Grid(client, token, p, url)


# -- energy ---------------------------------------------------------------------------------

CELL = ("intervals", "import_wh", "export_wh", "covered_s", "estimated", "reset", "gap",
        "cross_start", "cross_end")


def _cells(rows: list[dict[str, Any]], p: str, *, pieces: bool = True
           ) -> dict[tuple[int, str], tuple[Any, ...]]:
    """Cells by (bucket, meter); ``pieces=False`` leaves out ``intervals`` (the rollups
    count an interval once per hour or day it spans; answers never show it)."""
    cols = CELL if pieces else CELL[1:]
    return {(r["i"], r["device_id"].removeprefix(p)): tuple(r[c] for c in cols) for r in rows}


def test_energy_cells_of_a_district_and_of_a_meter(grid: Grid) -> None:
    p = grid.p
    district = _cells(grid.call_fn("grid_energy", f"{p}d", None, H, H[0], H[3], GAP, MAX_IV,
                                   False), p)
    assert district == {
        # m1: (T-10, T+10] half in, (T+10, T+50], and 10 of the 80 minutes of (T+50, T+130]
        (1, "m1"): (3, 67.5, None, 3600.0, True, False, True, True, True),
        (2, "m1"): (1, 105.0, None, 3600.0, True, False, True, True, True),
        (3, "m1"): (2, 27.5, None, 3600.0, True, False, True, True, False),
        # m2: 5 + 3 (after the reset: the new index) + a quarter of (T+50, T+90]
        (1, "m2"): (3, 9.75, 85.0, 3600.0, True, True, False, False, True),
        (2, "m2"): (1, 5.25, 15.0, 1800.0, True, False, False, True, False)}
    meter = _cells(grid.call_fn("grid_energy", None, f"{p}m2", H, H[0], H[3], GAP, MAX_IV,
                                False), p)
    assert meter == {k: v for k, v in district.items() if k[1] == "m2"}
    whole = _cells(grid.call_fn("grid_energy", f"{p}d", None, [H[0], H[3]], H[0], H[3], GAP,
                                MAX_IV, False), p)
    assert whole == {(1, "m1"): (4, 200.0, None, 10800.0, True, False, True, True, False),
                     (1, "m2"): (3, 15.0, 100.0, 5400.0, False, True, False, False, False)}


def test_export_is_the_energy_of_the_solar_meters(grid: Grid) -> None:
    p = grid.p
    solar = _cells(grid.call_fn("grid_energy", f"{p}d", None, H, H[0], H[3], GAP, MAX_IV,
                                True), p)
    assert set(solar) == {(1, "m2"), (2, "m2")}
    assert not grid.call_fn("grid_energy", None, f"{p}m1", H, H[0], H[3], GAP, MAX_IV, True)
    assert grid.call_fn("grid_meter_count", f"{p}d", None, True) == [{"meters": 1}]
    assert grid.call_fn("grid_meter_count", f"{p}d", None, False) == [{"meters": 2}]


def _approx(cells: dict[Any, tuple[Any, ...]]) -> dict[Any, tuple[Any, ...]]:
    return {k: tuple(pytest.approx(x, rel=1e-12) if isinstance(x, float) else x for x in v)
            for k, v in cells.items()}


@pytest.mark.parametrize("edges", [HOURS, HOURS[::3], [HOURS[0], HOURS[-1]], H],
                         ids=["hours", "3h", "all", "first-3h"])
def test_energy_from_the_hourly_rollup_equals_raw(grid: Grid, edges: list[datetime]) -> None:
    p = grid.p
    for site, device, solar in ((f"{p}d", None, False), (None, f"{p}m1", False),
                                (f"{p}d", None, True), (f"{p}e", None, False)):
        args = (site, device, edges, edges[0], edges[-1], GAP, MAX_IV, solar)
        raw = _cells(grid.call_fn("grid_energy", *args), p, pieces=False)
        assert raw, args
        rolled = _cells(grid.call_fn("grid_energy_rollup", *args), p, pieces=False)
        assert rolled == _approx(raw), args


def test_meter_days_span_the_25_hour_day(grid: Grid) -> None:
    rows = grid.sql("SELECT day::text, day_end - day_start, cross_start, cross_end, "
                    "intervals > 0 FROM rollup_grid_meter_1d WHERE device_id = %s AND tz = %s "
                    "ORDER BY day", f"{grid.p}m1", TZ)
    assert rows == [("2025-10-25", timedelta(hours=24), False, True, True),
                    ("2025-10-26", timedelta(hours=25), True, True, True),
                    ("2025-10-27", timedelta(hours=24), True, True, True),
                    ("2025-10-28", timedelta(hours=24), True, False, True)]


@pytest.mark.parametrize("edges", [DAYS, [DAYS[1], DAYS[3]], [DAYS[0], DAYS[3]]],
                         ids=["days", "two-days", "all"])
def test_energy_from_the_daily_rollup_equals_raw(grid: Grid, edges: list[datetime]) -> None:
    p = grid.p
    for site, device, solar in ((f"{p}d", None, False), (None, f"{p}m1", False),
                                (None, f"{p}m2", True), (f"{p}e", None, False)):
        args = (site, device, edges, edges[0], edges[-1], GAP, MAX_IV, solar)
        raw = _cells(grid.call_fn("grid_energy", *args), p, pieces=False)
        assert raw, args
        rolled = _cells(grid.call_fn("grid_energy_days", *args, TZ), p, pieces=False)
        assert rolled == _approx(raw), args
    # the interval across the end of the 25-hour day makes both days estimated
    days = _cells(grid.call_fn("grid_energy_days", None, f"{p}m1", DAYS, DAYS[0], DAYS[3],
                               GAP, MAX_IV, False, TZ), p)
    assert [days[(i, "m1")][4] for i in (1, 2, 3)] == [True, True, True]  # estimated
    assert days[(3, "m1")][6]  # gap: 22 hours between two readings of the 27th


def _site(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return {r["i"]: (r["meters"], r["complete_meters"], r["import_wh"], r["export_wh"],
                     r["covered_s"], r["estimated"], r["reset"], r["gap"]) for r in rows}


def _summed(cells: dict[tuple[int, str], tuple[Any, ...]],
            edges: list[datetime]) -> dict[int, tuple[Any, ...]]:
    out: dict[int, tuple[Any, ...]] = {}
    for i in sorted({i for i, _ in cells}):
        cs = [v for (j, _), v in cells.items() if j == i]
        length = (edges[i] - edges[i - 1]).total_seconds()
        out[i] = (len(cs), sum(1 for c in cs if c[3] >= length - 0.5 and not c[4] and not c[5]),
                  pytest.approx(sum(c[1] or 0.0 for c in cs)),
                  pytest.approx(sum(c[2] or 0.0 for c in cs)),
                  pytest.approx(sum(c[3] for c in cs)), any(c[4] for c in cs),
                  any(c[5] for c in cs), any(c[6] for c in cs))
    return out


def test_district_half_hours_and_days_equal_its_meters(grid: Grid) -> None:
    p = grid.p
    halves = [H[0] + timedelta(minutes=30 * k) for k in range(7)]
    raw = _cells(grid.call_fn("grid_energy", f"{p}d", None, halves, halves[0], halves[-1],
                              GAP, MAX_IV, False), p)
    site = _site(grid.call_fn("grid_energy_site_30m", f"{p}d", None, halves, halves[0],
                              halves[-1], GAP, MAX_IV, False))
    assert site == _summed(raw, halves)
    # the first half hour: m1 10 + 20 Wh (estimated), m2 5 Wh over its whole half hour
    assert site[1] == (2, 1, 35.0, 50.0, 3600.0, True, False, True)
    raw = _cells(grid.call_fn("grid_energy", f"{p}d", None, DAYS, DAYS[0], DAYS[3], GAP,
                              MAX_IV, False), p)
    site = _site(grid.call_fn("grid_energy_site_days", f"{p}d", None, DAYS, DAYS[0],
                              DAYS[3], GAP, MAX_IV, False, TZ))
    assert site == _summed(raw, DAYS) and set(site) == {1, 2, 3}


# -- peaks ----------------------------------------------------------------------------------

def _peaks(rows: list[dict[str, Any]]) -> dict[int, tuple[datetime, float]]:
    return {r["i"]: (r["slot"], r["power_w"]) for r in rows}


def test_peaks_of_a_district_and_of_a_meter(grid: Grid) -> None:
    p = grid.p
    # the district's sum on one mark: m1 700 W + m2 300 W at T+50
    assert _peaks(grid.call_fn("grid_peaks", f"{p}d", None, H, H[0], H[3])) == {
        1: (_m(50), 1000.0), 2: (_m(90), 50.0), 3: (_m(130), 900.0)}
    assert _peaks(grid.call_fn("grid_peaks", None, f"{p}m1", H, H[0], H[3])) == {
        1: (_m(50), 700.0), 3: (_m(130), 900.0)}


@pytest.mark.parametrize(("fn", "edges", "tz"), [
    ("grid_peaks_rollup", HOURS, None), ("grid_peaks_rollup", DAYS, None),
    ("grid_peaks_days", DAYS, TZ), ("grid_peaks_days", [DAYS[0], DAYS[3]], TZ)])
def test_peaks_from_the_rollups_equal_raw(grid: Grid, fn: str, edges: list[datetime],
                                          tz: str | None) -> None:
    p = grid.p
    for site, device in ((f"{p}d", None), (None, f"{p}m1"), (None, f"{p}m2")):
        args = (site, device, edges, edges[0], edges[-1])
        raw = _peaks(grid.call_fn("grid_peaks", *args))
        assert raw
        assert _peaks(grid.call_fn(fn, *args, *([tz] if tz else []))) == raw, (fn, args)


# -- voltage --------------------------------------------------------------------------------

def _volts(rows: list[dict[str, Any]]) -> dict[int, tuple[Any, ...]]:
    return {r["i"]: (r["n"], r["within"], r["min_v"], r["max_v"]) for r in rows}


def test_voltage_of_a_district_and_of_a_meter(grid: Grid) -> None:
    p = grid.p
    assert _volts(grid.call_fn("grid_voltage", f"{p}d", None, H, H[0], H[3], VMIN, VMAX)) == {
        1: (6, 5, 210.0, 260.0), 2: (2, 1, 250.0, 254.0), 3: (1, 0, 200.0, 200.0)}
    assert _volts(grid.call_fn("grid_voltage", None, f"{p}m2", [H[0], H[3]], H[0], H[3], VMIN,
                               VMAX)) == {1: (6, 5, 210.0, 254.0)}


@pytest.mark.parametrize(("fn", "edges", "tz"), [
    ("grid_voltage_rollup", HOURS, None), ("grid_voltage_rollup", DAYS, None),
    ("grid_voltage_days", DAYS, TZ), ("grid_voltage_days", [DAYS[0], DAYS[3]], TZ)])
def test_voltage_from_the_rollups_equals_raw(grid: Grid, fn: str, edges: list[datetime],
                                             tz: str | None) -> None:
    p = grid.p
    for site, device in ((f"{p}d", None), (None, f"{p}m1"), (f"{p}e", None)):
        args = (site, device, edges, edges[0], edges[-1], VMIN, VMAX)
        raw = _volts(grid.call_fn("grid_voltage", *args))
        assert raw
        assert _volts(grid.call_fn(fn, *args, *([tz] if tz else []))) == raw, (fn, args)


# -- through the routes ---------------------------------------------------------------------

ROUTES = ["districts/{p}d/energy", "meters/{p}m1/energy", "districts/{p}d/export",
          "meters/{p}m2/export", "districts/{p}d/voltage", "meters/{p}m1/voltage",
          "districts/{p}d/peaks", "meters/{p}m1/peaks"]
PERIOD = "from=2025-10-25&to=2025-10-28"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("bucket", ["1d", "1w", "1mo"])
def test_routes_from_the_rollups_equal_raw_across_the_25_hour_day(grid: Grid, route: str,
                                                                  bucket: str) -> None:
    url = f"/v1/grid/{route.format(p=grid.p)}?{PERIOD}&bucket={bucket}"
    rolled, raw = grid.get(url), grid.get(url + "&source=raw")
    assert rolled["source"] == "rollup" and raw["source"] == "raw"
    assert rolled["data"] == raw["data"]
    assert any(v for d in rolled["data"] for k, v in d.items() if k not in ("start", "end"))


def test_days_in_the_configured_zone_read_the_meters_daily_rollup(grid: Grid) -> None:
    """Without the hourly rows, days in Europe/Paris still answer (from the daily rows);
    days in UTC, which read the hourly rows, do not."""
    urls = [f"/v1/grid/{r.format(p=grid.p)}?{PERIOD}&bucket=1d"
            for r in ("meters/{p}m1/energy", "districts/{p}d/export", "districts/{p}d/voltage",
                      "meters/{p}m1/peaks")]
    before = [grid.get(u) for u in urls]
    utc = grid.get(urls[0] + "&tz=UTC")
    assert utc["source"] == "rollup" and utc["data"][1]["meters"] == 1
    saved = grid.sql("SELECT * FROM rollup_grid_1h")
    try:
        grid.sql("DELETE FROM rollup_grid_1h")
        assert [grid.get(u) for u in urls] == before
        assert grid.get(urls[0] + "&tz=UTC")["data"][1]["meters"] == 0
    finally:
        with psycopg.connect(grid.url, autocommit=True) as c, c.cursor() as cur:
            cur.execute("DELETE FROM rollup_grid_1h")
            marks = ", ".join(["%s"] * len(saved[0]))
            cur.executemany(f"INSERT INTO rollup_grid_1h VALUES ({marks})", saved)
    assert grid.get(urls[0] + "&tz=UTC") == utc


def test_months_in_the_configured_zone_read_the_meters_monthly_rollup(grid: Grid) -> None:
    """Whole months of Europe/Paris come from the meters' monthly rows, equal to their days
    summed (and to the raw answer, above): without the daily rows they still answer, weeks
    (which read the daily rows) do not; without the monthly rows months come from days."""
    urls = [f"/v1/grid/{r.format(p=grid.p)}?{PERIOD}&bucket=1mo"
            for r in ("meters/{p}m1/energy", "districts/{p}d/export", "districts/{p}d/energy")]
    week = f"/v1/grid/meters/{grid.p}m1/energy?{PERIOD}&bucket=1w"
    before = [grid.get(u) for u in urls]
    assert grid.get(week)["data"][0]["meters"] == 1
    assert grid.sql("SELECT count(*) FROM rollup_grid_meter_1mo")[0][0] == 3  # m1 m2 m3
    days = grid.sql("SELECT * FROM rollup_grid_meter_1d")
    months = grid.sql("SELECT * FROM rollup_grid_meter_1mo")
    try:
        grid.sql("DELETE FROM rollup_grid_meter_1d")
        assert [grid.get(u) for u in urls] == before
        assert grid.get(week)["data"][0]["meters"] == 0
        grid.sql("DELETE FROM rollup_grid_meter_1mo")
        assert all(grid.get(u)["data"][0]["meters"] == 0 for u in (urls[0], urls[2]))
    finally:
        with psycopg.connect(grid.url, autocommit=True) as c, c.cursor() as cur:
            for table, rows in (("rollup_grid_meter_1d", days),
                                ("rollup_grid_meter_1mo", months)):
                cur.execute(f"DELETE FROM {table}")
                marks = ", ".join(["%s"] * len(rows[0]))
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    assert [grid.get(u) for u in urls] == before


def test_a_meter_that_is_not_solar_has_no_export(grid: Grid) -> None:
    r = grid.call(f"/v1/grid/meters/{grid.p}m1/export?{PERIOD}&bucket=1d")
    assert r.status_code == 404 and r.json()["detail"] == f"no solar meter '{grid.p}m1'"
    body = grid.get(f"/v1/grid/districts/{grid.p}d/export?{PERIOD}&bucket=1d")
    assert body["producers_total"] == 1 and body["data"][1]["producers"] == 1
