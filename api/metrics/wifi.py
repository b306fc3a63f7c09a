"""The wifi metrics: clients, unique visitors, dwell times, traffic (SQL in
``sql/metrics/wifi_*.sql``)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql

from api.db import fetch_all
from api.errors import invalid
from api.metrics.base import (
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
from beffroi.settings import Settings

APS = Target(family="wifi_ap", site_kind="square", site="square", device="ap",
             site_example="grand-place", device_example="ap-grand-place-01")

#: Dwell-time histogram bins: lower bounds in seconds after the first, which is 0 (the
#: ``bin`` of wifi_dwell_1h is the index here: width_bucket over these bounds).
DWELL_BOUNDS_S = (60, 300, 900, 1800, 3600, 7200, 14400)
DWELL_LABELS = ("lt_1m", "1m_5m", "5m_15m", "15m_30m", "30m_1h", "1h_2h", "2h_4h", "ge_4h")

# -- clients ------------------------------------------------------------------------------

CLIENTS_COLUMNS = ("start", "end", "clients_mean", "clients_max", "aps_reporting")


def _clients_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    """One row per bucket, built whole (a month per hour makes 720 of them per request)."""
    by_i = {r["i"] - 1: r for r in rows}
    labels = b.labels
    out = []
    for k in range(len(labels) - 1):
        r = by_i.get(k)
        if r is None:
            out.append({"start": labels[k], "end": labels[k + 1], "clients_mean": None,
                        "clients_max": None, "aps_reporting": 0})
        else:
            out.append({"start": labels[k], "end": labels[k + 1],
                        "clients_mean": round(r["clients_mean"], 2),
                        "clients_max": round(r["clients_max"], 2),
                        "aps_reporting": int(r["aps"])})
    return out


_AP_HOURS = Rollup("rollup_wifi_ap_1h", "hour", "wifi_ap_fill",
                   ("hour", "device_id", "reports", "clients_sum", "clients_max", "rx_bytes",
                    "tx_bytes", "traffic_intervals", "counter_resets"))
_SQUARE_HOURS = Rollup("rollup_wifi_site_1h", "hour", "wifi_site_fill",
                       ("hour", "site_id", "clients_max", "clients_mean", "aps"))

CLIENTS = Metric(
    name="clients", target=APS, raw="wifi_clients", rolled="wifi_clients_rollup",
    coverage="wifi_ap", columns=CLIENTS_COLUMNS, shape=_clients_rows,
    summary=("Connected clients on a square", "Connected clients on one access point"),
    description="Per bucket: `clients_mean` (sum over the square's access points of the "
    "mean count each reported), `clients_max` (highest total over one-minute slots), "
    "`aps_reporting`; buckets without any report have null values.",
    rollups=(_AP_HOURS, _SQUARE_HOURS),
    # A square's hours are rows of their own (its APs' means summed at rollup time).
    readers=(RollupReader("wifi_clients_hours", ("1h",)),))

async def aps_at(conn: Conn, at: datetime, stale: int) -> list[dict[str, Any]]:
    """Each active access point with its latest report at ``at`` if younger than ``stale``
    reporting intervals (``time`` and ``clients`` None otherwise), by square and id
    (``metric.wifi_aps_at``)."""
    query = sql.Composed([call("wifi_aps_at", ("at", "stale")),
                          sql.SQL(" ORDER BY site_id, id")])
    return await fetch_all(conn, query, {"at": at, "stale": stale})


# -- traffic ------------------------------------------------------------------------------

TRAFFIC_COLUMNS = ("start", "end", "rx_bytes", "tx_bytes", "total_bytes", "intervals",
                   "counter_resets")


def _traffic_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    def row(r: dict[str, Any] | None, _k: int) -> dict[str, Any]:
        rx = int(r["rx_bytes"]) if r and r["rx_bytes"] is not None else None
        tx = int(r["tx_bytes"]) if r and r["tx_bytes"] is not None else None
        return {"rx_bytes": rx, "tx_bytes": tx,
                "total_bytes": rx + tx if rx is not None and tx is not None else None,
                "intervals": int(r["intervals"]) if r else 0,
                "counter_resets": int(r["resets"]) if r else 0}

    return by_bucket(b, rows, row)


TRAFFIC = Metric(
    name="traffic", target=APS, raw="wifi_traffic", rolled="wifi_traffic_rollup",
    coverage="wifi_ap", columns=TRAFFIC_COLUMNS, shape=_traffic_rows,
    summary=("Traffic volume of a square", "Traffic volume of one access point"),
    description="Per bucket: bytes received (`rx_bytes`) and sent (`tx_bytes`) by the "
    "access points, from the differences of their cumulative counters between consecutive "
    "reports (at most a day apart; counted in the bucket of the later report). A counter "
    "lower than the previous report restarted (reboot): it counts from 0, never a negative "
    "volume; `counter_resets` says how many.",
    rollups=(_AP_HOURS,),
    lookback=timedelta(days=1))  # the report before a bucket, at most a day before

# -- visitors -----------------------------------------------------------------------------

VISITORS_COLUMNS = ("start", "end", "unique_visitors", "associations")


def _visitors_rows(b: Buckets, rows: list[dict[str, Any]], _: Context
                   ) -> list[dict[str, Any]]:
    def row(r: dict[str, Any] | None, _k: int) -> dict[str, Any]:
        return {"unique_visitors": int(r["visitors"]) if r else 0,
                "associations": int(r["associations"]) if r else 0}

    return by_bucket(b, rows, row)


def check_key_days(b: Buckets, settings: Settings) -> None:
    """422 when a bucket spans a server-zone midnight: client keys change there, so the
    same person counts twice and no source can give the bucket's unique visitors."""
    server_tz = settings.timezone
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


#: What the session aggregation stores of the hours (on its own schedule: the raw sessions
#: live 24 hours, see api/maintenance.py), of the rows committed up to the run's cutoff.
VISITOR_HOURS = Rollup("wifi_visitors_1h", "hour", "wifi_visitors_fill",
                       ("hour", "site_id", "device_id", "visitors", "associations"),
                       args={"cutoff": None})
#: The columns of wifi_visitors_1d, as metric.wifi_visitors_days returns them.
VISITOR_DAY_COLUMNS = ("day", "tz", "day_start", "site_id", "device_id", "visitors",
                       "associations")

VISITORS = Metric(
    name="visitors", target=APS, raw="wifi_visitors", rolled="wifi_visitors_rollup",
    coverage="wifi_visitors_1h", columns=VISITORS_COLUMNS, shape=_visitors_rows,
    summary=("Unique visitors of a square", "Unique visitors of one access point"),
    description="Per hour or local day: distinct pseudonymous clients with a session "
    "event, and associations. Client keys change every local day (privacy), so longer "
    "buckets cannot count unique people: ask per day and sum. Raw sessions are kept 24 "
    "hours (CNIL); past hours and days are read from the aggregates the maintenance job "
    "makes before deleting them (days in the server's time zone only: a day of another "
    "zone spans a change of keys and is refused, 422; `source` in the answer says which; "
    "hours whose raw sessions are gone and that no aggregate covers are null, listed in "
    "`unavailable`).",
    buckets=("1h", "1d"), bucket_reason="client keys rotate daily",
    setting_args={"tz": "timezone"}, check=check_key_days,
    # No bucket spans a change of keys (check_key_days): days are the server's days, in
    # aggregates of their own.
    readers=(RollupReader("wifi_visitors_daily", ("1d",), coverage="wifi_visitors_1d"),),
    rollups=(VISITOR_HOURS,))

# -- dwell --------------------------------------------------------------------------------

DWELL_COLUMNS = ("start", "end", "sessions", "mean_dwell_s",
                 *(f"sessions_{label}" for label in DWELL_LABELS))


def _dwell_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    acc: dict[int, dict[int, tuple[int, int]]] = {}
    for r in rows:
        acc.setdefault(r["i"] - 1, {})[int(r["bin"])] = (int(r["sessions"]),
                                                         int(r["dwell_s"]))

    def row(_r: dict[str, Any] | None, k: int) -> dict[str, Any]:
        by = acc.get(k, {})
        n = sum(v[0] for v in by.values())
        total = sum(v[1] for v in by.values())
        out: dict[str, Any] = {"sessions": n, "mean_dwell_s": round(total / n) if n else None}
        for j, label in enumerate(DWELL_LABELS):
            out[f"sessions_{label}"] = by.get(j, (0, 0))[0]
        return out

    return by_bucket(b, [], row)


async def _bins(_conn: Conn, _scope: Scope) -> Context:
    return {"bins_s": [0, *DWELL_BOUNDS_S]}


DWELL = Metric(
    name="dwell", target=APS, raw="wifi_dwell", rolled="wifi_dwell_rollup",
    coverage="wifi_visitors_1h", columns=DWELL_COLUMNS, shape=_dwell_rows,
    summary=("Dwell-time distribution on a square",
             "Dwell-time distribution on one access point"),
    description="Per bucket (1h or longer): sessions that ended (disassociation), their "
    "mean length and their distribution over bins (<1 min, 1-5 min, 5-15 min, 15-30 min, "
    "30-60 min, 1-2 h, 2-4 h, >=4 h). A session's length is the `session_s` the AP "
    "reports, otherwise the time since the client's association on that AP (at most 12 "
    "hours). Past hours are read from the aggregates kept after the raw sessions are "
    "deleted (24 h, CNIL).",
    buckets=("1h", "1d", "1w", "1mo"), bucket_reason="dwell times are aggregated per hour",
    args={"bounds": list(DWELL_BOUNDS_S)},
    context=_bins, meta=("bins_s",),
    lookback=timedelta(hours=12),  # an association up to 12 hours before the bucket
    rollups=(Rollup("wifi_dwell_1h", "hour", "wifi_dwell_fill",
                    ("hour", "site_id", "device_id", "bin", "sessions", "dwell_s"),
                    args={"bounds": list(DWELL_BOUNDS_S)}),))

METRICS = (CLIENTS, VISITORS, TRAFFIC, DWELL)  # the order of their routes
