"""The aggregates the open data publishes, read with the API's own queries and rollups.

Series come from the routes' helpers and SQL (parking occupancy and turnover, wifi
clients, visitors and dwell, district energy), so the published numbers are the ones the
API answers. Buckets are local hours, days and months of the configured time zone, cut at
the publication's start and end (whole hours).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from api.db import fetch_all, per_bucket
from api.metrics.base import Scope
from api.metrics.grid import ENERGY
from api.metrics.routes import series
from api.rollups import DWELL_BOUNDS_S, combine
from api.routes.parking import (
    _TURNOVER_ROLLUP_SQL,
    _TURNOVER_SQL,
    STALE_AFTER,
    _occupancy,
)
from api.routes.wifi import (
    _CLIENTS_ROLLUP_SQL,
    _CLIENTS_SQL,
    _DWELL_ROLLUP_SQL,
    _DWELL_SQL,
    _VISITORS_1D_SQL,
    _VISITORS_SQL,
    MAX_SESSION,
)
from api.timeq import Buckets, make_buckets
from devices.registry import ParkingPlace, Site, SiteKind
from devices.store import PARKING_COLS

Conn = psycopg.AsyncConnection[Any]
Row = dict[str, Any]

_SITE_COLS = ("id", "kind", "name", "insee", "latitude", "longitude", "capacity", "metadata")


async def sites(conn: Conn) -> list[Site]:
    """Every site, by id, with its parking place where it has one."""
    cols = ", ".join([*(f"s.{c}" for c in _SITE_COLS),
                      *(f"p.{c} AS p_{c}" for c in PARKING_COLS[1:])])
    rows = await fetch_all(conn, f"SELECT {cols}, p.site_id IS NOT NULL AS has_parking "
                           "FROM sites s LEFT JOIN parking_places p ON p.site_id = s.id "
                           "ORDER BY s.id")
    out = []
    for r in rows:
        place = (ParkingPlace.model_validate({c: r[f"p_{c}"] for c in PARKING_COLS[1:]})
                 if r["has_parking"] else None)
        out.append(Site.model_construct(**{**{c: r[c] for c in _SITE_COLS},
                                           "kind": SiteKind(r["kind"]), "parking": place}))
    return out


async def family_counts(conn: Conn, family: str) -> dict[str, int]:
    """Active devices of a family per site."""
    rows = await fetch_all(conn, "SELECT site_id, count(*) AS n FROM devices WHERE family = %s "
                           "AND active GROUP BY site_id", (family,))
    return {r["site_id"]: int(r["n"]) for r in rows}


# -- buckets --------------------------------------------------------------------------------

def hours(start: datetime, end: datetime, tz: ZoneInfo) -> Buckets:
    """Hourly buckets of ``[start, end)`` (whole hours)."""
    return make_buckets(start, end, "1h", tz)


def _clip(b: Buckets, start: datetime, end: datetime, label: str) -> Buckets:
    edges = [start, *(e for e in b.edges if start < e < end), end]
    return Buckets(label, b.tz, edges)


def days(start: datetime, end: datetime, tz: ZoneInfo) -> list[Buckets]:
    """Local days of ``[start, end)``: whole days as ``1d`` buckets (which the daily rollups
    answer), a day cut by the start or end as a separate ``part`` bucket."""
    whole = make_buckets(start, end, "1d", tz)
    inner = [e for e in whole.edges if start <= e <= end]
    out: list[Buckets] = []
    if not inner:
        return [Buckets("part", tz, [start, end])]
    if inner[0] > start:
        out.append(Buckets("part", tz, [start, inner[0]]))
    if len(inner) > 1:
        out.append(Buckets("1d", tz, inner))
    if inner[-1] < end:
        out.append(Buckets("part", tz, [inner[-1], end]))
    return out


def months(start: datetime, end: datetime, tz: ZoneInfo) -> Buckets:
    """Local months of ``[start, end)``, the first and last cut there."""
    return _clip(make_buckets(start, end, "1mo", tz), start, end, "1mo")


async def _each(parts: list[Buckets],
                fn: Callable[[Buckets], Awaitable[list[Row]]]) -> list[Row]:
    out: list[Row] = []
    for b in parts:
        out.extend(await fn(b))
    return out


# -- parking --------------------------------------------------------------------------------

async def parking_series(conn: Conn, zone: Site, capacity: int, b: Buckets) -> list[Row]:
    """Occupancy (the zone route's rows) joined with turnover per bucket of ``b``."""
    occ = (await _occupancy(conn, b, "d.site_id = %(site)s", {"site": zone.id}, capacity,
                            "auto", zone=True)).rows

    def row(r: Row | None) -> Row:
        return {"arrivals": int(r["arrivals"]) if r else 0,
                "stays": int(r["stays"]) if r else 0,
                "stay_s": float(r["stay_s"]) if r else 0.0}

    async def raw(sub: Buckets) -> list[Row]:
        return await per_bucket(conn, sub, _TURNOVER_SQL.format(
            filter="d.site_id = %(id)s", dev=""), {"id": zone.id}, row)

    async def rolled(sub: Buckets) -> list[Row]:
        return await per_bucket(conn, sub, _TURNOVER_ROLLUP_SQL,
                                {"site": zone.id, "dev_id": ""}, row)

    turn = (await combine(conn, b, "auto", "parking_turnover", rolled=rolled, raw=raw,
                          columns=("arrivals", "stays", "stay_s"))).rows
    return [{**o, **t} for o, t in zip(occ, turn, strict=True)]


# -- wifi -----------------------------------------------------------------------------------

async def wifi_aps(conn: Conn, square: str, b: Buckets) -> list[int]:
    """Access points of the square with a report, per bucket."""
    async def part(sub: Buckets, query: str) -> list[Row]:
        return await per_bucket(conn, sub, query, {"id": square, "site": square},
                                lambda r: {"aps": int(r["aps"]) if r else 0})

    async def raw(sub: Buckets) -> list[Row]:
        return await part(sub, _CLIENTS_SQL.format(filter="d.site_id = %(id)s"))

    async def rolled(sub: Buckets) -> list[Row]:
        return await part(sub, _CLIENTS_ROLLUP_SQL.format(filter="d.site_id = %(id)s"))

    out = (await combine(conn, b, "auto", "wifi_ap", rolled=rolled, raw=raw,
                         columns=("aps",))).rows
    return [r["aps"] for r in out]


async def wifi_visitors(conn: Conn, square: str, b: Buckets, tz_setting: str) -> list[Row]:
    """Unique visitors and associations per local day (the visitors route's queries): whole
    days from the daily aggregates kept after the raw sessions are deleted, a cut day from
    the raw sessions."""
    async def part(sub: Buckets, query: str) -> list[Row]:
        return await per_bucket(
            conn, sub, query, {"id": square, "site": square, "ap": "", "tz": tz_setting},
            lambda r: {"visitors": int(r["visitors"]) if r else 0,
                       "associations": int(r["associations"]) if r else 0})

    async def raw(sub: Buckets) -> list[Row]:
        return await part(sub, _VISITORS_SQL.format(filter="d.site_id = %(id)s"))

    async def rolled(sub: Buckets) -> list[Row]:
        return await part(sub, _VISITORS_1D_SQL)

    daily = b.bucket == "1d" and b.tz.key == tz_setting
    return (await combine(conn, b, "auto" if daily else "raw", "wifi_visitors_1d",
                          rolled=rolled, raw=raw, columns=("visitors", "associations"))).rows


async def wifi_dwell(conn: Conn, square: str, b: Buckets) -> list[tuple[int, int]]:
    """(ended sessions, their total length in seconds) per bucket (the dwell route's
    queries)."""
    async def part(sub: Buckets, query: str) -> list[Row]:
        rows = await fetch_all(conn, query, {"id": square, "edges": sub.edges,
                                             "lo": sub.start, "hi": sub.end,
                                             "bounds": list(DWELL_BOUNDS_S)})
        acc: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for r in rows:
            acc[r["i"] - 1][0] += int(r["sessions"])
            acc[r["i"] - 1][1] += int(r["dwell_s"])
        return [{"n": acc[i][0], "s": acc[i][1]} for i in range(len(sub))]

    async def raw(sub: Buckets) -> list[Row]:
        return await part(sub, _DWELL_SQL.format(filter="d.site_id = %(id)s", dev="",
                                                 max_session=MAX_SESSION))

    async def rolled(sub: Buckets) -> list[Row]:
        return await part(sub, _DWELL_ROLLUP_SQL.format(filter="r.site_id = %(id)s"))

    out = (await combine(conn, b, "auto", "wifi_visitors_1h", rolled=rolled, raw=raw,
                         columns=("n", "s"))).rows
    return [(r["n"], r["s"]) for r in out]


# -- energy ---------------------------------------------------------------------------------

async def district_energy(conn: Conn, district: str, meters: int, b: Buckets,
                          tz_setting: str) -> list[Row]:
    """The district energy route's rows per bucket, complete with ``meters`` meters."""
    ans, _ = await series(conn, ENERGY, Scope("site", district, {}), b, zone=tz_setting,
                          ctx={"total": meters})
    return ans.rows


# -- state at an instant (the real-time feed) -------------------------------------------

_SPOTS_AT_SQL = """
SELECT d.id, d.name, d.site_id, d.latitude, d.longitude, coalesce(l.state, 'unknown') AS state
FROM devices d LEFT JOIN LATERAL (
    SELECT p.state FROM parking_spot_state p
    WHERE p.device_id = d.id AND p.time <= %(t)s
      AND p.time > %(t)s - make_interval(secs => d.report_interval_s * %(stale)s)
    ORDER BY p.time DESC LIMIT 1) l ON true
WHERE d.family = 'parking_spot' AND d.active
ORDER BY d.site_id, d.id
"""


async def spots_at(conn: Conn, t: datetime) -> dict[str, list[Row]]:
    """Each active spot sensor's state at ``t`` (as the zone's current route counts: the
    latest report if younger than 3 heartbeats, else unknown), by zone."""
    rows = await fetch_all(conn, _SPOTS_AT_SQL, {"t": t, "stale": STALE_AFTER})
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        out[r["site_id"]].append(r)
    return out


_APS_AT_SQL = """
SELECT d.id, d.name, d.site_id, d.latitude, d.longitude, d.metadata, l.time, l.clients
FROM devices d LEFT JOIN LATERAL (
    SELECT w.time, w.clients FROM wifi_ap_stats w
    WHERE w.device_id = d.id AND w.time <= %(t)s
      AND w.time > %(t)s - make_interval(secs => d.report_interval_s * %(stale)s)
    ORDER BY w.time DESC LIMIT 1) l ON true
WHERE d.family = 'wifi_ap' AND d.active
ORDER BY d.site_id, d.id
"""


async def aps_at(conn: Conn, t: datetime) -> dict[str, list[Row]]:
    """Each active access point's latest report at ``t`` if younger than 3 reporting
    intervals (``time`` and ``clients`` null otherwise), by square."""
    rows = await fetch_all(conn, _APS_AT_SQL, {"t": t, "stale": STALE_AFTER})
    out: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        out[r["site_id"]].append(r)
    return out


@dataclass(frozen=True)
class Period:
    """A publication period: whole hours, local time zone."""

    start: datetime
    end: datetime
    tz: ZoneInfo

    def __post_init__(self) -> None:
        for t in (self.start, self.end):
            if t.tzinfo is None or t.minute or t.second or t.microsecond:
                raise ValueError("a publication starts and ends on whole hours with a time "
                                 "zone")
        if self.end <= self.start:
            raise ValueError("the publication ends after it starts")
        if self.end - self.start > timedelta(days=366):
            raise ValueError("a publication covers at most 366 days")
