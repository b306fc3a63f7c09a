"""Time ranges and buckets of time-series routes.

Buckets are computed here, in Python, as a sorted list of UTC instants (``edges``): bucket
``i`` is ``[edges[i], edges[i+1])``. Days, weeks (Monday) and months start at local
midnight in the request's time zone, so a local day is 23 or 25 hours long on the
daylight-saving changes; 5 to 30-minute and hourly buckets are fixed lengths aligned on
local wall-clock multiples. SQL assigns rows to buckets with ``width_bucket(time, edges)``
(binary search in the array), and every bucket is returned, with or without data:
``time_bucket_gapfill`` does not exist in the Apache edition of TimescaleDB.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from api.errors import invalid

#: Fixed-length buckets (seconds) and calendar ones.
FIXED_BUCKETS: dict[str, int] = {"5m": 300, "10m": 600, "15m": 900, "30m": 1800, "1h": 3600}
CALENDAR_BUCKETS = ("1d", "1w", "1mo")
BUCKETS = (*FIXED_BUCKETS, *CALENDAR_BUCKETS)

#: Longest range per bucket: a year of hours, ten years of days. 5-minute buckets are
#: computed from raw rows (no rollup is that fine): a day of a district's 280 meters costs
#: about 0.7 s of CPU (0.4 in PostgreSQL, 0.3 in the API for 80,000 meter-bucket rows),
#: other routes less, so one day is the longest range that answers in under a second
#: (docs/api.md, Time series). Days are the request zone's calendar days (the day summer
#: time ends has 25 hours).
MAX_RANGE_DAYS: dict[str, int] = {"5m": 1, "10m": 62, "15m": 93, "30m": 186, "1h": 366,
                                  "1d": 3700, "1w": 3700, "1mo": 3700}
MAX_POINTS = 10_000  # buckets per answer: 62 days of 10-minute buckets are 8,928
FIRST_YEAR, LAST_YEAR = 2000, 2099  # years of from/to as written: keep computations in range

#: ``from``/``to`` as the OpenAPI schema states them: a calendar date of 2000-2099, or a
#: date-time to the minute (seconds and up to 6 decimals optional) with an optional ``Z``
#: or ``±HH:MM`` offset. The schema and the check are this one pattern.
_DATE = (r"(?:20[0-9]{2}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
         r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))"
         r"|20(?:[02468][048]|[13579][26])-02-29)")
_TIME = (r"(?:T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
         r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?")
INSTANT_PATTERN = f"^{_DATE}{_TIME}$"
_INSTANT_RE = re.compile(f"{_DATE}{_TIME}")

_TZ_RE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+){0,2}$")


def parse_tz(name: str | None, default: str) -> ZoneInfo:
    """A zoneinfo time zone by IANA name; 422 when unknown."""
    value = default if name is None else name
    if len(value) > 64 or not _TZ_RE.match(value):
        raise invalid(f"unknown time zone {value[:64]!r}", param="tz")
    try:
        if value not in _zone_names():
            raise ZoneInfoNotFoundError(value)
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"unknown time zone {value!r} (use an IANA name such as "
                      "Europe/Paris)", param="tz") from None


_ZONES: set[str] = set()


def zone_names() -> set[str]:
    """The IANA names zoneinfo knows (read once, when first needed)."""
    return _zone_names()


def _zone_names() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def parse_instant(value: str, tz: ZoneInfo, *, param: str) -> datetime:
    """ISO 8601 date or date-time; dates and naive times are local time in ``tz``."""
    text = value
    if len(text) > 40 or not _INSTANT_RE.fullmatch(text):
        raise invalid(f"{value[:40]!r} is not an ISO 8601 date or date-time of {FIRST_YEAR} "
                      f"to {LAST_YEAR} (e.g. 2025-11-15 or 2025-11-15T08:00+01:00)",
                      param=param)
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            out = datetime.combine(d, time(0), tzinfo=tz)
        else:
            out = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
            if out.tzinfo is None:
                out = out.replace(tzinfo=tz)
        out = out.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(f"{value[:40]!r} is not an ISO 8601 date or date-time "
                      "(e.g. 2025-11-15 or 2025-11-15T08:00+01:00)", param=param) from None
    return out


@dataclass(frozen=True)
class Buckets:
    """The buckets of one request. Never changed once made: the ones of a range are shared
    by the requests asking it (:func:`make_buckets`), with what was derived from them."""

    bucket: str
    tz: ZoneInfo
    edges: list[datetime]  # UTC, len = buckets + 1

    @property
    def start(self) -> datetime:
        """Start of the first bucket."""
        return self.edges[0]

    @property
    def end(self) -> datetime:
        """End of the last bucket."""
        return self.edges[-1]

    def __len__(self) -> int:
        return len(self.edges) - 1

    @cached_property
    def labels(self) -> list[str]:
        """Local ISO time of each edge (made once)."""
        tz = self.tz
        return [e.astimezone(tz).isoformat() for e in self.edges]

    @cached_property
    def instants(self) -> Instants:
        """The edges as :class:`Instants` (sent to PostgreSQL packed once)."""
        return Instants(self.edges)

    @cached_property
    def whole_days(self) -> bool:
        """Whether every edge is the start of a local day of the zone."""
        tz = self.tz
        return all(local_midnight(e.astimezone(tz).date(), tz) == e for e in self.edges)

    @cached_property
    def whole_months(self) -> bool:
        """Whether every edge is the start of a local month of the zone."""
        tz = self.tz
        return all(local_midnight(e.astimezone(tz).date().replace(day=1), tz) == e
                   for e in self.edges)

    def on_slots(self, slot_s: int) -> bool:
        """Whether every edge is a whole UTC slot of ``slot_s`` seconds (remembered per
        slot: the rollup readers ask it of every request)."""
        memo: dict[int, bool] = self.__dict__.setdefault("_on_slots", {})
        hit = memo.get(slot_s)
        if hit is None:
            hit = memo[slot_s] = all(on_slot(e, slot_s) for e in self.edges)
        return hit

    def slice(self, i: int, j: int) -> Buckets:
        """Buckets ``i`` to ``j - 1`` of these, their labels taken from these (computed
        once per request: formatting an instant in a zone costs a microsecond, thousands
        of them per answer)."""
        out = Buckets(self.bucket, self.tz, self.edges[i:j + 1])
        out.__dict__["labels"] = self.labels[i:j + 1]  # what cached_property would store
        return out

    def label(self, i: int) -> tuple[str, str]:
        """Local ISO start and end of bucket ``i``."""
        labels = self.labels
        return labels[i], labels[i + 1]

    def meta(self, **extra: Any) -> dict[str, Any]:
        """The fields that describe these buckets in an answer, after ``extra``."""
        return {**extra, "bucket": self.bucket, "tz": self.tz.key, "from": self.labels[0],
                "to": self.labels[-1]}

    def seconds(self, i: int) -> float:
        """Length of bucket ``i``."""
        return self.lengths[i]

    @cached_property
    def lengths(self) -> list[float]:
        """Length of each bucket in seconds (made once: shapers ask it of every bucket)."""
        e = self.edges
        return [(e[i + 1] - e[i]).total_seconds() for i in range(len(e) - 1)]


def local_midnight(d: date, tz: ZoneInfo) -> datetime:
    """The UTC instant day ``d`` starts in ``tz``. Round-trips through UTC so that a
    midnight that does not exist (zones switching at midnight) becomes the first instant
    of that day."""
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def on_slot(e: datetime, slot_s: int) -> bool:
    """Whether ``e`` is a whole UTC slot of ``slot_s`` seconds."""
    return e.microsecond == 0 and int(e.timestamp()) % slot_s == 0


def within_range_limit(start: datetime, end: datetime, bucket: str, tz: ZoneInfo) -> bool:
    """True when ``[start, end)`` spans at most the calendar days ``MAX_RANGE_DAYS`` allows
    ``bucket`` in ``tz``."""
    return _wall(end, tz) - _wall(start, tz) <= timedelta(days=MAX_RANGE_DAYS[bucket])


def _wall(t: datetime, tz: ZoneInfo) -> datetime:
    """``t`` as the clocks of ``tz`` show it (naive): days between two of these are
    calendar days."""
    return t.astimezone(tz).replace(tzinfo=None)


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


class Instants(list[datetime]):
    """Time-zone aware instants sent as one binary ``timestamptz[]`` (a bucket's edges) by
    ``api.db.InstantsDumper`` on connections that registered it; elsewhere psycopg's own
    list dumper sends them, slower, with the same value. ``packed`` keeps the binary form
    once made (the edges of a range are shared by the requests asking it and never
    change)."""

    packed: bytes | None = None


#: Buckets of the ranges asked lately, so that the requests of a dashboard asking the same
#: month or year share their edges, labels and alignment (a month of hours costs about
#: 2 ms of CPU to make and label). Bounded by edges kept, not ranges: a year of hours is
#: 8,785 edges, a week of days 8.
_CACHE_EDGES = 200_000
_cache: OrderedDict[tuple[datetime, datetime, str, ZoneInfo], Buckets] = OrderedDict()
_cache_edges = 0
_cache_lock = threading.Lock()


def make_buckets(start: datetime, end: datetime, bucket: str, tz: ZoneInfo) -> Buckets:
    """Buckets covering ``[start, end)``: start floored, end ceiled to bucket boundaries
    (the same object for the same range while it stays among those asked lately)."""
    global _cache_edges
    key = (start, end, bucket, tz)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    out = _make_buckets(start, end, bucket, tz)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = out
            _cache_edges += len(out.edges)
            while _cache_edges > _CACHE_EDGES and len(_cache) > 1:
                _, old = _cache.popitem(last=False)
                _cache_edges -= len(old.edges)
    return out


def _make_buckets(start: datetime, end: datetime, bucket: str, tz: ZoneInfo) -> Buckets:
    if bucket not in BUCKETS:
        raise invalid(f"unknown bucket {bucket[:10]!r}; one of {', '.join(BUCKETS)}",
                      param="bucket")
    if end <= start:
        raise invalid("'to' must be after 'from'", param="to")
    if not within_range_limit(start, end, bucket, tz):
        days = MAX_RANGE_DAYS[bucket]
        raise invalid(f"range too long for bucket {bucket}: at most {days} "
                      f"day{'s' if days > 1 else ''}; ask a shorter range or a larger bucket",
                      param="to")
    edges: list[datetime] = []
    if bucket in FIXED_BUCKETS:
        step = FIXED_BUCKETS[bucket]
        offset = start.astimezone(tz).utcoffset() or timedelta(0)
        off = int(offset.total_seconds())
        t = int(start.timestamp())
        first = (t + off) // step * step - off
        last = int(end.timestamp())
        n = -(-(last - first) // step)
        if n > MAX_POINTS:
            raise invalid(f"too many buckets ({n}): at most {MAX_POINTS}; use a larger bucket "
                          "or a shorter range", param="bucket")
        edges = [datetime.fromtimestamp(first + k * step, UTC) for k in range(n + 1)]
    else:
        d = start.astimezone(tz).date()
        if bucket == "1w":
            d -= timedelta(days=d.weekday())
        elif bucket == "1mo":
            d = d.replace(day=1)
        while True:
            edge = local_midnight(d, tz)
            edges.append(edge)
            if edge >= end:
                break
            if len(edges) > MAX_POINTS:
                raise invalid(f"too many buckets: at most {MAX_POINTS}", param="bucket")
            if bucket == "1d":
                d += timedelta(days=1)
            elif bucket == "1w":
                d += timedelta(days=7)
            else:
                d = _add_months(d, 1)
    return Buckets(bucket, tz, edges)
