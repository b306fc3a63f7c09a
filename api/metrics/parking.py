"""The parking metrics (SQL in ``sql/metrics/parking_*.sql``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import sql

from api.db import fetch_all
from api.deps import HOURLY_AND_LONGER
from api.lookups import remembered
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
from api.rollups import QUARTER_S
from api.timeq import CALENDAR_BUCKETS, Buckets

#: A sensor's reported state holds until its next message, but at most this many expected
#: reporting intervals (heartbeats): after that the spot is *unknown*, not free.
STALE_AFTER = 3

SPOTS = Target(family="parking_spot", site_kind="parking_zone", site="zone", device="spot",
               site_example="parking-grand-place", device_example="spot-grand-place-001",
               site_count="parking_spot")

METERS = Target(family="parking_meter", site_kind="parking_zone", site="zone",
                device="meter", site_example="parking-grand-place",
                device_example="pm-grand-place-01")

METHODS = ("card", "contactless", "coins", "mobile")
REVENUE_COLUMNS = ("start", "end", "transactions", "revenue_cents",
                   *(f"transactions_{m}" for m in METHODS),
                   *(f"revenue_cents_{m}" for m in METHODS), "meter_faults")


def _revenue_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    faults: dict[int, int] = {}
    by: dict[int, dict[str, tuple[int, int]]] = {}
    for r in rows:
        if r["method"] is None:
            faults[r["i"] - 1] = int(r["meter_faults"])
        else:
            by.setdefault(r["i"] - 1, {})[r["method"]] = (int(r["transactions"]),
                                                          int(r["revenue_cents"]))

    def row(_r: dict[str, Any] | None, k: int) -> dict[str, Any]:
        methods = by.get(k, {})
        out: dict[str, Any] = {"transactions": sum(n for n, _ in methods.values()),
                               "revenue_cents": sum(c for _, c in methods.values())}
        for m in METHODS:
            out[f"transactions_{m}"] = methods.get(m, (0, 0))[0]
            out[f"revenue_cents_{m}"] = methods.get(m, (0, 0))[1]
        out["meter_faults"] = faults.get(k, 0)
        return out

    return by_bucket(b, [], row)


#: rollup_state row of the meters' daily rollups.
METER_DAYS = "parking_meter_days"

REVENUE = Metric(
    name="revenue", target=METERS, raw="parking_revenue", rolled="parking_revenue_rollup",
    coverage="parking_meter", columns=REVENUE_COLUMNS, shape=_revenue_rows,
    summary=("Parking meter revenue of a zone", "Revenue of one parking meter"),
    description="Per bucket: transactions, revenue (euro cents), split by payment method, "
    "and `meter_faults` (distinct fault codes reported per meter).",
    rollups=(Rollup("rollup_parking_tx_1h", "hour", "parking_tx_fill",
                    ("hour", "device_id", "payment_method", "transactions",
                     "revenue_cents")),
             Rollup("rollup_parking_faults_1h", "hour", "parking_faults_fill",
                    ("hour", "device_id", "fault_code")),
             # The meters' local days, from their hours: under their own rollup_state row,
             # filled after parking_meter (api.maintenance.ROLLUPS).
             Rollup("rollup_parking_tx_1d", "day_start", "parking_tx_days_fill",
                    ("day", "tz", "day_start", "device_id", "payment_method", "transactions",
                     "revenue_cents"), args={"tz": None}, local_days=True,
                    coverage=METER_DAYS),
             Rollup("rollup_parking_faults_1d", "day_start", "parking_faults_days_fill",
                    ("day", "tz", "day_start", "device_id", "fault_code"), args={"tz": None},
                    local_days=True, coverage=METER_DAYS)),
    readers=(RollupReader("parking_revenue_days", CALENDAR_BUCKETS, local_days=True,
                          coverage=METER_DAYS, setting_args=ZONE),))


# -- occupancy ------------------------------------------------------------------------------

OCCUPANCY_COLUMNS = ("start", "end", "seconds", "capacity", "occupied_spot_s", "free_spot_s",
                     "unknown_spot_s", "occupancy", "occupancy_of_known", "unknown_share",
                     "free_spots_mean")


async def _capacity(conn: Conn, scope: Scope) -> Context:
    """A zone's capacity (its sensors when the registry gives none), 1 for a spot."""
    if scope.kind == "device":
        return {"capacity": 1}
    cap = scope.row["capacity"]
    return {"capacity": int(cap if cap is not None else scope.row["family_count"])}


async def occupancy_lookback(conn: Conn, scope: Scope) -> timedelta:
    """How far before a bucket the occupancy reads: 3 heartbeats of the scope's slowest
    sensor (``metric.parking_occupancy_lookback``)."""
    return await _lookback(conn, scope.site, scope.device)


async def _lookback(conn: Conn, site: str | None, device: str | None) -> timedelta:
    rows = await fetch_all(conn, call("parking_occupancy_lookback", ("site", "device",
                                                                       "stale")),
                           {"site": site, "device": device, "stale": STALE_AFTER})
    out: timedelta = rows[0]["lookback"]
    return out


def _occupancy_rows(b: Buckets, rows: list[dict[str, Any]],
                    ctx: Context) -> list[dict[str, Any]]:
    capacity: int = ctx["capacity"]

    def row(r: dict[str, Any] | None, k: int) -> dict[str, Any]:
        secs = b.seconds(k)
        occ = float(r["occupied_s"]) if r else 0.0
        free = float(r["free_s"]) if r else 0.0
        total = capacity * secs
        unknown = max(0.0, total - occ - free)
        known = occ + free
        return {
            "seconds": secs, "capacity": capacity,
            "occupied_spot_s": round(occ, 3), "free_spot_s": round(free, 3),
            "unknown_spot_s": round(unknown, 3),
            "occupancy": round(occ / total, 4) if total else None,
            "occupancy_of_known": round(occ / known, 4) if known else None,
            "unknown_share": round(unknown / total, 4) if total else None,
            "free_spots_mean": round(free / secs, 2),
        }

    return by_bucket(b, rows, row)


OCCUPANCY = Metric(
    name="occupancy", target=SPOTS, raw="parking_occupancy",
    rolled="parking_occupancy_rollup", coverage="parking_spot", columns=OCCUPANCY_COLUMNS,
    shape=_occupancy_rows, context=_capacity, args={"stale": STALE_AFTER},
    summary=("Time-weighted occupancy of a zone", "Time-weighted occupancy of one spot"),
    description="Per bucket: spot-seconds occupied, free and unknown (no report from the "
    f"sensor for {STALE_AFTER} heartbeats, or never), `occupancy` = occupied / (capacity x "
    "bucket length), `occupancy_of_known` = occupied / (occupied + free). Exact for "
    "irregular events: every state holds until the sensor's next message.",
    device_doc="For one sensor: capacity 1.",
    site_slot_s=QUARTER_S, lookback_of=occupancy_lookback,
    rollups=(Rollup("rollup_parking_spot_1h", "hour", "parking_spot_fill",
                    ("hour", "device_id", "occupied_s", "free_s"),
                    args={"stale": STALE_AFTER}),
             Rollup("rollup_parking_zone_15m", "slot", "parking_zone_fill",
                    ("slot", "site_id", "occupied_s", "free_s"),
                    slot=timedelta(minutes=15), args={"stale": STALE_AFTER})))


async def _window(conn: Conn, zone: str | None) -> timedelta:
    """How long a state of ``zone``'s sensors (of every zone's) stays current: 3 heartbeats
    of the slowest (from the registry, kept until it changes)."""
    return await remembered(conn, ("spots_window", zone), lambda: _lookback(conn, zone, None))


async def spots_at(conn: Conn, at: datetime | None,
                   zone: str | None = None) -> list[dict[str, Any]]:
    """Each active spot sensor (of ``zone``, else of every zone) with its state at ``at``
    (None: now), by zone and id: its latest report if younger than 3 heartbeats, else
    unknown (``metric.parking_spots_at``)."""
    query = sql.Composed([call("parking_spots_at", ("site", "at", "now", "stale", "window")),
                          sql.SQL(" ORDER BY site_id, id")])
    return await fetch_all(conn, query, {"site": zone, "at": at, "now": datetime.now(UTC),
                                         "stale": STALE_AFTER,
                                         "window": await _window(conn, zone)},
                           prepare=False)  # planned for the window: older chunks left out


async def zone_current(conn: Conn, zone: str) -> dict[str, int]:
    """How many of a zone's active sensors are free, occupied and unknown now."""
    rows = await fetch_all(conn, call("parking_zone_current",
                                      ("site", "now", "stale", "window")),
                           {"site": zone, "now": datetime.now(UTC), "stale": STALE_AFTER,
                            "window": await _window(conn, zone)}, prepare=False)
    counts = {"free": 0, "occupied": 0, "unknown": 0}
    for r in rows:
        counts[r["state"]] += int(r["n"])
    return counts


# -- turnover -------------------------------------------------------------------------------

TURNOVER_COLUMNS = ("start", "end", "arrivals", "turnover", "mean_stay_s")
#: How far before a bucket the raw turnover reads (an arrival after 2 days of silence).
TURNOVER_LOOKBACK = timedelta(days=2)


async def _turnover_capacity(conn: Conn, scope: Scope) -> Context:
    """A zone's capacity from the registry (none: turnover null), 1 for a spot."""
    return {"capacity": 1 if scope.kind == "device" else scope.row["capacity"] or 0}


def _turnover_rows(b: Buckets, rows: list[dict[str, Any]],
                   ctx: Context) -> list[dict[str, Any]]:
    capacity: int = ctx["capacity"]

    def row(r: dict[str, Any] | None, _k: int) -> dict[str, Any]:
        arrivals = int(r["arrivals"]) if r else 0
        stays = int(r["stays"]) if r else 0
        return {"arrivals": arrivals,
                "turnover": round(arrivals / capacity, 3) if capacity else None,
                "mean_stay_s": round(float(r["stay_s"]) / stays) if r and stays else None}

    return by_bucket(b, rows, row)


def turnover_sums(b: Buckets, rows: list[dict[str, Any]],
                  _: Context) -> list[dict[str, Any]]:
    """Arrivals, stays and their total length per bucket: what adds up over buckets (the
    open data's view of the turnover rows)."""
    def row(r: dict[str, Any] | None, _k: int) -> dict[str, Any]:
        return {"arrivals": int(r["arrivals"]) if r else 0,
                "stays": int(r["stays"]) if r else 0,
                "stay_s": float(r["stay_s"]) if r else 0.0}

    return by_bucket(b, rows, row)


TURNOVER_SUM_COLUMNS = ("start", "end", "arrivals", "stays", "stay_s")

TURNOVER = Metric(
    name="turnover", target=SPOTS, raw="parking_turnover", rolled="parking_turnover_rollup",
    coverage="parking_turnover", columns=TURNOVER_COLUMNS, shape=_turnover_rows,
    context=_turnover_capacity, meta=("capacity",),
    summary=("Arrivals per spot and mean stay", "Arrivals and mean stay at one spot"),
    description="Arrivals = changes of a sensor to `occupied` (reports where its state "
    "changes; its first report after 2 days of silence counts as a change); `turnover` = "
    "arrivals per spot of the capacity; `mean_stay_s` = mean time from an arrival of the "
    "bucket to the sensor's next change of state (free or unknown), over the arrivals of "
    "the bucket whose stay ended within 24 hours (stays still going on and longer ones are "
    "left out; null when none), whatever the end of the range. Buckets 1h, 1d, 1w, 1mo.",
    device_doc="For one sensor (capacity 1: `turnover` = arrivals).",
    buckets=HOURLY_AND_LONGER, bucket_reason="turnover is counted per hour or longer",
    lookback=TURNOVER_LOOKBACK,
    rollups=(Rollup("rollup_parking_turnover_1h", "hour", "parking_turnover_fill",
                    ("hour", "site_id", "device_id", "arrivals", "stays", "stay_s")),))
