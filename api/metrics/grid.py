"""The grid metrics: energy, peaks, voltage and solar export (SQL in ``sql/metrics/grid_*``).

A district is a site, a Linky meter a device. Energy is summed over the meters' cells (one
row per meter and bucket) here, with :func:`math.fsum`, so that an answer is the same
whatever order the database returns them in; a district's half hours and local days come
from its own precomputed rollups; days, weeks and months in the configured zone from the
meters' daily rollup.
"""

from __future__ import annotations

from datetime import timedelta
from math import fsum
from typing import Any

from api.db import fetch_all
from api.errors import error_response, not_found
from api.metrics.base import (
    ZONE,
    Conn,
    Context,
    Metric,
    Rollup,
    RollupReader,
    Scope,
    Target,
    by_bucket,
    call,
)
from api.timeq import Buckets

METERS = Target(family="grid_meter", site_kind="district", site="district", device="meter",
                site_example="saint-michel", device_example="linky-saint-michel-0001")

NOMINAL_V = 230.0
TOLERANCE = 0.10  # EN 50160: 230 V +-10 % for 95 % of the 10-minute means
COMPLIANT_SHARE = 0.95
VOLTAGE_LIMITS = (NOMINAL_V * (1 - TOLERANCE), NOMINAL_V * (1 + TOLERANCE))
GAP_FACTOR = 1.5  # readings further apart than 1.5 expected intervals are a gap
#: Readings further apart than this make no interval (energy between them unknown); also
#: how far before a bucket the raw energy reads.
MAX_INTERVAL = timedelta(days=1)
HALF_HOUR_S = 1800  # slot of the districts' load-curve rollup
DAILY_OR_LONGER = ("1d", "1w", "1mo")
HOURLY_OR_LONGER = ("1h", *DAILY_OR_LONGER)

ENERGY_ARGS = {"gap": GAP_FACTOR, "max_interval": MAX_INTERVAL, "solar": False}
VOLTAGE_ARGS = {"vmin": VOLTAGE_LIMITS[0], "vmax": VOLTAGE_LIMITS[1]}

_SITE_COLS = ("site_id", "meters", "complete_meters", "import_wh", "export_wh",
              "mean_power_w", "covered_s", "estimated", "reset", "gap")
_METER_COLS = ("device_id", "intervals", "import_wh", "export_wh", "covered_s", "reset",
               "gap", "cross_start", "cross_end", "peak_w", "peak_slot", "v_n", "v_within",
               "v_min", "v_max")
# The rollups, in the order the job fills them (the daily ones read the meters' hours).
METER_HOURS = Rollup("rollup_grid_1h", "hour", "grid_meter_hours_fill", ("hour", *_METER_COLS),
                     args={"gap": GAP_FACTOR, "max_interval": MAX_INTERVAL, **VOLTAGE_ARGS})
SITE_HOURS = Rollup("rollup_grid_site_1h", "hour", "grid_site_hours_fill",
                    ("hour", "site_id", "peak_w", "peak_slot"))
SITE_HALF_HOURS = Rollup("rollup_grid_site_30m", "slot", "grid_site_30m_fill",
                         ("slot", *_SITE_COLS), slot=timedelta(minutes=30),
                         args={"gap": GAP_FACTOR, "max_interval": MAX_INTERVAL})
SITE_DAYS = Rollup("rollup_grid_site_1d", "day_start", "grid_site_days_fill",
                   ("day", "tz", "day_start", *_SITE_COLS), args={"tz": None},
                   local_days=True)
METER_DAYS = Rollup("rollup_grid_meter_1d", "day_start", "grid_meter_days_fill",
                    ("day", "tz", "day_start", "day_end", *_METER_COLS), args={"tz": None},
                    local_days=True)
#: The meters' months, from their days: kept under their own rollup_state row, filled
#: after ``grid`` (api.maintenance.ROLLUPS).
METER_MONTHS = Rollup("rollup_grid_meter_1mo", "month_start", "grid_meter_months_fill",
                      ("month", "tz", "month_start", "month_end", "device_id", "intervals",
                       "import_wh", "export_wh", "covered_s", "reset", "gap", "cross_start",
                       "cross_end"), args={"tz": None}, local_months=True,
                      coverage="grid_months")


async def _count(conn: Conn, site: str, solar: bool) -> int:
    rows = await fetch_all(conn, call("grid_meter_count", ("site", "device", "solar")),
                           {"site": site, "device": None, "solar": solar})
    return int(rows[0]["meters"])


async def _meters(conn: Conn, scope: Scope) -> Context:
    """``total``: the meters a bucket is complete with (a district's: ``meters_total``)."""
    if scope.kind == "device":
        return {"total": 1}
    n = await _count(conn, scope.id, solar=False)
    return {"meters_total": n, "total": n}


async def _producers(conn: Conn, scope: Scope) -> Context:
    """The same over the solar producers; a meter that is not one is 404."""
    if scope.kind == "device":
        if (scope.row.get("metadata") or {}).get("solar") is not True:
            raise not_found("solar meter", scope.id)
        return {"total": 1}
    n = await _count(conn, scope.id, solar=True)
    return {"producers_total": n, "total": n}


def _num(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


# -- energy ---------------------------------------------------------------------------------

ENERGY_COLUMNS = ("start", "end", "import_wh", "export_wh", "mean_power_w", "covered_s",
                  "meters", "complete_meters", "complete", "estimated", "reset", "gap")


def _energy_row(start: str, end: str, imp: float | None, exp: float | None,
                power: float | None, covered: float, meters: int, complete_n: int,
                meters_total: int, estimated: bool, reset: bool, gap: bool
                ) -> dict[str, Any]:
    """One answer row (built whole: a year per day makes 365 of them per request)."""
    return {"start": start, "end": end,
            "import_wh": None if imp is None else round(imp, 1),
            "export_wh": None if exp is None else round(exp, 1),
            "mean_power_w": None if power is None else round(power, 1),
            "covered_s": round(covered, 1), "meters": meters, "complete_meters": complete_n,
            "complete": meters > 0 and complete_n == meters_total, "estimated": estimated,
            "reset": reset, "gap": gap}


def _empty(start: str, end: str, meters_total: int) -> dict[str, Any]:
    return _energy_row(start, end, None, None, None, 0.0, 0, 0, meters_total, False, False,
                       False)


def _energy_rows(b: Buckets, rows: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """One row per bucket from the meters' cells (one per meter and bucket)."""
    cells: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        k = r["i"] - 1
        if k in cells:
            cells[k].append(r)
        else:
            cells[k] = [r]
    total = int(ctx["total"])
    labels, lengths = b.labels, b.lengths
    out = []
    for k in range(len(labels) - 1):
        start, end = labels[k], labels[k + 1]
        cs = cells.get(k)
        if not cs:
            out.append(_empty(start, end, total))
            continue
        full = lengths[k] - 0.5
        if len(cs) == 1:  # one meter (a meter's own route): the sums are its values
            c = cs[0]
            imp, exp, cov = c["import_wh"] or 0.0, c["export_wh"] or 0.0, c["covered_s"]
            estimated, reset = bool(c["estimated"]), bool(c["reset"])
            out.append(_energy_row(start, end, imp, exp,
                                   (imp - exp) * 3600 / cov if cov else 0.0, cov, 1,
                                   1 if cov >= full and not estimated and not reset else 0,
                                   total, estimated, reset, bool(c["gap"])))
            continue
        imps, exps, powers, covs = [], [], [], []
        complete_n, estimated, reset, gap = 0, False, False, False
        for c in cs:
            imp, exp, cov = c["import_wh"] or 0.0, c["export_wh"] or 0.0, c["covered_s"]
            imps.append(imp)
            exps.append(exp)
            covs.append(cov)
            if cov:  # each meter's mean power over the time its readings cover
                powers.append((imp - exp) * 3600 / cov)
            complete_n += cov >= full and not c["estimated"] and not c["reset"]
            estimated = estimated or bool(c["estimated"])
            reset = reset or bool(c["reset"])
            gap = gap or bool(c["gap"])
        # fsum: exactly rounded whatever the order of the meters' rows (repeatable).
        out.append(_energy_row(start, end, fsum(imps), fsum(exps), fsum(powers),
                               fsum(covs) / len(cs), len(cs), complete_n, total, estimated,
                               reset, gap))
    return out


def _site_rows(b: Buckets, rows: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """One row per bucket from a district's own rollup rows (already summed)."""
    total = int(ctx["total"])
    by_i = {r["i"] - 1: r for r in rows}
    labels = b.labels
    out = []
    for k in range(len(labels) - 1):
        r = by_i.get(k)
        if r is None:
            out.append(_empty(labels[k], labels[k + 1], total))
        else:
            out.append(_energy_row(labels[k], labels[k + 1], r["import_wh"], r["export_wh"],
                                   r["mean_power_w"], r["covered_s"] / r["meters"],
                                   r["meters"], r["complete_meters"], total, r["estimated"],
                                   r["reset"], r["gap"]))
    return out


_ENERGY_DOC = (
    "Per bucket: energy imported and exported (Wh) from the differences of the cumulative "
    "indices; `mean_power_w` = net energy / covered time (the load curve, e.g. with "
    "bucket=30m); `complete` when readings exist at both ends of the bucket for every "
    "meter; `estimated` when a communication gap spans a bucket edge (the energy is then "
    "shared in proportion to time); `reset` when an index went down (meter replaced: the "
    "new index counts from 0, the energy between the last reading and the swap is "
    "unknown); `gap` when readings are further apart than 1.5 reporting intervals.")
_METER_DAYS_READER = RollupReader("grid_energy_days", DAILY_OR_LONGER, local_days=True,
                                  setting_args=ZONE)
_METER_MONTHS_READER = RollupReader("grid_energy_months", ("1mo",), local_months=True,
                                    coverage="grid_months", setting_args=ZONE)

ENERGY = Metric(
    name="energy", target=METERS, raw="grid_energy", rolled="grid_energy_rollup",
    coverage="grid", columns=ENERGY_COLUMNS, shape=_energy_rows,
    summary=("Energy of a district per bucket", "Energy of one meter per bucket"),
    description=_ENERGY_DOC, args=ENERGY_ARGS, lookback=MAX_INTERVAL, context=_meters,
    meta=("meters_total",),
    readers=(RollupReader("grid_energy_site_30m", ("30m",), scope="site", slot_s=HALF_HOUR_S,
                          shape=_site_rows),
             RollupReader("grid_energy_site_days", ("1d",), scope="site", local_days=True,
                          setting_args=ZONE, shape=_site_rows),
             _METER_MONTHS_READER, _METER_DAYS_READER),
    rollups=(METER_HOURS, SITE_HALF_HOURS, SITE_DAYS, METER_DAYS, METER_MONTHS))


# -- solar export ---------------------------------------------------------------------------

EXPORT_COLUMNS = ("start", "end", "export_wh", "import_wh", "net_export_wh",
                  "export_to_import", "producers", "complete_producers", "complete",
                  "estimated", "reset", "gap")
_EXPORT_EXAMPLE = {
    "district": "saint-michel", "producers_total": 18, "bucket": "1d", "tz": "Europe/Paris",
    "from": "2025-06-21T00:00:00+02:00", "to": "2025-06-22T00:00:00+02:00",
    "source": "rollup",
    "data": [{"start": "2025-06-21T00:00:00+02:00", "end": "2025-06-22T00:00:00+02:00",
              "export_wh": 152340.0, "import_wh": 98210.0, "net_export_wh": 54130.0,
              "export_to_import": 1.5512, "producers": 18, "complete_producers": 18,
              "complete": True, "estimated": False, "reset": False, "gap": False}]}


def _export_rows(b: Buckets, rows: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    """The energy rows of the producers, as export figures."""
    out = []
    for r in _energy_rows(b, rows, ctx):
        exp, imp = r["export_wh"], r["import_wh"]
        out.append({
            "start": r["start"], "end": r["end"], "export_wh": exp, "import_wh": imp,
            "net_export_wh": _num(exp - imp) if exp is not None and imp is not None else None,
            "export_to_import": round(exp / imp, 4) if exp is not None and imp else None,
            "producers": r["meters"], "complete_producers": r["complete_meters"],
            "complete": r["complete"], "estimated": r["estimated"], "reset": r["reset"],
            "gap": r["gap"]})
    return out


EXPORT = Metric(
    name="export", target=METERS, raw="grid_energy", rolled="grid_energy_rollup",
    coverage="grid", columns=EXPORT_COLUMNS, shape=_export_rows,
    summary=("Solar export of a district", "Solar export of one meter"),
    description=(
        "Energy injected into the grid by the solar producers (meters with `solar: true` in "
        "the registry), per bucket: `export_wh` and `import_wh` of those meters (Wh, "
        "differences of their cumulative indices, as in the energy route), `net_export_wh` "
        "= export - import, `export_to_import` = export / import (how much of what the "
        "producers drew from the grid they gave back; above 1 for net producers), "
        "`producers` (meters with readings in the bucket) and `complete_producers`; "
        "`complete`, `estimated`, `reset` and `gap` as in the energy route."),
    device_doc="A meter the registry does not mark `solar` is 404.",
    args={**ENERGY_ARGS, "solar": True}, lookback=MAX_INTERVAL, context=_producers,
    meta=("producers_total",), readers=(_METER_MONTHS_READER, _METER_DAYS_READER),
    responses={
        200: {"content": {"application/json": {"example": _EXPORT_EXAMPLE},
                          "text/csv": {"example": ",".join(EXPORT_COLUMNS) + "\n"}}},
        404: error_response("unknown district, or a meter that is not a solar producer",
                            "not_found", "no solar meter 'linky-saint-michel-0001'")},
    rollups=(METER_HOURS, METER_DAYS, METER_MONTHS))


# -- peaks ----------------------------------------------------------------------------------

def _peak_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    return by_bucket(b, rows, lambda r, _k: {
        "peak_power_w": _num(r["power_w"]) if r else None,
        "peak_at": r["slot"].astimezone(b.tz).isoformat() if r else None})


PEAKS = Metric(
    name="peaks", target=METERS, raw="grid_peaks", rolled="grid_peaks_rollup",
    coverage="grid", columns=("start", "end", "peak_power_w", "peak_at"), shape=_peak_rows,
    summary=("Daily peak power of a district", "Daily peak power of a meter"),
    description="Per day (or week, month): the highest 10-minute power (W) and when. For a "
    "district, the highest sum of its meters' powers on one 10-minute mark.",
    buckets=DAILY_OR_LONGER, bucket_reason="peaks are daily or longer",
    readers=(RollupReader("grid_peaks_days", DAILY_OR_LONGER, local_days=True,
                          setting_args=ZONE),),
    rollups=(METER_HOURS, SITE_HOURS, METER_DAYS))


# -- voltage --------------------------------------------------------------------------------

def _voltage_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    def row(r: dict[str, Any] | None, _k: int) -> dict[str, Any]:
        share = r["within"] / r["n"] if r and r["n"] else None
        return {"values": int(r["n"]) if r else 0, "within": int(r["within"]) if r else 0,
                "share_within": round(share, 4) if share is not None else None,
                "compliant": share >= COMPLIANT_SHARE if share is not None else None,
                "min_v": _num(r["min_v"]) if r else None,
                "max_v": _num(r["max_v"]) if r else None}

    return by_bucket(b, rows, row)


async def _limits(_conn: Conn, _scope: Scope) -> Context:
    return {"limits_v": list(VOLTAGE_LIMITS)}


VOLTAGE = Metric(
    name="voltage", target=METERS, raw="grid_voltage", rolled="grid_voltage_rollup",
    coverage="grid",
    columns=("start", "end", "values", "within", "share_within", "compliant", "min_v",
             "max_v"),
    shape=_voltage_rows,
    summary=("Voltage quality of a district", "Voltage quality at one meter"),
    description="EN 50160: share of the 10-minute mean voltages (per meter and phase) "
    "within 230 V ± 10 % (207-253 V); `compliant` when at least 95 %.",
    buckets=HOURLY_OR_LONGER, bucket_reason="voltage quality is over 10-minute means",
    args=VOLTAGE_ARGS, context=_limits, meta=("limits_v",),
    readers=(RollupReader("grid_voltage_days", DAILY_OR_LONGER, local_days=True,
                          setting_args=ZONE),),
    rollups=(METER_HOURS, METER_DAYS))

#: In the order of the routes (and of the rollups the job fills).
GRID_METRICS = (ENERGY, PEAKS, VOLTAGE, EXPORT)
