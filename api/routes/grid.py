"""Grid: energy from cumulative indices, load curve, daily peaks, voltage quality."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from math import fsum
from typing import Annotated, Any

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
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE, error_response, not_found
from api.output import CSV_RESPONSE, FORMAT_DOC, series_response
from api.rollups import SLOT_S, Answer, SourceParam, combine
from api.timeq import Buckets

router = APIRouter(prefix="/grid", tags=["grid"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})
#: Peaks are daily or longer; voltage quality is over 10-minute means (hourly or longer).
PeakRange = Annotated[Buckets, Depends(time_range(("1d", "1w", "1mo")))]
VoltageRange = Annotated[Buckets, Depends(time_range(HOURLY_AND_LONGER))]

DistrictId = Annotated[str, Path(pattern=ID_PATTERN, examples=["saint-michel"])]
MeterId = Annotated[str, Path(pattern=ID_PATTERN, examples=["linky-saint-michel-0001"])]

NOMINAL_V = 230.0
TOLERANCE = 0.10  # EN 50160: 230 V +-10 % for 95 % of the 10-minute means
COMPLIANT_SHARE = 0.95
GAP_FACTOR = 1.5  # readings further apart than 1.5 expected intervals are a gap

# Consecutive readings of a meter make intervals (previous time, time] with the index
# difference; a decrease of an index is a reset (meter replaced): the new index is the
# energy since the reset. Readings more than a day apart make no interval (the energy in
# between is unknown), so an answer never depends on how far the query looks around its
# range: the range's readings plus, per meter, the last one before it and the first one
# after it (each at most a day away). Intervals are cut at bucket edges; an interval
# spanning an edge (a gap) is shared in proportion to time and its buckets are flagged
# `estimated` (cross_start / cross_end: it spans the bucket's start / end). With hourly
# edges and all meters this is also what the rollup stores.
_ENERGY_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
dv AS (SELECT d.id, d.report_interval_s AS ri FROM devices d
       WHERE {filter} AND d.family = 'grid_meter'),
pts AS (
    SELECT g.device_id, g.time, g.energy_import_wh AS ei, g.energy_export_wh AS ee
    FROM grid_readings g
    WHERE g.device_id IN (SELECT id FROM dv) AND g.time >= %(lo)s AND g.time <= %(hi)s
    UNION ALL
    SELECT dv.id, b.time, b.energy_import_wh, b.energy_export_wh FROM dv CROSS JOIN LATERAL (
        SELECT g.time, g.energy_import_wh, g.energy_export_wh FROM grid_readings g
        WHERE g.device_id = dv.id AND g.time < %(lo)s AND g.time >= %(lo)s - interval '{max_iv}'
        ORDER BY g.time DESC LIMIT 1) b
    UNION ALL
    SELECT dv.id, f.time, f.energy_import_wh, f.energy_export_wh FROM dv CROSS JOIN LATERAL (
        SELECT g.time, g.energy_import_wh, g.energy_export_wh FROM grid_readings g
        WHERE g.device_id = dv.id AND g.time > %(hi)s AND g.time <= %(hi)s + interval '{max_iv}'
        ORDER BY g.time LIMIT 1) f
),
r AS (
    SELECT p.device_id, p.time, p.ei, p.ee, dv.ri,
           lag(p.time) OVER w AS pt, lag(p.ei) OVER w AS pei, lag(p.ee) OVER w AS pee
    FROM pts p JOIN dv ON dv.id = p.device_id
    WINDOW w AS (PARTITION BY p.device_id ORDER BY p.time)
),
iv AS (
    SELECT device_id, pt AS s, time AS e,
           CASE WHEN ei < pei THEN ei ELSE ei - pei END AS di,
           CASE WHEN ee < pee THEN ee ELSE ee - pee END AS de,
           coalesce(ei < pei, false) OR coalesce(ee < pee, false) AS reset,
           extract(epoch FROM time - pt) > ri * %(gap)s AS gap,
           extract(epoch FROM time - pt)::float8 AS len
    FROM r WHERE pt IS NOT NULL AND time > %(lo)s AND pt < %(hi)s
      AND time - pt <= interval '{max_iv}'
)
SELECT iv.device_id, g.i, count(*) AS intervals,
       sum(iv.di * o.overlap / iv.len) AS import_wh,
       sum(iv.de * o.overlap / iv.len) AS export_wh,
       sum(o.overlap) AS covered_s,
       bool_or(iv.reset) AS reset, bool_or(iv.gap) AS gap,
       bool_or(iv.s < e.a[g.i]) AS cross_start, bool_or(iv.e > e.a[g.i + 1]) AS cross_end,
       bool_or(o.overlap < iv.len) AS estimated
FROM iv CROSS JOIN e
CROSS JOIN LATERAL generate_series(greatest(width_bucket(iv.s, e.a), 1),
                                   least(width_bucket(iv.e - interval '1 microsecond', e.a),
                                         cardinality(e.a) - 1)) g(i)
CROSS JOIN LATERAL (SELECT extract(epoch FROM least(iv.e, e.a[g.i + 1])
                                          - greatest(iv.s, e.a[g.i]))::float8 AS overlap) o
GROUP BY 1, 2
"""

# The same cells from the hourly rollup: sums over the hours of the bucket; `estimated` when
# an interval spans the bucket's first start or its last end.
_ENERGY_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
x AS (
    SELECT r.*, width_bucket(r.hour, e.a) AS i
    FROM rollup_grid_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
    WHERE {filter} AND d.family = 'grid_meter' AND r.intervals > 0
      AND r.hour >= %(lo)s AND r.hour < %(hi)s
)
SELECT x.device_id, x.i, sum(x.intervals) AS intervals, sum(x.import_wh) AS import_wh,
       sum(x.export_wh) AS export_wh, sum(x.covered_s) AS covered_s,
       bool_or(x.reset) AS reset, bool_or(x.gap) AS gap,
       bool_or((x.hour = e.a[x.i] AND x.cross_start)
               OR (x.hour + interval '1 hour' = e.a[x.i + 1] AND x.cross_end)) AS estimated
FROM x CROSS JOIN e GROUP BY 1, 2
"""

# A district's daily buckets in the configured time zone, precomputed per local day from the
# same hourly cells (the maintenance job runs _ENERGY_ROLLUP_SQL with daily edges).
_SITE_DAY_SQL = """
SELECT day_start AS start, meters, complete_meters, import_wh, export_wh, mean_power_w,
       covered_s, estimated, reset, gap
FROM rollup_grid_site_1d
WHERE site_id = %(id)s AND tz = %(tz)s AND day_start >= %(lo)s AND day_start < %(hi)s
"""
# ...and its half-hour buckets (the load curve), precomputed from the raw readings.
_SITE_30M_SQL = """
SELECT slot AS start, meters, complete_meters, import_wh, export_wh, mean_power_w,
       covered_s, estimated, reset, gap
FROM rollup_grid_site_30m
WHERE site_id = %(id)s AND slot >= %(lo)s AND slot < %(hi)s
"""

HALF_HOUR_S = 1800  # slot of the districts' load-curve rollup

#: Readings further apart than this make no interval (energy between them unknown).
MAX_INTERVAL = "1 day"
MAX_INTERVAL_TD = timedelta(days=1)  # the same: how far before a bucket raw energy reads


def _cells(b: Buckets, rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    cells: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        i = r["i"] - 1
        r["complete"] = (r["covered_s"] >= b.seconds(i) - 0.5 and not r["estimated"]
                         and not r["reset"])
        cells[i].append(r)
    return cells


async def _energy_cells(conn: Conn, b: Buckets, filt: str,
                        params: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    rows = await fetch_all(conn, _ENERGY_SQL.format(filter=filt, max_iv=MAX_INTERVAL), {
        **params, "edges": b.edges, "lo": b.start, "hi": b.end, "gap": GAP_FACTOR})
    return _cells(b, rows)


async def _energy_cells_rollup(conn: Conn, b: Buckets, filt: str,
                               params: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    rows = await fetch_all(conn, _ENERGY_ROLLUP_SQL.format(filter=filt), {
        **params, "edges": b.edges, "lo": b.start, "hi": b.end})
    return _cells(b, rows)


async def _site_buckets(conn: Conn, b: Buckets, query: str, site: str,
                        meters_total: int) -> list[dict[str, Any]]:
    rows = await fetch_all(conn, query, {"id": site, "tz": b.tz.key, "lo": b.start,
                                         "hi": b.end})
    by_start = {r["start"]: r for r in rows}
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        r = by_start.get(b.edges[i])
        if r is None:
            out.append(_energy_row(start, end, None, None, None, 0.0, 0, 0, meters_total,
                                   False, False, False))
            continue
        out.append(_energy_row(start, end, r["import_wh"], r["export_wh"], r["mean_power_w"],
                               r["covered_s"] / r["meters"], r["meters"], r["complete_meters"],
                               meters_total, r["estimated"], r["reset"], r["gap"]))
    return out


async def _energy(conn: Conn, b: Buckets, filt: str, params: dict[str, Any], meters: int,
                  source: str, *, site_days_tz: str | None = None) -> Answer:
    """Energy rows; a district (``site_days_tz`` = the configured zone) reads its own
    rollups for half-hour buckets and for daily buckets in that zone."""
    district = site_days_tz is not None

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return _energy_rows(sub, await _energy_cells(conn, sub, filt, params), meters)

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        if district and sub.bucket == "30m":
            return await _site_buckets(conn, sub, _SITE_30M_SQL, params["id"], meters)
        if district and sub.bucket == "1d" and sub.tz.key == site_days_tz:
            return await _site_buckets(conn, sub, _SITE_DAY_SQL, params["id"], meters)
        return _energy_rows(sub, await _energy_cells_rollup(conn, sub, filt, params), meters)

    return await combine(conn, b, source, "grid", rolled=rolled, raw=raw, columns=_ENERGY_COLS,
                         slot_s=HALF_HOUR_S if district and b.bucket == "30m" else SLOT_S,
                         lookback=MAX_INTERVAL_TD)


def _num(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


_ENERGY_COLS = ("start", "end", "import_wh", "export_wh", "mean_power_w", "covered_s",
                "meters", "complete_meters", "complete", "estimated", "reset", "gap")
_ENERGY_DOC = (
    "Per bucket: energy imported and exported (Wh) from the differences of the cumulative "
    "indices; `mean_power_w` = net energy / covered time (the load curve, e.g. with "
    "bucket=30m); `complete` when readings exist at both ends of the bucket for every "
    "meter; `estimated` when a communication gap spans a bucket edge (the energy is then "
    "shared in proportion to time); `reset` when an index went down (meter replaced: the "
    "new index counts from 0, the energy between the last reading and the swap is "
    "unknown); `gap` when readings are further apart than 1.5 reporting intervals. "
    + FORMAT_DOC)


def _energy_row(start: str, end: str, imp: float | None, exp: float | None,
                power: float | None, covered: float, meters: int, complete_n: int,
                meters_total: int, estimated: bool, reset: bool, gap: bool) -> dict[str, Any]:
    return {"start": start, "end": end, "import_wh": _num(imp), "export_wh": _num(exp),
            "mean_power_w": _num(power), "covered_s": round(covered, 1), "meters": meters,
            "complete_meters": complete_n, "complete": meters > 0 and complete_n == meters_total,
            "estimated": estimated, "reset": reset, "gap": gap}


def _energy_rows(b: Buckets, cells: dict[int, list[dict[str, Any]]],
                 meters_total: int) -> list[dict[str, Any]]:
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        cs = cells.get(i, [])
        if not cs:
            out.append(_energy_row(start, end, None, None, None, 0.0, 0, 0, meters_total,
                                   False, False, False))
            continue
        # fsum: exactly rounded whatever the order of the meters' rows (repeatable).
        out.append(_energy_row(
            start, end, fsum(c["import_wh"] or 0.0 for c in cs),
            fsum(c["export_wh"] or 0.0 for c in cs),
            # Sum of each meter's mean power over the time its readings cover.
            fsum(((c["import_wh"] or 0.0) - (c["export_wh"] or 0.0)) * 3600 / c["covered_s"]
                 for c in cs if c["covered_s"]),
            fsum(c["covered_s"] for c in cs) / len(cs), len(cs),
            sum(1 for c in cs if c["complete"]), meters_total,
            any(c["estimated"] for c in cs), any(c["reset"] for c in cs),
            any(c["gap"] for c in cs)))
    return out


@router.get("/districts/{district_id}/energy", summary="Energy of a district per bucket",
            description=_ENERGY_DOC)
async def district_energy(request: Request, conn: Conn, _: Reader, settings: SettingsDep,
                          district_id: DistrictId, b: Range,
                          source: SourceParam = "auto") -> Response:
    """Sum over the district's meters."""
    site = await get_site(conn, district_id, "district", count_family="grid_meter")
    n = int(site["family_count"])
    ans = await _energy(conn, b, "d.site_id = %(id)s", {"id": district_id}, n, source,
                        site_days_tz=settings.timezone)
    return series_response(request, b.meta(district=district_id, meters_total=n,
                                           **ans.meta()), ans.rows, _ENERGY_COLS,
                           filename=f"energy-{district_id}")


@router.get("/meters/{meter_id}/energy", summary="Energy of one meter per bucket",
            description=_ENERGY_DOC)
async def meter_energy(request: Request, conn: Conn, _: Reader, meter_id: MeterId,
                       b: Range, source: SourceParam = "auto") -> Response:
    """One meter."""
    await get_device(conn, meter_id, "grid_meter")
    ans = await _energy(conn, b, "d.id = %(id)s", {"id": meter_id}, 1, source)
    return series_response(request, b.meta(meter=meter_id, **ans.meta()), ans.rows,
                           _ENERGY_COLS, filename=f"energy-{meter_id}")


# Peak: the highest power reported (meter), or the highest sum over the district's meters
# of the powers stamped on the same 10-minute mark (district). ``power_w`` is float4:
# summed in float4 the result depends on the order of the rows (430,521.8 or .9 W); cast
# first, the float8 sum of float4 values is exact, so every run gives the same answer.
# ``{key}`` groups the answer (the routes: one group, NULL; the rollups: per meter or per
# district, as ``grp``).
_PEAK_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
p AS (
    SELECT {key} AS grp, time_bucket('10 minutes', g.time) AS slot,
           sum(g.power_w::float8) AS power_w
    FROM grid_readings g JOIN devices d ON d.id = g.device_id
    WHERE {filter} AND d.family = 'grid_meter' AND g.time >= %(lo)s AND g.time < %(hi)s
      AND g.power_w IS NOT NULL
    GROUP BY 1, 2
)
SELECT DISTINCT ON (grp, i) grp, width_bucket(slot, e.a) AS i, slot, power_w
FROM p CROSS JOIN e ORDER BY grp, i, power_w DESC, slot
"""
# From the rollups: the meter's hourly peaks, or the district's (sums over its meters).
_PEAK_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT DISTINCT ON (i) width_bucket(r.hour, e.a) AS i, r.peak_slot AS slot, r.peak_w AS power_w
FROM rollup_grid_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
WHERE {filter} AND d.family = 'grid_meter' AND r.peak_w IS NOT NULL
  AND r.hour >= %(lo)s AND r.hour < %(hi)s
ORDER BY i, power_w DESC, slot
"""
_SITE_PEAK_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT DISTINCT ON (i) width_bucket(r.hour, e.a) AS i, r.peak_slot AS slot, r.peak_w AS power_w
FROM rollup_grid_site_1h r CROSS JOIN e
WHERE r.site_id = %(id)s AND r.hour >= %(lo)s AND r.hour < %(hi)s
ORDER BY i, power_w DESC, slot
"""


async def _peaks(request: Request, conn: Conn, b: Buckets, filt: str, params: dict[str, Any],
                 meta: dict[str, Any], filename: str, source: str, *,
                 district: bool) -> Response:
    only_buckets(b, ("1d", "1w", "1mo"), "peaks are daily or longer")

    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        return await per_bucket(conn, sub, query, params, lambda r: {
            "peak_power_w": _num(r["power_w"]) if r else None,
            "peak_at": r["slot"].astimezone(sub.tz).isoformat() if r else None})

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _PEAK_SQL.format(filter=filt, key="NULL::text"))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _SITE_PEAK_ROLLUP_SQL if district
                          else _PEAK_ROLLUP_SQL.format(filter=filt))

    cols = ("start", "end", "peak_power_w", "peak_at")
    ans = await combine(conn, b, source, "grid", rolled=rolled, raw=raw, columns=cols)
    return series_response(request, {**meta, **ans.meta()}, ans.rows, cols,
                           filename=filename)


_PEAK_DOC = ("Per day (or week, month): the highest 10-minute power (W) and when. For a "
             "district, the highest sum of its meters' powers on one 10-minute mark. "
             + FORMAT_DOC)


@router.get("/districts/{district_id}/peaks", summary="Daily peak power of a district",
            description=_PEAK_DOC)
async def district_peaks(request: Request, conn: Conn, _: Reader, district_id: DistrictId,
                         b: PeakRange, source: SourceParam = "auto") -> Response:
    """Peak power of the district per day."""
    await get_site(conn, district_id, "district")
    return await _peaks(request, conn, b, "d.site_id = %(id)s", {"id": district_id},
                        b.meta(district=district_id), f"peaks-{district_id}", source,
                        district=True)


@router.get("/meters/{meter_id}/peaks", summary="Daily peak power of a meter",
            description=_PEAK_DOC)
async def meter_peaks(request: Request, conn: Conn, _: Reader, meter_id: MeterId,
                      b: PeakRange, source: SourceParam = "auto") -> Response:
    """Peak power of the meter per day."""
    await get_device(conn, meter_id, "grid_meter")
    return await _peaks(request, conn, b, "d.id = %(id)s", {"id": meter_id},
                        b.meta(meter=meter_id), f"peaks-{meter_id}", source,
                        district=False)


# Voltage: the 10-minute mean voltages per meter and phase, counted per bucket (and per
# ``{key}`` as ``grp``, as in the peak query).
_VOLTAGE_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a),
m AS (
    SELECT {key} AS grp, g.device_id, time_bucket('10 minutes', g.time) AS slot, v.phase,
           avg(v.volts::float8) AS mean_v
    FROM grid_readings g JOIN devices d ON d.id = g.device_id
    CROSS JOIN LATERAL (VALUES (1, g.voltage_l1_v), (2, g.voltage_l2_v),
                               (3, g.voltage_l3_v)) v(phase, volts)
    WHERE {filter} AND d.family = 'grid_meter' AND g.time >= %(lo)s AND g.time < %(hi)s
      AND v.volts IS NOT NULL
    GROUP BY 1, 2, 3, 4
)
SELECT grp, width_bucket(slot, e.a) AS i, count(*) AS n,
       count(*) FILTER (WHERE mean_v BETWEEN %(vmin)s AND %(vmax)s) AS within,
       min(mean_v) AS min_v, max(mean_v) AS max_v
FROM m CROSS JOIN e GROUP BY 1, 2
"""
_VOLTAGE_ROLLUP_SQL = """
WITH e AS (SELECT %(edges)s::timestamptz[] AS a)
SELECT width_bucket(r.hour, e.a) AS i, sum(r.v_n) AS n, sum(r.v_within) AS within,
       min(r.v_min) AS min_v, max(r.v_max) AS max_v
FROM rollup_grid_1h r JOIN devices d ON d.id = r.device_id CROSS JOIN e
WHERE {filter} AND d.family = 'grid_meter' AND r.v_n > 0
  AND r.hour >= %(lo)s AND r.hour < %(hi)s
GROUP BY 1
"""
def _voltage_row(r: dict[str, Any] | None) -> dict[str, Any]:
    share = r["within"] / r["n"] if r and r["n"] else None
    return {"values": int(r["n"]) if r else 0, "within": int(r["within"]) if r else 0,
            "share_within": round(share, 4) if share is not None else None,
            "compliant": share >= COMPLIANT_SHARE if share is not None else None,
            "min_v": _num(r["min_v"]) if r else None,
            "max_v": _num(r["max_v"]) if r else None}


_VOLTAGE_DOC = ("EN 50160: share of the 10-minute mean voltages (per meter and phase) within "
                "230 V ± 10 % (207-253 V); `compliant` when at least 95 %. " + FORMAT_DOC)


async def _voltage(request: Request, conn: Conn, b: Buckets, filt: str,
                   params: dict[str, Any], meta: dict[str, Any], filename: str,
                   source: str) -> Response:
    only_buckets(b, ("1h", "1d", "1w", "1mo"), "voltage quality is over 10-minute means")
    vmin, vmax = NOMINAL_V * (1 - TOLERANCE), NOMINAL_V * (1 + TOLERANCE)

    async def part(sub: Buckets, query: str) -> list[dict[str, Any]]:
        return await per_bucket(conn, sub, query, {**params, "vmin": vmin, "vmax": vmax},
                                _voltage_row)

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _VOLTAGE_SQL.format(filter=filt, key="NULL::text"))

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        return await part(sub, _VOLTAGE_ROLLUP_SQL.format(filter=filt))

    cols = ("start", "end", "values", "within", "share_within", "compliant", "min_v",
            "max_v")
    ans = await combine(conn, b, source, "grid", rolled=rolled, raw=raw, columns=cols)
    return series_response(request, {**meta, "limits_v": [vmin, vmax], **ans.meta()},
                           ans.rows, cols, filename=filename)


@router.get("/districts/{district_id}/voltage", summary="Voltage quality of a district",
            description=_VOLTAGE_DOC)
async def district_voltage(request: Request, conn: Conn, _: Reader, district_id: DistrictId,
                           b: VoltageRange, source: SourceParam = "auto") -> Response:
    """Voltage quality over the district's meters."""
    await get_site(conn, district_id, "district")
    return await _voltage(request, conn, b, "d.site_id = %(id)s", {"id": district_id},
                          b.meta(district=district_id), f"voltage-{district_id}", source)


@router.get("/meters/{meter_id}/voltage", summary="Voltage quality at one meter",
            description=_VOLTAGE_DOC)
async def meter_voltage(request: Request, conn: Conn, _: Reader, meter_id: MeterId,
                        b: VoltageRange, source: SourceParam = "auto") -> Response:
    """Voltage quality at one meter."""
    await get_device(conn, meter_id, "grid_meter")
    return await _voltage(request, conn, b, "d.id = %(id)s", {"id": meter_id},
                          b.meta(meter=meter_id), f"voltage-{meter_id}", source)


# Solar export. The registry marks producing meters with `"solar": true` in their metadata
# (docs/registry.md); their energy comes from the same machinery as the energy routes
# (`_energy`: raw intervals or the per-meter hourly rollup), restricted to them.
_SOLAR = "d.metadata -> 'solar' = 'true'::jsonb"
_EXPORT_COLS = ("start", "end", "export_wh", "import_wh", "net_export_wh", "export_to_import",
                "producers", "complete_producers", "complete", "estimated", "reset", "gap")
_EXPORT_DOC = (
    "Energy injected into the grid by the solar producers (meters with `solar: true` in the "
    "registry), per bucket: `export_wh` and `import_wh` of those meters (Wh, differences of "
    "their cumulative indices, as in the energy route), `net_export_wh` = export - import, "
    "`export_to_import` = export / import (how much of what the producers drew from the grid "
    "they gave back; above 1 for net producers), `producers` (meters with readings in the "
    "bucket) and `complete_producers`; `complete`, `estimated`, `reset` and `gap` as in the "
    "energy route. " + FORMAT_DOC)
_EXPORT_EXAMPLE = {
    "district": "saint-michel", "producers_total": 18, "bucket": "1d", "tz": "Europe/Paris",
    "from": "2025-06-21T00:00:00+02:00", "to": "2025-06-22T00:00:00+02:00",
    "source": "rollup",
    "data": [{"start": "2025-06-21T00:00:00+02:00", "end": "2025-06-22T00:00:00+02:00",
              "export_wh": 152340.0, "import_wh": 98210.0, "net_export_wh": 54130.0,
              "export_to_import": 1.5512, "producers": 18, "complete_producers": 18,
              "complete": True, "estimated": False, "reset": False, "gap": False}]}
_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": _EXPORT_EXAMPLE},
                      "text/csv": {"example": ",".join(_EXPORT_COLS) + "\n"}}},
    404: error_response("unknown district, or a meter that is not a solar producer",
                        "not_found", "no solar meter 'linky-saint-michel-0001'")}


def _export_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        exp, imp = r["export_wh"], r["import_wh"]
        out.append({
            "start": r["start"], "end": r["end"], "export_wh": exp, "import_wh": imp,
            "net_export_wh": _num(exp - imp) if exp is not None and imp is not None else None,
            "export_to_import": round(exp / imp, 4) if exp is not None and imp else None,
            "producers": r["meters"], "complete_producers": r["complete_meters"],
            "complete": r["complete"], "estimated": r["estimated"], "reset": r["reset"],
            "gap": r["gap"]})
    return out


@router.get("/districts/{district_id}/export", summary="Solar export of a district",
            description=_EXPORT_DOC, responses=_EXPORT_RESPONSES)
async def district_export(request: Request, conn: Conn, _: Reader, district_id: DistrictId,
                          b: Range, source: SourceParam = "auto") -> Response:
    """Sum over the district's solar producers (none: every bucket empty)."""
    await get_site(conn, district_id, "district")
    rows = await fetch_all(conn, "SELECT count(*) AS n FROM devices d WHERE d.site_id = %(id)s "
                           f"AND d.family = 'grid_meter' AND {_SOLAR}", {"id": district_id})
    n = int(rows[0]["n"])
    ans = await _energy(conn, b, f"d.site_id = %(id)s AND {_SOLAR}", {"id": district_id}, n,
                        source)
    return series_response(request, b.meta(district=district_id, producers_total=n,
                                           **ans.meta()), _export_rows(ans.rows),
                           _EXPORT_COLS, filename=f"export-{district_id}")


@router.get("/meters/{meter_id}/export", summary="Solar export of one meter",
            description=_EXPORT_DOC + " A meter the registry does not mark `solar` is 404.",
            responses=_EXPORT_RESPONSES)
async def meter_export(request: Request, conn: Conn, _: Reader, meter_id: MeterId,
                       b: Range, source: SourceParam = "auto") -> Response:
    """One solar meter."""
    dev = await get_device(conn, meter_id, "grid_meter")
    if (dev["metadata"] or {}).get("solar") is not True:
        raise not_found("solar meter", meter_id)
    ans = await _energy(conn, b, "d.id = %(id)s", {"id": meter_id}, 1, source)
    return series_response(request, b.meta(meter=meter_id, **ans.meta()),
                           _export_rows(ans.rows), _EXPORT_COLS, filename=f"export-{meter_id}")
