"""``make bench-replica``: the API reading from a hot standby while the ingestor writes to the
primary, measured on one machine in one run.

1. Two PostgreSQL clusters configured as the local stack's (``beffroi.stack.replica``, as in
   ``tests/integration/test_replica.py``): a primary and a hot standby made from it with
   ``pg_basebackup -R -X stream``, streaming. Not the stack's own cluster: a base backup
   copies a whole cluster, and the stack's holds the other benchmarks' databases (about
   10 GB after ``make bench-api``), which would take minutes and as much disk to copy.
2. On the primary: ``--days`` local days of the demo city's readings (``bench.apilib``:
   numpy, binary COPY), ending before the stream's own reading times; the demo city with the
   stream's DevEUIs and meter serials; ``beffroi maintain --rollups-only``. The standby
   replays all of it.
3. One ``beffroi ingest`` process writes to the primary for the whole run, fed through the
   stack's Mosquitto by the ingest benchmark's stream and publishers (``bench.ingestlib``);
   each phase publishes the next slice of the stream, so no reading is published twice.
4. Phases: ``ingest-paced`` (publishers at ``--rate`` for ``--paced-seconds``, no API) and
   ``ingest-max`` (``--max-messages`` flat out, no API); then with the API reading from the
   standby (``BEFFROI_DATABASE_READ_URL``), and again with it reading from the primary:
   ``paced+api-…`` (publishers at ``--rate`` while each route is measured with 1 and 16
   clients for ``--seconds``) and ``max+api-…`` (``--max-messages`` flat out while 16 clients
   ask the routes in turn).
5. Throughout: the standby's lag from the primary's ``pg_stat_replication`` every 0.25 s; the
   CPU of each process (primary and standby clusters, broker, ingestor, API, publishers,
   this process) per phase.
6. At the end, the readings published are counted on the primary and on the standby.

Results: ``bench/results/replica.json`` and ``replica.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from beffroi.stack.replica import Pair, replica_pair
from bench.api import Route, periods, routes, run_maintain
from bench.apilib.load import prepare_url
from bench.apilib.measure import Server, Stats, api_process, fetch, measure, same_answer
from bench.apilib.synth import Year
from bench.ingest import (
    ALL_TABLES,
    SEED,
    Env,
    Ingestor,
    Publishers,
    concurrent_activity,
    latency_sql,
    machine_info,
    prepare_registry,
)
from bench.ingestlib.procstat import Group, Sampler, descendants
from bench.ingestlib.stream import ensure_stream
from bench.replicalib.lag import LagSampler
from bench.replicalib.report import markdown

log = logging.getLogger("bench.replica")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
DB_NAME = "beffroi_bench_replica"
DATA_SEED = 2025
CLIENTS = (1, 16)
LOAD_CLIENTS = 16
ROUTES = ("parking-zone-day-15m", "grid-district-day-30m", "grid-district-week-voltage",
          "devices-list")
INGEST_TIMEOUT_S = 600.0


def replica_routes(year: Year) -> list[Route]:
    """A subset of ``bench.api``'s routes over the loaded period (its "month" would fall
    outside a few weeks of data): a day, a week, the whole period, the inventory."""
    p = {k: v.isoformat() for k, v in periods(year).items()}
    return [r for r in routes(year) if r.name in ROUTES] + [
        Route("wifi-square-week-1h",
              f"/v1/wifi/squares/grand-place/clients?from={p['w0']}&to={p['w1']}&bucket=1h",
              "wifi clients of a square (5 APs), a week per hour"),
        Route("grid-district-period-1d",
              f"/v1/grid/districts/baudimont/energy?from={p['y0']}&to={p['y1']}&bucket=1d",
              f"energy of a district (280 meters), the {year.days} days at daily buckets"),
    ]


def data_period(base_time: float, days: int, tz: ZoneInfo) -> Year:
    """``days`` local days ending at the local midnight before the stream's base time, so
    that no synthetic reading can collide with one of the stream's fixed reading times."""
    end = datetime.fromtimestamp(base_time, tz).date()
    return Year(end - timedelta(days=days), days, tz)


@dataclass
class Run:
    """What every phase shares: the clusters, the ingestor, the position in the stream."""

    env: Env
    pair: Pair
    ing: Ingestor
    lag: LagSampler
    token: str
    skip: list[int]  # records of each publisher file published so far
    primary_pid: int
    standby_pid: int
    readings: int = 0  # readings published so far: what the ingestor must have committed
    messages: int = 0
    last_end: float = 0.0

    def groups(self, pubs: Publishers, api: Server | None) -> list[Group]:
        """The processes whose CPU is measured."""
        broker = self.env.broker_pid()
        me = os.getpid()
        return [Group("primary", lambda: descendants(self.primary_pid)),
                Group("standby", lambda: descendants(self.standby_pid)),
                Group("broker", lambda: [broker] if broker else []),
                Group("ingestor", self.ing.pids),
                Group("api", lambda: descendants(api.pid) if api else []),
                Group("publishers", pubs.pids),
                Group("bench", lambda: [me])]

    def publishers(self, tag: str, *, limit: int | None, rate: float | None) -> Publishers:
        """The next slice of the stream (to its end when ``limit`` is None)."""
        left = [n - s for n, s in zip(self.env.manifest.per_publisher, self.skip, strict=True)]
        if min(left) <= 0:
            raise RuntimeError("the stream is used up: raise --stream-messages")
        return Publishers(self.env, tag, limit=limit, rate=rate, skip=list(self.skip))

    def published(self, pub: dict[str, Any]) -> None:
        """Move past what a phase published."""
        left = [n - s for n, s in zip(self.env.manifest.per_publisher, self.skip, strict=True)]
        if any(sent >= n for sent, n in zip(pub["per_publisher"], left, strict=True)):
            log.warning("a publisher reached the end of the stream: the phase published less "
                        "than planned (raise --stream-messages)")
        self.skip = [s + n for s, n in zip(self.skip, pub["per_publisher"], strict=True)]
        self.readings += pub["readings"]
        self.messages += pub["messages"]

    def committed(self, poll: float = 0.25) -> None:
        """Wait until the ingestor has committed every reading published so far."""
        complete, rejected = self.ing.wait_for(self.readings, timeout=INGEST_TIMEOUT_S,
                                               poll=poll)
        if not complete:
            raise RuntimeError(f"the ingestor did not commit {self.readings} readings in "
                               f"{INGEST_TIMEOUT_S:.0f} s")
        if rejected:
            raise RuntimeError(f"the ingestor rejected {rejected} messages of the stream")


def _latency(run: Run, t0: float, t1: float) -> dict[str, Any]:
    """Publish-to-commit latency of the phase's native readings."""
    with psycopg.connect(run.pair.primary_url, autocommit=True) as conn:
        row = conn.execute(latency_sql(until=True),
                           {"t0": datetime.fromtimestamp(t0, UTC),
                            "t1": datetime.fromtimestamp(t1, UTC)}).fetchone()
    assert row is not None

    def r(x: Any) -> float | None:
        return None if x is None else round(float(x), 1)

    return {"latency_rows": int(row[0]), "latency_ms_p50": r(row[1]),
            "latency_ms_p99": r(row[2]), "latency_ms_max": r(row[3])}


def _stats(s: Stats) -> dict[str, Any]:
    return {"requests": s.requests, "errors": s.errors, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms,
            "rps": s.rps, "seconds": s.seconds}


def _close(run: Run, name: str, where: str | None, pub: dict[str, Any], sampler: Sampler,
           t0: float, t_end: float, extra: dict[str, Any]) -> dict[str, Any]:
    """The phase's figures, once every reading it published is committed."""
    first = pub["first_publish"]
    elapsed = t_end - first
    cpu = sampler.report()
    window = sampler.t1 - sampler.t0
    out = {"phase": name, "api": where, "messages": pub["messages"],
           "readings": pub["readings"], "elapsed_s": round(elapsed, 2),
           "readings_per_s": round(pub["readings"] / elapsed) if elapsed > 0 else None,
           "publish_rate_msg_s": pub["publish_rate_msg_s"], "window_s": round(window, 2),
           "cpu_s": cpu,
           "cpu_cores": {k: round(v / window, 2) for k, v in cpu.items()} if window else {},
           "lag": run.lag.between(t0, t_end),
           **_latency(run, max(run.last_end, first - 1), pub["last_ack"] + 1), **extra}
    run.last_end = t_end
    log.info("%s: %d messages, %s readings/s, latency p99 %s ms, replay lag p99 %s ms, "
             "cores %s", name, out["messages"], out["readings_per_s"],
             out["latency_ms_p99"], out["lag"]["replay_lag_ms"]["p99"], out["cpu_cores"])
    return out


def paced_phase(run: Run, name: str, rate: float, *, api: Server | None = None,
                where: str | None = None, seconds: float = 0.0,
                work: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Publishers at ``rate`` messages/s while ``work`` runs (or for ``seconds``), then
    until every reading published is committed."""
    pubs = run.publishers(f"{name}-{secrets.token_hex(2)}", limit=None, rate=rate)
    try:
        sampler = Sampler(run.groups(pubs, api))
        sampler.start()
        t0 = time.time()
        pubs.go()
        extra = work() if work is not None else {}
        if work is None:
            time.sleep(seconds)
        pubs.stop()
        pub = pubs.wait()
    finally:
        pubs.kill()
    run.published(pub)
    run.committed()
    t_end = time.time()
    sampler.stop()
    extra["offered_rate_msg_s"] = rate
    return _close(run, name, where, pub, sampler, t0, t_end, extra)


@contextmanager
def _background_load(api: Server | None, token: str, urls: list[str]) -> Iterator[list[Stats]]:
    """``LOAD_CLIENTS`` clients asking ``urls`` in turn until the block ends."""
    out: list[Stats] = []
    if api is None:
        yield out
        return
    stop = threading.Event()
    errors: list[BaseException] = []

    def load() -> None:
        try:
            out.append(asyncio.run(measure(api.base, token, urls, LOAD_CLIENTS,
                                           seconds=math.inf, max_requests=10**9,
                                           min_requests=0, stop=stop)))
        except BaseException as exc:
            errors.append(exc)

    th = threading.Thread(target=load, name="bench-api-load", daemon=True)
    th.start()
    try:
        yield out
    finally:
        stop.set()
        th.join(120)
    if errors:
        raise RuntimeError(f"the API load failed: {errors[0]}") from errors[0]


def max_phase(run: Run, name: str, messages: int, *, api: Server | None = None,
              where: str | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    """``messages`` published flat out (with the API under load when ``api`` is given);
    readings/s from the first publish to the last reading committed."""
    per = math.ceil(messages / run.env.publishers)
    pubs = run.publishers(f"{name}-{secrets.token_hex(2)}", limit=per, rate=None)
    try:
        sampler = Sampler(run.groups(pubs, api))
        sampler.start()
        t0 = time.time()
        with _background_load(api, run.token, urls or []) as load:
            pubs.go()
            pub = pubs.wait()
            run.published(pub)
            run.committed(poll=0.05)
            t_end = time.time()
        sampler.stop()
    finally:
        pubs.kill()
    extra: dict[str, Any] = {"offered_rate_msg_s": None}
    if load:
        extra["api_load"] = {"clients": LOAD_CLIENTS, **_stats(load[0])}
    return _close(run, name, where, pub, sampler, t0, t_end, extra)


def measure_routes(api: Server, token: str, todo: list[Route], seconds: float
                   ) -> dict[str, Any]:
    """Every route with 1 and 16 clients (a slow route: one round of requests)."""
    rows: list[dict[str, Any]] = []
    for r in todo:
        t = time.perf_counter()
        fetch(api.base, token, r.url)
        once_s = time.perf_counter() - t
        for clients in CLIENTS:
            slow = once_s * clients / (os.cpu_count() or 1) > seconds
            st = asyncio.run(measure(api.base, token, r.url, clients, seconds=seconds,
                                     max_requests=clients if slow else 100_000,
                                     min_requests=clients if slow else 2 * clients))
            log.info("  %-28s %2d client(s): p50 %7s ms  p99 %7s ms  %7s req/s  %d errors",
                     r.name, clients, st.p50_ms, st.p99_ms, st.rps, st.errors)
            rows.append({"name": r.name, "url": r.url, "what": r.what, "clients": clients,
                         **_stats(st)})
    return {"routes": rows, "requests": sum(int(x["requests"]) for x in rows)}


NOW_KEYS = frozenset({"silent_s"})  # seconds since a device's last message, at request time


def timeless(answer: Any) -> Any:
    """An answer without the values that change with the moment it is asked."""
    if isinstance(answer, dict):
        return {k: timeless(v) for k, v in answer.items() if k not in NOW_KEYS}
    if isinstance(answer, list):
        return [timeless(v) for v in answer]
    return answer


def compare_answers(pair: Pair, token: str, todo: list[Route], logs: Path) -> dict[str, bool]:
    """Each route's answer through an API reading from the standby against one reading from
    the primary, once the ingest has stopped and the standby has replayed everything."""
    pair.replayed(timeout=300)
    with api_process(pair.primary_url, logs / "replica-api-standby-compare.log",
                     read_url=pair.standby_url) as s, \
            api_process(pair.primary_url, logs / "replica-api-primary-compare.log") as p:
        same = {r.name: same_answer(timeless(fetch(s.base, token, r.url)),
                                    timeless(fetch(p.base, token, r.url))) for r in todo}
    differ = [k for k, v in same.items() if not v]
    if differ:
        log.error("answers from the standby differ from the primary's: %s", ", ".join(differ))
    return same


def _counts(url: str) -> dict[str, int]:
    out: dict[str, int] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for t in ALL_TABLES:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(t))).fetchone()
            assert row is not None
            out[t] = int(row[0])
    return out


def final_check(run: Run, before: dict[str, int]) -> dict[str, Any]:
    """Every reading published stored on the primary, and the standby equal to it."""
    run.pair.replayed(timeout=300)
    primary = _counts(run.pair.primary_url)
    standby = _counts(run.pair.standby_url)
    stored = {t: primary[t] - before[t] for t in ALL_TABLES}
    readings = sum(v for t, v in stored.items() if t != "dead_letters")
    ok = (readings == run.readings and stored["dead_letters"] == 0 and primary == standby)
    out = {"messages_published": run.messages, "readings_published": run.readings,
           "readings_stored_primary": readings, "dead_letters": stored["dead_letters"],
           "rows_primary": primary, "rows_standby": standby,
           "standby_equals_primary": primary == standby, "ok": ok}
    (log.info if ok else log.error)(
        "check: %d readings published, %d stored on the primary, standby %s the primary",
        run.readings, readings, "equal to" if primary == standby else "DIFFERENT from")
    return out


def _settings(url: str) -> dict[str, str]:
    names = ["wal_level", "synchronous_commit", "hot_standby", "hot_standby_feedback",
             "max_standby_streaming_delay", "wal_compression", "shared_buffers"]
    with psycopg.connect(url, autocommit=True) as conn:
        return dict(conn.execute("SELECT name, current_setting(name) FROM pg_settings"
                                 " WHERE name = ANY(%s)", (names,)).fetchall())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m bench.replica", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=int, default=21, help="days of data read by the API "
                   "(default 21)")
    p.add_argument("--seconds", type=float, default=4.0,
                   help="seconds per route measurement (default 4)")
    p.add_argument("--rate", type=float, default=3000.0,
                   help="messages/s of the paced phases (default 3,000)")
    p.add_argument("--paced-seconds", type=float, default=10.0,
                   help="length of the paced phase without API (default 10)")
    p.add_argument("--max-messages", type=int, default=150_000,
                   help="messages of each flat-out phase (default 150,000)")
    p.add_argument("--workers", type=int, default=1, help="ingestor workers (default 1)")
    p.add_argument("--stream-messages", type=int, default=1_000_000,
                   help="size of the ingest benchmark's stream to publish slices of "
                   "(default 1,000,000: the same stream as make bench-ingest)")
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write replica.json and replica.md."""
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # SIGTERM unwinds like Ctrl-C: child processes stopped, sessions purged, clusters removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_all = time.monotonic()
    settings = Settings()
    stack = Stack(settings)
    stack.up()
    others = concurrent_activity()
    if others:
        log.warning("other processes are using this machine: %s", "; ".join(others))
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stream_dir, manifest = ensure_stream(WORK, messages=a.stream_messages, seed=SEED,
                                         publishers=a.publishers)
    year = data_period(manifest.base_time, a.days, ZoneInfo(settings.timezone))
    todo = replica_routes(year)
    need = (a.rate * (a.paced_seconds + 2 * len(todo) * len(CLIENTS) * (a.seconds + 1))
            + 3 * a.max_messages)
    if need > manifest.messages:
        log.warning("the run may need about %d messages, more than the stream's %d: raise "
                    "--stream-messages", need, manifest.messages)
    urls = [r.url for r in todo]
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    a.out.mkdir(parents=True, exist_ok=True)
    with replica_pair(DB_NAME, prefix="beffroi-bench-replica-", timeout=120) as pair:
        log.info("primary on port %d, standby on port %d", pair.primary.port, pair.standby.port)
        ds = prepare_url(pair.primary_url, year, DATA_SEED)
        prepare_registry(pair.primary_url)
        maintain = run_maintain(pair.primary_url, year, fresh=True)
        with psycopg.connect(pair.primary_url) as conn:
            token, _ = create_token(conn, "bench-replica", ["read"])
        t = time.monotonic()
        pair.replayed(timeout=600)
        log.info("the standby replayed the load in %.1fs more", time.monotonic() - t)
        before = _counts(pair.primary_url)
        env = Env(stack, pair.primary_url, host, port, user, password, stream_dir, manifest,
                  a.publishers, logs)
        info = machine_info(env) | {"standby_settings": _settings(pair.standby_url)}
        primary_pid, standby_pid = pair.primary.pid(), pair.standby.pid()
        assert primary_pid is not None and standby_pid is not None
        ing = Ingestor(env, a.workers, secrets.token_hex(3), "replica-ingest")
        lag = LagSampler(pair.primary_url)
        run = Run(env, pair, ing, lag, token, [0] * a.publishers, primary_pid, standby_pid)
        phases: list[dict[str, Any]] = []
        lag.start()
        ing.start()
        try:
            phases.append(paced_phase(run, "ingest-paced", a.rate, seconds=a.paced_seconds))
            phases.append(max_phase(run, "ingest-max", a.max_messages))
            for where in ("standby", "primary"):
                read_url = pair.standby_url if where == "standby" else None
                with api_process(pair.primary_url, logs / f"replica-api-{where}.log",
                                 read_url=read_url) as api:
                    log.info("API reading from the %s", where)
                    phases.append(paced_phase(
                        run, f"paced+api-{where}", a.rate, api=api, where=where,
                        work=partial(measure_routes, api, token, todo, a.seconds)))
                    phases.append(max_phase(run, f"max+api-{where}", a.max_messages, api=api,
                                            where=where, urls=urls))
            ing.stop()
            check = final_check(run, before)
            same = compare_answers(pair, token, todo, logs)
        finally:
            lag.stop()
            ing.kill()
            ing.purge_sessions()
    doc = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "total_s": round(time.monotonic() - t_all, 1), "machine": info,
           "concurrent_activity": others,
           "settings": {"days": a.days, "seconds_per_measurement": a.seconds,
                        "rate_msg_s": a.rate, "paced_seconds": a.paced_seconds,
                        "max_messages": a.max_messages, "workers": a.workers,
                        "publishers": a.publishers, "clients": list(CLIENTS),
                        "load_clients": LOAD_CLIENTS},
           "dataset": {**ds.spec, "rows": ds.rows, "load_s": ds.load_s},
           "maintain": maintain,
           "stream": {"messages": manifest.messages, "readings": manifest.readings,
                      "seed": manifest.seed, "by_format": manifest.by_format},
           "phases": phases, "answers_equal": same, "check": check}
    write_results(a.out, doc)
    log.info("wrote %s and replica.md in %.0fs", a.out / "replica.json", doc["total_s"])
    return 0 if check["ok"] and all(same.values()) else 1


def write_results(out: Path, doc: dict[str, Any]) -> None:
    """``replica.json`` and ``replica.md``."""
    (out / "replica.json").write_text(json.dumps(doc, indent=1, default=str) + "\n",
                                      encoding="utf-8")
    (out / "replica.md").write_text(markdown(doc), encoding="utf-8")


__all__ = ["data_period", "main", "replica_routes", "timeless"]

if __name__ == "__main__":
    sys.exit(main())
