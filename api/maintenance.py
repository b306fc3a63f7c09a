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

from api.db import fetch_all
from api.metrics.base import Rollup, call, fill_rollup, insert_from
from api.metrics.catalog import rollups_of
from api.metrics.dead_letters import DAYS as DEAD_LETTERS
from api.metrics.wifi import VISITOR_DAY_COLUMNS, VISITOR_HOURS
from api.rollups import RETENTION_PREFIX, forget_rolled_ranges
from api.timeq import local_midnight
from beffroi.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = int.from_bytes(b"beffroi\x01", "big")  # pg advisory lock of the job
HOUR = timedelta(hours=1)
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
    #: devices whose last message or health in device_last_seen the raw rows brought
    #: forward (rows that did not come through the ingestor)
    last_seen_reconciled: int = 0


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


def local_months(h1: datetime, h2: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC starts of the local months that begin at or after the start of the month of
    ``h1`` and end by ``h2``, plus the end of the last (empty when no whole month fits)."""
    month = h1.astimezone(tz).date().replace(day=1)
    out: list[datetime] = []
    while True:
        out.append(local_midnight(month, tz))
        month = (month + timedelta(days=31)).replace(day=1)
        if local_midnight(month, tz) > h2:
            break
    return out if len(out) > 1 else []


# -- rollup computations: replace the rows of the hours [h1, h2) ------------------------------
def _declared(coverage: str) -> Callable[[Conn, datetime, datetime, ZoneInfo],
                                           Awaitable[None]]:
    """The computation of the rollups the metrics of ``coverage`` declare, in their order.
    A rollup of local days gets every day that began at or after the start of the day of
    ``h1`` and ended by ``h2`` (a day split over two steps is done in the second)."""
    async def compute(conn: Conn, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
        for rollup in rollups_of(coverage):
            await _fill(conn, rollup, h1, h2, tz)
    return compute


async def _fill(conn: Conn, rollup: Rollup, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
    """Replace ``rollup``'s rows of the hours [h1, h2): its slots, or the local days or
    months of ``tz`` that ended by ``h2``."""
    zone = {"tz": tz.key}  # the configured zone, for the fills that take it
    if rollup.local_months:
        edges = local_months(h1, h2, tz)
    elif rollup.local_days:
        edges = [s for _, s in local_days(h1, h2, tz)]
    else:
        edges = slot_edges(h1, h2, rollup.slot)
    if edges:
        await fill_rollup(conn, rollup, edges, zone)


async def _aggregate_session_hours(conn: Conn, h1: datetime, h2: datetime,
                                   cutoff: datetime | None) -> None:
    """Visitors and dwell times of the hours [h1, h2): the session aggregates the visitors
    and dwell metrics declare (counts only, no client key), of the rows committed up to
    ``cutoff``."""
    for rollup in rollups_of("wifi_visitors_1h"):
        await fill_rollup(conn, rollup, hour_edges(h1, h2), {"cutoff": cutoff})


async def _aggregate_session_day(conn: Conn, day: date, tz: ZoneInfo,
                                 cutoff: datetime | None) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    await conn.execute("DELETE FROM wifi_visitors_1d WHERE tz = %s AND day = %s",
                       (tz.key, day))
    await insert_from(conn, "wifi_visitors_1d", VISITOR_DAY_COLUMNS, "wifi_visitors_days",
                      {"lo": start, "hi": end, "tz": tz.key, "after": None,
                       "upto": cutoff})
    return start, end


# -- sessions that arrive after their hour or day was aggregated ------------------------------
# Each run takes a commit-time cutoff (track_commit_timestamp): aggregations count the rows
# committed up to it, and the next run adds the rows committed since (cutoff_prev, cutoff]
# that fall in hours or days already aggregated and not recomputed by that run. Every row is
# so counted exactly once; a late client cannot be matched with the clients counted before
# (their rows may be gone), so it adds a visitor.
LATE_STATE = "wifi_sessions_commits"  # rollup_state row: watermark = last commit cutoff
VISITOR_COUNTS = ("visitors", "associations")  # late sessions add to these


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
    rows = await fetch_all(conn, call("wifi_sessions_late", ("after", "upto", "hb", "db")),
                           {"after": prev, "upto": cutoff, "hb": hours_before,
                            "db": days_before})
    n = int(rows[0]["sessions"]) if rows else 0
    if n == 0:
        return 0
    late = {"after": prev, "upto": cutoff}
    if hours_before is not None:
        await insert_from(conn, VISITOR_HOURS.table, VISITOR_HOURS.columns,
                          "wifi_visitors_hours", {"lo": None, "hi": hours_before, **late},
                          key=("site_id", "device_id", "hour"), add=VISITOR_COUNTS)
    if days_before is not None:
        await insert_from(conn, "wifi_visitors_1d", VISITOR_DAY_COLUMNS, "wifi_visitors_days",
                          {"lo": None, "hi": days_before, "tz": tz.key, **late},
                          key=("site_id", "device_id", "tz", "day"), add=VISITOR_COUNTS)
    return n


Roll = Callable[[Conn, datetime, datetime, ZoneInfo], Awaitable[None]]


def _one(rollup: Rollup) -> Roll:
    """The computation of one rollup that no metric declares (the dead letters' daily
    counts)."""
    async def compute(conn: Conn, h1: datetime, h2: datetime, tz: ZoneInfo) -> None:
        await _fill(conn, rollup, h1, h2, tz)
    return compute

#: name -> (raw tables it reads, computation)
ROLLUPS: dict[str, tuple[tuple[str, ...], Roll]] = {
    "parking_spot": (("parking_spot_state",), _declared("parking_spot")),
    "parking_turnover": (("parking_spot_state",), _declared("parking_turnover")),
    "parking_meter": (("parking_transactions", "parking_meter_status"),
                      _declared("parking_meter")),
    "parking_meter_days": (("parking_transactions", "parking_meter_status"),
                           _declared("parking_meter_days")),  # after parking_meter: hours
    "grid": (("grid_readings",), _declared("grid")),
    "grid_months": (("grid_readings",), _declared("grid_months")),  # after grid: its days
    "wifi_ap": (("wifi_ap_stats",), _declared("wifi_ap")),
    DEAD_LETTERS.coverage or "": (("dead_letters",), _one(DEAD_LETTERS)),
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


#: Time column of the raw tables whose is not ``time``.
TIME_COLUMNS = {"dead_letters": "received_at"}


async def _earliest(conn: Conn, tables: tuple[str, ...]) -> datetime | None:
    out: datetime | None = None
    for table in tables:
        column = sql.Identifier(TIME_COLUMNS.get(table, "time"))
        cur = await conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT 1").format(
            column, sql.Identifier(table), column))
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
        if table == "dead_letters":  # their daily counts go with them
            await conn.execute("DELETE FROM dead_letter_days WHERE day_start < %s", (cutoff,))
            await conn.execute("UPDATE rollup_state SET since = greatest(since, %s) "
                               "WHERE name = %s", (cutoff, DEAD_LETTERS.coverage))
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
                           ("rollup_grid_meter_1d", "day_start"),
                           ("rollup_grid_meter_1mo", "month_start"),
                           ("rollup_parking_tx_1d", "day_start"),
                           ("rollup_parking_faults_1d", "day_start")):
            await conn.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(
                sql.Identifier(table), sql.Identifier(col)), (old,))
        await conn.execute("UPDATE rollup_state SET since = greatest(since, %s) "
                           "WHERE NOT starts_with(name, %s)",
                           (floor_hour(old) + HOUR, RETENTION_PREFIX))
        forget_rolled_ranges()


async def reconcile_last_seen(conn: Conn) -> int:
    """Bring device_last_seen level with the raw rows (sql/metrics/device_health.sql);
    returns the devices brought forward."""
    cur = await conn.execute("SELECT metric.device_last_seen_reconcile()")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


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
        report.last_seen_reconciled = await reconcile_last_seen(conn)
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
