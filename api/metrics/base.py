"""A metric's one declaration, and the calls of its SQL functions.

A metric's SQL lives in ``sql/metrics/<name>.sql`` as functions of schema ``metric``
(rebuilt by ``beffroi migrate``, see docs/metrics.md): the raw computation per bucket, the
same from the rollups, and the rows its rollup stores. They are STABLE single-SELECT SQL
functions, so PostgreSQL inlines them into the calling query and plans them for the
request's own values (hypertable chunks excluded by the requested range, as for a query
written out in full). Python only calls them by name with bound parameters; the routes
for a site and for a device, the rollup job, the CSV columns and the OpenAPI document
come from the :class:`Metric` below.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from api.db import fetch_all
from api.timeq import BUCKETS, Buckets

Conn = psycopg.AsyncConnection[Any]
SCHEMA = "metric"
#: The arguments every metric function takes first, in this order.
SCOPE_ARGS = ("site", "device", "edges", "lo", "hi")


@dataclass(frozen=True)
class Target:
    """Where a family's routes live: its sites (``/zones/{zone_id}``) and its devices
    (``/meters/{meter_id}``) under a router's prefix."""

    family: str  # device family, e.g. parking_meter
    site_kind: str  # site kind, e.g. parking_zone
    site: str  # singular used in paths, parameters and answers: zone
    device: str  # meter
    site_example: str
    device_example: str

    @property
    def site_path(self) -> str:
        """Path segment of the sites: zones."""
        return self.site + "s"

    @property
    def device_path(self) -> str:
        """Path segment of the devices: meters."""
        return self.device + "s"


@dataclass(frozen=True)
class Scope:
    """What one request is about: a site (all its devices of the family) or one device."""

    kind: Literal["site", "device"]
    id: str
    row: dict[str, Any]  # the site's or the device's registry row

    @property
    def site(self) -> str | None:
        """The site argument of the metric functions (None for a device)."""
        return self.id if self.kind == "site" else None

    @property
    def device(self) -> str | None:
        """The device argument of the metric functions (None for a site)."""
        return self.id if self.kind == "device" else None


#: Per-request values a metric needs besides its rows (a zone's capacity, a district's
#: number of meters...): they go to the shaper and into the answer's fields.
Context = dict[str, Any]
#: Turns the rows a metric function returned for ``b`` into one answer row per bucket.
Shaper = Callable[[Buckets, list[dict[str, Any]], Context], list[dict[str, Any]]]


@dataclass(frozen=True)
class Rollup:
    """A rollup table a metric fills: the job replaces its rows of ``[lo, hi)`` by those of
    function ``fill`` (called with ``edges`` every ``slot``, ``lo``, ``hi``, then the values
    of ``args``), which returns ``columns``. The job fills a metric's rollups in the order
    declared: one may read the tables filled before it.

    ``local_days``: its slots are the local days of the configured time zone (23 to 25
    hours long), in rows marked with that zone (column ``tz``): ``edges`` are the starts of
    the days that ended in the range, then the end of the last, and the zone is the fill
    function's last argument."""

    table: str
    time_column: str
    fill: str
    columns: tuple[str, ...]
    slot: timedelta = timedelta(hours=1)
    args: Mapping[str, Any] = field(default_factory=dict)
    local_days: bool = False


@dataclass(frozen=True)
class RollupReader:
    """Another function reading rollups, used instead of :attr:`Metric.rolled` for the
    requests it fits: a site's own precomputed rollup, a rollup of local days...

    It takes the arguments of the metric's functions, then with ``local_days`` the
    configured time zone (its rows are that zone's local days: only requests in that zone
    use it). ``slot_s``: its slot (buckets whose edges are whole slots may read it);
    ``shape``: its own shaper when its rows differ from the metric's."""

    function: str
    buckets: tuple[str, ...] = BUCKETS
    scope: Literal["site", "device"] | None = None  # None: sites and devices
    local_days: bool = False
    slot_s: int = 3600
    shape: Shaper | None = None

    def fits(self, kind: str, b: Buckets, zone: str | None) -> bool:
        """Whether it answers a request of ``kind`` over ``b`` (configured zone ``zone``):
        a reader of local days only buckets whose every edge starts a day of that zone
        (not a month cut at a publication's end)."""
        return (self.scope in (None, kind) and b.bucket in self.buckets
                and (not self.local_days or (b.tz.key == zone and whole_days(b))))


def whole_days(b: Buckets) -> bool:
    """Whether every edge of ``b`` is the start of a local day of its zone."""
    for e in b.edges:
        day = e.astimezone(b.tz).date()
        if datetime.combine(day, time(0), tzinfo=b.tz).astimezone(UTC) != e:
            return False
    return True


@dataclass(frozen=True)
class Metric:
    """One metric: everything its routes, its rollup and its documentation derive from."""

    name: str  # path segment: revenue
    target: Target
    raw: str  # function of raw rows, per bucket (SCOPE_ARGS, then ``args``)
    columns: tuple[str, ...]  # answer columns (CSV header), start and end first
    shape: Shaper
    summary: tuple[str, str]  # OpenAPI summaries of the site route and the device route
    description: str
    coverage: str  # rollup_state name whose watermark says which buckets are rolled up
    rolled: str | None = None  # the same from the rollups (same arguments)
    rollups: tuple[Rollup, ...] = ()  # what the maintenance job fills for this metric
    buckets: tuple[str, ...] = BUCKETS
    bucket_reason: str = ""  # why only ``buckets`` (the 422 says it)
    args: Mapping[str, Any] = field(default_factory=dict)  # constant extra arguments
    slot_s: int = 3600  # the rollup's slot: buckets on whole slots may read it
    lookback: timedelta = timedelta(0)  # how far before a bucket the raw function reads
    context: Callable[[Conn, Scope], Awaitable[Context]] | None = None
    meta: tuple[str, ...] = ()  # context keys shown in the answer (those it has)
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    device_doc: str = ""  # added to the device route's description
    readers: tuple[RollupReader, ...] = ()  # the first that fits replaces ``rolled``

    def reader(self, kind: str, b: Buckets, zone: str | None) -> RollupReader | None:
        """The reader answering a request of ``kind`` over ``b`` instead of ``rolled``."""
        return next((r for r in self.readers if r.fits(kind, b, zone)), None)

    def call(self, function: str, scope: Scope, b: Buckets, tz: str | None = None
             ) -> tuple[sql.Composed, dict[str, Any]]:
        """The statement calling ``function`` for ``scope`` over ``b`` (and zone ``tz``
        as last argument when given), and its params."""
        extra = {"tz": tz} if tz is not None else {}
        return call(function, (*SCOPE_ARGS, *self.args, *extra)), {
            "site": scope.site, "device": scope.device, "edges": b.edges, "lo": b.start,
            "hi": b.end, **self.args, **extra}


def call(function: str, names: Sequence[str]) -> sql.Composed:
    """``SELECT * FROM metric.<function>(%(name)s, ...)``: a metric function called with
    bound, named parameters (never spliced values)."""
    return sql.SQL("SELECT * FROM {}").format(call_of(function, names))


def call_of(function: str, names: Sequence[str]) -> sql.Composed:
    """``metric.<function>(%(name)s, ...)``."""
    return sql.SQL("{}({})").format(sql.Identifier(SCHEMA, function),
                                    sql.SQL(", ").join(sql.Placeholder(n) for n in names))


async def rows_of(conn: Conn, metric: Metric, function: str, scope: Scope,
                  b: Buckets, tz: str | None = None) -> list[dict[str, Any]]:
    """What ``function`` of ``metric`` returns for ``scope`` over ``b`` (``tz``: the zone
    argument of a reader of local days)."""
    query, params = metric.call(function, scope, b, tz)
    return await fetch_all(conn, query, params)


def by_bucket(b: Buckets, rows: list[dict[str, Any]],
              row: Callable[[dict[str, Any] | None, int], dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """One answer row per bucket: ``rows`` carry their bucket in ``i`` (1-based, as
    ``width_bucket`` numbers them); ``row(r, k)`` gives the values after ``start`` and
    ``end`` of bucket ``k`` from its row, or from None when it has none."""
    by_i = {r["i"] - 1: r for r in rows}
    out = []
    for k in range(len(b)):
        start, end = b.label(k)
        out.append({"start": start, "end": end, **row(by_i.get(k), k)})
    return out


async def fill_rollup(conn: Conn, rollup: Rollup, edges: list[datetime],
                      tz: str | None = None) -> None:
    """Replace the rows of ``rollup`` in ``[edges[0], edges[-1])`` (of zone ``tz`` for a
    rollup of local days) by what its fill function computes from the raw rows."""
    lo, hi = edges[0], edges[-1]
    zone = {"tz": tz} if rollup.local_days else {}
    where = sql.SQL(" AND {} = %(tz)s").format(sql.Identifier("tz")) if zone else sql.SQL("")
    await conn.execute(sql.SQL("DELETE FROM {} WHERE {} >= %(lo)s AND {} < %(hi)s{}").format(
        sql.Identifier(rollup.table), sql.Identifier(rollup.time_column),
        sql.Identifier(rollup.time_column), where), {"lo": lo, "hi": hi, **zone})
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in rollup.columns)
    await conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
        sql.Identifier(rollup.table), cols, cols,
        call_of(rollup.fill, ("edges", "lo", "hi", *rollup.args, *zone))),
        {"edges": edges, "lo": lo, "hi": hi, **rollup.args, **zone}, prepare=False)
