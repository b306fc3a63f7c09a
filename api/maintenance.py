"""The maintenance job: hourly rollups behind a watermark, wifi session aggregates, retention.

``run_once`` does everything once, under a PostgreSQL advisory lock so that several
processes (API workers, ``beffroi maintain``) never run it together: a second caller just
skips. Order matters: rollups and wifi aggregates are computed before the raw rows they
read are dropped. See docs/rollups.md for the watermark, late data and the trade-offs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from api.metrics.base import fill_rollup
from api.metrics.catalog import rollups_of
from api.rollups import DWELL_BOUNDS_S, RETENTION_PREFIX, forget_rolled_ranges
from api.routes import parking, wifi
from beffroi.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = int.from_bytes(b"beffroi\x01", "big")  # pg advisory lock of the job
HOUR = timedelta(hours=1)
QUARTER = timedelta(minutes=15)
#: Each refresh recomputes this much below the watermark (late data, gaps up to a day).
REWIND = timedelta(hours=24)
#: ...at least this often, and whenever a new hour has ended.
REFRESH = timedelta(minutes=10)
#: Hours computed per transaction (backfill of a large history goes step by step).
STEP = timedelta(days=7)
#: Session aggregates are recomputed only while the raw rows they need all exist:
#: an hour's dwell times pair with associations up to 12 hours earlier, raw rows live 24 h.
SESSION_REWIND = timedelta(hours=12)

SESSIONS_SINCE = datetime(2000, 1, 1, tzinfo=UTC)

RAW_TABLES = ("wifi_ap_stats", "parking_spot_state", "parking_transactions",
              "parking_meter_status", "grid_readings", "dead_letters")
ROLLUP_HYPERTABLES = ("rollup_parking_spot_1h", "rollup_parking_zone_15m",
                      "rollup_grid_site_30m", "rollup_parking_turnover_1h", "rollup_parking_tx_1h",
                      "rollup_parking_faults_1h", "rollup_grid_1h", "rollup_grid_site_1h",
                      "rollup_wifi_ap_1h", "rollup_wifi_site_1h")

Conn = psycopg.AsyncConnection[Any]


@dataclass
class Report:
    """What one run did."""

    ran: bool = True
    rolled: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # rollups with a backlog left
    days_aggregated: list[date] = field(default_factory=list)
    dropped_chunks: dict[str, int] = field(default_factory=dict)
    deleted_sessions: int = 0
    late_sessions: int = 0  # session rows added to hours/days already aggregated
    deleted_keys: int = 0


def floor_hour(t: datetime) -> datetime:
    """Start of the UTC hour of ``t``."""
    return t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def slot_edges(h1: datetime, h2: datetime, step: timedelta) -> list[datetime]:
    """Edges every ``step`` from ``h1`` to ``h2`` (both whole steps)."""
    n = int((h2 - h1) / step)
    return [h1 + k * step for k in range(n + 1)]


def hour_edges(h1: datetime, h2: datetime) -> list[datetime]:
    """Hourly edges from ``h1`` to ``h2`` (both whole hours)."""
    return slot_edges(h1, h2, HOUR)


def local_days(h1: datetime, h2: datetime, tz: ZoneInfo) -> list[tuple[date, datetime]]:
    """The local days (and their UTC starts) that begin at or after the start of the day of
    ``h1`` and end by ``h2``, plus the end of the last one: ``[(day, start), ..., (_, end)]``
    (empty when no whole day fits)."""
    day = h1.astimezone(tz).date()
    out: list[tuple[date, datetime]] = []
    while True:
        start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        out.append((day, start))
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        if end > h2:
            break
        day += timedelta(days=1)
    return out if len(out) > 1 else []


# -- rollup computations: replace the rows of the hours [h1, h2) ------------------------------
async def _roll_parking_spot(conn: Conn, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
    for table, col in (("rollup_parking_spot_1h", "hour"), ("rollup_parking_zone_15m", "slot")):
        await conn.execute(f"DELETE FROM {table} WHERE {col} >= %s AND {col} < %s", (h1, h2))
    cur = await conn.execute("SELECT coalesce(max(report_interval_s), 0) FROM devices "
                             "WHERE family = 'parking_spot'")
    row = await cur.fetchone()
    lookback = int(row[0] if row else 0) * parking.STALE_AFTER
    inner = parking._OCCUPANCY_SQL.format(filter="true", dev="iv.device_id,")
    # One pass over the raw rows at quarter-hour edges; spots per hour, zones per quarter.
    await conn.execute(f"""
        WITH x AS MATERIALIZED (
            SELECT (%(edges)s::timestamptz[])[q.i] AS slot, q.device_id,
                   coalesce(sum(q.seconds) FILTER (WHERE q.state = 'occupied'), 0) AS occ,
                   coalesce(sum(q.seconds) FILTER (WHERE q.state = 'free'), 0) AS free
            FROM ({inner}) q WHERE q.state IN ('occupied', 'free') GROUP BY 1, 2),
        spots AS (
            INSERT INTO rollup_parking_spot_1h (hour, device_id, occupied_s, free_s)
            SELECT time_bucket('1 hour', slot), device_id, sum(occ), sum(free)
            FROM x GROUP BY 1, 2)
        INSERT INTO rollup_parking_zone_15m (slot, site_id, occupied_s, free_s)
        SELECT x.slot, d.site_id, sum(x.occ), sum(x.free)
        FROM x JOIN devices d ON d.id = x.device_id WHERE d.site_id IS NOT NULL
        GROUP BY 1, 2""",
        {"edges": slot_edges(h1, h2, QUARTER), "lo": h1, "hi": h2,
         "stale": parking.STALE_AFTER, "lookback": lookback})


async def _roll_parking_turnover(conn: Conn, h1: datetime, h2: datetime,
                                 tz: ZoneInfo) -> None:
    await conn.execute("DELETE FROM rollup_parking_turnover_1h WHERE hour >= %s AND hour < %s",
                       (h1, h2))
    inner = parking._TURNOVER_SQL.format(filter="true", dev="device_id,")
    await conn.execute(f"""
        INSERT INTO rollup_parking_turnover_1h (hour, site_id, device_id, arrivals, stays,
                                                stay_s)
        SELECT (%(edges)s::timestamptz[])[x.i], coalesce(d.site_id, ''),
               coalesce(x.device_id, ''), sum(x.arrivals), sum(x.stays), sum(x.stay_s)
        FROM ({inner}) x JOIN devices d ON d.id = x.device_id
        GROUP BY GROUPING SETS ((x.i, d.site_id, x.device_id), (x.i, d.site_id))""",
        {"edges": hour_edges(h1, h2), "lo": h1, "hi": h2})


def _declared(coverage: str) -> Callable[[Conn, datetime, datetime, ZoneInfo],
                                           Awaitable[None]]:
    """The computation of the rollups the metrics of ``coverage`` declare, in their order.
    A rollup of local days gets every day that began at or after the start of the day of
    ``h1`` and ended by ``h2`` (a day split over two steps is done in the second)."""
    async def compute(conn: Conn, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
        for rollup in rollups_of(coverage):
            if rollup.local_days:
                days = local_days(h1, h2, tz)
                if days:
                    await fill_rollup(conn, rollup, [s for _, s in days], tz.key)
            else:
                await fill_rollup(conn, rollup, slot_edges(h1, h2, rollup.slot))
    return compute


async def _roll_wifi_ap(conn: Conn, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
    p: dict[str, Any] = {"edges": hour_edges(h1, h2), "lo": h1, "hi": h2}
    for table in ("rollup_wifi_ap_1h", "rollup_wifi_site_1h"):
        await conn.execute(f"DELETE FROM {table} WHERE hour >= %(lo)s AND hour < %(hi)s", p)
    await conn.execute("""
        WITH s AS (
            SELECT w.device_id, d.site_id, w.time, w.clients
            FROM wifi_ap_stats w JOIN devices d ON d.id = w.device_id
            WHERE d.family = 'wifi_ap' AND w.time >= %(lo)s AND w.time < %(hi)s),
        mn AS (SELECT device_id, time_bucket('1 minute', time) AS slot,
                      avg(clients)::float8 AS c FROM s GROUP BY 1, 2),
        c AS (SELECT device_id, time_bucket('1 hour', time) AS hour, count(*) AS n,
                     sum(clients) AS sm FROM s GROUP BY 1, 2),
        mx AS (SELECT device_id, time_bucket('1 hour', slot) AS hour, max(c) AS mx
               FROM mn GROUP BY 1, 2)
        INSERT INTO rollup_wifi_ap_1h (hour, device_id, reports, clients_sum, clients_max,
                                       traffic_intervals, counter_resets)
        SELECT c.hour, c.device_id, c.n, c.sm, mx.mx, 0, 0
        FROM c JOIN mx USING (device_id, hour)""", p)
    await conn.execute("""
        WITH s AS (
            SELECT w.device_id, d.site_id, w.time, w.clients
            FROM wifi_ap_stats w JOIN devices d ON d.id = w.device_id
            WHERE d.family = 'wifi_ap' AND w.time >= %(lo)s AND w.time < %(hi)s),
        mn AS (SELECT site_id, device_id, time_bucket('1 minute', time) AS slot,
                      avg(clients) AS c FROM s GROUP BY 1, 2, 3),
        tot AS (SELECT site_id, slot, sum(c)::float8 AS total FROM mn GROUP BY 1, 2)
        INSERT INTO rollup_wifi_site_1h (hour, site_id, clients_max)
        SELECT time_bucket('1 hour', slot), site_id, max(total) FROM tot GROUP BY 1, 2""", p)
    inner = wifi._TRAFFIC_SQL.format(filter="true", dev="r.device_id,",
                                     max_iv=wifi.MAX_INTERVAL)
    await conn.execute(f"""
        INSERT INTO rollup_wifi_ap_1h (hour, device_id, reports, clients_sum, rx_bytes,
                                       tx_bytes, traffic_intervals, counter_resets)
        SELECT (%(edges)s::timestamptz[])[x.i], x.device_id, 0, 0, x.rx_bytes, x.tx_bytes,
               x.intervals, x.resets
        FROM ({inner}) x
        ON CONFLICT (device_id, hour) DO UPDATE SET
            rx_bytes = EXCLUDED.rx_bytes, tx_bytes = EXCLUDED.tx_bytes,
            traffic_intervals = EXCLUDED.traffic_intervals,
            counter_resets = EXCLUDED.counter_resets""", p)


def _visitors_sql(period: str, where: str) -> str:
    """Distinct clients and associations of the wifi sessions ``where`` selects, per
    ``period`` (an expression of ``s.time``), per access point and per square (device_id
    empty): rows (period, site_id, device_id, visitors, associations)."""
    return f"""
        SELECT x.period, x.site_id, coalesce(x.device_id, '') AS device_id,
               count(DISTINCT x.client_key) AS visitors,
               count(*) FILTER (WHERE x.event = 'associated') AS associations
        FROM (SELECT {period} AS period, s.device_id, s.client_key, s.event, d.site_id
              FROM wifi_sessions s JOIN devices d ON d.id = s.device_id
              WHERE d.family = 'wifi_ap' AND {where}) x
        GROUP BY GROUPING SETS ((x.period, x.site_id, x.device_id), (x.period, x.site_id))"""


_HOUR = "time_bucket('1 hour', s.time)"
_LOCAL_DAY = "(s.time AT TIME ZONE %(tz)s)::date"
# Sessions added to rows already aggregated: counts add up.
_ADD_VISITORS = """
    visitors = v.visitors + EXCLUDED.visitors,
    associations = v.associations + EXCLUDED.associations"""


async def _aggregate_session_hours(conn: Conn, h1: datetime, h2: datetime,
                                   cutoff: datetime | None) -> None:
    p: dict[str, Any] = {"edges": hour_edges(h1, h2), "lo": h1, "hi": h2,
                         "bounds": list(DWELL_BOUNDS_S), "cutoff": cutoff}
    for table in ("wifi_visitors_1h", "wifi_dwell_1h"):
        await conn.execute(f"DELETE FROM {table} WHERE hour >= %(lo)s AND hour < %(hi)s", p)
    where = f"s.time >= %(lo)s AND s.time < %(hi)s AND {_committed(cutoff)}"
    await conn.execute("INSERT INTO wifi_visitors_1h (hour, site_id, device_id, visitors, "
                       f"associations) {_visitors_sql(_HOUR, where)}", p)
    inner = wifi._DWELL_SQL.format(filter="true", dev="x.device_id,",
                                   max_session=wifi.MAX_SESSION)
    await conn.execute(f"""
        INSERT INTO wifi_dwell_1h (hour, site_id, device_id, bin, sessions, dwell_s)
        SELECT (%(edges)s::timestamptz[])[y.i], d.site_id, y.device_id, y.bin, y.sessions,
               y.dwell_s
        FROM ({inner}) y JOIN devices d ON d.id = y.device_id""", p)


async def _aggregate_session_day(conn: Conn, day: date, tz: ZoneInfo,
                                 cutoff: datetime | None) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    p = {"day": day, "tz": tz.key, "start": start, "end": end, "cutoff": cutoff}
    await conn.execute("DELETE FROM wifi_visitors_1d WHERE tz = %(tz)s AND day = %(day)s", p)
    where = f"s.time >= %(start)s AND s.time < %(end)s AND {_committed(cutoff)}"
    await conn.execute(f"""
        INSERT INTO wifi_visitors_1d (day, tz, day_start, site_id, device_id, visitors,
                                      associations)
        SELECT %(day)s, %(tz)s, %(start)s, y.site_id, y.device_id, y.visitors,
               y.associations
        FROM ({_visitors_sql("0", where)}) y""", p)
    return start, end


# -- sessions that arrive after their hour or day was aggregated ------------------------------
# Each run takes a commit-time cutoff (track_commit_timestamp): aggregations count the rows
# committed up to it, and the next run adds the rows committed since (cutoff_prev, cutoff]
# that fall in hours or days already aggregated and not recomputed by that run. Every row is
# so counted exactly once; a late client cannot be matched with the clients counted before
# (their rows may be gone), so it adds a visitor.
LATE_STATE = "wifi_sessions_commits"  # rollup_state row: watermark = last commit cutoff


def _committed(cutoff: datetime | None, upper: bool = True) -> str:
    if cutoff is None:
        return "true"
    ct = "coalesce(pg_xact_commit_timestamp(s.xmin), '-infinity'::timestamptz)"
    return f"{ct} <= %(cutoff)s" if upper else f"{ct} > %(prev)s AND {ct} <= %(cutoff)s"


async def _commit_cutoff(conn: Conn) -> datetime | None:
    """Now by the commit clock, or None when commit times are not tracked."""
    cur = await conn.execute("SELECT current_setting('track_commit_timestamp') = 'on', "
                             "clock_timestamp()")
    row = await cur.fetchone()
    if not row or not row[0]:
        log.warning("track_commit_timestamp is off: wifi sessions that arrive after their "
                    "hour or day was aggregated are not counted")
        return None
    ts: datetime = row[1]
    return ts


async def _add_late_sessions(conn: Conn, prev: datetime, cutoff: datetime,
                             hours_before: datetime | None, days_before: datetime | None,
                             tz: ZoneInfo) -> int:
    """Add the sessions committed in (prev, cutoff] to the hours before ``hours_before`` and
    the days before ``days_before`` (already aggregated); returns how many rows."""
    p: dict[str, Any] = {"prev": prev, "cutoff": cutoff, "hb": hours_before,
                         "db": days_before, "tz": tz.key}
    late = _committed(cutoff, upper=False)
    cur = await conn.execute("SELECT count(*) FROM wifi_sessions s JOIN devices d ON "
                             f"d.id = s.device_id WHERE d.family = 'wifi_ap' AND {late} "
                             "AND (s.time < %(hb)s OR s.time < %(db)s)", p)
    row = await cur.fetchone()
    n = int(row[0]) if row else 0
    if n == 0:
        return 0
    if hours_before is not None:
        await conn.execute(f"""
            INSERT INTO wifi_visitors_1h AS v (hour, site_id, device_id, visitors,
                                               associations)
            {_visitors_sql(_HOUR, f"{late} AND s.time < %(hb)s")}
            ON CONFLICT (site_id, device_id, hour) DO UPDATE SET {_ADD_VISITORS}""", p)
    if days_before is not None:
        await conn.execute(f"""
            INSERT INTO wifi_visitors_1d AS v (day, tz, day_start, site_id, device_id,
                                               visitors, associations)
            SELECT y.period, %(tz)s, y.period::timestamp AT TIME ZONE %(tz)s, y.site_id,
                   y.device_id, y.visitors, y.associations
            FROM ({_visitors_sql(_LOCAL_DAY, f"{late} AND s.time < %(db)s")}) y
            ON CONFLICT (site_id, device_id, tz, day) DO UPDATE SET {_ADD_VISITORS}""", p)
    return n


Roll = Callable[[Conn, datetime, datetime, ZoneInfo], Awaitable[None]]

#: name -> (raw tables it reads, computation)
ROLLUPS: dict[str, tuple[tuple[str, ...], Roll]] = {
    "parking_spot": (("parking_spot_state",), _roll_parking_spot),
    "parking_turnover": (("parking_spot_state",), _roll_parking_turnover),
    "parking_meter": (("parking_transactions", "parking_meter_status"),
                      _declared("parking_meter")),
    "grid": (("grid_readings",), _declared("grid")),
    "wifi_ap": (("wifi_ap_stats",), _roll_wifi_ap),
}


# -- state -------------------------------------------------------------------------------------
async def _state(conn: Conn, name: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT since, watermark, refreshed_at FROM rollup_state "
                          "WHERE name = %s", (name,))
        return await cur.fetchone()


async def _save(conn: Conn, name: str, since: datetime, watermark: datetime,
                now: datetime) -> None:
    forget_rolled_ranges()
    await conn.execute("""
        INSERT INTO rollup_state (name, since, watermark, refreshed_at)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (name) DO UPDATE SET since = EXCLUDED.since,
            watermark = EXCLUDED.watermark, refreshed_at = EXCLUDED.refreshed_at""",
                       (name, since, watermark, now))


async def _earliest(conn: Conn, tables: tuple[str, ...]) -> datetime | None:
    out: datetime | None = None
    for table in tables:
        cur = await conn.execute(f"SELECT time FROM {table} ORDER BY time LIMIT 1")
        row = await cur.fetchone()
        if row and (out is None or row[0] < out):
            out = row[0]
    return out


async def roll(conn: Conn, settings: Settings, name: str, now: datetime, *,
               recompute_from: datetime | None = None,
               max_steps: int | None = None) -> tuple[tuple[datetime, datetime] | None, bool]:
    """Bring one rollup up to the last whole hour; returns the recomputed range and
    whether a backlog is left (``max_steps`` reached)."""
    tables, compute = ROLLUPS[name]
    tz = ZoneInfo(settings.timezone)
    target = floor_hour(now)
    horizon = floor_hour(now - timedelta(days=max(settings.retention_days(t) for t in tables)))
    st = await _state(conn, name)
    if st is None or st["watermark"] is None:
        first = await _earliest(conn, tables)
        if first is None:
            return None, False
        # Everything from the retention horizon on counts as rolled up (empty hours are
        # cheap), so that routes may use the rollups for any range within retention.
        since = watermark = min(floor_hour(first), horizon)
        due = True
    else:
        since, watermark = st["since"], st["watermark"]
        due = target > watermark or st["refreshed_at"] is None or (
            now - st["refreshed_at"] >= REFRESH)
    start = max(watermark - REWIND, since)
    if recompute_from is not None:
        start = max(floor_hour(recompute_from), horizon)
        since = min(since, start)
        due = True
    if not due or start >= target:
        return None, False
    a = start
    steps = 0
    while a < target:
        if max_steps is not None and steps >= max_steps:
            return (start, a), True
        b = min(a + STEP, target)
        async with conn.transaction():
            await compute(conn, a, b, tz)
            await _save(conn, name, min(since, a), max(watermark, b), now)
        a = b
        steps += 1
    return (start, target), False


async def aggregate_sessions(conn: Conn, settings: Settings, now: datetime,
                             report: Report) -> None:
    """Hourly visitors and dwell times (recomputed while their raw rows all exist), and
    daily visitors of every local day that has ended, before the raw rows go; sessions
    committed since the last run in hours or days already aggregated are added."""
    target = floor_hour(now)
    tz = ZoneInfo(settings.timezone)
    cutoff = await _commit_cutoff(conn)
    late_st = await _state(conn, LATE_STATE)
    hours = await _state(conn, "wifi_visitors_1h")
    days = await _state(conn, "wifi_visitors_1d")
    recompute: tuple[datetime, datetime, datetime, datetime] | None = None
    if hours is None or hours["watermark"] is None:
        first = await _earliest(conn, ("wifi_sessions",))
        if first is None:
            return
        # Sessions older than the first one cannot come any more (24-hour life): the
        # aggregates count as complete for the whole past.
        since, watermark = SESSIONS_SINCE, floor_hour(first)
        due = True
    else:
        since, watermark = hours["since"], hours["watermark"]
        due = target > watermark or now - hours["refreshed_at"] >= REFRESH
    start = min(watermark, max(watermark - SESSION_REWIND, since,
                               floor_hour(now - SESSION_REWIND) + HOUR))
    if due and start < target:
        recompute = (start, target, since, watermark)
    async with conn.transaction():
        if cutoff is not None and late_st is not None and late_st["watermark"] is not None:
            hours_before = None if hours is None else (
                recompute[0] if recompute else hours["watermark"])
            days_before = None if days is None else days["watermark"]
            report.late_sessions = await _add_late_sessions(
                conn, late_st["watermark"], cutoff, hours_before, days_before, tz)
        if recompute is not None:
            await _aggregate_session_hours(conn, start, target, cutoff)
            await _save(conn, "wifi_visitors_1h", since, max(watermark, target), now)
            report.rolled["wifi_visitors_1h"] = (start, target)
        if cutoff is not None:
            await _save(conn, LATE_STATE, SESSIONS_SINCE, cutoff, now)
    if days is None or days["watermark"] is None:
        first = await _earliest(conn, ("wifi_sessions",))
        if first is None:
            return
        day = first.astimezone(tz).date()
        since = SESSIONS_SINCE
    else:
        since = days["since"]
        day = days["watermark"].astimezone(tz).date()
    while True:
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        if end > now:
            break
        async with conn.transaction():
            await _aggregate_session_day(conn, day, tz, cutoff)
            await _save(conn, "wifi_visitors_1d", since, end, now)
        report.days_aggregated.append(day)
        day += timedelta(days=1)


async def _record_cutoff(conn: Conn, table: str, cutoff: datetime) -> None:
    """Remember that rows of ``table`` before ``cutoff`` may be gone: the routes answer
    null (with the reason), not a zero, for buckets that would need them and that no
    rollup covers (the ``watermark`` of rollup_state row ``retention:<table>``)."""
    await conn.execute("""
        INSERT INTO rollup_state (name, watermark, refreshed_at) VALUES (%s, %s, now())
        ON CONFLICT (name) DO UPDATE SET refreshed_at = EXCLUDED.refreshed_at,
            watermark = greatest(rollup_state.watermark, EXCLUDED.watermark)""",
                       (RETENTION_PREFIX + table, cutoff))


async def retention(conn: Conn, settings: Settings, now: datetime, report: Report) -> None:
    """Drop old chunks of raw tables; delete raw wifi sessions past 24 h and ended keys."""
    for table in RAW_TABLES:
        cutoff = now - timedelta(days=settings.retention_days(table))
        cur = await conn.execute("SELECT count(*) FROM drop_chunks(%s::regclass, "
                                 "older_than => %s::timestamptz)", (table, cutoff))
        row = await cur.fetchone()
        report.dropped_chunks[table] = int(row[0]) if row else 0
        await _record_cutoff(conn, table, cutoff)
    cutoff = now - timedelta(hours=settings.retention_wifi_sessions_hours)
    cur = await conn.execute("SELECT count(*) FROM drop_chunks('wifi_sessions', "
                             "older_than => %s::timestamptz)", (cutoff,))
    row = await cur.fetchone()
    report.dropped_chunks["wifi_sessions"] = int(row[0]) if row else 0
    cur = await conn.execute("DELETE FROM wifi_sessions WHERE time < %s", (cutoff,))
    report.deleted_sessions = cur.rowcount
    await _record_cutoff(conn, "wifi_sessions", cutoff)
    forget_rolled_ranges()
    today = now.astimezone(ZoneInfo(settings.timezone)).date()
    cur = await conn.execute("DELETE FROM privacy_keys WHERE day < %s", (today,))
    report.deleted_keys = cur.rowcount
    if settings.retention_rollup_days:
        old = now - timedelta(days=settings.retention_rollup_days)
        for table in ROLLUP_HYPERTABLES:
            await conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s::timestamptz)",
                               (table, old))
        for table, col in (("wifi_visitors_1h", "hour"), ("wifi_dwell_1h", "hour"),
                           ("wifi_visitors_1d", "day_start"),
                           ("rollup_grid_site_1d", "day_start"),
                           ("rollup_grid_meter_1d", "day_start")):
            await conn.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                sql.Identifier(table), sql.Identifier(col)), (old,))
        await conn.execute("UPDATE rollup_state SET since = greatest(since, %s) "
                           "WHERE NOT starts_with(name, %s)",
                           (floor_hour(old) + HOUR, RETENTION_PREFIX))
        forget_rolled_ranges()


async def run_once(conn: Conn, settings: Settings, now: datetime | None = None, *,
                   recompute_from: datetime | None = None, max_steps: int | None = None,
                   rollups_only: bool = False) -> Report:
    """One maintenance pass; skipped (``ran`` false) when another process holds the lock.
    ``conn`` must be in autocommit mode."""
    now = now or datetime.now(UTC)
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
    row = await cur.fetchone()
    if not (row and row[0]):
        return Report(ran=False)
    report = Report()
    try:
        for name in ROLLUPS:
            rng, pending = await roll(conn, settings, name, now,
                                      recompute_from=recompute_from, max_steps=max_steps)
            if rng:
                report.rolled[name] = rng
            if pending:
                report.pending.append(name)
        if not rollups_only:
            await aggregate_sessions(conn, settings, now, report)
            await retention(conn, settings, now, report)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return report
