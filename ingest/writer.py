"""Writes batches with binary COPY; redelivered rows never make a second row.

Fast path: COPY straight into each hypertable. Duplicates only come from redelivery (after a
crash or reconnect), so when a batch hits a unique key it is rewritten through a staging
table and ``INSERT ... ON CONFLICT DO NOTHING``. Rows the database refuses for another reason
are isolated message by message and dead-lettered. Connection errors are retried forever
with capped, jittered backoff: a batch is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from devices.readings import PG_TYPES, READING_OF_TABLE, TABLE_OF
from ingest.batch import Batch, DeadLetterRow
from ingest.metrics import Metrics
from ingest.router import DB_REJECTED

log = logging.getLogger(__name__)

DEAD_COLUMNS = ("received_at", "topic", "device_id", "reason", "detail", "payload",
                "payload_size")
DEAD_TYPES = ("timestamptz", "text", "text", "text", "text", "bytea", "int4")
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0  # a database back after a restart is picked up within 10 s


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
        try:
            written = await self._copy_all(conn, batch)
        except psycopg.errors.UniqueViolation:
            await conn.rollback()
            self.metrics.duplicates.inc()
            written = await self._write_dedup(conn, batch)
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            await conn.rollback()
            log.warning("batch refused by the database (%s); isolating the bad messages",
                        str(exc).splitlines()[0])
            written = await self._write_isolating(conn, batch)
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
        await conn.commit()
        return {t: len(r) for t, r in batch.rows.items()}

    async def _copy_dead(self, cur: psycopg.AsyncCursor[Any], dead: list[DeadLetterRow]
                         ) -> None:
        if not dead:
            return
        stmt = sql.SQL("COPY dead_letters ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.SQL(", ").join(map(sql.Identifier, DEAD_COLUMNS)))
        await self._copy(cur, "dead_letters", DEAD_TYPES, stmt, dead)

    async def _write_dedup(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                           ) -> dict[str, int]:
        written: dict[str, int] = {}
        async with conn.cursor() as cur:
            for table, rows in batch.rows.items():
                stage = sql.Identifier(f"stage_{table}")
                await cur.execute(sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS"
                ).format(stage, sql.Identifier(table)))
                cols = sql.SQL(", ").join(map(sql.Identifier, _columns(table)))
                stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, cols)
                await self._copy(cur, table, PG_TYPES[table], stmt, rows)
                await cur.execute(sql.SQL(
                    "INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(table), cols, cols, stage))
                written[table] = max(cur.rowcount, 0)
            await self._copy_dead(cur, batch.dead)
        await conn.commit()
        return written

    async def _write_isolating(self, conn: psycopg.AsyncConnection[Any], batch: Batch
                               ) -> dict[str, int]:
        """Insert message by message; dead-letter the messages the database refuses."""
        written: dict[str, int] = {}
        dead = list(batch.dead)
        async with conn.cursor() as cur:
            for topic, payload, received_at, readings in batch.messages:
                try:
                    async with conn.transaction():
                        for r in readings:
                            table = TABLE_OF[type(r)]
                            cols = _columns(table)
                            await cur.execute(sql.SQL(
                                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING"
                            ).format(sql.Identifier(table),
                                     sql.SQL(", ").join(map(sql.Identifier, cols)),
                                     sql.SQL(", ").join(sql.Placeholder() * len(cols))),
                                tuple(r))
                            written[table] = written.get(table, 0) + max(cur.rowcount, 0)
                except (psycopg.DataError, psycopg.IntegrityError) as exc:
                    dead.append(self._make_dead(
                        received_at, topic, readings[0].device_id if readings else None,
                        DB_REJECTED, str(exc).splitlines()[0][:500], payload))
            await self._copy_dead(cur, dead)
        await conn.commit()
        return written
