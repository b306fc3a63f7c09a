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

#: Longest range per bucket: a year of hours, ten years of days.
MAX_RANGE_DAYS: dict[str, int] = {"5m": 31, "10m": 62, "15m": 93, "30m": 186, "1h": 366,
                                  "1d": 3700, "1w": 3700, "1mo": 3700}
MAX_POINTS = 10_000  # buckets per answer: a month of 5-minute buckets is 8,928
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
    """The buckets of one request."""

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
        return (self.edges[i + 1] - self.edges[i]).total_seconds()


def _local_midnight(d: date, tz: ZoneInfo) -> datetime:
    # Round-trip through UTC so that a midnight that does not exist (zones switching at
    # midnight) becomes the first instant of that day.
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def _add_months(d: date, n: int) -> date:
    m = d.month - 1 + n
    return date(d.year + m // 12, m % 12 + 1, 1)


def make_buckets(start: datetime, end: datetime, bucket: str, tz: ZoneInfo) -> Buckets:
    """Buckets covering ``[start, end)``: start floored, end ceiled to bucket boundaries."""
    if bucket not in BUCKETS:
        raise invalid(f"unknown bucket {bucket[:10]!r}; one of {', '.join(BUCKETS)}",
                      param="bucket")
    if end <= start:
        raise invalid("'to' must be after 'from'", param="to")
    days = MAX_RANGE_DAYS[bucket]
    if end - start > timedelta(days=days):
        raise invalid(f"range too long for bucket {bucket}: at most {days} days",
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
            edge = _local_midnight(d, tz)
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
