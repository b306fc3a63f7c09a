"""The benchmark database: created, migrated, the demo city imported, a year loaded by binary
COPY over two connections, vacuumed; skipped when the database already holds that year."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from beffroi.migrate import migrate
from beffroi.stack import Stack
from bench.apilib.pgcopy import HEADER, TRAILER
from bench.apilib.synth import Block, Year, city_blocks
from devices.democity import DEMO_CITY_FILE
from devices.registry import load_registry_file
from devices.store import import_registry

log = logging.getLogger("bench.api")

DB_NAME = "beffroi_bench_api"
DATASET_VERSION = 3  # bump when the generator changes: the cache is then reloaded
TABLES = ("grid_readings", "parking_spot_state", "parking_transactions", "parking_meter_status",
          "wifi_ap_stats", "wifi_sessions", "dead_letters")
LOADERS = 2


@dataclass(frozen=True)
class Dataset:
    """What the database holds."""

    url: str
    spec: dict[str, Any]
    rows: dict[str, int]
    load_s: float | None  # None: cached, not loaded by this run
    vacuum_s: float | None


def _spec(year: Year, seed: int) -> dict[str, Any]:
    return {"version": DATASET_VERSION, "first": year.first.isoformat(), "days": year.days,
            "tz": year.tz.key, "seed": seed}


def prepare(stack: Stack, year: Year, seed: int) -> Dataset:
    """The benchmark database holding ``year`` (loaded unless already there)."""
    stack.ensure_database(DB_NAME)
    return prepare_url(stack.database_url(DB_NAME), year, seed)


def prepare_url(url: str, year: Year, seed: int) -> Dataset:
    """The database at ``url`` (migrated, the demo city imported) holding ``year``, loaded
    unless already there."""
    migrate(url)
    reg = load_registry_file(DEMO_CITY_FILE)
    spec = _spec(year, seed)
    with psycopg.connect(url, autocommit=True) as conn:
        import_registry(conn, reg)
        conn.execute("CREATE TABLE IF NOT EXISTS bench_api_dataset (id int PRIMARY KEY "
                     "CHECK (id = 1), spec jsonb NOT NULL, rows jsonb NOT NULL, "
                     "loaded_at timestamptz NOT NULL DEFAULT now())")
        row = conn.execute("SELECT spec, rows FROM bench_api_dataset").fetchone()
        if row is not None and row[0] == spec:
            log.info("database %s already holds %s (%s rows): not loading again", conn.info.dbname,
                     json.dumps(spec), f"{sum(row[1].values()):,}")
            return Dataset(url, spec, dict(row[1]), None, None)
        log.info("loading %d days from %s into %s (previous: %s)", year.days, year.first,
                 conn.info.dbname, json.dumps(row[0]) if row else "none")
        conn.execute("DELETE FROM bench_api_dataset")
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, TABLES))))
    t0 = time.monotonic()
    rows = copy_blocks(url, city_blocks(reg, year, seed))
    load_s = time.monotonic() - t0
    log.info("loaded %s rows in %.0fs (%s rows/s); vacuum and analyze", f"{sum(rows.values()):,}",
             load_s, f"{sum(rows.values()) / load_s:,.0f}")
    t1 = time.monotonic()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
        conn.execute("INSERT INTO bench_api_dataset (id, spec, rows) VALUES (1, %s, %s)",
                     (json.dumps(spec), json.dumps(dict(rows))))
    vacuum_s = time.monotonic() - t1
    log.info("vacuum and analyze: %.0fs", vacuum_s)
    return Dataset(url, spec, dict(rows), load_s, vacuum_s)


def copy_blocks(url: str, blocks: Iterable[Block]) -> Counter[str]:
    """COPY every block, over ``LOADERS`` connections fed by this thread; rows per table."""
    q: queue.Queue[Block | None] = queue.Queue(maxsize=2 * LOADERS)
    done: Counter[str] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(url, application_name="bench-api-load") as conn:
                conn.execute("SET synchronous_commit = off")
                while (b := q.get()) is not None:
                    cols = sql.SQL(", ").join(map(sql.Identifier, b.columns))
                    with conn.cursor() as cur, cur.copy(sql.SQL(
                            "COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                            sql.Identifier(b.table), cols)) as cp:
                        cp.write(HEADER)
                        cp.write(b.data)
                        cp.write(TRAILER)
                    conn.commit()
                    with lock:
                        done[b.table] += b.rows
        except BaseException as exc:
            errors.append(exc)
            while q.get() is not None:  # let the producer finish
                pass

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(LOADERS)]
    for th in threads:
        th.start()
    t0 = last = time.monotonic()
    try:
        for b in blocks:
            if errors:
                break
            q.put(b)
            now = time.monotonic()
            if now - last >= 10:
                last = now
                with lock:
                    n = sum(done.values())
                log.info("  loaded %s rows (%s rows/s)", f"{n:,}", f"{n / (now - t0):,.0f}")
    finally:
        for _ in threads:
            q.put(None)
        for th in threads:
            th.join()
    if errors:
        raise RuntimeError(f"loading failed: {errors[0]}") from errors[0]
    return done


__all__ = ["DB_NAME", "Dataset", "prepare", "prepare_url"]
