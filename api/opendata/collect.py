"""The aggregates the open data publishes, read with the API's own queries and rollups.

Series come from the metrics' declarations (:mod:`api.metrics`: parking occupancy and
turnover, wifi clients, visitors and dwell, district energy), so the published numbers are
the ones the API answers. Buckets are local hours, days and months of the configured time
zone, cut at the publication's start and end (whole hours).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from api.db import fetch_all
from api.metrics import parking, wifi
from api.metrics.base import Scope, series
from api.metrics.grid import ENERGY
from api.metrics.parking import STALE_AFTER
from api.timeq import Buckets, make_buckets
from beffroi.settings import Settings
from devices.registry import ParkingPlace, Site, SiteKind
from devices.store import PARKING_COLS

Conn = psycopg.AsyncConnection[Any]
Row = dict[str, Any]

_SITE_COLS = ("id", "kind", "name", "insee", "latitude", "longitude", "capacity", "metadata")


async def sites(conn: Conn) -> list[Site]:
    """Every site, by id, with its parking place where it has one."""
    cols = sql.SQL(", ").join([
        *(sql.Identifier("s", c) for c in _SITE_COLS),
        *(sql.SQL("{} AS {}").format(sql.Identifier("p", c), sql.Identifier(f"p_{c}"))
          for c in PARKING_COLS[1:])])
    rows = await fetch_all(conn, sql.SQL(
        "SELECT {}, p.site_id IS NOT NULL AS has_parking FROM sites s "
        "LEFT JOIN parking_places p ON p.site_id = s.id ORDER BY s.id").format(cols))
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
    """Occupancy (the zone route's rows, for ``capacity``) joined with the turnover's sums
    (arrivals, stays, their length) per bucket of ``b``."""
    scope = Scope("site", zone.id, {})
    occ = (await series(conn, parking.OCCUPANCY, scope, b, ctx={"capacity": capacity})).rows
    turn = (await series(conn, parking.TURNOVER, scope, b, ctx={},
                         shape=parking.turnover_sums,
                         columns=parking.TURNOVER_SUM_COLUMNS)).rows
    return [{**o, **t} for o, t in zip(occ, turn, strict=True)]


# -- wifi -----------------------------------------------------------------------------------

def _square(square: str) -> Scope:
    return Scope("site", square, {})


async def wifi_aps(conn: Conn, square: str, b: Buckets) -> list[int]:
    """Access points of the square with a report, per bucket (the clients metric's
    ``aps_reporting``)."""
    ans = await series(conn, wifi.CLIENTS, _square(square), b)
    return [r["aps_reporting"] for r in ans.rows]


async def wifi_visitors(conn: Conn, square: str, b: Buckets, settings: Settings) -> list[Row]:
    """Unique visitors and associations per local day (the visitors metric): whole days of
    the server's zone from the daily aggregates kept after the raw sessions are deleted, a
    cut day from the raw sessions."""
    daily = b.bucket == "1d" and b.tz.key == settings.timezone
    ans = await series(conn, wifi.VISITORS, _square(square), b, "auto" if daily else "raw",
                       settings=settings)
    return [{"visitors": r["unique_visitors"], "associations": r["associations"]}
            for r in ans.rows]


async def wifi_dwell(conn: Conn, square: str, b: Buckets) -> list[tuple[int, int | None]]:
    """(ended sessions, their mean length in seconds or None) per bucket (the dwell
    metric)."""
    ans = await series(conn, wifi.DWELL, _square(square), b)
    return [(r["sessions"], r["mean_dwell_s"]) for r in ans.rows]


# -- energy ---------------------------------------------------------------------------------

async def district_energy(conn: Conn, district: str, meters: int, b: Buckets,
                          settings: Settings) -> list[Row]:
    """The district energy route's rows per bucket, complete with ``meters`` meters."""
    ans = await series(conn, ENERGY, Scope("site", district, {}), b, ctx={"total": meters},
                       settings=settings)
    return ans.rows


# -- state at an instant (the real-time feed) -------------------------------------------

async def spots_at(conn: Conn, t: datetime) -> dict[str, list[Row]]:
    """Each active spot sensor's state at ``t`` (as the zone's current route counts: the
    latest report if younger than 3 heartbeats, else unknown), by zone."""
    out: dict[str, list[Row]] = defaultdict(list)
    for r in await parking.spots_at(conn, t):
        out[r["site_id"]].append(r)
    return out


async def aps_at(conn: Conn, t: datetime) -> dict[str, list[Row]]:
    """Each active access point's latest report at ``t`` if younger than 3 reporting
    intervals (``time`` and ``clients`` null otherwise), by square."""
    out: dict[str, list[Row]] = defaultdict(list)
    for r in await wifi.aps_at(conn, t, STALE_AFTER):
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
