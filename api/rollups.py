"""Reading rollups from the routes: each bucket is answered from where its data is.

Rollups (migrations ``007_rollups.sql`` and ``008_site_rollups.sql`` in
``sql/``, maintained by :mod:`api.maintenance`) hold one row per device (or
site) per UTC hour, per parking zone
per UTC quarter hour, and per district per local day. A bucket is answered from a rollup
when both its edges are whole slots of it (hourly rollups: 1h, day, week and month buckets
in Europe/Paris and every zone with a whole-hour offset; the zone quarter hours also serve
15m and 30m buckets) and it lies in the rolled-up range ``[since, watermark)``, wherever
the request starts; other buckets (the current hour, today, before ``since``, another
zone's) come from the raw rows, unless retention has dropped the raw rows they need: then
they are null and the answer says why (``unavailable``), never a zero. ``source=raw``
forces the raw computation (the baseline the rollups are checked against).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Query

from api.db import fetch_all
from api.timeq import Buckets, on_slot

SLOT_S = 3600  # rollup slot: one UTC hour
QUARTER_S = 900  # zone occupancy slot

SourceParam = Annotated[Literal["auto", "raw"], Query(
    description="`auto` (default): each bucket from the rollups where they cover it "
    "(hourly or longer buckets in the rolled-up past), from the raw rows elsewhere; `raw`: "
    "always compute from the raw rows (slower; the baseline the rollups equal). Buckets "
    "whose raw rows retention dropped and no rollup covers are null, listed with the "
    "reason in `unavailable`")]


#: The raw tables each rollup (by its rollup_state name) is computed from: the raw
#: computation of a bucket needs their rows, which retention drops.
RAW_TABLES: dict[str, tuple[str, ...]] = {
    "parking_spot": ("parking_spot_state",),
    "parking_turnover": ("parking_spot_state",),
    "parking_meter": ("parking_transactions", "parking_meter_status"),
    "parking_meter_days": ("parking_transactions", "parking_meter_status"),
    "grid": ("grid_readings",),
    "grid_months": ("grid_readings",),
    "dead_letters": ("dead_letters",),
    "wifi_ap": ("wifi_ap_stats",),
    "wifi_visitors_1h": ("wifi_sessions",),
    "wifi_visitors_1d": ("wifi_sessions",),
}
#: rollup_state row where the maintenance job records, per raw table, the instant before
#: which retention may have dropped rows (``watermark``): raw answers start there.
RETENTION_PREFIX = "retention:"

Kind = Literal["rollup", "raw", "gone"]


@dataclass(frozen=True)
class Segment:
    """Consecutive buckets answered the same way: from the rollup, from raw rows, or not
    at all (``gone``: not rolled up and their raw rows dropped by retention)."""

    kind: Kind
    buckets: Buckets
    reason: str = ""


@dataclass(frozen=True)
class Coverage:
    """Where a rollup's data is: rolled-up range ``[since, watermark)``, and the instant
    from which its raw rows are complete (``raw_from``; None: nothing dropped yet)."""

    since: datetime | None = None
    watermark: datetime | None = None
    raw_from: datetime | None = None


def aligned(b: Buckets, slot_s: int = SLOT_S) -> bool:
    """True when every edge is a whole UTC slot."""
    return b.on_slots(slot_s)


def _slot_name(slot_s: int) -> str:
    return {SLOT_S: "hours", QUARTER_S: "quarter hours"}.get(slot_s, f"{slot_s // 60} minutes")


def split(b: Buckets, cov: Coverage, source: str = "auto", *, slot_s: int = SLOT_S,
          unusable: str = "", now: datetime | None = None) -> list[Segment]:
    """Each bucket answered from where its data is: the rollup when the bucket lies in its
    rolled-up range with edges on whole slots, else the raw rows when they are all still
    there, else nothing (a reason instead). ``unusable``: why the rollup cannot answer
    this request at all (empty when it can). A bucket starting at or after ``now`` has no
    data yet: it is answered null (a zero would read as "no car, no euro")."""
    if (source != "raw" and not unusable and cov.since is not None
            and cov.watermark is not None and cov.since <= b.start and b.end <= cov.watermark
            and (now is None or b.edges[-2] < now) and aligned(b, slot_s)):
        return [Segment("rollup", b)]  # the common case, without a test per bucket
    kinds: list[tuple[Kind, str]] = []
    for i in range(len(b)):
        lo, hi = b.edges[i], b.edges[i + 1]
        if now is not None and lo >= now:
            kinds.append(("gone", "in the future: no data yet"))
            continue
        if source == "raw":
            why = "source=raw was asked"
        elif unusable:
            why = unusable
        elif not (on_slot(lo, slot_s) and on_slot(hi, slot_s)):
            why = (f"{b.bucket} buckets in {b.tz.key} do not start and end on whole UTC "
                   f"{_slot_name(slot_s)}, the rollup's slots")
        elif cov.since is None or cov.watermark is None:
            why = "nothing is rolled up yet"
        elif cov.since <= lo and hi <= cov.watermark:
            kinds.append(("rollup", ""))
            continue
        else:
            why = (f"the rollup covers {cov.since.isoformat()} to "
                   f"{cov.watermark.isoformat()} only")
        if cov.raw_from is None or lo >= cov.raw_from:
            kinds.append(("raw", ""))
        else:
            kinds.append(("gone", f"{why}, and the raw rows before "
                                  f"{cov.raw_from.isoformat()} are gone (retention)"))
    out: list[Segment] = []
    j = 0
    for i in range(1, len(b) + 1):
        if i == len(b) or kinds[i] != kinds[j]:
            out.append(Segment(kinds[j][0], b.slice(j, i), kinds[j][1]))
            j = i
    return out


#: How long a process trusts the rollup_state it read. A stale watermark only makes a
#: few buckets come from raw rows (always right); the maintenance job clears the cache of
#: its own process when it moves a watermark.
STATE_TTL_S = 1.0
_state_cache: dict[tuple[Any, ...], tuple[float, Coverage]] = {}


def forget_rolled_ranges() -> None:
    """Drop the cached rollup ranges (the maintenance job moved them)."""
    _state_cache.clear()


async def coverage(conn: psycopg.AsyncConnection[Any], name: str,
                   lookback: timedelta = timedelta(0)) -> Coverage:
    """The rolled-up range of rollup ``name`` (empty before its first run) and the instant
    from which a raw computation is complete: the latest retention cutoff of its raw
    tables plus ``lookback`` (how far before a bucket the raw query reads)."""
    info = conn.info
    key = (info.host, info.port, info.dbname, name, lookback)
    now = time.monotonic()
    hit = _state_cache.get(key)
    if hit is not None and now - hit[0] < STATE_TTL_S:
        return hit[1]
    names = [name, *(RETENTION_PREFIX + t for t in RAW_TABLES.get(name, ()))]
    rows = await fetch_all(conn, "SELECT name, since, watermark FROM rollup_state "
                           "WHERE name = ANY(%s)", (names,))
    by = {r["name"]: r for r in rows}
    cuts = [r["watermark"] for n, r in by.items()
            if n != name and r["watermark"] is not None]
    own = by.get(name)
    out = Coverage(own["since"] if own else None, own["watermark"] if own else None,
                   max(cuts) + lookback if cuts else None)
    _state_cache[key] = (now, out)
    return out


Part = Callable[[Buckets], Awaitable[Sequence[dict[str, Any]]]]


@dataclass(frozen=True)
class Answer:
    """The rows of every bucket and how they were obtained."""

    rows: list[dict[str, Any]]
    source: str  # rollup, raw, mixed, or none (no bucket could be answered)
    unavailable: list[dict[str, str]]

    def meta(self) -> dict[str, Any]:
        """``source``, and ``unavailable`` (ranges answered null, with the reason) if any."""
        out: dict[str, Any] = {"source": self.source}
        if self.unavailable:
            out["unavailable"] = self.unavailable
        return out


async def combine(conn: psycopg.AsyncConnection[Any], b: Buckets, source: str, name: str,
                  *, rolled: Part, raw: Part, columns: Sequence[str],
                  slot_s: int = SLOT_S, lookback: timedelta = timedelta(0),
                  unusable: str = "") -> Answer:
    """Rows of every bucket of ``b``, each from where its data is (:func:`split`);
    buckets that cannot be answered have every column of ``columns`` but ``start`` and
    ``end`` null, and their range and the reason are listed in ``unavailable``.
    ``slot_s`` is the rollup's slot; ``lookback`` how far before a bucket the raw query
    reads; ``unusable`` why the rollup cannot answer this request (e.g. another zone)."""
    cov = await coverage(conn, name, lookback)
    parts = split(b, cov, source, slot_s=slot_s, unusable=unusable, now=datetime.now(UTC))
    out: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    for seg in parts:
        if seg.kind == "rollup":
            out.extend(await rolled(seg.buckets))
        elif seg.kind == "raw":
            out.extend(await raw(seg.buckets))
        else:
            for i in range(len(seg.buckets)):
                start, end = seg.buckets.label(i)
                out.append({**dict.fromkeys(columns), "start": start, "end": end})
            frm, to = seg.buckets.label(0)[0], seg.buckets.label(len(seg.buckets) - 1)[1]
            unavailable.append({"from": frm, "to": to, "reason": seg.reason})
    kinds = {seg.kind for seg in parts} - {"gone"}
    src = "mixed" if len(kinds) > 1 else kinds.pop() if kinds else "none"
    return Answer(out, src, unavailable)
