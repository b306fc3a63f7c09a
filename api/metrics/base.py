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
from types import MappingProxyType
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat

from api.db import fetch_all
from api.lookups import remembered
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


#: The setting argument of a function whose rows are local days: the configured zone.
ZONE: Mapping[str, str] = MappingProxyType({"tz": "timezone"})


@dataclass(frozen=True)
class Rollup:
    """A rollup table a metric fills: the job replaces its rows of ``[lo, hi)`` by those of
    function ``fill`` (called with ``edges`` every ``slot``, ``lo``, ``hi``, then the values
    of ``args``), which returns ``columns``. The job fills a metric's rollups in the order
    declared: one may read the tables filled before it.

    ``local_days``: its slots are the local days of the configured time zone (23 to 25
    hours long), in rows marked with that zone (column ``tz``): ``edges`` are the starts of
    the days that ended in the range, then the end of the last; the zone is its argument
    ``tz`` (in ``args``, given by the job), and only that zone's rows are replaced.
    ``local_months``: the same with the local months of that zone.

    ``coverage``: the rollup_state row it is kept under when not its metric's (the months,
    read from the days, have their own: an installation that had none fills them from the
    retained days without rolling the hours up again)."""

    table: str
    time_column: str
    fill: str
    columns: tuple[str, ...]
    slot: timedelta = timedelta(hours=1)
    #: Arguments of ``fill`` after (edges, lo, hi), in order, with their values; the job
    #: gives those that change per run (fill_rollup's ``given``: a commit cutoff, the
    #: configured zone ``tz``).
    args: Mapping[str, Any] = field(default_factory=dict)
    local_days: bool = False
    local_months: bool = False
    coverage: str | None = None

    def __post_init__(self) -> None:
        if self.zoned and "tz" not in self.args:
            raise ValueError(f"rollup {self.table} of local days or months needs a tz "
                             "argument")

    @property
    def zoned(self) -> bool:
        """Whether its slots are local days or months of the configured zone."""
        return self.local_days or self.local_months


@dataclass(frozen=True)
class RollupReader:
    """A function reading rollups, used instead of :attr:`Metric.rolled` for the requests
    it fits (the first of :attr:`Metric.readers` that does): a square's own hours, a
    district's own half hours, local days of the configured zone...

    It takes the arguments of the metric's functions, then those of ``setting_args`` not
    already among the metric's. ``coverage``: its own rollup_state watermark (None: the
    metric's); ``slot_s``: its slot, buckets whose edges are whole slots may read it
    (None: the metric's); ``shape``: its own shaper when its rows differ from the metric's.
    ``local_days``: its rows are local days of the configured zone (``setting_args``
    :data:`ZONE`), so only requests in that zone whose every edge starts a day use it;
    ``local_months``: the same with months."""

    function: str
    buckets: tuple[str, ...] = BUCKETS
    scope: Literal["site", "device"] | None = None  # None: sites and devices
    coverage: str | None = None
    local_days: bool = False
    local_months: bool = False
    slot_s: int | None = None
    shape: Shaper | None = None
    setting_args: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if ((self.local_days or self.local_months)
                and not ZONE.items() <= dict(self.setting_args).items()):
            raise ValueError(f"reader {self.function} of local days or months needs the "
                             "zone (setting_args=ZONE)")

    def fits(self, kind: str, b: Buckets, zone: str | None) -> bool:
        """Whether it answers a request of ``kind`` over ``b`` (configured zone ``zone``):
        a reader of local days only buckets whose every edge starts a day of that zone
        (not a month cut at a publication's end), one of months every edge a month."""
        if self.scope not in (None, kind) or b.bucket not in self.buckets:
            return False
        if self.local_days or self.local_months:
            return b.tz.key == zone and (b.whole_months if self.local_months
                                         else whole_days(b))
        return True


def whole_days(b: Buckets) -> bool:
    """Whether every edge of ``b`` is the start of a local day of its zone."""
    return b.whole_days


def setting_values(owner: str, setting_args: Mapping[str, str],
                   settings: Settings | None) -> dict[str, Any]:
    """The values of ``setting_args`` (argument -> Settings attribute) in ``settings``."""
    if not setting_args:
        return {}
    if settings is None:
        raise ValueError(f"{owner} needs the settings ({', '.join(setting_args.values())})")
    return {arg: getattr(settings, attr) for arg, attr in setting_args.items()}


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
    #: Per-request values from the registry only (kept until it changes, api/lookups.py).
    context: Callable[[Conn, Scope], Awaitable[Context]] | None = None
    meta: tuple[str, ...] = ()  # context keys shown in the answer (those it has)
    responses: Mapping[int | str, dict[str, Any]] = field(default_factory=dict)
    device_doc: str = ""  # added to the device route's description
    site_slot_s: int | None = None  # a site's rollup slot, when it differs (zone quarters)
    #: The lookback of one request when it depends on the scope (the report intervals of
    #: its sensors), instead of ``lookback``; from the registry only (kept like ``context``).
    lookback_of: Callable[[Conn, Scope], Awaitable[timedelta]] | None = None
    #: Arguments taken from the settings, passed after ``args``: argument name -> Settings
    #: attribute (e.g. ``{"tz": "timezone"}``: the zone of the days a daily rollup holds).
    setting_args: Mapping[str, str] = field(default_factory=dict)
    #: Refuses, before any query, a request that no source can answer (raises ApiError).
    check: Callable[[Buckets, Settings], None] | None = None
    #: Rollup readers for some requests (their buckets, scope, zone): the first that fits
    #: replaces ``rolled``, its coverage, slot and shaper.
    readers: tuple[RollupReader, ...] = ()

    def slot_of(self, scope: Scope) -> int:
        """The slot of the rollup ``scope`` reads."""
        return self.site_slot_s if scope.kind == "site" and self.site_slot_s else self.slot_s

    def reader(self, kind: str, b: Buckets, zone: str | None) -> RollupReader | None:
        """The reader answering a request of ``kind`` over ``b`` (configured zone ``zone``)
        instead of ``rolled``."""
        return next((r for r in self.readers if r.fits(kind, b, zone)), None)

    def setting_values(self, settings: Settings | None,
                       reader: RollupReader | None = None) -> dict[str, Any]:
        """The values of ``setting_args`` (then of ``reader``'s) in ``settings``."""
        names = {**self.setting_args, **(reader.setting_args if reader else {})}
        return setting_values(f"metric {self.name}", names, settings)

    def call(self, function: str, scope: Scope, b: Buckets, settings: Settings | None = None,
             reader: RollupReader | None = None) -> tuple[sql.Composed, dict[str, Any]]:
        """The statement calling ``function`` for ``scope`` over ``b``, and its params
        (those of ``reader``'s settings too when it is the reader's function)."""
        extra = self.setting_values(settings, reader)
        return call(function, (*SCOPE_ARGS, *self.args, *extra)), {
            "site": scope.site, "device": scope.device, "edges": b.instants, "lo": b.start,
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
                  b: Buckets, settings: Settings | None = None,
                  reader: RollupReader | None = None) -> list[dict[str, Any]]:
    """What ``function`` of ``metric`` (or of its ``reader``) returns for ``scope`` over
    ``b``."""
    query, params = metric.call(function, scope, b, settings, reader)
    # Binary rows: every metric function returns types of api.db.BINARY_SAFE (tested).
    return await fetch_all(conn, query, params, binary=True)


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


async def context_of(conn: Conn, metric: Metric, scope: Scope) -> Context:
    """What ``metric``'s context hook gives for ``scope`` (a function of the registry: kept
    until it changes, :mod:`api.lookups`), or nothing."""
    hook = metric.context
    if hook is None:
        return {}
    return dict(await remembered(conn, ("context", metric.name, scope.kind, scope.id),
                                 lambda: hook(conn, scope)))


async def series(conn: Conn, metric: Metric, scope: Scope, b: Buckets, source: str = "auto",
                 *, ctx: Context | None = None, shape: Shaper | None = None,
                 columns: Sequence[str] | None = None,
                 settings: Settings | None = None) -> Answer:
    """The rows of ``metric`` for ``scope`` over ``b``, each bucket from the rollup or the
    raw rows (:func:`api.rollups.combine`). ``ctx`` replaces what the metric's context
    hook gives; ``shape`` and ``columns`` another view of the same rows (the open data's
    sums, for instance); ``settings`` give the metric's ``setting_args`` and the configured
    zone its readers of local days need. The rolled buckets come from the first of the
    metric's readers that fits the request, else from ``rolled``; a reader's own shaper
    replaces the metric's unless ``shape`` is given."""
    if ctx is None:
        ctx = await context_of(conn, metric, scope)
    shaper = shape or metric.shape
    # Bound to locals: mypy keeps the narrowing of ``ctx`` inside the closures.
    context: Context = ctx
    reader = metric.reader(scope.kind, b, settings.timezone if settings else None)
    rolled_fn, rolled_shape = metric.rolled, shaper
    coverage, slot_s = metric.coverage, metric.slot_of(scope)
    if reader is not None:
        rolled_fn = reader.function
        rolled_shape = shape or reader.shape or metric.shape
        coverage = reader.coverage or coverage
        slot_s = reader.slot_s or slot_s

    async def raw(sub: Buckets) -> list[dict[str, Any]]:
        return shaper(sub, await rows_of(conn, metric, metric.raw, scope, sub, settings),
                      context)

    async def rolled(sub: Buckets) -> list[dict[str, Any]]:
        assert rolled_fn is not None  # combine asks only when a rollup exists
        return rolled_shape(sub, await rows_of(conn, metric, rolled_fn, scope, sub, settings,
                                               reader), context)

    lookback = metric.lookback
    if metric.lookback_of is not None:
        lookback_of = metric.lookback_of
        lookback = await remembered(conn, ("lookback", metric.name, scope.kind, scope.id),
                                    lambda: lookback_of(conn, scope))
    return await combine(conn, b, source, coverage, rolled=rolled, raw=raw,
                         columns=metric.columns if columns is None else columns,
                         slot_s=slot_s, lookback=lookback,
                         unusable="" if rolled_fn else "this metric has no rollup")


async def fill_rollup(conn: Conn, rollup: Rollup, edges: list[datetime],
                      given: Mapping[str, Any] | None = None) -> None:
    """Replace the rows of ``rollup`` in ``[edges[0], edges[-1])`` (of zone ``tz`` for a
    rollup of local days) by what its fill function computes from the raw rows;
    ``given``: values of the fill's ``args`` that the job sets for this run (others are
    ignored)."""
    lo, hi = edges[0], edges[-1]
    args = {k: (given or {}).get(k, v) for k, v in rollup.args.items()}
    where: sql.Composable = sql.SQL("")
    zone: dict[str, Any] = {}
    if rollup.zoned:  # only the rows of the zone filled: other zones' days stay
        if args["tz"] is None:
            raise ValueError(f"rollup {rollup.table} of local days or months needs the zone "
                             "(given tz)")
        where = sql.SQL(" AND {} = %(tz)s").format(sql.Identifier("tz"))
        zone = {"tz": args["tz"]}
    await conn.execute(sql.SQL("DELETE FROM {} WHERE {} >= %(lo)s AND {} < %(hi)s{}").format(
        sql.Identifier(rollup.table), sql.Identifier(rollup.time_column),
        sql.Identifier(rollup.time_column), where), {"lo": lo, "hi": hi, **zone})
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
