"""Latency, throughput and CPU per request of routes: an API server in a child process
(uvicorn, one worker as in production, or ``workers``) and ``clients`` concurrent
connections of the benchmark's own light HTTP client (:mod:`bench.apilib.client`) in this
process. CPU per request is counted apart for the server's processes, the database
backends serving it and this process (the client): it depends much less than latency on
what else the machine runs."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from beffroi.settings import Settings
from beffroi.stack import Stack
from bench.apilib.client import Connection, HttpError


@dataclass(frozen=True)
class Stats:
    """One (route, clients) measurement; ``cpu_ms``: CPU milliseconds per request of the
    ``server``, the ``database`` backends and the ``client`` (None: not measured)."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    rps: float
    seconds: float
    cpu_ms: dict[str, float | None] | None = None


@dataclass(frozen=True)
class Server:
    """A running API server: its base URL and the process id of its uvicorn."""

    base: str
    pid: int


_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` and of its children that ended and
    were waited for (a scenario run the server started and stopped), None: gone or
    unreadable. A child counted alive in one snapshot and ended by the next is counted
    once: its whole time then, less its time before."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / _TICK


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers)."""
    out = [pid]
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                out += _process_tree(int(child))
    return out


class CpuMeter:
    """CPU seconds used so far by the API server's processes, by the PostgreSQL backends
    of its pool (``application_name`` beffroi-api, on this machine) and by this process.
    The database's share is None when its processes cannot be read (another machine)."""

    def __init__(self, server_pid: int, db_url: str) -> None:
        self.server_pid = server_pid
        self._conn = psycopg.connect(db_url, autocommit=True,
                                     application_name="bench-api-meter")

    def close(self) -> None:
        """Close the meter's database connection."""
        self._conn.close()

    def _backends(self) -> list[int]:
        rows = self._conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name "
                                  "= 'beffroi-api'").fetchall()
        return [int(r[0]) for r in rows]

    def snapshot(self) -> dict[str, Any]:
        """Cumulative CPU seconds: ``server``, ``client``, and ``backends`` by pid. (The
        meter's own query, on a connection kept open, costs the client about 0.1 ms.)"""
        own = resource.getrusage(resource.RUSAGE_SELF)
        server = sum(_process_cpu_s(p) or 0.0 for p in _process_tree(self.server_pid))
        backends = {p: _process_cpu_s(p) for p in self._backends()}
        return {"server": server, "client": own.ru_utime + own.ru_stime,
                "backends": backends}

    @staticmethod
    def per_request(before: dict[str, Any], after: dict[str, Any],
                    requests: int) -> dict[str, float | None]:
        """CPU milliseconds per request between two snapshots (a backend opened in between
        counts from zero)."""
        n = max(requests, 1)
        db: float | None = 0.0
        for pid, cpu in after["backends"].items():
            if cpu is None or db is None:
                db = None
                continue
            db += cpu - (before["backends"].get(pid) or 0.0)
        return {"server": round((after["server"] - before["server"]) * 1000 / n, 2),
                "database": None if db is None else round(db * 1000 / n, 2),
                "client": round((after["client"] - before["client"]) * 1000 / n, 2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def api_process(db_url: str, log_path: Path, *, app: str = "api.main:create_app",
                read_url: str | None = None, workers: int = 1,
                env: dict[str, str] | None = None) -> Iterator[Server]:
    """``uvicorn api.main:create_app --factory`` (or another factory) on a free port, with
    ``workers`` processes (uvicorn's ``--workers``), reading from ``read_url``
    (``BEFFROI_DATABASE_READ_URL``, a standby) when given; ``env``: more settings.

    The factory's defaults: no background maintenance (``beffroi api`` runs it every
    minute), a pool of 10 database connections per process."""
    port = _free_port()
    # The factory reads its endpoints from the environment: the development stack's broker.
    stack_env = Stack(Settings()).environment()
    # No statement timeout: the baseline computes a year from raw rows (about 50 s), which
    # the API in service refuses after BEFFROI_API_STATEMENT_TIMEOUT_S (10 s).
    # The open data's per-address limit would answer 429 to the one client address of the
    # benchmark: lifted, as it is for a portal's harvester behind its own address.
    child = {**os.environ, **stack_env, "BEFFROI_DATABASE_URL": db_url,
             "BEFFROI_API_STATEMENT_TIMEOUT_S": "0",
             "BEFFROI_OPENDATA_RATE_PER_MINUTE": "100000000", **(env or {})}
    child.pop("BEFFROI_DATABASE_READ_URL", None)
    if read_url is not None:
        child["BEFFROI_DATABASE_READ_URL"] = read_url
    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--no-access-log", "--log-level", "warning"]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=child, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the API server exited ({proc.returncode}); see "
                                       f"{log_path}")
                try:
                    if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the API server did not get ready; see {log_path}")
                time.sleep(0.2)
            yield Server(base, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def api_server(db_url: str, log_path: Path, *, app: str = "api.main:create_app",
               workers: int = 1) -> Iterator[str]:
    """:func:`api_process` reading from ``db_url``; its base URL."""
    with api_process(db_url, log_path, app=app, workers=workers) as server:
        yield server.base


#: One request: method, path, JSON body (None: no body).
Request = tuple[str, str, bytes | None]


async def _measure(conns: list[Connection], requests: Callable[[int], Request], *,
                   seconds: float, max_requests: int, min_requests: int,
                   stop: threading.Event | None, ok: frozenset[int]) -> Stats:
    lat: list[float] = []
    errors = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    issued = 0

    async def worker(conn: Connection) -> None:
        nonlocal errors, issued
        while True:
            if issued >= max_requests or (time.perf_counter() >= deadline
                                          and issued >= min_requests):
                return
            if stop is not None and stop.is_set():
                return
            method, path, body = requests(issued)
            issued += 1
            t = time.perf_counter()
            try:
                status = (await conn.request(method, path, body)).status
            except HttpError:
                status = 0
            lat.append(time.perf_counter() - t)
            if status not in ok:
                errors += 1

    await asyncio.gather(*(worker(c) for c in conns))
    return stats_of(lat, errors, time.perf_counter() - t0)


def stats_of(lat: Sequence[float], errors: int, wall: float,
             cpu: dict[str, float | None] | None = None) -> Stats:
    """The measurement of latencies ``lat`` (seconds) over ``wall`` seconds."""
    if not lat:
        return Stats(0, errors, None, None, 0.0, round(wall, 1), cpu)
    ms = np.array(lat) * 1000
    return Stats(len(lat), errors, round(float(np.percentile(ms, 50)), 1),
                 round(float(np.percentile(ms, 99)), 1), round(len(lat) / wall, 1),
                 round(wall, 1), cpu)


async def measure(base: str, token: str, url: str | Sequence[str], clients: int, *,
                  seconds: float, max_requests: int, min_requests: int,
                  stop: threading.Event | None = None, meter: CpuMeter | None = None,
                  requests: Callable[[int], Request] | None = None,
                  ok: frozenset[int] = frozenset({200}), warm_up: bool = True) -> Stats:
    """Warm up (two requests, unless not ``warm_up``), then ``clients`` connections issue
    requests back to back until ``seconds`` passed (and at least ``min_requests`` were
    made), ``max_requests``, or ``stop`` is set; several URLs are asked in turn, or the
    ``requests`` given (the n-th request of the measurement: a POST, a body of its own).
    An answer whose status is not in ``ok`` counts as an error. With ``meter``, the CPU
    per request of the measured part."""
    urls = [url] if isinstance(url, str) else list(url)
    if requests is None:
        def requests(n: int) -> Request:
            return ("GET", urls[n % len(urls)], None)
    # The client's own garbage collections would show as server latency: keep them rare.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # As browsers and portals' harvesters ask: the open-data files come as their gzip copy
    # (the API compresses nothing else, so other answers are the same either way).
    conns = [Connection(base, {"Authorization": f"Bearer {token}", "Accept-Encoding": "gzip"})
             for _ in range(clients)]
    try:
        if warm_up:
            await asyncio.gather(*(c.get(urls[i % len(urls)])
                                   for i, c in enumerate(conns[:2])))
        before = meter.snapshot() if meter else None
        stats = await _measure(conns, requests, seconds=seconds, max_requests=max_requests,
                               min_requests=min_requests, stop=stop, ok=ok)
        if meter is not None and before is not None:
            stats = replace(stats, cpu_ms=meter.per_request(before, meter.snapshot(),
                                                            stats.requests))
        return stats
    finally:
        for c in conns:
            await c.close()


def fetch(base: str, token: str, url: str) -> Any:
    """One answer as JSON, or its bytes when it is not JSON (raises on an error status)."""
    r = httpx.get(base + url, headers={"Authorization": f"Bearer {token}"}, timeout=600)
    r.raise_for_status()
    if "json" not in r.headers.get("content-type", ""):
        return r.content
    return r.json()


def same_answer(a: Any, b: Any, *, rel: float = 1e-6, abs_: float = 0.06) -> bool:
    """Equal JSON up to float rounding (values are rounded to 0.1 by the routes)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = (set(a) | set(b)) - {"source"}
        return all(same_answer(a.get(k), b.get(k), rel=rel, abs_=abs_) for k in keys)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_answer(x, y, rel=rel, abs_=abs_)
                                        for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)
    return bool(a == b)
