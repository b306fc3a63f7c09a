"""Writes batches with binary COPY; redelivered rows never make a second row.

Fast path: COPY straight into each hypertable. Duplicates only come from redelivery (after a
crash or reconnect), so when a batch hits a unique key it is rewritten through a staging
table and ``INSERT ... ON CONFLICT DO NOTHING``; the staged rows whose key is then stored with
other values are conflicts, and their messages are dead-lettered (``conflict``) instead of
vanishing. Values are compared on that path only. Rows the database refuses for another
reason are isolated message by message and dead-lettered. Connection errors are retried with
capped, jittered backoff until the batch is written or the writer is cancelled (a stop):
a batch is never dropped, at worst left unacknowledged for redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Container, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from devices.readings import KEY_COLUMNS, PG_TYPES, READING_OF_TABLE, TABLE_OF, Reading
from ingest import lastseen
from ingest.batch import Batch, DeadLetterRow
from ingest.metrics import Metrics
from ingest.router import CONFLICT, DB_REJECTED

log = logging.getLogger(__name__)

DEAD_COLUMNS = ("received_at", "topic", "device_id", "reason", "detail", "payload",
                "payload_size")
DEAD_TYPES = ("timestamptz", "text", "text", "text", "text", "bytea", "int4")
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0  # a database back after a restart is picked up within 10 s
DETAIL_MAX = 1000
# Key columns shown as a placeholder in a conflict's detail (a pseudonym of a person's device).
HIDDEN_KEYS = frozenset({"client_key"})


def _columns(table: str) -> Sequence[str]:
    return READING_OF_TABLE[table]._fields


class BatchWriter:
    """Owns one database connection; writes one batch at a time."""

    def __init__(self, conninfo: str, metrics: Metrics, *,
                 make_dead: Callable[[datetime, str, str | None, str, str, bytes],
                                     DeadLetterRow]) -> None:
        self.conninfo = conninfo
        self.metrics = metrics
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._copy_sql = {
            t: sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(t), sql.SQL(", ").join(map(sql.Identifier, _columns(t))))
            for t in PG_TYPES
        }
        self._make_dead = make_dead
        # Dead letters of the write in progress: reason, and the tables of its conflicts.
        self._refusals: list[tuple[str, list[str]]] = []

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self.conn is None or self.conn.closed:
            self.conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=False, application_name="beffroi-ingest")
        return self.conn

    async def close(self) -> None:
        """Close the connection."""
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    async def write(self, batch: Batch) -> dict[str, int]:
        """Commit the batch, retrying database outages until it succeeds."""
        attempt = 0
        while True:
            try:
                conn = await self._connect()
                return await self._write_once(conn, batch)
            except psycopg.OperationalError as exc:
                attempt += 1
                self.metrics.db_retries.inc()
                delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** min(attempt, 10))
                delay *= random.uniform(0.5, 1.0)
                log.warning("database unavailable (%s); retrying batch of %d messages in %.1fs",
                            str(exc).strip().splitlines()[0] if str(exc) else type(exc).__name__,
                            batch.n_messages, delay)
                await self.close()
                await asyncio.sleep(delay)

    async def _write_once(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                          ) -> dict[str, int]:
        t0 = time.perf_counter()
        self._refusals = []
        try:
            written = await self._copy_all(conn, batch)
        except psycopg.errors.UniqueViolation:
            await conn.rollback()
            self.metrics.duplicates.inc()
            try:
                written = await self._write_dedup(conn, batch)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                written = await self._isolate(conn, batch, exc)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            written = await self._isolate(conn, batch, exc)
        # Counted once committed, so that a retried write does not count twice.
        batch.refused = len(self._refusals)
        for reason, tables in self._refusals:
            self.metrics.rejected.labels(reason).inc()
            for table in tables:
                self.metrics.conflicts.labels(table).inc()
        self.metrics.flush_seconds.observe(time.perf_counter() - t0)
        return written

    async def _copy(self, cur: psycopg.AsyncCursor[Any], table: str, types: Sequence[str],
                    stmt: sql.Composed, rows: list[Any]) -> None:
        async with cur.copy(stmt) as copy:
            copy.set_types(list(types))
            for row in rows:
                await copy.write_row(row)

    async def _copy_all(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                        ) -> dict[str, int]:
        async with conn.cursor() as cur:
            for table, rows in batch.rows.items():
                await self._copy(cur, table, PG_TYPES[table], self._copy_sql[table], rows)
            await self._copy_dead(cur, batch.dead)
            await lastseen.merge(cur, batch.rows)
        await conn.commit()
        return {t: len(r) for t, r in batch.rows.items()}

    async def _copy_dead(self, cur: psycopg.AsyncCursor[Any], dead: list[DeadLetterRow]
                         ) -> None:
        if not dead:
            return
        stmt = sql.SQL("COPY dead_letters ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(map(sql.Identifier, DEAD_COLUMNS)))
        await self._copy(cur, "dead_letters", DEAD_TYPES, stmt, dead)

    async def _isolate(self, conn: psycopg.AsyncConnection[Any], batch: Batch,
                       exc: psycopg.Error) -> dict[str, int]:
        await conn.rollback()
        self._refusals = []
        log.warning("batch refused by the database (%s); isolating the bad messages",
                    str(exc).splitlines()[0])
        return await self._write_isolating(conn, batch)

    async def _insert_checked(self, cur: psycopg.AsyncCursor[Any], table: str,
                              rows: list[tuple[Any, ...]]
                              ) -> tuple[int, dict[int, list[tuple[str, str]]]]:
        """Insert ``rows`` (each ending with its message's index) without duplicates.

        Returns the rows inserted and, by message index, the conflicts: rows whose key is
        stored (by an earlier delivery or an earlier message of the batch) with other values.
        The comparison runs in SQL on the staged copy, so floats compare as stored and NULLs
        as values (``IS DISTINCT FROM``).
        """
        stage = sql.Identifier(f"stage_{table}")
        target = sql.Identifier(table)
        cols = _columns(table)
        keys = KEY_COLUMNS[table]
        values = [c for c in cols if c not in keys]
        col_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        await cur.execute(sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}, msg int4 NOT NULL) "
            "ON COMMIT DELETE ROWS").format(stage, target))
        await cur.execute(sql.SQL("DELETE FROM {}").format(stage))
        await self._copy(cur, table, (*PG_TYPES[table], "int4"), sql.SQL(
            "COPY {} ({}, msg) FROM STDIN (FORMAT BINARY)").format(stage, col_list), rows)
        # In message order, so that of two rows with one key the first delivered is kept.
        await cur.execute(sql.SQL(
            "INSERT INTO {} ({}) SELECT {} FROM {} ORDER BY msg ON CONFLICT DO NOTHING"
        ).format(target, col_list, col_list, stage))
        written = max(cur.rowcount, 0)

        def col(alias: str, c: str) -> sql.Composable:
            return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c))

        differs = sql.SQL(", ").join(
            sql.SQL("CASE WHEN {s} IS DISTINCT FROM {t} THEN format('%s %s (stored %s)', "
                    "{name}, coalesce({s}::text, 'null'), coalesce({t}::text, 'null')) END"
                    ).format(s=col("s", c), t=col("t", c), name=sql.Literal(c))
            for c in values)
        await cur.execute(sql.SQL(
            "SELECT s.msg, {keys}, array_remove(ARRAY[{differs}], NULL) "
            "FROM {stage} s JOIN {target} t ON {on} "
            "WHERE ROW({sv}) IS DISTINCT FROM ROW({tv}) ORDER BY s.msg"
        ).format(keys=sql.SQL(", ").join(col("s", k) for k in keys), differs=differs,
                 stage=stage, target=target,
                 on=sql.SQL(" AND ").join(sql.SQL("{} = {}").format(col("s", k), col("t", k))
                                          for k in keys),
                 sv=sql.SQL(", ").join(col("s", c) for c in values),
                 tv=sql.SQL(", ").join(col("t", c) for c in values)))
        conflicts: dict[int, list[tuple[str, str]]] = {}
        for msg, *key_values, diff in await cur.fetchall():
            conflicts.setdefault(msg, []).append(
                (table, _conflict_detail(table, keys, key_values, diff)))
        return written, conflicts

    async def _write_dedup(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                           ) -> dict[str, int]:
        written: dict[str, int] = {}
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        for i, (_, _, _, readings) in enumerate(batch.messages):
            for r in readings:
                by_table.setdefault(TABLE_OF[type(r)], []).append((*r, i))
        conflicts: dict[int, list[tuple[str, str]]] = {}
        async with conn.cursor() as cur:
            for table, rows in by_table.items():
                written[table], found = await self._insert_checked(cur, table, rows)
                for msg, details in found.items():
                    conflicts.setdefault(msg, []).extend(details)
            dead = list(batch.dead)
            for msg in sorted(conflicts):
                dead.append(self._conflict(batch, msg, conflicts[msg]))
            await self._copy_dead(cur, dead)
            # Redelivered rows are stored already: merging them again changes nothing.
            await lastseen.merge(cur, _rows_of(batch, skip=conflicts))
        await conn.commit()
        return written

    async def _write_isolating(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                               ) -> dict[str, int]:
        """Insert message by message; dead-letter the messages the database refuses."""
        written: dict[str, int] = {}
        dead = list(batch.dead)
        refused: set[int] = set()
        async with conn.cursor() as cur:
            for i, (topic, payload, received_at, readings) in enumerate(batch.messages):
                by_table: dict[str, list[tuple[Any, ...]]] = {}
                for r in readings:
                    by_table.setdefault(TABLE_OF[type(r)], []).append((*r, i))
                details: list[tuple[str, str]] = []
                counts: dict[str, int] = {}
                try:
                    async with conn.transaction():
                        for table, rows in by_table.items():
                            counts[table], found = await self._insert_checked(cur, table, rows)
                            details.extend(found.get(i, ()))
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    dead.append(self._refused(
                        received_at, topic, _device(readings), DB_REJECTED,
                        str(exc).splitlines()[0][:500], payload))
                    refused.add(i)
                    continue
                for table, n in counts.items():
                    written[table] = written.get(table, 0) + n
                if details:
                    dead.append(self._conflict(batch, i, details))
                    refused.add(i)
            await self._copy_dead(cur, dead)
            await lastseen.merge(cur, _rows_of(batch, skip=refused))
        await conn.commit()
        return written

    def _conflict(self, batch: Batch, msg: int, details: list[tuple[str, str]]
                  ) -> DeadLetterRow:
        topic, payload, received_at, readings = batch.messages[msg]
        text = "; ".join(d for _, d in details)
        if len(text) > DETAIL_MAX:
            text = text[: DETAIL_MAX - 1] + "…"
        return self._refused(received_at, topic, _device(readings), CONFLICT, text, payload,
                             [t for t, _ in details])

    def _refused(self, received_at: datetime, topic: str, device_id: str | None, reason: str,
                 detail: str, payload: bytes, tables: list[str] | None = None
                 ) -> DeadLetterRow:
        """A dead letter for an accepted message that the database step refused."""
        self._refusals.append((reason, tables or []))
        return self._make_dead(received_at, topic, device_id, reason, detail, payload)


def _rows_of(batch: Batch, skip: Container[int]) -> dict[str, list[Reading]]:
    """The readings of the batch's messages by table, but those of the messages ``skip``
    (refused: their values were not stored)."""
    rows: dict[str, list[Reading]] = {}
    for i, (_, _, _, readings) in enumerate(batch.messages):
        if i not in skip:
            for r in readings:
                rows.setdefault(TABLE_OF[type(r)], []).append(r)
    return rows


def _device(readings: list[Reading]) -> str | None:
    return readings[0].device_id if readings else None


def _conflict_detail(table: str, keys: Sequence[str], key_values: Sequence[Any],
                     diff: Sequence[str]) -> str:
    """``<table> key (...) already stored with other values: <column> <new> (stored <old>)``."""
    shown = []
    for k, v in zip(keys, key_values, strict=True):
        if k in HIDDEN_KEYS:
            shown.append(f"{k}=<pseudonym>")
        elif isinstance(v, datetime):
            shown.append(f"{k}={v.astimezone(UTC).isoformat()}")
        else:
            shown.append(f"{k}={v}")
    return (f"{table} key ({', '.join(shown)}) already stored with other values: "
            f"{', '.join(diff)}")
