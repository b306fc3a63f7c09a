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
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat

from api.db import fetch_all
from api.rollups import Answer, combine
from api.timeq import BUCKETS, Buckets
from beffroi.settings import Settings

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
    #: A family whose devices of the site its row counts (``family_count``), e.g. the
    #: sensors that make a zone's capacity when the registry gives none.
    site_count: str = ""

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
    function ``fill`` (called with ``edges`` every ``slot``, ``lo``, ``hi``), which returns
    ``columns``."""

    table: str
    time_column: str
    fill: str
    columns: tuple[str, ...]
    slot: timedelta = timedelta(hours=1)
    #: Arguments of ``fill`` after (edges, lo, hi), in order, with their values; the job
    #: gives those that change per run (fill_rollup's ``given``, e.g. a commit cutoff).
    args: Mapping[str, Any] = field(default_factory=dict)


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
    meta: tuple[str, ...] = ()  # context keys shown in the answer
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    device_doc: str = ""  # added to the device route's description
    site_slot_s: int | None = None  # a site's rollup slot, when it differs (zone quarters)
    #: The lookback of one request when it depends on the scope (the report intervals of
    #: its sensors), instead of ``lookback``.
    lookback_of: Callable[[Conn, Scope], Awaitable[timedelta]] | None = None
    #: Arguments taken from the settings, passed after ``args``: argument name -> Settings
    #: attribute (e.g. ``{"tz": "timezone"}``: the zone of the days a daily rollup holds).
    setting_args: Mapping[str, str] = field(default_factory=dict)
    #: Refuses, before any query, a request that no source can answer (raises ApiError).
    check: Callable[[Buckets, Settings], None] | None = None
    #: Per bucket size, another ``(coverage, rolled)`` than the metric's: buckets that a
    #: rollup of their own answers (a square's hours, visitors' days).
    rolled_by_bucket: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def slot_of(self, scope: Scope) -> int:
        """The slot of the rollup ``scope`` reads."""
        return self.site_slot_s if scope.kind == "site" and self.site_slot_s else self.slot_s

    def rollup_for(self, bucket: str) -> tuple[str, str | None]:
        """The coverage (rollup_state name) and the rolled function of ``bucket``."""
        return self.rolled_by_bucket.get(bucket, (self.coverage, self.rolled))

    def setting_values(self, settings: Settings | None) -> dict[str, Any]:
        """The values of ``setting_args`` in ``settings``."""
        if not self.setting_args:
            return {}
        if settings is None:
            raise ValueError(f"metric {self.name} needs the settings "
                             f"({', '.join(self.setting_args.values())})")
        return {arg: getattr(settings, attr) for arg, attr in self.setting_args.items()}

    def call(self, function: str, scope: Scope, b: Buckets,
             settings: Settings | None = None) -> tuple[sql.Composed, dict[str, Any]]:
        """The statement calling ``function`` for ``scope`` over ``b``, and its params."""
        extra = self.setting_values(settings)
        return call(function, (*SCOPE_ARGS, *self.args, *extra)), {
            "site": scope.site, "device": scope.device, "edges": b.edges, "lo": b.start,
            "hi": b.end, **self.args, **extra}


#: Arguments sent in binary: a year of hourly edges dumps in well under a millisecond
#: that way, against several as a text array (measured: 721 edges, 0.35 ms against 6.5).
_BINARY = frozenset({"edges"})


def _function(function: str, names: Sequence[str]) -> sql.Composed:
    return sql.SQL("{}({})").format(
        sql.Identifier(SCHEMA, function),
        sql.SQL(", ").join(sql.Placeholder(n, PyFormat.BINARY if n in _BINARY
                                           else PyFormat.AUTO) for n in names))


def call(function: str, names: Sequence[str]) -> sql.Composed:
    """``SELECT * FROM metric.<function>(%(name)s, ...)``: a metric function called with
    bound, named parameters (never spliced values)."""
    return sql.SQL("SELECT * FROM {}").format(_function(function, names))


async def rows_of(conn: Conn, metric: Metric, function: str, scope: Scope,
                  b: Buckets, settings: Settings | None = None) -> list[dict[str, Any]]:
    """What ``function`` of ``metric`` returns for ``scope`` over ``b``."""
    query, params = metric.call(function, scope, b, settings)
    return await fetch_all(conn, query, params)


def by_bucket(b: Buckets, rows: list[dict[str, Any]],
              row: Callable[[dict[str, Any] | None, int], dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """One answer row per bucket: ``rows`` carry their bucket in ``i`` (1-based, as
    ``width_bucket`` numbers them); ``row(r, k)`` gives the values after ``start`` and
    ``end`` of bucket ``k`` from its row, or from None when it has none."""
    by_i = {r["i"] - 1: r for r in rows}
    labels = b.labels
    return [{"start": labels[k], "end": labels[k + 1], **row(by_i.get(k), k)}
            for k in range(len(labels) - 1)]


async def series(conn: Conn, metric: Metric, scope: Scope, b: Buckets, source: str = "auto",
                 *, ctx: Context | None = None, shape: Shaper | None = None,
                 columns: Sequence[str] | None = None,
                 settings: Settings | None = None) -> Answer:
    """The rows of ``metric`` for ``scope`` over ``b``, each bucket from the rollup or the
    raw rows (:func:`api.rollups.combine`). ``ctx`` replaces what the metric's context
    hook gives; ``shape`` and ``columns`` another view of the same rows (the open data's
    sums, for instance); ``settings`` give the metric's ``setting_args``."""
    if ctx is None:
        ctx = await metric.context(conn, scope) if metric.context else {}
    shaper = shape or metric.shape
    # Bound to locals: mypy keeps the narrowing of ``ctx`` inside the closures.
    context: Context = ctx
    coverage, rolled_fn = metric.rollup_for(b.bucket)

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return shaper(sub, await rows_of(conn, metric, metric.raw, scope, sub, settings),
                      context)

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        assert rolled_fn is not None  # combine asks only when a rollup exists
        return shaper(sub, await rows_of(conn, metric, rolled_fn, scope, sub, settings),
                      context)

    lookback = (await metric.lookback_of(conn, scope) if metric.lookback_of
                else metric.lookback)
    return await combine(conn, b, source, coverage, rolled=rolled, raw=raw,
                         columns=metric.columns if columns is None else columns,
                         slot_s=metric.slot_of(scope), lookback=lookback,
                         unusable="" if rolled_fn else "this metric has no rollup")


async def fill_rollup(conn: Conn, rollup: Rollup, edges: list[datetime],
                      given: Mapping[str, Any] | None = None) -> None:
    """Replace the rows of ``rollup`` in ``[edges[0], edges[-1])`` by what its fill
    function computes from the raw rows; ``given``: values of the fill's ``args`` that
    the job sets for this run."""
    lo, hi = edges[0], edges[-1]
    await conn.execute(sql.SQL("DELETE FROM {} WHERE {} >= %(lo)s AND {} < %(hi)s").format(
        sql.Identifier(rollup.table), sql.Identifier(rollup.time_column),
        sql.Identifier(rollup.time_column)), {"lo": lo, "hi": hi})
    args = {k: (given or {}).get(k, v) for k, v in rollup.args.items()}
    await insert_from(conn, rollup.table, rollup.columns, rollup.fill,
                      {"edges": edges, "lo": lo, "hi": hi, **args})


async def insert_from(conn: Conn, table: str, columns: Sequence[str], function: str,
                      args: Mapping[str, Any], *, key: Sequence[str] = (),
                      add: Sequence[str] = ()) -> None:
    """Insert into ``table`` the rows of metric function ``function`` called with ``args``
    (in order). With ``key`` (a unique key of ``table``), a row whose key exists adds its
    ``add`` columns to that row's instead (counts of rows that came late)."""
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    query = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {}").format(
        sql.Identifier(table), cols, cols, _function(function, list(args)))
    if key:
        query += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in key),
            sql.SQL(", ").join(sql.SQL("{} = t.{} + EXCLUDED.{}").format(
                sql.Identifier(c), sql.Identifier(c), sql.Identifier(c)) for c in add))
    await conn.execute(query, dict(args), prepare=False)
