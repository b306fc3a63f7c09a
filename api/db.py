"""Small query helpers shared by the routers (parametrised SQL only)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import postgres, pq, sql
from psycopg.adapt import Dumper
from psycopg.rows import dict_row

from api.errors import not_found
from api.lookups import remembered
from api.timeq import Buckets, Instants

Query = str | sql.Composed | sql.SQL


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIMESTAMPTZ = postgres.types["timestamptz"]


class InstantsDumper(Dumper):
    """PostgreSQL's binary array format, packed in one call: psycopg's generic list dumper
    adapts each element through Python calls (measured: 2.3 ms for the 721 edges of a month
    of hours, against 0.2 ms here), a cost every time-series request paid."""

    format = pq.Format.BINARY
    oid = _TIMESTAMPTZ.array_oid

    def dump(self, obj: Any) -> bytes:
        """Header (1 dimension, no null, element type, length, lower bound 1), then each
        element as its length (8) and microseconds since 2000-01-01 UTC."""
        packed: bytes | None = obj.packed
        if packed is None:
            n = len(obj)
            cells = [v for t in obj for v in (8, (t - _PG_EPOCH) // _MICROSECOND)]
            packed = obj.packed = struct.pack(f">5i{'iq' * n}", 1, 0, _TIMESTAMPTZ.oid, n, 1,
                                              *cells)
        return packed


#: Result types that load the same from PostgreSQL's binary and text output, so a query
#: returning only these may ask for binary rows: no number to parse from text, about a
#: quarter less client CPU for a year of daily rows. Not ``float4``: its text is the
#: shortest decimal (a battery of 0.04), its binary the float32 (0.03999999910593033).
BINARY_SAFE = frozenset({"bool", "int2", "int4", "int8", "float8", "numeric", "text",
                         "timestamptz", "date", "interval", "jsonb"})


def register_types(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> None:
    """Make ``conn`` send :class:`Instants` with :class:`InstantsDumper`."""
    conn.adapters.register_dumper(Instants, InstantsDumper)


async def fetch_all(conn: psycopg.AsyncConnection[Any], query: Query,
                    params: dict[str, Any] | tuple[Any, ...] = (), *,
                    prepare: bool | None = None, binary: bool = False
                    ) -> list[dict[str, Any]]:
    """Rows as dicts. Time-series queries (given bucket ``edges``) are never prepared:
    psycopg prepares a statement after 5 runs, and PostgreSQL's generic plan for it cannot
    exclude hypertable chunks by the requested range (measured: a month of a square per
    hour, 13 ms planned for its parameters, 80 ms with the generic plan). The small
    lookups around them stay prepared (``prepare`` False: this query is not either).
    ``edges`` go as :class:`Instants`. ``binary``: results in binary, for queries whose
    columns read the same either way (:data:`BINARY_SAFE`)."""
    if isinstance(params, dict) and "edges" in params:
        prepare = False
        if not isinstance(params["edges"], Instants):
            params = {**params, "edges": Instants(params["edges"])}
    async with conn.cursor(row_factory=dict_row, binary=binary) as cur:
        await cur.execute(query, params, prepare=prepare)
        return await cur.fetchall()


async def per_bucket(conn: psycopg.AsyncConnection[Any], b: Buckets, query: Query,
                     params: dict[str, Any],
                     row: Callable[[dict[str, Any] | None], dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """One answer row per bucket of ``b``: ``query`` (given ``edges``, ``lo``, ``hi``)
    numbers its rows by bucket in ``i`` (1-based, ``width_bucket``); ``row`` turns a bucket's
    row, or None for a bucket without one, into the values after ``start`` and ``end``."""
    rows = await fetch_all(conn, query, {**params, "edges": b.instants, "lo": b.start,
                                         "hi": b.end})
    by_i = {r["i"] - 1: r for r in rows}
    out = []
    for i in range(len(b)):
        start, end = b.label(i)
        out.append({"start": start, "end": end, **row(by_i.get(i))})
    return out


async def fetch_one(conn: psycopg.AsyncConnection[Any], query: Query,
                    params: dict[str, Any] | tuple[Any, ...] = (), *,
                    prepare: bool | None = None) -> dict[str, Any] | None:
    """The first row as a dict, or None."""
    rows = await fetch_all(conn, query, params, prepare=prepare)
    return rows[0] if rows else None


async def get_site(conn: psycopg.AsyncConnection[Any], site_id: str,
                   kind: str | None = None, *, count_family: str = "") -> dict[str, Any]:
    """A site (of ``kind`` if given), or 404; ``family_count`` = how many of its devices
    are of ``count_family`` (in the same round trip). Kept until the registry changes
    (:mod:`api.lookups`)."""
    async def read() -> dict[str, Any] | None:
        if count_family:
            return await fetch_one(conn, "SELECT id, kind, name, insee, latitude, longitude, "
                                   "capacity, metadata, (SELECT count(*) FROM devices d "
                                   "WHERE d.site_id = s.id AND d.family = %s) AS "
                                   "family_count FROM sites s WHERE id = %s",
                                   (count_family, site_id))
        return await fetch_one(conn, "SELECT id, kind, name, insee, latitude, longitude, "
                               "capacity, metadata FROM sites WHERE id = %s", (site_id,))

    row = await remembered(conn, ("site", site_id, count_family), read)
    if row is None or (kind is not None and row["kind"] != kind):
        raise not_found(kind.replace("_", " ") if kind else "site", site_id)
    return dict(row)


async def get_device(conn: psycopg.AsyncConnection[Any], device_id: str,
                     family: str | None = None) -> dict[str, Any]:
    """A device (of ``family`` if given), or 404. Kept until the registry changes."""
    row = await remembered(conn, ("device", device_id), lambda: fetch_one(
        conn, "SELECT * FROM devices WHERE id = %s", (device_id,)))
    if row is None or (family is not None and row["family"] != family):
        raise not_found(family.replace("_", " ") if family else "device", device_id)
    return dict(row)


def iso(t: datetime | None) -> str | None:
    """ISO 8601 or None."""
    return t.isoformat() if t else None
