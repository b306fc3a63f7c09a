"""Latency and throughput of routes: an API server in a child process (uvicorn, one worker,
as in production) and ``clients`` concurrent httpx clients in this process."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from beffroi.settings import Settings
from beffroi.stack import Stack


@dataclass(frozen=True)
class Stats:
    """One (route, clients) measurement."""

    requests: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    rps: float
    seconds: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running API server: its base URL and process id."""

    base: str
    pid: int


@contextlib.contextmanager
def api_process(db_url: str, log_path: Path, *, app: str = "api.main:create_app",
                read_url: str | None = None) -> Iterator[Server]:
    """``uvicorn api.main:create_app --factory`` (or another factory) on a free port,
    reading from ``read_url`` (``BEFFROI_DATABASE_READ_URL``, a standby) when given.

    The factory's defaults: no background maintenance (``beffroi api`` runs it every
    minute), a pool of 10 database connections."""
    port = _free_port()
    # The factory reads its endpoints from the environment: the development stack's broker.
    stack_env = Stack(Settings()).environment()
    # No statement timeout: the baseline computes a year from raw rows (about 50 s), which
    # the API in service refuses after BEFFROI_API_STATEMENT_TIMEOUT_S (10 s).
    env = {**os.environ, **stack_env, "BEFFROI_DATABASE_URL": db_url,
           "BEFFROI_API_STATEMENT_TIMEOUT_S": "0"}
    env.pop("BEFFROI_DATABASE_READ_URL", None)
    if read_url is not None:
        env["BEFFROI_DATABASE_READ_URL"] = read_url
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
             "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
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
def api_server(db_url: str, log_path: Path, *,
               app: str = "api.main:create_app") -> Iterator[str]:
    """:func:`api_process` reading from ``db_url``; its base URL."""
    with api_process(db_url, log_path, app=app) as server:
        yield server.base


async def _measure(client: httpx.AsyncClient, urls: Sequence[str], clients: int, *,
                   seconds: float, max_requests: int, min_requests: int,
                   stop: threading.Event | None) -> Stats:
    lat: list[float] = []
    errors = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    issued = 0

    async def worker() -> None:
        nonlocal errors, issued
        while True:
            if issued >= max_requests or (time.perf_counter() >= deadline
                                          and issued >= min_requests):
                return
            if stop is not None and stop.is_set():
                return
            url = urls[issued % len(urls)]
            issued += 1
            t = time.perf_counter()
            r = await client.get(url)
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    if not lat:
        return Stats(0, errors, None, None, 0.0, wall)
    ms = np.array(lat) * 1000
    return Stats(len(lat), errors, round(float(np.percentile(ms, 50)), 1),
                 round(float(np.percentile(ms, 99)), 1), round(len(lat) / wall, 1),
                 round(wall, 1))


async def measure(base: str, token: str, url: str | Sequence[str], clients: int, *,
                  seconds: float, max_requests: int, min_requests: int,
                  stop: threading.Event | None = None) -> Stats:
    """Warm up (one request per client), then ``clients`` workers issue requests until
    ``seconds`` passed (and at least ``min_requests`` were made), ``max_requests``, or
    ``stop`` is set. Several URLs are asked in turn."""
    urls = [url] if isinstance(url, str) else list(url)
    # The client's own garbage collections would show as server latency: keep them rare.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=600,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        await asyncio.gather(*(client.get(urls[i % len(urls)])
                               for i in range(min(clients, 2))))
        return await _measure(client, urls, clients, seconds=seconds,
                              max_requests=max_requests, min_requests=min_requests,
                              stop=stop)


def fetch(base: str, token: str, url: str) -> Any:
    """One answer as JSON (raises on an error status)."""
    r = httpx.get(base + url, headers={"Authorization": f"Bearer {token}"}, timeout=600)
    r.raise_for_status()
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
