"""Parking: time-weighted occupancy, current counts, turnover, meter revenue."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.db import fetch_all, get_device, get_site, per_bucket
from api.deps import HOURLY_AND_LONGER, ID_PATTERN, Conn, Range, Reader, only_buckets, time_range
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.metrics.parking import REVENUE
from api.metrics.routes import add_routes
from api.output import CSV_RESPONSE, FORMAT_DOC, json_only, series_response
from api.rollups import QUARTER_S, SLOT_S, Answer, SourceParam, combine
from api.timeq import Buckets

router = APIRouter(prefix="/parking", tags=["parking"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})

#: A sensor's reported state holds until its next message, but at most this many expected
#: reporting intervals (heartbeats): after that the spot is *unknown*, not free.
STALE_AFTER = 3

ZoneId = Annotated[str, Path(pattern=ID_PATTERN, examples=["parking-grand-place"])]
MeterId = Annotated[str, Path(pattern=ID_PATTERN, examples=["pm-grand-place-01"])]
SpotId = Annotated[str, Path(pattern=ID_PATTERN, examples=["spot-grand-place-001"])]

# Each reported state holds from its time to the next report of the same sensor, capped at
# STALE_AFTER heartbeats and clipped to the range; the intervals are cut at bucket edges
# (width_bucket on the edges array) and summed per bucket and state. The lookback finds
# the state in force at the start of the range.
_OCCUPANCY_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
r AS (
    SELECT p.device_id, p.time, p.state,
           p.time + make_interval(secs => d.report_interval_s * %(stale)s) AS stale_at,
           lead(p.time) OVER (PARTITION BY p.device_id ORDER BY p.time) AS next_time
    FROM parking_spot_state p JOIN devices d ON d.id = p.device_id
    WHERE {filter} AND d.family = 'parking_spot'
      AND p.time >= %(lo)s - make_interval(secs => %(lookback)s) AND p.time < %(hi)s
),
iv AS (
    SELECT device_id, state, greatest(time, %(lo)s) AS s,
           least(coalesce(next_time, 'infinity'), stale_at, %(hi)s) AS e
    FROM r
)
SELECT {dev} g.i, iv.state,
       sum(extract(epoch FROM least(iv.e, e.a[g.i + 1]) - greatest(iv.s, e.a[g.i])))::float8
         AS seconds
FROM iv CROSS JOIN e
CROSS JOIN LATERAL generate_series(width_bucket(iv.s, e.a),
                                   width_bucket(iv.e - interval '1 microsecond', e.a)) g(i)
WHERE iv.e > iv.s
GROUP BY {dev} g.i, iv.state
"""

# A zone from its quarter-hour rollup (spot-seconds of its sensors per UTC quarter hour).
_ZONE_OCCUPANCY_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.slot, e.a) AS i, sum(r.occupied_s) AS occupied, sum(r.free_s) AS free
FROM rollup_parking_zone_15m r CROSS JOIN e
WHERE r.site_id = %(site)s AND r.slot >= %(lo)s AND r.slot < %(hi)s
GROUP BY 1
"""

# The same from the hourly rollup (spot-seconds per sensor and UTC hour).
_OCCUPANCY_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.hour, e.a) AS i, sum(r.occupied_s) AS occupied, sum(r.free_s) AS free
FROM rollup_parking_spot_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
WHERE {filter} AND d.family = 'parking_spot' AND r.hour >= %(lo)s AND r.hour < %(hi)s
GROUP BY 1
"""


async def _lookback(conn: Conn, filt: str, params: dict[str, Any]) -> int:
    row = await fetch_all(conn, f"SELECT coalesce(max(report_interval_s), 0) AS m FROM devices d "
                          f"WHERE {filt} AND d.family = 'parking_spot'", params)
    return int(row[0]["m"]) * STALE_AFTER


async def _occupancy_raw(conn: Conn, b: Buckets, filt: str,
                         params: dict[str, Any]) -> dict[int, dict[str, float]]:
    lookback = await _lookback(conn, filt, params)
    rows = await fetch_all(conn, _OCCUPANCY_SQL.format(filter=filt, dev=""), {
        **params, "edges": b.edges, "lo": b.start, "hi": b.end, "stale": STALE_AFTER,
        "lookback": lookback})
    acc: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in rows:
        acc[r["i"] - 1][r["state"]] += r["seconds"]
    return acc


async def _occupancy_rollup(conn: Conn, b: Buckets, query: str,
                            params: dict[str, Any]) -> dict[int, dict[str, float]]:
    rows = await fetch_all(conn, query, {**params, "edges": b.edges, "lo": b.start,
                                         "hi": b.end})
    return {r["i"] - 1: {"occupied": r["occupied"], "free": r["free"]} for r in rows}


async def _occupancy(conn: Conn, b: Buckets, filt: str, params: dict[str, Any],
                     capacity: int, source: str = "raw", *, zone: bool = False) -> Answer:
    """A zone (``params["site"]``) reads its quarter-hour rollup, a spot its hourly one."""
    query = (_ZONE_OCCUPANCY_ROLLUP_SQL if zone
             else _OCCUPANCY_ROLLUP_SQL.format(filter=filt))

    async def rolled(part: Buckets) -> list[dict[str, Any]]:
        return _occupancy_rows(part, await _occupancy_rollup(conn, part, query, params),
                               capacity)

    async def raw(part: Buckets) -> list[dict[str, Any]]:
        return _occupancy_rows(part, await _occupancy_raw(conn, part, filt, params), capacity)

    return await combine(conn, b, source, "parking_spot", rolled=rolled, raw=raw,
                         columns=_OCC_COLUMNS, slot_s=QUARTER_S if zone else SLOT_S,
                         lookback=timedelta(seconds=await _lookback(conn, filt, params)))


def _occupancy_rows(b: Buckets, acc: dict[int, dict[str, float]],
                    capacity: int) -> list[dict[str, Any]]:
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        secs = b.seconds(i)
        occ = acc[i].get("occupied", 0.0) if i in acc else 0.0
        free = acc[i].get("free", 0.0) if i in acc else 0.0
        total = capacity * secs
        unknown = max(0.0, total - occ - free)
        known = occ + free
        out.append({
            "start": start, "end": end, "seconds": secs, "capacity": capacity,
            "occupied_spot_s": round(occ, 3), "free_spot_s": round(free, 3),
            "unknown_spot_s": round(unknown, 3),
            "occupancy": round(occ / total, 4) if total else None,
            "occupancy_of_known": round(occ / known, 4) if known else None,
            "unknown_share": round(unknown / total, 4) if total else None,
            "free_spots_mean": round(free / secs, 2),
        })
    return out


_OCC_COLUMNS = ("start", "end", "seconds", "capacity", "occupied_spot_s", "free_spot_s",
                "unknown_spot_s", "occupancy", "occupancy_of_known", "unknown_share",
                "free_spots_mean")


@router.get("/zones/{zone_id}/occupancy", summary="Time-weighted occupancy of a zone",
            description="Per bucket: spot-seconds occupied, free and unknown (no report from "
            "the sensor for 3 heartbeats, or never), `occupancy` = occupied / (capacity x "
            "bucket length), `occupancy_of_known` = occupied / (occupied + free). Exact for "
            "irregular events: every state holds until the sensor's next message. " + FORMAT_DOC)
async def zone_occupancy(request: Request, conn: Conn, _: Reader, zone_id: ZoneId,
                         b: Range, source: SourceParam = "auto") -> Response:
    """Occupancy of a parking zone per bucket."""
    site = await get_site(conn, zone_id, "parking_zone")
    capacity = site["capacity"]
    if capacity is None:
        capacity = len(await fetch_all(conn, "SELECT 1 FROM devices WHERE site_id = %s AND "
                                       "family = 'parking_spot'", (zone_id,)))
    ans = await _occupancy(conn, b, "d.site_id = %(site)s", {"site": zone_id}, capacity,
                           source, zone=True)
    return series_response(request, b.meta(zone=zone_id, **ans.meta()), ans.rows,
                           _OCC_COLUMNS, filename=f"occupancy-{zone_id}")


@router.get("/spots/{spot_id}/occupancy", summary="Time-weighted occupancy of one spot",
            description="As the zone route, for one sensor (capacity 1). " + FORMAT_DOC)
async def spot_occupancy(request: Request, conn: Conn, _: Reader, spot_id: SpotId,
                         b: Range, source: SourceParam = "auto") -> Response:
    """Occupancy of one spot per bucket."""
    await get_device(conn, spot_id, "parking_spot")
    ans = await _occupancy(conn, b, "d.id = %(spot)s", {"spot": spot_id}, 1, source)
    return series_response(request, b.meta(spot=spot_id, **ans.meta()), ans.rows,
                           _OCC_COLUMNS, filename=f"occupancy-{spot_id}")


@router.get("/zones/{zone_id}/current", summary="Free / occupied / unknown spots now",
            dependencies=[Depends(json_only)],
            responses={200: {"content": {"application/json": {}}}})
async def zone_current(conn: Conn, _: Reader, zone_id: ZoneId) -> dict[str, Any]:
    """Each sensor's latest state if younger than 3 heartbeats; otherwise unknown. Spots of
    the capacity without a sensor count as unknown."""
    site = await get_site(conn, zone_id, "parking_zone")
    rows = await fetch_all(conn, """
        SELECT coalesce(l.state, 'unknown') AS state, count(*) AS n
        FROM devices d LEFT JOIN LATERAL (
            SELECT state FROM parking_spot_state p WHERE p.device_id = d.id
              AND p.time > now() - make_interval(secs => d.report_interval_s * %s)
            ORDER BY time DESC LIMIT 1) l ON true
        WHERE d.site_id = %s AND d.family = 'parking_spot' AND d.active
        GROUP BY 1""", (STALE_AFTER, zone_id))
    counts = {"free": 0, "occupied": 0, "unknown": 0}
    for r in rows:
        counts[r["state"]] += r["n"]
    sensors = sum(counts.values())
    capacity = site["capacity"] if site["capacity"] is not None else sensors
    counts["unknown"] += max(0, capacity - sensors)
    return {"zone": zone_id, "capacity": capacity, "sensors": sensors, **counts}


# Arrivals: a sensor's reports where its state changes to `occupied`, or that come more
# than 2 days after its previous report; a stay lasts until the sensor's next change of
# state and counts when that comes within a day. Both rules look at most 2 days back and a
# day ahead, so a bucket's answer does not depend on the range around it: per sensor and
# hour this is also what the rollup stores (arrivals, stays, their total length).
_TURNOVER_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
s AS (
    SELECT p.device_id, p.time, p.state,
           lag(p.state) OVER w AS prev_state, lag(p.time) OVER w AS prev_time
    FROM parking_spot_state p JOIN devices d ON d.id = p.device_id
    WHERE {filter} AND d.family = 'parking_spot'
      AND p.time >= %(lo)s - interval '2 days' AND p.time < %(hi)s + interval '1 day'
    WINDOW w AS (PARTITION BY p.device_id ORDER BY p.time)
),
changes AS (
    SELECT device_id, time, state,
           lead(time) OVER (PARTITION BY device_id ORDER BY time) AS next_change
    FROM s WHERE prev_state IS DISTINCT FROM state OR time - prev_time > interval '2 days'
)
SELECT {dev} width_bucket(time, e.a) AS i, count(*) AS arrivals,
       count(*) FILTER (WHERE next_change - time <= interval '1 day') AS stays,
       coalesce(sum(extract(epoch FROM next_change - time))
                FILTER (WHERE next_change - time <= interval '1 day'), 0)::float8 AS stay_s
FROM changes CROSS JOIN e
WHERE state = 'occupied' AND time >= %(lo)s AND time < %(hi)s
GROUP BY {dev} width_bucket(time, e.a)
"""
# The same per bucket from the hourly rollup (a zone's rows have device_id '').
_TURNOVER_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.hour, e.a) AS i, sum(r.arrivals) AS arrivals, sum(r.stays) AS stays,
       sum(r.stay_s) AS stay_s
FROM rollup_parking_turnover_1h r CROSS JOIN e
WHERE r.site_id = %(site)s AND r.device_id = %(dev_id)s AND r.hour >= %(lo)s
  AND r.hour < %(hi)s
GROUP BY 1
"""
_TURNOVER_DOC = (
    "Arrivals = changes of a sensor to `occupied` (reports where its state changes; its "
    "first report after 2 days of silence counts as a change); `turnover` = arrivals per spot "
    "of the capacity; `mean_stay_s` = mean time from an arrival of the bucket to the "
    "sensor's next change of state (free or unknown), over the arrivals of the bucket whose "
    "stay ended within 24 hours (stays still going on and longer ones are left out; null "
    "when none), whatever the end of the range. Buckets 1h, 1d, 1w, 1mo. "
    + FORMAT_DOC)
_TURNOVER_COLUMNS = ("start", "end", "arrivals", "turnover", "mean_stay_s")
TURNOVER_LOOKBACK = timedelta(days=2)  # how far before a bucket the raw query reads
_TURNOVER_BUCKETS = HOURLY_AND_LONGER
TurnoverRange = Annotated[Buckets, Depends(time_range(_TURNOVER_BUCKETS))]


async def _turnover(request: Request, conn: Conn, b: Buckets, filt: str,
                    params: dict[str, Any], rollup_key: tuple[str, str], capacity: int,
                    meta: dict[str, Any], filename: str, source: str) -> Response:
    """Turnover per bucket of the sensors ``filt`` selects (``d`` = devices; rollup rows of
    ``rollup_key`` = (site, device or '')); the routes check the bucket
    (`_TURNOVER_BUCKETS`) before looking the zone or spot up."""
    def row(r: dict[str, Any] | None) -> dict[str, Any]:
        arrivals = int(r["arrivals"]) if r else 0
        stays = int(r["stays"]) if r else 0
        return {"arrivals": arrivals,
                "turnover": round(arrivals / capacity, 3) if capacity else None,
                "mean_stay_s": round(float(r["stay_s"]) / stays) if r and stays else None}

    async def part(sub: Buckets, query: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
        return await per_bucket(conn, sub, query, {**params, **extra}, row)

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _TURNOVER_SQL.format(filter=filt, dev=""), {})

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _TURNOVER_ROLLUP_SQL,
                          {"site": rollup_key[0], "dev_id": rollup_key[1]})

    ans = await combine(conn, b, source, "parking_turnover", rolled=rolled, raw=raw,
                        columns=_TURNOVER_COLUMNS, lookback=TURNOVER_LOOKBACK)
    return series_response(request, {**meta, "capacity": capacity, **ans.meta()}, ans.rows,
                           _TURNOVER_COLUMNS, filename=filename)


@router.get("/zones/{zone_id}/turnover", summary="Arrivals per spot and mean stay",
            description=_TURNOVER_DOC)
async def zone_turnover(request: Request, conn: Conn, _: Reader, zone_id: ZoneId,
                        b: TurnoverRange, source: SourceParam = "auto") -> Response:
    """Turnover of a parking zone per bucket."""
    only_buckets(b, _TURNOVER_BUCKETS, "turnover is counted per hour or longer")
    site = await get_site(conn, zone_id, "parking_zone")
    return await _turnover(request, conn, b, "d.site_id = %(id)s", {"id": zone_id},
                           (zone_id, ""), site["capacity"] or 0, b.meta(zone=zone_id),
                           f"turnover-{zone_id}", source)


@router.get("/spots/{spot_id}/turnover", summary="Arrivals and mean stay at one spot",
            description="As the zone route, for one sensor (capacity 1: `turnover` = "
            "arrivals). " + _TURNOVER_DOC)
async def spot_turnover(request: Request, conn: Conn, _: Reader, spot_id: SpotId,
                        b: TurnoverRange, source: SourceParam = "auto") -> Response:
    """Turnover of one parking spot per bucket."""
    only_buckets(b, _TURNOVER_BUCKETS, "turnover is counted per hour or longer")
    spot = await get_device(conn, spot_id, "parking_spot")
    return await _turnover(request, conn, b, "d.id = %(id)s", {"id": spot_id},
                           (spot["site_id"] or "", spot_id), 1, b.meta(spot=spot_id),
                           f"turnover-{spot_id}", source)


add_routes(router, REVENUE)
