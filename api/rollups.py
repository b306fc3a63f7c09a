"""Reading rollups from the routes: which buckets come from rollups, which from raw rows.

Rollups (``sql/007_rollups.sql``, ``sql/008_site_rollups.sql``, maintained by
:mod:`api.maintenance`) hold one row per device (or site) per UTC hour, per parking zone
per UTC quarter hour, and per district per local day. A request's buckets are answered
from a rollup when every bucket edge is a whole slot of it (hourly rollups: 1h, day, week
and month buckets in Europe/Paris and every zone with a whole-hour offset; the zone
quarter hours also serve 15m and 30m buckets) and the bucket lies in the rolled-up range
``[since, watermark)``; the buckets after the watermark (the current hour, today) come
from the raw rows. ``source=raw`` forces the raw computation (the baseline the rollups
are checked against).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Query

from api.db import fetch_one
from api.timeq import Buckets

SLOT_S = 3600  # rollup slot: one UTC hour
QUARTER_S = 900  # zone occupancy slot

#: Dwell-time histogram bins (lower bounds in seconds after the first, which is 0).
DWELL_BOUNDS_S = (60, 300, 900, 1800, 3600, 7200, 14400)
DWELL_LABELS = ("lt_1m", "1m_5m", "5m_15m", "15m_30m", "30m_1h", "1h_2h", "2h_4h", "ge_4h")

SourceParam = Annotated[Literal["auto", "raw"], Query(
    description="`auto` (default): rollups where they exist (hourly or longer buckets in "
    "the rolled-up past), raw rows elsewhere; `raw`: always compute from the raw rows "
    "(slower; the baseline the rollups equal)")]


@dataclass(frozen=True)
class Split:
    """Buckets ``[0, len(rolled))`` from rollups, the rest from raw rows."""

    rolled: Buckets | None
    raw: Buckets | None

    @property
    def source(self) -> str:
        """``rollup``, ``raw`` or ``mixed``."""
        if self.rolled and self.raw:
            return "mixed"
        return "rollup" if self.rolled else "raw"


def _sub(b: Buckets, edges: list[datetime]) -> Buckets:
    return Buckets(b.bucket, b.tz, edges)


def aligned(b: Buckets, slot_s: int = SLOT_S) -> bool:
    """True when every edge is a whole UTC slot."""
    return all(e.microsecond == 0 and int(e.timestamp()) % slot_s == 0 for e in b.edges)


def split(b: Buckets, since: datetime | None, watermark: datetime | None,
          source: str = "auto", *, slot_s: int = SLOT_S) -> Split:
    """Which buckets can be read from a rollup covering ``[since, watermark)``."""
    if (source == "raw" or since is None or watermark is None or b.start < since
            or not aligned(b, slot_s)):
        return Split(None, b)
    k = bisect.bisect_right(b.edges, watermark) - 1  # buckets [0, k) end <= watermark
    if k <= 0:
        return Split(None, b)
    if k >= len(b):
        return Split(b, None)
    return Split(_sub(b, b.edges[:k + 1]), _sub(b, b.edges[k:]))


#: How long a process trusts the rollup_state it read. A stale watermark only makes a
#: few buckets come from raw rows (always right); the maintenance job clears the cache of
#: its own process when it moves a watermark.
STATE_TTL_S = 1.0
_state_cache: dict[tuple[Any, ...], tuple[float, tuple[datetime | None, datetime | None]]] = {}


def forget_rolled_ranges() -> None:
    """Drop the cached rollup ranges (the maintenance job moved them)."""
    _state_cache.clear()


async def rolled_range(conn: psycopg.AsyncConnection[Any],
                       name: str) -> tuple[datetime | None, datetime | None]:
    """``(since, watermark)`` of a rollup, ``(None, None)`` before its first run."""
    info = conn.info
    key = (info.host, info.port, info.dbname, name)
    now = time.monotonic()
    hit = _state_cache.get(key)
    if hit is not None and now - hit[0] < STATE_TTL_S:
        return hit[1]
    row = await fetch_one(conn, "SELECT since, watermark FROM rollup_state WHERE name = %s",
                          (name,))
    out = (row["since"], row["watermark"]) if row else (None, None)
    _state_cache[key] = (now, out)
    return out


Part = Callable[[Buckets], Awaitable[Sequence[dict[str, Any]]]]


async def combine(conn: psycopg.AsyncConnection[Any], b: Buckets, source: str, name: str,
                  *, rolled: Part, raw: Part,
                  slot_s: int = SLOT_S) -> tuple[list[dict[str, Any]], str]:
    """Rows of every bucket of ``b``: rollup rows first, raw rows after the watermark.
    ``slot_s`` is the rollup's slot (buckets must have edges on whole slots)."""
    since, watermark = await rolled_range(conn, name) if source != "raw" else (None, None)
    s = split(b, since, watermark, source, slot_s=slot_s)
    out: list[dict[str, Any]] = []
    if s.rolled is not None:
        out.extend(await rolled(s.rolled))
    if s.raw is not None:
        out.extend(await raw(s.raw))
    return out, s.source
