"""Wifi: connected clients per bucket, unique visitors (pseudonymous keys, per day)."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from api.db import fetch_all, get_device, get_site
from api.deps import ID_PATTERN, Conn, Range, Reader, only_buckets
from api.errors import ERROR_RESPONSES
from api.output import CSV_RESPONSE, FORMAT_DOC, series_response
from api.timeq import Buckets

router = APIRouter(prefix="/wifi", tags=["wifi"], responses={**ERROR_RESPONSES, **CSV_RESPONSE})

SquareId = Annotated[str, Path(pattern=ID_PATTERN, examples=["grand-place"])]
ApId = Annotated[str, Path(pattern=ID_PATTERN, examples=["ap-grand-place-01"])]

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


def _meta(b: Buckets, **extra: Any) -> dict[str, Any]:
    return {**extra, "bucket": b.bucket, "tz": b.tz.key, "from": b.label(0)[0],
            "to": b.label(len(b) - 1)[1]}


async def _clients(request: Request, conn: Conn, b: Buckets, filt: str, params: dict[str, Any],
                   meta: dict[str, Any], filename: str) -> Response:
    rows = await fetch_all(conn, _CLIENTS_SQL.format(filter=filt),
                           {**params, "edges": b.edges, "lo": b.start, "hi": b.end})
    by_i = {r["i"] - 1: r for r in rows}
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        r = by_i.get(i)
        out.append({"start": start, "end": end,
                    "clients_mean": round(r["clients_mean"], 2) if r else None,
                    "clients_max": round(r["clients_max"], 2) if r else None,
                    "aps_reporting": int(r["aps"]) if r else 0})
    return series_response(request, meta, out,
                           ("start", "end", "clients_mean", "clients_max", "aps_reporting"),
                           filename=filename)


_CLIENTS_DOC = ("Per bucket: `clients_mean` (sum over the square's access points of the mean "
                "count each reported), `clients_max` (highest total over one-minute slots), "
                "`aps_reporting`; buckets without any report have null values. " + FORMAT_DOC)


@router.get("/squares/{square_id}/clients", summary="Connected clients on a square",
            description=_CLIENTS_DOC)
async def square_clients(request: Request, conn: Conn, _: Reader, square_id: SquareId,
                         b: Range) -> Response:
    """Clients of the square's access points per bucket."""
    await get_site(conn, square_id, "square")
    return await _clients(request, conn, b, "d.site_id = %(id)s", {"id": square_id},
                          _meta(b, square=square_id), f"clients-{square_id}")


@router.get("/aps/{ap_id}/clients", summary="Connected clients on one access point",
            description=_CLIENTS_DOC)
async def ap_clients(request: Request, conn: Conn, _: Reader, ap_id: ApId,
                     b: Range) -> Response:
    """Clients of one access point per bucket."""
    await get_device(conn, ap_id, "wifi_ap")
    return await _clients(request, conn, b, "d.id = %(id)s", {"id": ap_id},
                          _meta(b, ap=ap_id), f"clients-{ap_id}")


@router.get("/squares/{square_id}/visitors", summary="Unique visitors of a square",
            description="Per hour or local day: distinct pseudonymous clients with a session "
            "event on the square's access points, and associations. Client keys change every "
            "day (privacy), so longer buckets cannot count unique people: ask per day and "
            "sum. Raw sessions are kept 24 hours (CNIL). " + FORMAT_DOC)
async def square_visitors(request: Request, conn: Conn, _: Reader, square_id: SquareId,
                          b: Range) -> Response:
    """Unique visitors per hour or day."""
    only_buckets(b, ("1h", "1d"), "client keys rotate daily")
    await get_site(conn, square_id, "square")
    rows = await fetch_all(conn, """
        WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
        SELECT width_bucket(s.time, e.a) AS i, count(DISTINCT s.client_key) AS visitors,
               count(*) FILTER (WHERE s.event = 'associated') AS associations
        FROM wifi_sessions s JOIN devices d ON d.id = s.device_id CROSS JOIN e
        WHERE d.site_id = %(id)s AND d.family = 'wifi_ap'
          AND s.time >= %(lo)s AND s.time < %(hi)s
        GROUP BY 1""", {"id": square_id, "edges": b.edges, "lo": b.start, "hi": b.end})
    by_i: dict[int, dict[str, Any]] = defaultdict(dict)
    for r in rows:
        by_i[r["i"] - 1] = r
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        r = by_i.get(i) or {}
        out.append({"start": start, "end": end, "unique_visitors": int(r.get("visitors", 0)),
                    "associations": int(r.get("associations", 0))})
    return series_response(request, _meta(b, square=square_id), out,
                           ("start", "end", "unique_visitors", "associations"),
                           filename=f"visitors-{square_id}")
