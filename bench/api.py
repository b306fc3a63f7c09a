"""``make bench-api``: the HTTP API over a simulated year of the demo city.

1. A dedicated database, ``beffroi_bench_api``, holds one year (365 local days ending at the
   first of the current month) of the demo city's readings: ~26 M grid readings (500 meters
   every 10 minutes), ~17 M parking sensor messages, ~4 M wifi AP reports, payments and
   meter statuses, generated with numpy and loaded by binary COPY (``bench.apilib``), not
   through MQTT. A database that already holds that year is not loaded again.
2. ``beffroi maintain --rollups-only`` builds the hourly rollups (skipped when they already
   cover the year).
3. The API runs as ``uvicorn api.main:create_app --factory`` in a child process (one worker,
   as deployed, or ``--workers``); this process is the client: 1 and 16 keep-alive
   connections per route of a minimal HTTP/1.1 client on asyncio streams
   (``bench.apilib.client``; httpx cost as much CPU per request as the API's lightest
   routes, taken from the cores the server needs). Client and server share the 2 cores
   (in-process ASGI would hide the HTTP and event-loop costs and let the client's work
   block the server's loop: a child process is the closer picture of production). Each
   measurement also counts the CPU per request of the server, of the database backends
   serving it and of the client, much less sensitive than latency to what else the
   machine runs.
4. The baseline is the same route with ``source=raw`` (answers computed from raw rows, no
   rollups), in the same run, on fewer requests when it is slow; routes whose raw and
   rolled-up answers differ are flagged.

Results: ``bench/results/api.json`` and ``bench/results/api.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from api.maintenance import ROLLUPS
from api.tokens import create_token, revoke_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from bench.apilib import flows
from bench.apilib.load import DB_NAME, Dataset, prepare
from bench.apilib.measure import (
    CpuMeter,
    Request,
    Stats,
    api_process,
    fetch,
    measure,
    same_answer,
)
from bench.apilib.steady import Steady
from bench.apilib.synth import Year
from devices.democity import INSEE

log = logging.getLogger("bench.api")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SEED = 2025
CLIENTS = (1, 16)
TARGET_MS = 100.0
DEAD_DEVICE = "spot-grand-place-001"
RAW_BUDGET_S = 45.0  # longest expected round of concurrent raw requests


@dataclass(frozen=True)
class Route:
    """A route measured, and whether it is one of the targets."""

    name: str
    url: str
    what: str
    target: bool = True  # the issue's target holds for every route (p99 < 100 ms)
    raw: bool = True  # has a source=raw baseline
    method: str = "GET"
    ok: frozenset[int] = frozenset({200})  # the statuses that are answers
    flow: str = ""  # "signin" or "run": measured by bench.apilib.flows


def periods(year: Year) -> dict[str, date]:
    """The dates the routes ask for: the year, its last month, week and Saturday."""
    end = year.first + timedelta(days=year.days)
    m1 = end.replace(day=1)
    m0 = (m1 - timedelta(days=1)).replace(day=1)
    sat = end - timedelta(days=1)
    while sat.weekday() != 5:
        sat -= timedelta(days=1)
    return {"y0": year.first, "y1": end, "m0": m0, "m1": m1, "w0": end - timedelta(days=7),
            "w1": end, "d0": sat, "d1": sat + timedelta(days=1)}


def routes(year: Year) -> list[Route]:
    """The routes measured, over the loaded period."""
    p = {k: v.isoformat() for k, v in periods(year).items()}
    y, m, w, d = (f"from={p['y0']}&to={p['y1']}", f"from={p['m0']}&to={p['m1']}",
                  f"from={p['w0']}&to={p['w1']}", f"from={p['d0']}&to={p['d1']}")
    return [
        Route("grid-district-year-1d", f"/v1/grid/districts/baudimont/energy?{y}&bucket=1d",
              "energy of a district (280 meters), a year at daily buckets", target=True),
        Route("parking-zone-day-15m",
              f"/v1/parking/zones/parking-grand-place/occupancy?{d}&bucket=15m",
              "occupancy of a zone (130 spots), a Saturday at 15 minutes", target=True),
        Route("wifi-square-month-1h", f"/v1/wifi/squares/grand-place/clients?{m}&bucket=1h",
              "wifi clients of a square (5 APs), a month per hour"),
        Route("parking-revenue-month-1d",
              f"/v1/parking/zones/parking-grand-place/revenue?{m}&bucket=1d",
              "revenue of a zone (5 meters), a month per day"),
        Route("parking-zone-month-1d",
              f"/v1/parking/zones/parking-grand-place/occupancy?{m}&bucket=1d",
              "occupancy of a zone, a month per day"),
        Route("grid-district-day-30m",
              f"/v1/grid/districts/saint-michel/energy?{d}&bucket=30m",
              "load curve of a district (220 meters), a day per 30 minutes"),
        Route("grid-district-week-voltage",
              f"/v1/grid/districts/saint-michel/voltage?{w}&bucket=1d",
              "voltage quality of a district, a week per day"),
        Route("grid-district-month-peaks",
              f"/v1/grid/districts/baudimont/peaks?{m}&bucket=1d",
              "daily peak power of a district, a month"),
        Route("grid-meter-year-1d",
              f"/v1/grid/meters/linky-baudimont-0001/energy?{y}&bucket=1d",
              "energy of one meter, a year per day"),
        Route("parking-zone-month-turnover",
              f"/v1/parking/zones/parking-grand-place/turnover?{m}&bucket=1d",
              "turnover of a zone, a month per day"),
        Route("grid-district-year-export",
              f"/v1/grid/districts/baudimont/export?{y}&bucket=1mo",
              "solar export of a district, a year per month"),
        Route("devices-list", "/v1/devices?family=grid_meter&limit=100",
              "inventory: 100 grid meters with health", raw=False),
        # The other routes, each answered once at the size a dashboard asks for.
        Route("parking-spot-week-1h",
              f"/v1/parking/spots/spot-grand-place-001/occupancy?{w}&bucket=1h",
              "occupancy of one spot, a week per hour", raw=False),
        Route("parking-spot-month-turnover",
              f"/v1/parking/spots/spot-grand-place-001/turnover?{m}&bucket=1d",
              "turnover of one spot, a month per day", raw=False),
        Route("parking-meter-month-revenue",
              f"/v1/parking/meters/meter-grand-place-01/revenue?{m}&bucket=1d",
              "revenue of one parking meter, a month per day", raw=False),
        Route("parking-zone-current", "/v1/parking/zones/parking-grand-place/current",
              "free / occupied / unknown spots of a zone now", raw=False),
        Route("grid-meter-day-30m",
              f"/v1/grid/meters/linky-baudimont-0001/energy?{d}&bucket=30m",
              "load curve of one meter, a day per 30 minutes", raw=False),
        Route("grid-meter-month-peaks",
              f"/v1/grid/meters/linky-baudimont-0001/peaks?{m}&bucket=1d",
              "daily peak power of one meter, a month", raw=False),
        Route("grid-meter-week-voltage",
              f"/v1/grid/meters/linky-baudimont-0001/voltage?{w}&bucket=1d",
              "voltage quality at one meter, a week per day", raw=False),
        Route("wifi-ap-day-1h", f"/v1/wifi/aps/ap-grand-place-01/clients?{d}&bucket=1h",
              "wifi clients of one access point, a day per hour", raw=False),
        Route("wifi-square-month-traffic",
              f"/v1/wifi/squares/grand-place/traffic?{m}&bucket=1d",
              "wifi traffic of a square, a month per day", raw=False),
        Route("wifi-square-week-dwell", f"/v1/wifi/squares/grand-place/dwell?{w}&bucket=1d",
              "dwell times on a square, a week per day", raw=False),
        Route("wifi-square-month-visitors",
              f"/v1/wifi/squares/grand-place/visitors?{m}&bucket=1d",
              "unique visitors of a square, a month per day", raw=False),
        Route("grid-meter-year-export",
              f"/v1/grid/meters/linky-baudimont-0004/export?{y}&bucket=1mo",
              "solar export of one producer, a year per month", raw=False),
        Route("wifi-ap-month-traffic", f"/v1/wifi/aps/ap-grand-place-01/traffic?{m}&bucket=1d",
              "wifi traffic of one access point, a month per day", raw=False),
        Route("wifi-ap-week-dwell", f"/v1/wifi/aps/ap-grand-place-01/dwell?{w}&bucket=1d",
              "dwell times at one access point, a week per day", raw=False),
        Route("wifi-ap-month-visitors",
              f"/v1/wifi/aps/ap-grand-place-01/visitors?{m}&bucket=1d",
              "unique visitors of one access point, a month per day", raw=False),
        Route("sites-list", "/v1/sites", "inventory: every site", raw=False),
        Route("device-one", "/v1/devices/linky-baudimont-0001",
              "inventory: one device with its health", raw=False),
        Route("health-devices", "/v1/health/devices", "device health summary", raw=False),
        Route("health-silent", "/v1/health/silent", "silent devices", raw=False),
        Route("ngsi-ld-parking", "/ngsi-ld/v1/entities?type=OnStreetParking&limit=100",
              "open data: NGSI-LD parking zones now (no token)", raw=False),
        Route("ngsi-ld-spots", "/ngsi-ld/v1/entities?type=ParkingSpot&limit=100",
              "open data: 100 NGSI-LD parking spots now (no token)", raw=False),
        Route("ngsi-ld-spot-one",
              f"/ngsi-ld/v1/entities/urn:ngsi-ld:ParkingSpot:{INSEE}:spot-grand-place-001",
              "open data: one NGSI-LD parking spot now (no token)", raw=False),
        Route("site-one", "/v1/sites/baudimont", "inventory: one site", raw=False),
        Route("health-site", "/v1/health/sites/grand-place",
              "device health of a site (the dashboard's site page)", raw=False),
        Route("dashboard-rejections", "/v1/dashboard/rejections?minutes=1440",
              "dashboard: messages rejected in the last 24 h, by reason", raw=False),
        Route("dashboard-ingest", "/v1/dashboard/ingest",
              "dashboard: the ingestor's counters (no ingestor runs: unavailable)",
              raw=False),
        Route("dead-letters-list", "/v1/operate/dead-letters?limit=100",
              "operators: the 100 latest dead letters of the year", raw=False),
        Route("dead-letters-month-device",
              f"/v1/operate/dead-letters?device={DEAD_DEVICE}&{m}&limit=100",
              "operators: one device's dead letters of a month", raw=False),
        Route("dead-letters-counts-month", f"/v1/operate/dead-letters/counts?{m}",
              "operators: a month of dead letters by reason and by device", raw=False),
        Route("scenarios", "/v1/operate/scenarios", "operators: the scenarios to replay",
              raw=False),
        Route("runs", "/v1/operate/runs", "operators: the scenario runs", raw=False),
        Route("ready", "/ready", "readiness: the database and the broker reached (compose's "
              "health check)", raw=False),
        Route("opendata-index", "/opendata",
              "open data: the package's files (the year published)", raw=False),
        Route("opendata-datapackage", "/opendata/datapackage.json",
              "open data: datapackage.json (Frictionless, 43 kB)", raw=False),
        Route("opendata-daily-csv", "/opendata/occupation-stationnement-journaliere.csv",
              "open data: a year of parking occupancy per day (CSV, 170 kB)", raw=False),
        Route("opendata-hourly-csv", "/opendata/occupation-stationnement-horaire.csv",
              "open data: a year of parking occupancy per hour (CSV, 4 MB)", raw=False),
        Route("health", "/health", "liveness (no token, no database)", raw=False),
        Route("dashboard-page", "/", "dashboard: its page (no token)", raw=False),
        Route("dashboard-config", "/dashboard/config.json",
              "dashboard: its configuration (no token)", raw=False),
        Route("dashboard-script", "/dashboard/static/js/series.js",
              "dashboard: one of its scripts (no token)", raw=False),
        Route("dashboard-link", flows.LINKS, "dashboard: a one-time sign-in link (POST)",
              raw=False, method="POST", ok=frozenset({201})),
        Route("dashboard-signin", flows.SIGNIN,
              "dashboard: a sign-in code exchanged for its token (POST; each code once)",
              raw=False, method="POST", flow="signin"),
        Route("run", flows.RUNS, "operators: start a scenario run, read it, stop it",
              raw=False, flow="run"),
    ]


def _raw(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "source=raw"


# -- maintenance ---------------------------------------------------------------------------------

def rollups_cover(url: str, year: Year) -> bool:
    """True when every rollup covers the year (those of raw rows kept less than a year,
    the dead letters' daily counts, their retention's end of it)."""
    end = datetime.fromtimestamp(year.end, UTC)
    start = datetime.fromtimestamp(year.start, UTC)
    settings = Settings()
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('rollup_state')").fetchone()
        if exists is None or exists[0] is None:
            return False
        rows = conn.execute("SELECT name, since, watermark FROM rollup_state").fetchall()
    state = {n: (s, w) for n, s, w in rows}
    for name, (tables, _compute) in ROLLUPS.items():
        kept = max(settings.retention_days(t) for t in tables)
        since, watermark = state.get(name, (None, None))
        if since is None or watermark is None or watermark < end:
            return False
        if since > max(start, end - timedelta(days=kept)):
            return False
    return True


def run_maintain(url: str, year: Year, fresh: bool) -> dict[str, Any]:
    """``beffroi maintain --rollups-only`` (from the year's start after a load)."""
    exe = shutil.which("beffroi", path=str(Path(sys.executable).parent)) or "beffroi"
    probe = subprocess.run([exe, "maintain", "--help"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        log.warning("no `beffroi maintain` command: routes will read raw rows only")
        return {"ran": False, "note": "beffroi maintain does not exist in this version"}
    if not fresh and rollups_cover(url, year):
        log.info("rollups already cover the year: maintain not run")
        return {"ran": False, "note": "rollups already covered the year (cached)"}
    start = datetime.fromtimestamp(year.start, UTC).isoformat()
    cmd = [exe, "maintain", "--rollups-only", "--from", start]
    log.info("running %s", " ".join(cmd))
    t0 = time.monotonic()
    env = {**os.environ, "BEFFROI_DATABASE_URL": url}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        log.error("maintain failed (%d): %s", proc.returncode, proc.stderr[-2000:])
        return {"ran": True, "ok": False, "seconds": seconds, "stderr": proc.stderr[-2000:]}
    log.info("maintain: %.0fs; %s", seconds, " | ".join(proc.stdout.strip().splitlines()[-6:]))
    return {"ran": True, "ok": True, "seconds": seconds,
            "output": proc.stdout.strip().splitlines()[-20:]}


def publish_opendata(url: str, year: Year, out: Path) -> dict[str, Any]:
    """``beffroi opendata publish`` of the year into ``out`` (unchanged files are not
    rewritten: a second run costs the queries only), which the API serves."""
    exe = shutil.which("beffroi", path=str(Path(sys.executable).parent)) or "beffroi"
    start = datetime.fromtimestamp(year.start, UTC).astimezone(year.tz)
    end = datetime.fromtimestamp(year.end, UTC).astimezone(year.tz)
    cmd = [exe, "opendata", "publish", "--out", str(out), "--from", start.isoformat(),
           "--to", end.isoformat()]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env={**os.environ, "BEFFROI_DATABASE_URL": url},
                          capture_output=True, text=True, check=False)
    seconds = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        raise RuntimeError(f"opendata publish failed ({proc.returncode}): "
                           f"{proc.stderr[-2000:]}")
    log.info("open data published in %.1fs: %s", seconds, proc.stdout.strip()[-200:])
    return {"seconds": seconds, "dir": str(out),
            "files": sorted(p.name for p in out.iterdir())}


# -- machine ----------------------------------------------------------------------------------

def machine(url: str) -> dict[str, Any]:
    """CPU, memory, OS, versions, PostgreSQL settings, load at start."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    with psycopg.connect(url, autocommit=True) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                          ).fetchone()
        pg_settings: dict[str, str] = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
            (["shared_buffers", "work_mem", "effective_cache_size", "max_parallel_workers",
              "jit"],)).fetchall())
        size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                            ).fetchone()
    import fastapi
    import uvicorn
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "os": os_name,
            "kernel": platform.release(), "python": platform.python_version(),
            "postgresql": pg[0] if pg else None, "timescaledb": ts[0] if ts else None,
            "postgresql_settings": pg_settings, "database_size": size[0] if size else None,
            "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
            "load_average": list(os.getloadavg())}


# -- measuring -----------------------------------------------------------------------------------

def _row(route: Route, clients: int, auto: Stats, base: Stats | None, source: str | None,
         matches: bool | None, machine: dict[str, float | None] | None = None
         ) -> dict[str, Any]:
    return {"route": route.url.split("?")[0], "name": route.name, "url": route.url,
            "what": route.what, "clients": clients, "p50_ms": auto.p50_ms,
            "p99_ms": auto.p99_ms, "rps": auto.rps, "requests": auto.requests,
            "errors": auto.errors, "source": source,
            "baseline_p50_ms": base.p50_ms if base else None,
            "baseline_p99_ms": base.p99_ms if base else None,
            "baseline_rps": base.rps if base else None,
            "baseline_requests": base.requests if base else None,
            "matches_raw": matches, "target": route.target,
            "cpu_ms_per_request": auto.cpu_ms, "machine": machine}


#: Sign-in codes redeemed per measurement: the API keeps at most 1,000 waiting.
SIGNIN_CODES = 1000
#: The scenario the run routes start (in real time: it publishes little).
RUN_SCENARIO = "weekday"


def _run_changes(base: str, token: str, r: Route, seconds: float,
                 meter: CpuMeter | None, steady: Steady) -> list[dict[str, Any]]:
    """A route that changes something (:mod:`bench.apilib.flows`), with 1 and 16 clients:
    one row, or one per step of a run."""
    out = []
    for clients in CLIENTS:
        what = f"{r.name} x{clients}"
        if r.flow == "run":
            with steady.measuring(what) as machine:
                per_step = asyncio.run(flows.run_cycles(base, token, clients, RUN_SCENARIO,
                                                        seconds=seconds, meter=meter))
            for step, st in per_step.items():
                row = Route(step, r.url, f"{r.what}: {step.removeprefix('run-')} step",
                            raw=False, ok=flows.RUN_OK[step], flow="run")
                out.append(_row(row, clients, st, None, None, None, machine))
                _log(row, clients, st, None, None, machine)
            continue
        # Each sign-in code works once: as many requests as codes, issued just before.
        bodies = (flows.issue_codes(base, token, SIGNIN_CODES) if r.flow == "signin"
                  else [b"{}"])
        once = r.flow == "signin"
        with steady.measuring(what) as machine:
            st = asyncio.run(measure(base, token, r.url, clients, seconds=seconds,
                                     max_requests=len(bodies) if once else 100_000,
                                     min_requests=len(bodies) if once else 2 * clients,
                                     meter=meter, requests=_posts(r.url, bodies), ok=r.ok,
                                     warm_up=False))
        out.append(_row(r, clients, st, None, None, None, machine))
        _log(r, clients, st, None, None, machine)
    return out


def _posts(path: str, bodies: list[bytes]) -> Callable[[int], Request]:
    """The n-th request posts the n-th of ``bodies`` (in turn) to ``path``."""
    def request(n: int) -> Request:
        return ("POST", path, bodies[n % len(bodies)])
    return request


def _log(r: Route, clients: int, auto: Stats, source: str | None,
         baseline: Stats | None, machine: dict[str, float | None]) -> None:
    cpu = auto.cpu_ms or {}
    log.info("%-28s %2d client(s): p50 %7s ms  p99 %7s ms  %7s req/s  (%s)  | CPU "
             "ms/request: server %s, database %s, client %s | raw p99 %s ms | machine speed "
             "%s, steal %s %%%s", r.name, clients, auto.p50_ms, auto.p99_ms, auto.rps, source,
             cpu.get("server"), cpu.get("database"), cpu.get("client"),
             baseline.p99_ms if baseline else "-", machine.get("speed"),
             machine.get("steal_pct"), f" | {auto.errors} error(s)" if auto.errors else "")


def run_routes(base: str, token: str, todo: list[Route], seconds: float, *,
               meter: CpuMeter | None = None, baselines: bool = True,
               steady: Steady | None = None) -> list[dict[str, Any]]:
    """Every route with 1 and 16 clients, then its raw baseline (unless not
    ``baselines``); each measurement once the machine runs at its usual speed
    (:class:`bench.apilib.steady.Steady`)."""
    steady = steady or Steady()
    out = []
    for r in todo:
        if r.flow or r.method != "GET":
            out += _run_changes(base, token, r, seconds, meter, steady)
            continue
        t = time.perf_counter()
        answer = fetch(base, token, r.url)
        once_s = time.perf_counter() - t
        source = answer.get("source") if isinstance(answer, dict) else None
        matches: bool | None = None
        raw_once_s = None
        if r.raw and baselines:
            t = time.perf_counter()
            raw_answer = fetch(base, token, _raw(r.url))
            raw_once_s = time.perf_counter() - t
            matches = same_answer(answer, raw_answer)
            if not matches:
                log.warning("%s: the rolled-up answer differs from the raw one", r.name)
        for clients in CLIENTS:
            # A slow route runs one round of requests per client only.
            slow = once_s * clients / (os.cpu_count() or 1) > seconds
            with steady.measuring(f"{r.name} x{clients}") as machine:
                auto = asyncio.run(measure(base, token, r.url, clients, seconds=seconds,
                                           max_requests=clients if slow else 100_000,
                                           min_requests=clients if slow else 2 * clients,
                                           meter=meter))
            baseline = None
            if r.raw and raw_once_s is not None:
                # One round of `clients` raw requests costs about clients x raw_once_s of
                # CPU over the cores; beyond the budget the baseline is not measured at
                # that concurrency (its p99 would be minutes), and a single raw request
                # stands for the 1-client baseline.
                round_s = raw_once_s * clients / (os.cpu_count() or 1)
                if clients == 1 and raw_once_s > seconds:
                    ms = round(raw_once_s * 1000, 1)
                    baseline = Stats(1, 0, ms, ms, round(1 / raw_once_s, 2),
                                     round(raw_once_s, 1))
                elif round_s <= RAW_BUDGET_S:
                    budget = max(1, int(seconds / max(raw_once_s, 1e-3) * min(clients, 2)))
                    baseline = asyncio.run(measure(
                        base, token, _raw(r.url), clients, seconds=seconds,
                        max_requests=max(clients, min(budget, 100_000)),
                        min_requests=clients))
                else:
                    log.info("%s: raw baseline with %d clients skipped (one raw answer "
                             "takes %.1fs)", r.name, clients, raw_once_s)
            _log(r, clients, auto, source, baseline, machine)
            out.append(_row(r, clients, auto, baseline, source, matches, machine))
    return out


# -- report -------------------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.1f}"


def _fmt2(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


def markdown(doc: dict[str, Any]) -> str:
    """The results as a markdown page."""
    m, ds = doc["machine"], doc["dataset"]
    lines = ["# API benchmark", "",
             f"Generated by `make bench-api` (`python -m bench.api`) on {doc['generated_at']}"
             f" in {doc['total_s']:.0f} s. Raw data: `api.json`.", "",
             "## Machine", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['memory_gib']} GiB; {m['os']} "
             f"(kernel {m['kernel']})",
             f"- PostgreSQL {m['postgresql']} + TimescaleDB {m['timescaledb']} "
             f"({', '.join(f'{k} {v}' for k, v in sorted(m['postgresql_settings'].items()))})",
             f"- Python {m['python']}, FastAPI {m['fastapi']}, uvicorn {m['uvicorn']} ("
             + (f"{doc['workers']} workers" if doc.get("workers", 1) > 1 else "one worker")
             + ", child process); client: the benchmark's own HTTP/1.1 keep-alive client on "
             "asyncio streams, in the benchmark process: client, server and database share "
             "the cores",
             f"- Load average at start: {', '.join(f'{x:.2f}' for x in m['load_average'])}",
             "", "## Data", "",
             f"Database `{DB_NAME}` ({m['database_size']}): {ds['days']} local days from "
             f"{ds['first']} ({ds['tz']}), seed {ds['seed']}; "
             + ", ".join(f"{t} {n:,}" for t, n in sorted(ds["rows"].items())) +
             f" — {sum(ds['rows'].values()):,} rows. "
             + (f"Loaded in {ds['load_s']:.0f} s (binary COPY, 2 connections) + "
                f"{ds['vacuum_s']:.0f} s vacuum/analyze."
                if ds["load_s"] is not None else "Already loaded (cached): not reloaded."),
             "", f"Rollups: {json.dumps(doc['maintain'])}", "",
             *([f"Open data: the year published by `beffroi opendata publish` in "
                f"{doc['opendata']['seconds']} s ({len(doc['opendata']['files'])} files), "
                "served by the API from that directory.", ""] if doc.get("opendata") else []),
             "## Results", "",
             "Per route and number of concurrent clients: latency of the route as served "
             "(`source` says whether the answer came from rollups), its CPU per request "
             "(milliseconds of the API server's processes / of the PostgreSQL backends "
             "serving it / of the client), and the baseline: the same route with "
             "`source=raw` (computed from raw rows), same run.", "",
             "| route | what | clients | p50 ms | p99 ms | req/s | CPU ms/req server / db / "
             "client | machine speed / steal % | source | baseline p50 ms | baseline p99 ms "
             "| baseline req/s | raw = rollup |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in doc["routes"]:
        cpu = r.get("cpu_ms_per_request") or {}
        lines.append(
            f"| `{r['name']}` | {r['what']} | {r['clients']} | {_fmt(r['p50_ms'])} | "
            f"**{_fmt(r['p99_ms'])}** | {_fmt(r['rps'])} | "
            + " / ".join(_fmt2(cpu.get(k)) for k in ("server", "database", "client"))
            + " | " + " / ".join(_fmt2((r.get("machine") or {}).get(k))
                                 for k in ("speed", "steal_pct"))
            + f" | {r['source'] or '—'} | "
            f"{_fmt(r['baseline_p50_ms'])} | {_fmt(r['baseline_p99_ms'])} | "
            f"{_fmt(r['baseline_rps'])} | "
            f"{'—' if r['matches_raw'] is None else ('yes' if r['matches_raw'] else 'NO')} |")
    lines += ["", "## Targets", "", "| target | measured p99 (16 clients) | met |",
              "|---|---:|---|"]
    for t in doc["targets"]:
        lines.append(f"| {t['target']} | {_fmt(t['p99_ms'])} ms | "
                     f"**{'yes' if t['met'] else 'no'}** |")
    lines += ["", "URLs (`from`/`to` are local dates, Europe/Paris):", ""]
    lines += [f"- `{r['name']}`: `{r['url']}`" for r in doc["routes"] if r["clients"] == 1]
    lines += ["", "Method: each measurement warms up, then runs its clients back to back for "
              f"{doc['seconds_per_measurement']:g} s (a route whose round of concurrent requests "
              "would take longer runs one request per client: its p99 is then its maximum); "
              "slow baselines run a bounded number of requests (at least one per client); a "
              "baseline whose round of concurrent raw requests would exceed "
              f"{RAW_BUDGET_S:g} s is not measured at that concurrency (—), and when one raw "
              "answer takes longer than a measurement, that single answer is the 1-client "
              "baseline. CPU per request: user + system time of the server's processes and "
              "of the PostgreSQL backends of its pool (`/proc`), and of the benchmark process "
              "(the client), over the measured requests (warm-up excluded), divided by their "
              "number; with one worker the server's share is what queues requests behind each "
              "other (16 clients x 3 ms of server CPU is about 50 ms of waiting). Machine speed: "
              "before each measurement the benchmark times a fixed piece of Python work "
              "and, when it runs more than 1.25 times slower than the fastest of the run, "
              "waits for the machine (at most 30 s per measurement, 10 min per run) then "
              "measures anyway; the column gives that probe's speed against the fastest "
              "(1.00: as fast) and the share of the cores the hypervisor took (steal) "
              "during the measurement (`bench/apilib/steady.py`).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.api``."""
    ap = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=365, help="days of data (default 365)")
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="seconds per measurement (default 5)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    ap.add_argument("--only", nargs="*", help="route names to measure (default: all)")
    ap.add_argument("--workers", type=int, default=1,
                    help="uvicorn worker processes of the API server (default 1, as "
                    "`beffroi api` runs it)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the source=raw baselines (and the raw = rollup check): a "
                    "quick look at latency and CPU per request")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    t_start = time.monotonic()
    settings = Settings()
    stack = Stack(settings)
    stack.up()
    tz = ZoneInfo(settings.timezone)
    end = datetime.now(tz).date().replace(day=1)
    year = Year(end - timedelta(days=args.days), args.days, tz)
    ds: Dataset = prepare(stack, year, SEED)
    maintain = run_maintain(ds.url, year, fresh=ds.load_s is not None)
    opendata = publish_opendata(ds.url, year, ROOT / "bench" / "work" / "opendata")
    todo = [r for r in routes(year) if not args.only or r.name in args.only]
    token_name = f"bench-api-{int(time.time())}"
    with psycopg.connect(ds.url) as conn:
        token, _ = create_token(conn, token_name, ["read", "operate"])
    info = machine(ds.url)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        with api_process(ds.url, args.out / "api-server.log", workers=args.workers,
                         env={"BEFFROI_OPENDATA_DIR": opendata["dir"]}) as server:
            meter = CpuMeter(server.pid, ds.url)
            try:
                rows = run_routes(server.base, token, todo, args.seconds, meter=meter,
                                  baselines=not args.no_baseline)
            finally:
                meter.close()
    finally:
        with psycopg.connect(ds.url) as conn:
            revoke_token(conn, name=token_name)
    targets = []
    for r in rows:
        if r["target"] and r["clients"] == 16:
            targets.append({"target": f"{r['what']}: p99 < {TARGET_MS:g} ms with 16 clients",
                            "route": r["name"], "p99_ms": r["p99_ms"],
                            "met": r["p99_ms"] is not None and r["p99_ms"] < TARGET_MS})
    doc = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "total_s": round(time.monotonic() - t_start, 1), "machine": info,
           "dataset": {**ds.spec, "rows": ds.rows, "load_s": ds.load_s,
                       "vacuum_s": ds.vacuum_s},
           "maintain": maintain, "opendata": opendata,
           "seconds_per_measurement": args.seconds,
           "workers": args.workers, "baselines": not args.no_baseline,
           "routes": rows, "targets": targets}
    (args.out / "api.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    (args.out / "api.md").write_text(markdown(doc), encoding="utf-8")
    log.info("wrote %s and api.md in %.0fs", args.out / "api.json", doc["total_s"])
    for t in targets:
        log.info("target %s: p99 %s ms -> %s", t["route"], t["p99_ms"],
                 "met" if t["met"] else "NOT met")
    return 0


__all__ = ["Route", "main", "periods", "routes"]

if __name__ == "__main__":
    sys.exit(main())
