"""Wifi: connected clients, unique visitors (pseudonymous keys, per day), dwell times,
traffic volume from cumulative counters."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response

from api.db import fetch_all, get_device, get_site, per_bucket
from api.deps import (
    HOURLY_AND_LONGER,
    ID_PATTERN,
    Conn,
    Range,
    Reader,
    SettingsDep,
    only_buckets,
    time_range,
)
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE, invalid
from api.output import CSV_RESPONSE, FORMAT_DOC, series_response
from api.rollups import DWELL_BOUNDS_S, DWELL_LABELS, SourceParam, combine
from api.timeq import Buckets
from beffroi.settings import Settings

router = APIRouter(prefix="/wifi", tags=["wifi"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})

SquareId = Annotated[str, Path(pattern=ID_PATTERN, examples=["grand-place"])]
ApId = Annotated[str, Path(pattern=ID_PATTERN, examples=["ap-grand-place-01"])]
#: Client keys rotate every local day: visitors are counted per hour or day only.
VisitorsRange = Annotated[Buckets, Depends(time_range(("1h", "1d")))]
DwellRange = Annotated[Buckets, Depends(time_range(HOURLY_AND_LONGER))]

# Per AP and bucket the mean and max of the reported counts; the square's mean is the sum
# of its APs' means, its max the highest sum over one-minute slots of the APs' counts.
_CLIENTS_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
s AS (
    SELECT w.device_id, w.time, w.clients FROM wifi_ap_stats w JOIN devices d ON d.id = w.device_id
    WHERE {filter} AND d.family = 'wifi_ap' AND w.time >= %(lo)s AND w.time < %(hi)s
),
per_ap AS (
    SELECT width_bucket(time, e.a) AS i, device_id, avg(clients)::float8 AS mean_c
    FROM s CROSS JOIN e GROUP BY 1, 2
),
minute AS (
    SELECT slot, sum(c)::float8 AS total FROM (
        SELECT time_bucket('1 minute', time) AS slot, device_id, avg(clients) AS c
        FROM s GROUP BY 1, 2) x GROUP BY 1
),
peak AS (
    SELECT width_bucket(slot, e.a) AS i, max(total) AS max_c FROM minute CROSS JOIN e GROUP BY 1
)
SELECT a.i, sum(a.mean_c) AS clients_mean, count(*) AS aps, max(p.max_c) AS clients_max
FROM per_ap a LEFT JOIN peak p USING (i) GROUP BY a.i
"""


_CLIENTS_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
per_ap AS (
    SELECT width_bucket(r.hour, e.a) AS i, r.device_id,
           sum(r.clients_sum)::float8 / sum(r.reports) AS mean_c, max(r.clients_max) AS max_c
    FROM rollup_wifi_ap_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
    WHERE {filter} AND d.family = 'wifi_ap' AND r.reports > 0
      AND r.hour >= %(lo)s AND r.hour < %(hi)s
    GROUP BY 1, 2
),
site AS (
    SELECT width_bucket(r.hour, e.a) AS i, max(r.clients_max) AS max_c
    FROM rollup_wifi_site_1h r CROSS JOIN e
    WHERE r.site_id = %(site)s AND r.hour >= %(lo)s AND r.hour < %(hi)s GROUP BY 1
)
SELECT a.i, sum(a.mean_c) AS clients_mean, count(*) AS aps,
       coalesce(max(s.max_c), max(a.max_c)) AS clients_max
FROM per_ap a LEFT JOIN site s USING (i) GROUP BY a.i
"""

#: Stats reports further apart than this make no traffic interval.
MAX_INTERVAL = "1 day"

# Traffic: the difference of an AP's cumulative counters between consecutive reports (at
# most a day apart), counted in the bucket of the later report; a counter lower than the
# previous one restarted (reboot): the new value is the traffic since, never negative.
_TRAFFIC_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
dv AS (SELECT d.id FROM devices d WHERE {filter} AND d.family = 'wifi_ap'),
pts AS (
    SELECT w.device_id, w.time, w.rx_bytes, w.tx_bytes FROM wifi_ap_stats w
    WHERE w.device_id IN (SELECT id FROM dv) AND w.time >= %(lo)s AND w.time < %(hi)s
    UNION ALL
    SELECT dv.id, b.time, b.rx_bytes, b.tx_bytes FROM dv CROSS JOIN LATERAL (
        SELECT w.time, w.rx_bytes, w.tx_bytes FROM wifi_ap_stats w
        WHERE w.device_id = dv.id AND w.time < %(lo)s AND w.time >= %(lo)s - interval '{max_iv}'
        ORDER BY w.time DESC LIMIT 1) b
),
r AS (
    SELECT device_id, time, rx_bytes AS rx, tx_bytes AS tx, lag(time) OVER w AS pt,
           lag(rx_bytes) OVER w AS prx, lag(tx_bytes) OVER w AS ptx
    FROM pts WINDOW w AS (PARTITION BY device_id ORDER BY time)
)
SELECT {dev} width_bucket(r.time, e.a) AS i,
       sum(CASE WHEN r.rx < r.prx THEN r.rx ELSE r.rx - r.prx END) AS rx_bytes,
       sum(CASE WHEN r.tx < r.ptx THEN r.tx ELSE r.tx - r.ptx END) AS tx_bytes,
       count(*) AS intervals,
       count(*) FILTER (WHERE r.rx < r.prx OR r.tx < r.ptx) AS resets
FROM r CROSS JOIN e
WHERE r.pt IS NOT NULL AND r.time >= %(lo)s AND r.time - r.pt <= interval '{max_iv}'
GROUP BY {dev} i
"""
_TRAFFIC_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.hour, e.a) AS i, sum(r.rx_bytes) AS rx_bytes, sum(r.tx_bytes) AS tx_bytes,
       sum(r.traffic_intervals) AS intervals, sum(r.counter_resets) AS resets
FROM rollup_wifi_ap_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
WHERE {filter} AND d.family = 'wifi_ap' AND r.traffic_intervals > 0
  AND r.hour >= %(lo)s AND r.hour < %(hi)s
GROUP BY 1
"""

#: Associations are paired with a disassociation at most this long after (no session_s).
MAX_SESSION = "12 hours"

# Dwell time of ended sessions: the disassociation's session_s when the AP reports it,
# otherwise the time since the client's previous event on that AP when it was an
# association (at most 12 hours before). Counted in the bucket of the disassociation.
_DWELL_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
s AS (
    SELECT s.device_id, s.time, s.event, s.session_s,
           lag(s.event) OVER w AS pev, lag(s.time) OVER w AS ptime
    FROM wifi_sessions s JOIN devices d ON d.id = s.device_id
    WHERE {filter} AND d.family = 'wifi_ap'
      AND s.time >= %(lo)s - interval '{max_session}' AND s.time < %(hi)s
    WINDOW w AS (PARTITION BY s.device_id, s.client_key ORDER BY s.time)
),
x AS (
    SELECT device_id, time,
           coalesce(session_s, CASE WHEN pev = 'associated'
                                     AND time - ptime <= interval '{max_session}'
                                    THEN extract(epoch FROM time - ptime)::bigint END) AS dwell
    FROM s WHERE event = 'disassociated' AND time >= %(lo)s
)
SELECT {dev} width_bucket(x.time, e.a) AS i, width_bucket(x.dwell, %(bounds)s::bigint[]) AS bin,
       count(*) AS sessions, sum(x.dwell) AS dwell_s
FROM x CROSS JOIN e WHERE x.dwell IS NOT NULL
GROUP BY {dev} i, bin
"""
_DWELL_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.hour, e.a) AS i, r.bin, sum(r.sessions) AS sessions,
       sum(r.dwell_s) AS dwell_s
FROM wifi_dwell_1h r CROSS JOIN e
WHERE {filter} AND r.hour >= %(lo)s AND r.hour < %(hi)s
GROUP BY 1, 2
"""


async def _clients(request: Request, conn: Conn, b: Buckets, filt: str, params: dict[str, Any],
                   meta: dict[str, Any], filename: str, source: str) -> Response:
    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        return await per_bucket(conn, sub, query, {"site": None, **params}, lambda r: {
            "clients_mean": round(r["clients_mean"], 2) if r else None,
            "clients_max": round(r["clients_max"], 2) if r else None,
            "aps_reporting": int(r["aps"]) if r else 0})

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _CLIENTS_SQL.format(filter=filt))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _CLIENTS_ROLLUP_SQL.format(filter=filt))

    cols = ("start", "end", "clients_mean", "clients_max", "aps_reporting")
    ans = await combine(conn, b, source, "wifi_ap", rolled=rolled, raw=raw, columns=cols)
    return series_response(request, {**meta, **ans.meta()}, ans.rows, cols,
                           filename=filename)


_CLIENTS_DOC = ("Per bucket: `clients_mean` (sum over the square's access points of the mean "
                "count each reported), `clients_max` (highest total over one-minute slots), "
                "`aps_reporting`; buckets without any report have null values. " + FORMAT_DOC)


@router.get("/squares/{square_id}/clients", summary="Connected clients on a square",
            description=_CLIENTS_DOC)
async def square_clients(request: Request, conn: Conn, _: Reader, square_id: SquareId,
                         b: Range, source: SourceParam = "auto") -> Response:
    """Clients of the square's access points per bucket."""
    await get_site(conn, square_id, "square")
    return await _clients(request, conn, b, "d.site_id = %(id)s",
                          {"id": square_id, "site": square_id},
                          b.meta(square=square_id), f"clients-{square_id}", source)


@router.get("/aps/{ap_id}/clients", summary="Connected clients on one access point",
            description=_CLIENTS_DOC)
async def ap_clients(request: Request, conn: Conn, _: Reader, ap_id: ApId,
                     b: Range, source: SourceParam = "auto") -> Response:
    """Clients of one access point per bucket."""
    await get_device(conn, ap_id, "wifi_ap")
    return await _clients(request, conn, b, "d.id = %(id)s", {"id": ap_id},
                          b.meta(ap=ap_id), f"clients-{ap_id}", source)


_VISITORS_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(s.time, e.a) AS i, count(DISTINCT s.client_key) AS visitors,
       count(*) FILTER (WHERE s.event = 'associated') AS associations
FROM wifi_sessions s JOIN devices d ON d.id = s.device_id CROSS JOIN e
WHERE {filter} AND d.family = 'wifi_ap' AND s.time >= %(lo)s AND s.time < %(hi)s
GROUP BY 1
"""
_VISITORS_1H_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(v.hour, e.a) AS i, v.visitors, v.associations
FROM wifi_visitors_1h v CROSS JOIN e
WHERE v.site_id = %(site)s AND v.device_id = %(ap)s AND v.hour >= %(lo)s AND v.hour < %(hi)s
"""
_VISITORS_1D_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(v.day_start, e.a) AS i, v.visitors, v.associations
FROM wifi_visitors_1d v CROSS JOIN e
WHERE v.site_id = %(site)s AND v.device_id = %(ap)s AND v.tz = %(tz)s
  AND v.day_start >= %(lo)s AND v.day_start < %(hi)s
"""
_VISITORS_DOC = (
    "Per hour or local day: distinct pseudonymous clients with a session event, and "
    "associations. Client keys change every local day (privacy), so longer buckets cannot "
    "count unique people: ask per day and sum. Raw sessions are kept 24 hours (CNIL); past "
    "hours and days are read from the aggregates the maintenance job makes before deleting "
    "them (days in the server's time zone only: a day of another zone spans a change of "
    "keys and is refused, 422; `source` in the answer says which; hours whose raw sessions "
    "are gone and that no aggregate covers are null, listed in `unavailable`). "
    + FORMAT_DOC)


async def _visitors(request: Request, conn: Conn, settings: Settings, b: Buckets, filt: str,
                    params: dict[str, Any], site: str, ap: str, meta: dict[str, Any],
                    filename: str, source: str) -> Response:
    only_buckets(b, ("1h", "1d"), "client keys rotate daily")

    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        return await per_bucket(
            conn, sub, query, {**params, "site": site, "ap": ap, "tz": settings.timezone},
            lambda r: {"unique_visitors": int(r["visitors"]) if r else 0,
                       "associations": int(r["associations"]) if r else 0})

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _VISITORS_SQL.format(filter=filt))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _VISITORS_1H_SQL if b.bucket == "1h" else _VISITORS_1D_SQL)

    _check_key_days(b, settings.timezone)
    # No bucket spans a change of keys: days are the server's days (the daily aggregates).
    name = "wifi_visitors_1d" if b.bucket == "1d" else "wifi_visitors_1h"
    cols = ("start", "end", "unique_visitors", "associations")
    ans = await combine(conn, b, source, name, rolled=rolled, raw=raw, columns=cols)
    return series_response(request, {**meta, **ans.meta()}, ans.rows, cols,
                           filename=filename)


def _check_key_days(b: Buckets, server_tz: str) -> None:
    """422 when a bucket spans a server-zone midnight: client keys change there, so the
    same person counts twice and no source can give the bucket's unique visitors."""
    if b.tz.key == server_tz:
        return
    zone = ZoneInfo(server_tz)
    for i in range(len(b)):
        day = b.edges[i].astimezone(zone).date() + timedelta(days=1)
        if datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC) < b.edges[i + 1]:
            start, _ = b.label(i)
            raise invalid(
                f"unique visitors cannot be counted over a bucket that spans midnight in "
                f"{server_tz}, when the daily client keys change (the same person would "
                f"count twice): the {b.bucket} bucket from {start} does; ask tz={server_tz} "
                "for days, or hours that do not span that midnight", param="tz")


@router.get("/squares/{square_id}/visitors", summary="Unique visitors of a square",
            description=_VISITORS_DOC)
async def square_visitors(request: Request, conn: Conn, _: Reader, settings: SettingsDep,
                          square_id: SquareId, b: VisitorsRange,
                          source: SourceParam = "auto") -> Response:
    """Unique visitors per hour or day."""
    only_buckets(b, ("1h", "1d"), "client keys rotate daily")
    await get_site(conn, square_id, "square")
    return await _visitors(request, conn, settings, b, "d.site_id = %(id)s", {"id": square_id},
                           square_id, "", b.meta(square=square_id),
                           f"visitors-{square_id}", source)


@router.get("/aps/{ap_id}/visitors", summary="Unique visitors of one access point",
            description=_VISITORS_DOC)
async def ap_visitors(request: Request, conn: Conn, _: Reader, settings: SettingsDep,
                      ap_id: ApId, b: VisitorsRange, source: SourceParam = "auto") -> Response:
    """Unique visitors of one AP per hour or day."""
    only_buckets(b, ("1h", "1d"), "client keys rotate daily")
    dev = await get_device(conn, ap_id, "wifi_ap")
    return await _visitors(request, conn, settings, b, "d.id = %(id)s", {"id": ap_id},
                           dev["site_id"], ap_id, b.meta(ap=ap_id), f"visitors-{ap_id}",
                           source)


_TRAFFIC_DOC = (
    "Per bucket: bytes received (`rx_bytes`) and sent (`tx_bytes`) by the access points, "
    "from the differences of their cumulative counters between consecutive reports (at most "
    "a day apart; counted in the bucket of the later report). A counter lower than the "
    "previous report restarted (reboot): it counts from 0, never a negative volume; "
    "`counter_resets` says how many. " + FORMAT_DOC)


def _traffic_row(r: dict[str, Any] | None) -> dict[str, Any]:
    rx = int(r["rx_bytes"]) if r and r["rx_bytes"] is not None else None
    tx = int(r["tx_bytes"]) if r and r["tx_bytes"] is not None else None
    return {"rx_bytes": rx, "tx_bytes": tx,
            "total_bytes": rx + tx if rx is not None and tx is not None else None,
            "intervals": int(r["intervals"]) if r else 0,
            "counter_resets": int(r["resets"]) if r else 0}


async def _traffic(request: Request, conn: Conn, b: Buckets, filt: str,
                   params: dict[str, Any], meta: dict[str, Any], filename: str,
                   source: str) -> Response:
    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        return await per_bucket(conn, sub, query, params, _traffic_row)

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _TRAFFIC_SQL.format(filter=filt, dev="", max_iv=MAX_INTERVAL))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _TRAFFIC_ROLLUP_SQL.format(filter=filt))

    cols = ("start", "end", "rx_bytes", "tx_bytes", "total_bytes", "intervals",
            "counter_resets")
    ans = await combine(conn, b, source, "wifi_ap", rolled=rolled, raw=raw, columns=cols,
                        lookback=timedelta(days=1))
    return series_response(request, {**meta, **ans.meta()}, ans.rows, cols,
                           filename=filename)


@router.get("/squares/{square_id}/traffic", summary="Traffic volume of a square",
            description=_TRAFFIC_DOC)
async def square_traffic(request: Request, conn: Conn, _: Reader, square_id: SquareId,
                         b: Range, source: SourceParam = "auto") -> Response:
    """Bytes through the square's access points per bucket."""
    await get_site(conn, square_id, "square")
    return await _traffic(request, conn, b, "d.site_id = %(id)s", {"id": square_id},
                          b.meta(square=square_id), f"traffic-{square_id}", source)


@router.get("/aps/{ap_id}/traffic", summary="Traffic volume of one access point",
            description=_TRAFFIC_DOC)
async def ap_traffic(request: Request, conn: Conn, _: Reader, ap_id: ApId, b: Range,
                     source: SourceParam = "auto") -> Response:
    """Bytes through one access point per bucket."""
    await get_device(conn, ap_id, "wifi_ap")
    return await _traffic(request, conn, b, "d.id = %(id)s", {"id": ap_id},
                          b.meta(ap=ap_id), f"traffic-{ap_id}", source)


_DWELL_COLS = ("start", "end", "sessions", "mean_dwell_s",
               *(f"sessions_{label}" for label in DWELL_LABELS))
_DWELL_DOC = (
    "Per bucket (1h or longer): sessions that ended (disassociation), their mean length and "
    "their distribution over bins (<1 min, 1-5 min, 5-15 min, 15-30 min, 30-60 min, 1-2 h, "
    "2-4 h, >=4 h). A session's length is the `session_s` the AP reports, otherwise the "
    "time since the client's association on that AP (at most 12 hours). Past hours are "
    "read from the aggregates kept after the raw sessions are deleted (24 h, CNIL). "
    + FORMAT_DOC)


async def _dwell(request: Request, conn: Conn, b: Buckets, filt: str, rfilt: str,
                 params: dict[str, Any], meta: dict[str, Any], filename: str,
                 source: str) -> Response:
    only_buckets(b, ("1h", "1d", "1w", "1mo"), "dwell times are aggregated per hour")

    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        rows = await fetch_all(conn, query, {**params, "edges": sub.edges, "lo": sub.start,
                                             "hi": sub.end, "bounds": list(DWELL_BOUNDS_S)})
        acc: dict[int, dict[int, tuple[int, int]]] = defaultdict(dict)
        for r in rows:
            acc[r["i"] - 1][int(r["bin"])] = (int(r["sessions"]), int(r["dwell_s"]))
        out = []
        for i in range(len(sub)):
            start, end = sub.label(i)
            by = acc.get(i, {})
            n = sum(v[0] for v in by.values())
            total = sum(v[1] for v in by.values())
            row: dict[str, Any] = {"start": start, "end": end, "sessions": n,
                                   "mean_dwell_s": round(total / n) if n else None}
            for k, label in enumerate(DWELL_LABELS):
                row[f"sessions_{label}"] = by.get(k, (0, 0))[0]
            out.append(row)
        return out

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _DWELL_SQL.format(filter=filt, dev="", max_session=MAX_SESSION))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _DWELL_ROLLUP_SQL.format(filter=rfilt))

    ans = await combine(conn, b, source, "wifi_visitors_1h", rolled=rolled, raw=raw,
                        columns=_DWELL_COLS, lookback=timedelta(hours=12))
    return series_response(request, {**meta, "bins_s": [0, *DWELL_BOUNDS_S], **ans.meta()},
                           ans.rows, _DWELL_COLS, filename=filename)


@router.get("/squares/{square_id}/dwell", summary="Dwell-time distribution on a square",
            description=_DWELL_DOC)
async def square_dwell(request: Request, conn: Conn, _: Reader, square_id: SquareId,
                       b: DwellRange, source: SourceParam = "auto") -> Response:
    """Ended sessions on the square's access points per bucket, by length."""
    await get_site(conn, square_id, "square")
    return await _dwell(request, conn, b, "d.site_id = %(id)s", "r.site_id = %(id)s",
                        {"id": square_id}, b.meta(square=square_id),
                        f"dwell-{square_id}", source)


@router.get("/aps/{ap_id}/dwell", summary="Dwell-time distribution on one access point",
            description=_DWELL_DOC)
async def ap_dwell(request: Request, conn: Conn, _: Reader, ap_id: ApId, b: DwellRange,
                   source: SourceParam = "auto") -> Response:
    """Ended sessions on one access point per bucket, by length."""
    await get_device(conn, ap_id, "wifi_ap")
    return await _dwell(request, conn, b, "d.id = %(id)s", "r.device_id = %(id)s",
                        {"id": ap_id}, b.meta(ap=ap_id), f"dwell-{ap_id}", source)
