"""Dead letters counted by device and reason, over any range (the operators' counts).

Whole local days of the configured zone come from ``dead_letter_days`` (one row per day,
device and reason, written by the maintenance job once the day has ended: dead letters
never change after they are written); the rest of the range (the day under way, a range's
cut ends) and any request filtered by topic come from ``dead_letters`` itself. A month of a
city's rejections groups about 1,300 daily rows instead of 10,000 messages.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from psycopg import sql

from api.metrics.base import Conn, Rollup
from api.rollups import Coverage, coverage
from api.timeq import local_midnight

#: rollup_state row of the daily counts.
COVERAGE = "dead_letters"
DAYS = Rollup("dead_letter_days", "day_start", "dead_letter_days_fill",
              ("day", "tz", "day_start", "device_id", "reason", "n"), args={"tz": None},
              local_days=True, coverage=COVERAGE)


def _day_start(t: datetime, tz: ZoneInfo, *, up: bool) -> datetime:
    """The start of the local day of ``t`` (``up``: of the next one unless ``t`` starts a
    day)."""
    day = t.astimezone(tz).date()
    start = local_midnight(day, tz)
    return local_midnight(day + timedelta(days=1), tz) if up and start < t else start


def whole_days(lo: datetime | None, hi: datetime | None, cov: Coverage,
               tz: ZoneInfo) -> tuple[datetime, datetime] | None:
    """``[a, b)``: the local days of ``tz`` that lie in ``[lo, hi)`` (unbounded when None)
    and in the counted range ``[since, watermark)``; None when no whole day does."""
    if cov.since is None or cov.watermark is None:
        return None
    start = cov.since if lo is None else max(lo, cov.since)
    end = cov.watermark if hi is None else min(hi, cov.watermark)
    a, b = _day_start(start, tz, up=True), _day_start(end, tz, up=False)
    return (a, b) if a < b else None


async def grouped(conn: Conn, where: str, params: dict[str, Any], *, lo: datetime | None,
                  hi: datetime | None, tz: ZoneInfo, topic_filtered: bool) -> sql.Composed:
    """The dead letters of the range grouped by ``device_id`` and ``reason`` (column
    ``n``), adding its own parameters to ``params``: ``where`` filters ``dead_letters``
    (reception time, reason, device, topic; fixed fragments, values in ``params``)."""
    filters = sql.SQL(where)
    days = None if topic_filtered else whole_days(lo, hi, await coverage(conn, COVERAGE), tz)
    if days is None:
        return sql.SQL("SELECT device_id, reason, count(*) AS n FROM dead_letters WHERE {} "
                       "GROUP BY device_id, reason").format(filters)
    params.update({"days_from": days[0], "days_to": days[1], "days_tz": tz.key})
    same = sql.SQL(" ").join(
        sql.SQL("AND {} = {}").format(sql.Identifier(column), sql.Placeholder(key))
        for column, key in (("reason", "reason"), ("device_id", "device")) if key in params)
    return sql.SQL("""
        SELECT device_id, reason, sum(n)::bigint AS n FROM (
            SELECT device_id, reason, n FROM dead_letter_days
            WHERE tz = %(days_tz)s AND day_start >= %(days_from)s AND day_start < %(days_to)s
                  {same}
            UNION ALL
            SELECT device_id, reason, count(*) FROM dead_letters
            WHERE {filters} AND received_at < %(days_from)s GROUP BY device_id, reason
            UNION ALL
            SELECT device_id, reason, count(*) FROM dead_letters
            WHERE {filters} AND received_at >= %(days_to)s GROUP BY device_id, reason) x
        GROUP BY device_id, reason""").format(same=same, filters=filters)
