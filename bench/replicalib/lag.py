"""Replication lag of the standby, sampled from the primary's ``pg_stat_replication`` in a
background thread, and summarised per phase (p50, p99, max).

PostgreSQL's ``write_lag`` / ``flush_lag`` / ``replay_lag`` are the time between the
primary flushing WAL and the standby reporting it written / flushed / replayed; they are
NULL once the standby has caught up and no WAL is in flight (kept as None here, not as 0).
Bytes behind are measured from the primary's current WAL position."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg

log = logging.getLogger(__name__)

QUERY = """
SELECT write_lag, flush_lag, replay_lag,
       pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn),
       pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn),
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)
FROM pg_stat_replication WHERE state = 'streaming'
ORDER BY backend_start LIMIT 1
"""
METRICS = ("write_lag_ms", "flush_lag_ms", "replay_lag_ms", "sent_bytes_behind",
           "flush_bytes_behind", "replay_bytes_behind")


@dataclass(frozen=True)
class LagSample:
    """One reading of the standby's lag at wall time ``t`` (None: not reported)."""

    t: float
    write_lag_ms: float | None
    flush_lag_ms: float | None
    replay_lag_ms: float | None
    sent_bytes_behind: int | None
    flush_bytes_behind: int | None
    replay_bytes_behind: int | None
    streaming: bool = True


def _ms(v: timedelta | None) -> float | None:
    return None if v is None else v.total_seconds() * 1000.0


def _bytes(v: Decimal | int | None) -> int | None:
    return None if v is None else int(v)


def sample_of(t: float, row: Sequence[Any] | None) -> LagSample:
    """A sample from a row of :data:`QUERY` (None: no standby streaming)."""
    if row is None:
        return LagSample(t, None, None, None, None, None, None, streaming=False)
    return LagSample(t, _ms(row[0]), _ms(row[1]), _ms(row[2]), _bytes(row[3]),
                     _bytes(row[4]), _bytes(row[5]))


def stats(values: Sequence[float | int | None]) -> dict[str, Any]:
    """p50, p99 and max of the reported values, with how many samples reported one."""
    got = np.array([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, Any] = {"samples": len(values), "reported": len(got)}
    if not len(got):
        return out | {"p50": None, "p99": None, "max": None}
    return out | {"p50": round(float(np.percentile(got, 50)), 1),
                  "p99": round(float(np.percentile(got, 99)), 1),
                  "max": round(float(got.max()), 1)}


def summary(samples: Sequence[LagSample], t0: float, t1: float) -> dict[str, Any]:
    """Each metric's stats over the samples taken in [t0, t1], and the samples in which
    the standby was not streaming."""
    window = [s for s in samples if t0 <= s.t <= t1]
    out: dict[str, Any] = {m: stats([getattr(s, m) for s in window]) for m in METRICS}
    out["not_streaming"] = sum(1 for s in window if not s.streaming)
    return out


class LagSampler:
    """Samples the primary's view of its standby every ``interval`` seconds."""

    def __init__(self, primary_url: str, interval: float = 0.25) -> None:
        self.url = primary_url
        self.interval = interval
        self.samples: list[LagSample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling in the background."""
        self._thread = threading.Thread(target=self._run, name="bench-lag", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.url, autocommit=True,
                                           application_name="bench-replica-lag")
                row = conn.execute(QUERY).fetchone()
                self.samples.append(sample_of(time.time(), row))
            except psycopg.Error as exc:
                log.warning("lag sample failed: %s", exc)
                if conn is not None:
                    conn.close()
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def between(self, t0: float, t1: float) -> dict[str, Any]:
        """The summary of the samples of a phase."""
        return summary(list(self.samples), t0, t1)


__all__ = ["METRICS", "LagSample", "LagSampler", "sample_of", "stats", "summary"]
