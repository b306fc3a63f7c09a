"""``make bench-ingest``: Beffroi's ingestor against the raw limits of this machine, in one run.

Systems, each fed the same deterministic stream (``bench.ingestlib.stream``):

- ``copy-only``: the stream's rows decoded in advance, loaded with binary COPY in batches of
  5,000 readings (one transaction each): the database's limit, no MQTT.
- ``broker-only``: the stream published through Mosquitto to ``mosquitto_sub -q 1 -C N``:
  the broker's limit (with these publishers), no database.
- ``beffroi-1w`` / ``beffroi-2w``: ``beffroi ingest --workers 1|2`` as child processes.
- ``batched-copy-only``, ``batched-broker-only``, ``batched-beffroi-1w`` / ``-2w``: the same
  on the batched stream (the same devices, ``BATCH_READINGS`` = 10 readings a message: native
  arrays and SenML packs), whose own raw limits they are.
- ``baseline-insert``: a paho callback doing one INSERT and one commit per message, on a prefix
  of the stream.
- then the backlog: the whole stream queued on the broker for a stopped ingestor's session,
  drained by ``beffroi ingest --workers 1`` (drain rate, peak RSS).

End-to-end rate = readings / (first publish -> last row committed); the commit time of every
row comes from ``pg_xact_commit_timestamp(xmin)`` (``track_commit_timestamp = on``), and
publish-to-commit latency is that minus the reading's ``ts``, which native JSON messages set to
their publish wall time. Every run reports the CPU seconds of each process group (broker,
ingestor, PostgreSQL, publishers), and those per message and per reading. Results:
``bench/results/ingest.json`` and ``ingest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from beffroi.migrate import migrate
from beffroi.settings import Settings
from beffroi.stack import Stack
from bench.ingestlib.decode import make_router
from bench.ingestlib.procstat import Group, Sampler, children, cmdline, descendants
from bench.ingestlib.stream import (
    BATCH_READINGS,
    BRIDGE_PREFIX,
    PREFIX,
    Manifest,
    bench_ids,
    demo_devices,
    ensure_stream,
    iter_filled,
    publisher_files,
    read_records,
)
from devices.families import bridge_topics
from devices.readings import PG_TYPES, READING_OF_TABLE, TABLE_OF
from devices.registry import load_registry_file
from devices.store import import_registry
from ingest import hotpath
from simulators.wire import connect_packet, disconnect_packet

log = logging.getLogger("bench.ingest")

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
BENCH_DB = "beffroi_bench"
TABLES = tuple(PG_TYPES)
ALL_TABLES = (*TABLES, "dead_letters")
TOPICS = (f"{PREFIX}/#", *bridge_topics(BRIDGE_PREFIX))
SEED = 20240514
COPY_BATCH = 5000
STALL_S = 60.0

# Targets of issue 3, section 9, and of issue 12, section 2.
TARGET_OF_RAW = 0.60
TARGET_OVER_BASELINE = 20.0
TARGET_RSS_MB = 300.0
TARGET_BATCHED_OF_COPY = 0.50


# -- environment ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A generated stream: ``single`` (one reading a message, a few small arrays) or
    ``batched`` (``BATCH_READINGS`` readings a message)."""

    name: str
    dir: Path
    manifest: Manifest

    def files(self) -> list[Path]:
        """Its publisher files."""
        return publisher_files(self.dir, self.manifest.publishers)

    @property
    def messages(self) -> int:
        """Messages in the stream."""
        return sum(self.manifest.per_publisher)

    def system(self, name: str) -> str:
        """The name of a system run on this stream (``batched-`` before the batched one's)."""
        return name if self.name == "single" else f"{self.name}-{name}"


@dataclass
class Env:
    """The stack, the bench database, and where things go."""

    stack: Stack
    db_url: str
    host: str
    port: int
    user: str
    password: str
    stream: Stream
    publishers: int
    logs: Path
    extra_ingest_env: dict[str, str] = field(default_factory=dict)
    run_cap_s: float = 120.0
    ingest_module: str = "beffroi.cli"
    batched: Stream | None = None

    def broker_pid(self) -> int | None:
        return _service_pid(self.stack, "mosquitto")

    def pg_pid(self) -> int | None:
        return _service_pid(self.stack, "postgresql")


def _service_pid(stack: Stack, name: str) -> int | None:
    for s in stack.status():
        if s.name == name:
            return s.pid if s.running else None
    return None


def _connect(env: Env) -> psycopg.Connection[Any]:
    return psycopg.connect(env.db_url, autocommit=True, application_name="bench-ingest")


def prepare_database(stack: Stack) -> str:
    """Create, migrate and load the bench database (demo city, bench DevEUIs and meter ids)."""
    stack.ensure_database(BENCH_DB)
    url = stack.database_url(BENCH_DB)
    prepare_registry(url)
    return url


def prepare_registry(url: str) -> None:
    """Migrate the database at ``url`` and load the demo city with the stream's DevEUIs and
    meter serials (so that bench traffic addresses its devices); it must track commit
    times."""
    migrate(url)
    reg = load_registry_file(ROOT / "devices" / "data" / "demo-city.json")
    with psycopg.connect(url) as conn:
        import_registry(conn, reg)
        devs = demo_devices()
        with conn.cursor() as cur:
            cur.execute("UPDATE devices SET dev_eui = NULL, meter_id = NULL, meter_serial = NULL")
            cur.executemany("UPDATE devices SET dev_eui = %s, meter_serial = %s WHERE id = %s",
                            [(*bench_ids(d.index, d.family), d.id) for d in devs
                             if d.dev_eui or d.meter_serial])
        conn.commit()
        on = conn.execute("SHOW track_commit_timestamp").fetchone()
    if on is None or on[0] != "on":
        raise SystemExit("track_commit_timestamp must be on (the local stack sets it)")


def wait_for_services(env: Env, timeout: float = 120) -> None:
    """Wait until PostgreSQL and the broker answer (other users may restart them)."""
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            with _connect(env) as conn:
                conn.execute("SELECT 1")
            with socket.create_connection((env.host, env.port), timeout=5):
                pass
            return
        except (OSError, psycopg.OperationalError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"services unavailable for {timeout:.0f}s: {exc}") from exc
            if not warned:
                log.warning("database or broker unavailable (%s); waiting",
                            str(exc).splitlines()[0])
                warned = True
            time.sleep(1)


def concurrent_activity() -> list[str]:
    """Other heavy users of this machine right now (test suites, other ingestors)."""
    me = os.getpid()
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        cmd = cmdline(int(d.name))
        if ("pytest" in cmd or "beffroi.cli" in cmd or "beffroi demo" in cmd) and \
                "bench" not in cmd:
            out.append(cmd[:120])
    return out


def reset_tables(env: Env) -> None:
    """Empty the reading tables and checkpoint, so every system starts from the same state."""
    with _connect(env) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, ALL_TABLES))))
        conn.execute("CHECKPOINT")


def machine_info(env: Env) -> dict[str, Any]:
    """CPU, memory, OS and the versions of everything on the path."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    mosq = subprocess.run(["/usr/sbin/mosquitto", "-h"], capture_output=True, text=True,
                          check=False).stdout.splitlines()
    with _connect(env) as conn:
        pg = conn.execute("SHOW server_version").fetchone()
        ts = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                          ).fetchone()
        settings = dict(conn.execute(
            "SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s)",
            (["shared_buffers", "synchronous_commit", "track_commit_timestamp", "max_wal_size",
              "wal_compression", "fsync"],)).fetchall())
    versions: dict[str, str] = {}
    for mod in ("psycopg", "orjson", "uvloop", "paho.mqtt", "numpy"):
        with contextlib.suppress(Exception):
            versions[mod] = str(__import__(mod, fromlist=["__version__"]).__version__)
    conf = env.stack.state_dir / "mosquitto" / "mosquitto.conf"
    broker_conf = {}
    with contextlib.suppress(OSError):
        for line in conf.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("max_inflight_messages", "max_queued_messages",
                                                "persistence", "autosave_interval"):
                broker_conf[parts[0]] = parts[1]
    return {
        "ingestor_build": hotpath.describe(),  # the children run this same package
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "os": os_name,
        "kernel": platform.release(),
        "python": f"{platform.python_version()} ({os.path.realpath(sys.executable)})",
        "mosquitto": mosq[0].replace("mosquitto version ", "") if mosq else "unknown",
        "postgresql": pg[0] if pg else "unknown",
        "timescaledb": ts[0] if ts else "unknown",
        "libraries": versions,
        "postgresql_settings": settings,
        "mosquitto_settings": broker_conf,
        "loadavg_at_start": os.getloadavg(),
    }


# -- process groups ---------------------------------------------------------------------------


def pg_finder(env: Env) -> Callable[[], list[int]]:
    """PostgreSQL processes: the postmaster, auxiliaries, and backends of the bench database."""
    keep: dict[int, bool] = {}
    root = env.pg_pid()

    def find() -> list[int]:
        if root is None:
            return []
        out = [root]
        for pid in children(root):
            ok = keep.get(pid)
            if ok is None:
                cmd = cmdline(pid).split()
                # Backends read "postgres: <user> <database> <host>(<port>) <state>".
                backend = len(cmd) >= 4 and ("(" in cmd[3] or cmd[3] == "[local]")
                ok = keep[pid] = not backend or cmd[2] == BENCH_DB
            if ok:
                out.append(pid)
        return out

    return find


def _nobody() -> list[int]:
    return []


def _group(groups: list[Group], name: str) -> Group:
    return next(g for g in groups if g.name == name)


def groups_for(env: Env, ingestor: Callable[[], list[int]] | None,
               publishers: Callable[[], list[int]], subscriber: Callable[[], list[int]] | None
               ) -> list[Group]:
    broker = env.broker_pid()
    me = os.getpid()
    gs = [Group("broker", lambda: [broker] if broker else []),
          Group("postgres", pg_finder(env)),
          Group("publishers", publishers)]
    if ingestor is not None:
        gs.append(Group("ingestor", ingestor, track_rss=True))
    if subscriber is not None:
        gs.append(Group("subscriber", subscriber, track_rss=True))
    gs.append(Group("bench", lambda: [me]))
    return gs


# -- publishers ---------------------------------------------------------------------------------


class Publishers:
    """The publisher processes of one run, started READY and released together."""

    def __init__(self, env: Env, tag: str, stream: Stream | None = None, *,
                 limit: int | None = None, rate: float | None = None,
                 skip: list[int] | None = None) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        penv = os.environ | {"BENCH_MQTT_PASSWORD": env.password}
        for i, f in enumerate((stream or env.stream).files()):
            cmd = [sys.executable, "-m", "bench.ingestlib.publisher", str(f), "--host",
                   env.host, "--port", str(env.port), "--user", env.user,
                   "--client-id", f"bench-pub-{tag}-{i}"]
            if skip is not None:
                cmd += ["--skip", str(skip[i])]
            if limit is not None:
                cmd += ["--limit", str(limit)]
            if rate is not None:
                cmd += ["--rate", f"{rate / env.publishers:.1f}"]
            self.procs.append(subprocess.Popen(cmd, env=penv, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, text=True, cwd=ROOT))
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "READY":
                self.kill()
                raise RuntimeError(f"publisher did not start: {line!r}")
        self.results: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def go(self) -> None:
        """Release every publisher; collect their reports in the background."""
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the publishing early: each publisher stops sending and waits for the PUBACKs
        of what it sent (its report counts those messages)."""
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGUSR1)

    def _collect(self) -> None:
        for p in self.procs:
            out, _ = p.communicate()
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"publisher {p.pid} failed (exit {p.returncode})")
            self.results.append(json.loads(lines[-1]))

    def wait(self, timeout: float = 900) -> dict[str, Any]:
        """Wait for every publisher; first publish, last PUBACK, messages, CPU."""
        assert self._thread is not None
        self._thread.join(timeout)
        if len(self.results) != len(self.procs):
            raise RuntimeError("a publisher failed or timed out")
        sent = [r for r in self.results if r["messages"]] or self.results
        first = min(r["first_publish"] for r in sent)
        last = max(r["last_ack"] for r in sent)
        n = sum(r["messages"] for r in self.results)
        return {"first_publish": first, "last_ack": last, "messages": n,
                "readings": sum(r.get("readings", 0) for r in self.results),
                "per_publisher": [r["messages"] for r in self.results],
                "publish_rate_msg_s": round(n / max(last - first, 1e-9)),
                "cpu_s": round(sum(r["cpu_s"] for r in self.results), 2)}

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


# -- the ingestor as a child process ------------------------------------------------------------


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


class Ingestor:
    """``beffroi ingest --workers N`` against the bench database, with a session of its own."""

    def __init__(self, env: Env, workers: int, tag: str, log_name: str) -> None:
        self.env = env
        self.workers = workers
        self.client_id = f"bench-{tag}"
        self.metrics_port = _free_port_pair()
        self.log_path = env.logs / f"{log_name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.vars = os.environ | {
            "BEFFROI_DATABASE_URL": env.db_url,
            "BEFFROI_BROKER_URL": f"mqtt://{env.host}:{env.port}",
            "BEFFROI_INGEST_MQTT_USERNAME": env.user,
            "BEFFROI_INGEST_MQTT_PASSWORD": env.password,
            "BEFFROI_STATE_DIR": str(env.stack.state_dir),
            "BEFFROI_INGEST_CLIENT_ID": self.client_id,
            "BEFFROI_INGEST_SHARE_GROUP": f"bench{tag}",
            "BEFFROI_INGEST_METRICS_PORT": str(self.metrics_port),
            "BEFFROI_TOPIC_PREFIX": PREFIX,
            "BEFFROI_BRIDGE_PREFIX": BRIDGE_PREFIX,
        } | env.extra_ingest_env

    @property
    def client_ids(self) -> list[str]:
        return [f"{self.client_id}-{i}" for i in range(self.workers)]

    def start(self, timeout: float = 60) -> float:
        """Start and wait until every worker has subscribed; return the start wall time."""
        before = self.log_path.read_text().count("subscribed as") if self.log_path.exists() else 0
        t = time.time()
        with self.log_path.open("ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.env.ingest_module, "ingest", "--workers",
                 str(self.workers),
                 "--progress"], env=self.vars, stdout=logf, stderr=logf, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_path.read_text().count("subscribed as") - before >= self.workers:
                return t
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text()[-2000:]
        self.kill()
        raise RuntimeError(f"ingestor did not subscribe; log tail:\n{tail}")

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return descendants(self.proc.pid)

    def written(self) -> tuple[int, int]:
        """Readings committed and messages rejected, summed over the workers' metrics."""
        written = rejected = 0
        for i in range(self.workers):
            url = f"http://127.0.0.1:{self.metrics_port + i}/metrics"
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
            for line in text.splitlines():
                if line.startswith("beffroi_ingest_readings_written_total{"):
                    written += int(float(line.rsplit(" ", 1)[1]))
                elif line.startswith("beffroi_ingest_rejected_total{"):
                    rejected += int(float(line.rsplit(" ", 1)[1]))
        return written, rejected

    def wait_for(self, expected: int, *, timeout: float, poll: float = 0.25) -> tuple[bool, int]:
        """Poll the metrics until ``expected`` readings are committed (fail on a stall).

        Returns (complete, messages rejected); incomplete when ``timeout`` seconds passed.
        """
        last, last_change = -1, time.monotonic()
        next_log = time.monotonic() + 5
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ingestor exited ({self.proc.returncode}); see {self.log_path}")
            try:
                written, rejected = self.written()
            except OSError:
                written, rejected = max(last, 0), 0
            if written >= expected:
                return True, rejected
            now = time.monotonic()
            if now > deadline:
                log.warning("  time cap of %.0fs reached at %d / %d readings: stopping this run",
                            timeout, written, expected)
                return False, rejected
            if written != last:
                last, last_change = written, now
            elif now - last_change > STALL_S:
                raise RuntimeError(f"no progress for {STALL_S:.0f}s at {written}/{expected} "
                                   f"readings ({rejected} messages rejected)")
            if now >= next_log:
                log.info("  ... %d / %d readings committed", written, expected)
                next_log = now + 5
            time.sleep(poll)

    def stop(self) -> None:
        """SIGTERM: flush and exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            for pid in reversed(descendants(self.proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()

    def purge_sessions(self) -> None:
        for cid in self.client_ids:
            purge_session(self.env, cid)


def purge_session(env: Env, client_id: str) -> None:
    """End a persistent session: connect with a clean session, then disconnect."""
    try:
        with socket.create_connection((env.host, env.port), timeout=10) as s:
            s.sendall(connect_packet(client_id, env.user, env.password))
            s.recv(4)
            s.sendall(disconnect_packet())
    except OSError as exc:
        log.warning("could not purge session %s: %s", client_id, exc)


# -- measuring in the database -------------------------------------------------------------------


def latency_sql(*, until: bool = False) -> sql.Composed:
    """Count, p50, p99 and max of publish-to-commit latency (ms) over native readings timed
    from ``%(t0)s`` (and before ``%(t1)s`` when ``until``)."""
    parts = []
    for t in TABLES:
        cond: sql.Composable = sql.SQL("time >= %(t0)s" + (" AND time < %(t1)s" if until else ""))
        if t == "grid_readings":  # historic TIC frames are timed on receipt: not a publish ts
            cond = sql.SQL(" AND ").join([cond, sql.SQL("voltage_l1_v IS NOT NULL")])
        parts.append(sql.SQL(
            "SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin) - time) * 1000 AS ms "
            "FROM {} WHERE {}").format(sql.Identifier(t), cond))
    return sql.SQL(
        "SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), "
        "percentile_cont(0.99) WITHIN GROUP (ORDER BY ms), max(ms) FROM ({}) lat").format(
            sql.SQL(" UNION ALL ").join(parts))


def db_outcome(env: Env, first_publish: float | None) -> dict[str, Any]:
    """Rows per table, first and last commit time, publish-to-commit latency."""
    with _connect(env) as conn:
        counts: dict[str, int] = {}
        first_commit = last_commit = None
        for t in (*TABLES, "dead_letters"):
            row = conn.execute(sql.SQL(
                "SELECT count(*), min(pg_xact_commit_timestamp(xmin)), "
                "max(pg_xact_commit_timestamp(xmin)) FROM {}").format(sql.Identifier(t))
                ).fetchone()
            assert row is not None
            counts[t] = int(row[0])
            if row[1] is not None and t != "dead_letters":
                first_commit = row[1] if first_commit is None else min(first_commit, row[1])
                last_commit = row[2] if last_commit is None else max(last_commit, row[2])
        out: dict[str, Any] = {
            "rows": sum(counts[t] for t in TABLES), "rows_by_table": counts,
            "dead_letters": counts["dead_letters"],
            "first_commit": first_commit.timestamp() if first_commit else None,
            "last_commit": last_commit.timestamp() if last_commit else None,
        }
        if first_publish is not None:
            lat = conn.execute(latency_sql(),
                               {"t0": datetime.fromtimestamp(first_publish - 1, UTC)}).fetchone()
            assert lat is not None
            out["latency_rows"] = int(lat[0])
            out["latency_ms_p50"] = _round(lat[1])
            out["latency_ms_p99"] = _round(lat[2])
            out["latency_ms_max"] = _round(lat[3])
    return out


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(float(x), nd)


# -- the systems --------------------------------------------------------------------------------


def _finish(system: str, readings: int, messages: int, t0: float, t1: float,
            sampler: Sampler, extra: dict[str, Any]) -> dict[str, Any]:
    elapsed = t1 - t0
    cpu = sampler.report()
    window = sampler.t1 - sampler.t0
    run = {"system": system, "readings": readings, "messages": messages,
           "elapsed_s": round(elapsed, 2),
           "readings_per_s": round(readings / elapsed) if elapsed > 0 else None,
           "messages_per_s": round(messages / elapsed) if elapsed > 0 else None,
           "latency_ms_p50": None, "latency_ms_p99": None, "peak_rss_mb": None,
           "cpu_s": cpu,
           "cpu_cores": {k: round(v / window, 2) for k, v in cpu.items()} if window else {},
           "cpu_us_per_message": _per(cpu, messages), "cpu_us_per_reading": _per(cpu, readings)}
    for g in sampler.groups:
        if g.name == "ingestor":
            per = sorted(g.per_process().values(), reverse=True)
            run["cpu_s_ingestor_processes"] = [round(c, 2) for c in per]
    run.update(extra)
    return run


def _per(cpu: dict[str, float], n: int) -> dict[str, float]:
    """CPU microseconds per unit, by process group (the machine's total and 'unaccounted'
    left out)."""
    if n <= 0:
        return {}
    return {k: round(v / n * 1e6, 2) for k, v in cpu.items()
            if k not in ("machine", "unaccounted", "bench")}


def _rss(group: Group) -> dict[str, Any]:
    if not group.hwm:
        return {}
    per = sorted(group.hwm.values(), reverse=True)
    return {"peak_rss_mb": round(per[0] / 1024, 1),
            "peak_rss_mb_all_processes": round(sum(per) / 1024, 1)}


def run_copy_only(env: Env, stream: Stream, *, again: bool = False) -> dict[str, Any]:
    """Decode every message in advance, then COPY the rows in batches of 5,000 readings
    (``again``: the second measurement of the run, ``copy-only-again``)."""
    system = stream.system("copy-only" + AGAIN * again)
    log.info("%s: decoding the stream in advance (not timed)", system)
    router = make_router(demo_devices())
    start_us = int((time.time() - 3600) * 1e6)
    # Reception times advance (frames without a time of their own are timed on receipt).
    received = datetime.now(UTC) - timedelta(minutes=30)
    step = timedelta(microseconds=1)
    recs = [read_records(f) for f in stream.files()]
    # Interleave the publishers' files so batches mix tables as the live stream does.
    order: list[tuple[str, tuple[Any, ...]]] = []
    rejected: dict[str, int] = {}
    iters = [iter_filled(r, start_us + i) for i, r in enumerate(recs)]
    del recs
    while iters:
        alive = []
        for it in iters:
            msg = next(it, None)
            if msg is None:
                continue
            alive.append(it)
            received += step
            routed = router.route(msg[0].decode(), msg[1], received)
            if routed.rejection is not None:
                reason = routed.rejection.reason
                rejected[reason] = rejected.get(reason, 0) + 1
            order.extend((TABLE_OF[type(r)], r) for r in routed.readings)
        iters = alive
    if rejected:
        raise RuntimeError(f"stream messages rejected by the decoders: {rejected}")
    log.info("%s: %d readings decoded; loading with binary COPY", system, len(order))
    stmts = {t: sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(t), sql.SQL(", ").join(map(sql.Identifier, READING_OF_TABLE[t]._fields)))
        for t in TABLES}
    sampler = Sampler(groups_for(env, None, _nobody, None))
    with psycopg.connect(env.db_url, application_name="bench-copy") as conn:
        sampler.start()
        t0 = time.time()
        for i in range(0, len(order), COPY_BATCH):
            batch: dict[str, list[tuple[Any, ...]]] = {}
            for t, r in order[i:i + COPY_BATCH]:
                batch.setdefault(t, []).append(r)
            with conn.cursor() as cur:
                for t, rows in batch.items():
                    with cur.copy(stmts[t]) as cp:
                        cp.set_types(list(PG_TYPES[t]))
                        for r in rows:
                            cp.write_row(r)
            conn.commit()
        t1 = time.time()
        sampler.stop()
    n = len(order)
    del order
    out = db_outcome(env, None)
    if out["rows"] != n:
        raise RuntimeError(f"{system}: {out['rows']} rows in the database, {n} expected")
    return _finish(system, n, stream.messages, t0, t1, sampler,
                   {"batch_readings": COPY_BATCH, "method": "binary COPY (psycopg write_row), "
                    "one transaction per batch"})


def run_broker_only(env: Env, stream: Stream, *, again: bool = False) -> dict[str, Any]:
    """The stream through Mosquitto to ``mosquitto_sub -q 1 -C N`` (admin account;
    ``again``: the second measurement of the run, ``broker-only-again``)."""
    system = stream.system("broker-only" + AGAIN * again)
    tag = secrets.token_hex(3)
    n = stream.messages
    out_path = env.logs / f"{system}.sub.out"
    cmd = ["mosquitto_sub", "-h", env.host, "-p", str(env.port), "-u", env.user,
           "-P", env.password, "-q", "1", "-C", str(n + 1), "-F", "", "-i", f"bench-sub-{tag}"]
    for t in TOPICS:
        cmd += ["-t", t]
    with out_path.open("wb") as f:
        sub = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
        # Subscribed once a probe message comes through (it prints one newline).
        deadline = time.monotonic() + 15
        while out_path.stat().st_size == 0:
            subprocess.run(["mosquitto_pub", "-h", env.host, "-p", str(env.port), "-u", env.user,
                            "-P", env.password, "-q", "1", "-t", f"{PREFIX}/probe", "-m", "x"],
                           check=True)
            time.sleep(0.2)
            if time.monotonic() > deadline or sub.poll() is not None:
                raise RuntimeError("mosquitto_sub did not subscribe")
        pubs = Publishers(env, tag, stream)
        sampler = Sampler(groups_for(env, None, pubs.pids,
                                     lambda: [sub.pid] if sub.poll() is None else []))
        sampler.start()
        pubs.go()
        ended = threading.Event()
        end = [0.0]

        def waiter() -> None:
            sub.wait()
            end[0] = time.time()
            ended.set()

        threading.Thread(target=waiter, daemon=True).start()
        if not ended.wait(900):
            raise RuntimeError("mosquitto_sub did not receive every message")
        sampler.stop()
        pub = pubs.wait()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    if sub.returncode != 0:
        raise RuntimeError(f"mosquitto_sub exited with {sub.returncode}")
    return _finish(system, stream.manifest.readings, n, pub["first_publish"], end[0], sampler,
                   {"messages": n, "publishers": pub,
                    "subscriber": "mosquitto_sub -q 1 (C, MQTT 3.1.1)"})


def run_beffroi(env: Env, stream: Stream, workers: int, *, rate: float | None = None,
                seconds: float = 20.0) -> dict[str, Any]:
    """``beffroi ingest --workers N`` on the live stream (flat out, or paced at ``rate``)."""
    system = stream.system(f"beffroi-{workers}w" + ("-paced" if rate else ""))
    tag = secrets.token_hex(3)
    limit = None
    expected = stream.manifest.readings
    if rate:
        limit = math.ceil(rate * seconds / env.publishers)
        expected = sum(r.readings for f in stream.files() for r in read_records(f, limit))
    ing = Ingestor(env, workers, tag, system)
    ing.start()
    pubs: Publishers | None = None
    try:
        pubs = Publishers(env, tag, stream, limit=limit, rate=rate)
        groups = groups_for(env, ing.pids, pubs.pids, None)
        ing_group = _group(groups, "ingestor")
        sampler = Sampler(groups)
        sampler.start()
        pubs.go()
        complete, rejected = ing.wait_for(expected, timeout=env.run_cap_s)
        sampler.stop()
        if not complete:
            ing.kill()  # partial run: redelivery does not matter, the session is purged
        pub = pubs.wait()
        ing.stop()
    finally:
        if pubs is not None:
            pubs.kill()
        ing.kill()
        ing.purge_sessions()
    db = db_outcome(env, pub["first_publish"])
    if complete and db["rows"] != expected:
        raise RuntimeError(f"{system}: {db['rows']} rows, {expected} expected")
    extra = {"messages": pub["messages"], "rejected_messages": rejected, "publishers": pub,
             **_rss(ing_group), **_pick(db)}
    if rate:
        extra["offered_rate_msg_s"] = rate
        extra["prefix_of_stream"] = True
    messages = pub["messages"]
    if not complete:
        extra |= _incomplete(expected, env.run_cap_s)
        messages = round(messages * db["rows"] / expected)  # about those committed
    return _finish(system, db["rows"], messages, pub["first_publish"], db["last_commit"],
                   sampler, extra)


def _incomplete(expected: int, cap: float) -> dict[str, Any]:
    return {"complete": False, "expected_readings": expected,
            "note": f"stopped at the {cap:.0f}s time cap; the rate is over the readings "
                    "committed until then"}


def _pick(db: dict[str, Any]) -> dict[str, Any]:
    keys = ("latency_ms_p50", "latency_ms_p99", "latency_ms_max", "latency_rows",
            "dead_letters", "rows_by_table")
    return {k: db[k] for k in keys if k in db}


def run_baseline(env: Env, messages: int) -> dict[str, Any]:
    """A paho callback doing one INSERT + one commit per message, on a prefix of the stream."""
    tag = secrets.token_hex(3)
    per = math.ceil(messages / env.publishers)
    prefixes = [read_records(f, per) for f in env.stream.files()]
    n_msgs = sum(len(p) for p in prefixes)
    n_readings = sum(r.readings for p in prefixes for r in p)
    del prefixes
    cmd = [sys.executable, "-m", "bench.ingestlib.baseline", "--host", env.host, "--port",
           str(env.port), "--user", env.user, "--client-id", f"bench-base-{tag}",
           "--count", str(n_msgs)]
    for t in TOPICS:
        cmd += ["--topic", t]
    benv = os.environ | {"BENCH_MQTT_PASSWORD": env.password, "BENCH_DATABASE_URL": env.db_url}
    sub = subprocess.Popen(cmd, env=benv, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != "READY":
            raise RuntimeError("baseline subscriber did not start")
        pubs = Publishers(env, tag, limit=per)
        groups = groups_for(env, None, pubs.pids,
                            lambda: [sub.pid] if sub.poll() is None else [])
        grp = _group(groups, "subscriber")
        sampler = Sampler(groups)
        sampler.start()
        pubs.go()
        out, _ = sub.communicate(timeout=900)
        sampler.stop()
        pub = pubs.wait()
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    stats = json.loads(out.strip().splitlines()[-1])
    db = db_outcome(env, pub["first_publish"])
    if db["rows"] != n_readings:
        raise RuntimeError(f"baseline: {db['rows']} rows, {n_readings} expected")
    extra = {"messages": n_msgs, "prefix_of_stream": True, "subscriber_stats": stats,
             "publishers": pub, **_rss(grp), **_pick(db)}
    return _finish("baseline-insert", db["rows"], n_msgs, pub["first_publish"], db["last_commit"],
                   sampler, extra)


def run_backlog(env: Env) -> dict[str, Any]:
    """The whole stream queued for a stopped ingestor, then drained by one worker."""
    tag = secrets.token_hex(3)
    ing = Ingestor(env, 1, tag, "backlog-1w")
    ing.start()
    try:
        ing.stop()  # the broker keeps the session and queues for it
        log.info("backlog: ingestor stopped; publishing %d messages into its session",
                 env.stream.messages)
        pubs = Publishers(env, tag)
        pubs.go()
        pub = pubs.wait()
        log.info("backlog: %d messages queued (%d msg/s); starting the ingestor",
                 pub["messages"], pub["publish_rate_msg_s"])
        groups = groups_for(env, ing.pids, _nobody, None)
        grp = _group(groups, "ingestor")
        sampler = Sampler(groups)
        sampler.start()
        t_start = time.time()
        ing.start(timeout=120)
        complete, rejected = ing.wait_for(env.stream.manifest.readings, timeout=env.run_cap_s)
        sampler.stop()
        if complete:
            ing.stop()
    finally:
        ing.kill()
        ing.purge_sessions()
    db = db_outcome(env, None)
    if complete and db["rows"] != env.stream.manifest.readings:
        raise RuntimeError(f"backlog: {db['rows']} rows, {env.stream.manifest.readings} expected")
    run = _finish("beffroi-1w-backlog", db["rows"], pub["messages"], t_start, db["last_commit"],
                  sampler,
                  {"messages": pub["messages"], "rejected_messages": rejected,
                   "backlog_publish": pub, **_rss(grp)})
    if not complete:
        run |= _incomplete(env.stream.manifest.readings, env.run_cap_s)
    run["drain_readings_per_s"] = run.pop("readings_per_s")
    run["drain_from"] = "ingestor process start"
    return run


# -- report ---------------------------------------------------------------------------------------


def _of_raw(rate: float | None, lower: float | None) -> tuple[float | None, bool]:
    """A rate's share of the lower raw limit, and whether it meets TARGET_OF_RAW."""
    if not rate or not lower:
        return None, False
    return round(rate / lower, 3), rate >= TARGET_OF_RAW * lower


def _cpu_vs_broker(run: dict[str, Any] | None) -> tuple[float | None, float | None, bool]:
    """A run's ingestor and broker CPU per message, and whether the ingestor's is no more."""
    per = (run or {}).get("cpu_us_per_message", {})
    ing, broker = per.get("ingestor"), per.get("broker")
    return ing, broker, ing is not None and broker is not None and ing <= broker


def raw_limit(by: dict[str, dict[str, Any]], system: str) -> float | None:
    """A raw limit: the faster of its two measurements, before and after the ingestor's
    runs. A machine shared with other work slows one of them now and then, and a limit
    measured low would flatter every ratio to it."""
    rates = [by[s]["readings_per_s"] for s in (system, system + AGAIN) if s in by]
    return max(rates, default=None)


def targets(runs: list[dict[str, Any]], backlog: dict[str, Any] | None) -> dict[str, Any]:
    """The three targets of the issue, and whether they are met."""
    by = {r["system"]: r for r in runs if r.get("readings_per_s")}
    best = max((by[s]["readings_per_s"] for s in ("beffroi-1w", "beffroi-2w") if s in by),
               default=None)
    best_sys = None
    if best is not None:
        best_sys = next(s for s in ("beffroi-2w", "beffroi-1w")
                        if s in by and by[s]["readings_per_s"] == best)
    raw = [r for r in (raw_limit(by, "broker-only"), raw_limit(by, "copy-only")) if r]
    lower = min(raw) if len(raw) == 2 else None
    base = by.get("baseline-insert", {}).get("readings_per_s")
    rss = backlog.get("peak_rss_mb") if backlog else None
    out: dict[str, Any] = {"best_beffroi": best_sys, "best_readings_per_s": best}
    ratio, met = _of_raw(best, lower)
    out["of_lower_raw_limit"] = {"lower_raw_limit": lower, "ratio": ratio,
                                 "target": TARGET_OF_RAW, "met": met}
    out["over_baseline"] = {
        "baseline": base, "ratio": round(best / base, 1) if best and base else None,
        "target": TARGET_OVER_BASELINE,
        "met": bool(best and base and best >= TARGET_OVER_BASELINE * base)}
    out["backlog_peak_rss"] = {"peak_rss_mb": rss, "target_mb": TARGET_RSS_MB,
                               "met": bool(rss is not None and rss < TARGET_RSS_MB)}
    ing_us, broker_us, met = _cpu_vs_broker(by[best_sys] if best_sys else None)
    out["ingestor_cpu_vs_broker"] = {
        "system": best_sys, "ingestor_us_per_message": ing_us,
        "broker_us_per_message": broker_us, "met": met}
    # The core issue asks both with 2 workers: the same two targets for beffroi-2w alone.
    two = by.get("beffroi-2w")
    two_rate = two["readings_per_s"] if two else None
    two_ratio, two_met = _of_raw(two_rate, lower)
    two_ing, two_broker, two_cpu_met = _cpu_vs_broker(two)
    out["two_workers"] = {
        "readings_per_s": two_rate, "ratio": two_ratio, "of_lower_raw_limit_met": two_met,
        "ingestor_us_per_message": two_ing, "broker_us_per_message": two_broker,
        "ingestor_cpu_vs_broker_met": two_cpu_met}
    batched = [s for s in ("batched-beffroi-1w", "batched-beffroi-2w") if s in by]
    b_best = max(batched, key=lambda s: by[s]["readings_per_s"], default=None)
    b_rate = by[b_best]["readings_per_s"] if b_best else None
    copy = raw_limit(by, "batched-copy-only")
    out["batched_of_copy_only"] = {
        "best_beffroi": b_best, "readings_per_s": b_rate, "copy_only": copy,
        "ratio": round(b_rate / copy, 3) if b_rate and copy else None,
        "target": TARGET_BATCHED_OF_COPY,
        "met": bool(b_rate and copy and b_rate >= TARGET_BATCHED_OF_COPY * copy)}
    return out


def _fmt(x: Any, unit: str = "") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.1f}{unit}"
    return f"{int(x):,}{unit}"


def _table(runs: list[dict[str, Any]], *, per_reading: bool) -> list[str]:
    """The results table of one stream's runs."""
    unit = "reading" if per_reading else "message"
    lines = ["| system | messages/s | readings/s | latency p50 | latency p99 | peak RSS | "
             "CPU s: broker / ingestor / PostgreSQL / publishers / other | "
             "CPU µs per message: broker / ingestor / PostgreSQL |"
             + (f" CPU µs per {unit}: broker / ingestor / PostgreSQL |" if per_reading else ""),
             "|---|---:|---:|---:|---:|---:|---|---|" + ("---|" if per_reading else "")]
    for r in runs:
        if "error" in r:
            lines.append(f"| {r['system']} | failed: {r['error'][:80]} | | | | | | |"
                         + (" |" if per_reading else ""))
            continue
        c = r["cpu_s"]
        consumer = c.get("ingestor", c.get("subscriber"))
        rss = r.get("peak_rss_mb")
        rss_txt = _fmt(rss, " MB")
        if r.get("peak_rss_mb_all_processes") and r["peak_rss_mb_all_processes"] != rss:
            rss_txt += f" (all processes {_fmt(r['peak_rss_mb_all_processes'], ' MB')})"
        name = r["system"]
        if r.get("complete") is False:
            name += f" (stopped at {_fmt(r['elapsed_s'])} s: partial)"
        if r.get("offered_rate_msg_s"):
            name += f" (offered {_fmt(r['offered_rate_msg_s'])} msg/s)"

        def per(key: str, unit_count: int, r: dict[str, Any] = r) -> str:
            u = r.get(key, {})
            cons = _fmt2(u.get("ingestor", u.get("subscriber")))
            procs = [c for c in r.get("cpu_s_ingestor_processes", [])
                     if c > 0.05 * c_ingestor] if (c_ingestor := c.get("ingestor")) else []
            if len(procs) > 1 and unit_count:  # each worker's share
                cons += " (" + " + ".join(_fmt2(x / unit_count * 1e6) for x in procs) + ")"
            return f"{_fmt2(u.get('broker'))} / {cons} / {_fmt2(u.get('postgres'))}"

        lines.append(
            f"| {name} | {_fmt(r.get('messages_per_s'))} | **{_fmt(r['readings_per_s'])}** | "
            f"{_fmt(r['latency_ms_p50'], ' ms')} | {_fmt(r['latency_ms_p99'], ' ms')} | "
            f"{rss_txt} | {_fmt(c.get('broker'))} / {_fmt(consumer)} / "
            f"{_fmt(c.get('postgres'))} / {_fmt(c.get('publishers'))} / "
            f"{_fmt(c.get('unaccounted'))} | {per('cpu_us_per_message', r['messages'])} |"
            + (f" {per('cpu_us_per_reading', r['readings'])} |" if per_reading else ""))
    return lines


def _fmt2(x: Any) -> str:
    """A small figure with two significant decimals (µs per message)."""
    return "—" if x is None else f"{x:.2f}"


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    m = result["machine"]
    lines = ["# Ingest benchmark", "",
             f"Generated by `make bench-ingest` (`python -m bench.ingest`) on "
             f"{result['finished_at']}. Raw data: `ingest.json`.", "",
             "## Machine", "",
             f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gib']} GiB; {m['os']} "
             f"(kernel {m['kernel']})",
             f"- Python {m['python']}; Mosquitto {m['mosquitto']}; PostgreSQL "
             f"{m['postgresql']} + TimescaleDB {m['timescaledb']}",
             f"- Libraries: {', '.join(f'{k} {v}' for k, v in m['libraries'].items())}",
             f"- Ingestor: {m.get('ingestor_build', 'per-message path: pure Python')}",
             f"- Load average at start: {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}",
             "", "## Stream", ""]
    s = result["stream"]
    fmts = ", ".join(f"{k} {v:,} messages ({s['readings_by_format'][k]:,} readings)"
                     for k, v in sorted(s["by_format"].items(), key=lambda kv: -kv[1]))
    lines += [f"{s['messages']:,} QoS 1 messages, {s['readings']:,} readings, from the 820 "
              f"devices of the demo city, seed {s['seed']}; {s['publishers']} publisher "
              f"processes. Formats: {fmts}. Native JSON messages carry their publish time "
              "(`ts`, µs), which is what latency is measured on.", ""]
    bs = result.get("batched_stream")
    if bs:
        kinds = ", ".join(f"{k} {v:,}" for k, v in sorted(bs["by_kind"].items(),
                                                          key=lambda kv: -kv[1]))
        lines += [f"**Batched stream**: {bs['messages']:,} QoS 1 messages of "
                  f"{bs['readings_per_message']} readings each ({bs['readings']:,} readings), "
                  f"the same devices and publishers: {kinds}. Native arrays carry a publish "
                  f"time per reading; SenML packs hold {bs['readings_per_message']} time "
                  "groups of fixed times.", ""]
    single = [r for r in result["runs"] if not r["system"].startswith("batched-")]
    lines += ["## Results: single-reading stream", "", *_table(single, per_reading=False)]
    b_runs = [r for r in result["runs"] if r["system"].startswith("batched-")]
    if b_runs:
        lines += ["", "## Results: batched stream", "", *_table(b_runs, per_reading=True)]
    busy = [r["system"] for r in [*result["runs"], result.get("backlog") or {}]
            if r.get("concurrent_activity")]
    if busy:
        lines += ["", f"Other processes (test suites, other ingestors) were running during: "
                  f"{', '.join(busy)}; their figures may be lower than on a quiet machine."]
    b = result.get("backlog")
    if b and "error" not in b:
        lines += ["", f"**Backlog**: {b['messages']:,} messages queued on the broker for a "
                  f"stopped ingestor (published at {b['backlog_publish']['publish_rate_msg_s']:,}"
                  f" msg/s), then drained by `beffroi ingest --workers 1` at "
                  f"**{_fmt(b['drain_readings_per_s'])} readings/s** (from process start), "
                  f"peak RSS **{_fmt(b.get('peak_rss_mb'), ' MB')}**."]
    elif b:
        lines += ["", f"**Backlog**: failed: {b['error']}"]
    t = result["targets"]
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    o = t["of_lower_raw_limit"]
    lines.append(f"| end to end ≥ 60 % of the lower raw limit | {_fmt(t['best_readings_per_s'])}"
                 f" ({t['best_beffroi']}) / {_fmt(o['lower_raw_limit'])} = "
                 f"{_fmt((o['ratio'] or 0) * 100)} % | {'yes' if o['met'] else '**no**'} |")
    ob = t["over_baseline"]
    lines.append(f"| ≥ 20× the common approach | {_fmt(ob['ratio'])}× "
                 f"({_fmt(ob['baseline'])} readings/s) | {'yes' if ob['met'] else '**no**'} |")
    br = t["backlog_peak_rss"]
    lines.append(f"| peak RSS < 300 MB with the backlog "
                 f"({_fmt(b['messages'] if b and 'messages' in b else None)} messages) | "
                 f"{_fmt(br['peak_rss_mb'], ' MB')} | {'yes' if br['met'] else '**no**'} |")
    ic = t["ingestor_cpu_vs_broker"]
    lines.append(f"| ingestor CPU per message ≤ the broker's ({ic['system'] or '—'}) | "
                 f"{_fmt(ic['ingestor_us_per_message'], ' µs')} against "
                 f"{_fmt(ic['broker_us_per_message'], ' µs')} | "
                 f"{'yes' if ic['met'] else '**no**'} |")
    tw = t.get("two_workers")
    if tw and tw["readings_per_s"]:
        lines.append(f"| with 2 workers: end to end ≥ 60 % of the lower raw limit | "
                     f"{_fmt(tw['readings_per_s'])} (beffroi-2w) / {_fmt(o['lower_raw_limit'])}"
                     f" = {_fmt((tw['ratio'] or 0) * 100)} % | "
                     f"{'yes' if tw['of_lower_raw_limit_met'] else '**no**'} |")
        lines.append(f"| with 2 workers: ingestor CPU per message ≤ the broker's | "
                     f"{_fmt(tw['ingestor_us_per_message'], ' µs')} (both workers) against "
                     f"{_fmt(tw['broker_us_per_message'], ' µs')} | "
                     f"{'yes' if tw['ingestor_cpu_vs_broker_met'] else '**no**'} |")
    bt = t["batched_of_copy_only"]
    if bt["copy_only"] or bt["readings_per_s"]:
        lines.append(f"| batched stream ≥ 50 % of its COPY-only limit | "
                     f"{_fmt(bt['readings_per_s'])} ({bt['best_beffroi'] or '—'}) / "
                     f"{_fmt(bt['copy_only'])} = {_fmt((bt['ratio'] or 0) * 100)} % | "
                     f"{'yes' if bt['met'] else '**no**'} |")
    lines += ["", "## How to read this", "",
              "- readings/s is end to end: from the first publish to the commit of the last "
              "row (`pg_xact_commit_timestamp`); for broker-only, to `mosquitto_sub` exiting "
              "after the last message; for copy-only, COPY time alone (rows decoded before).",
              "- Each raw limit (copy-only, broker-only, and the batched stream's) is "
              "measured twice, before and after the ingestor's runs (`-again`); the targets "
              "use the faster of the two, so that a limit measured while the machine was "
              "busy cannot flatter the ratios.",
              "- Latency is publish-to-commit over native JSON readings while publishers run "
              "flat out: when the broker accepts messages faster than the consumer drains "
              "them, it is mostly time spent queued in the broker.",
              "- CPU seconds over the measured window; 'other' is machine CPU no measured "
              "process accounts for (other users of the machine, the kernel). CPU µs per "
              "message (and per reading) divide them by the messages (readings) of the run; "
              "with two workers the ingestor's figure is both workers' (and their parent's) "
              "added, each worker's in brackets; `ingest.json` has each process's CPU "
              "seconds (`cpu_s_ingestor_processes`).",
              "- The baseline runs on a prefix of the stream (a rate is a rate).",
              "- Everything shares 2 cores: publishers, broker, ingestor and PostgreSQL.", ""]
    path.write_text("\n".join(lines))


# -- main -------------------------------------------------------------------------------------


SYSTEMS = ("copy-only", "broker-only", "beffroi-1w", "beffroi-2w", "beffroi-2w-paced",
           "copy-only-again", "broker-only-again",
           "batched-copy-only", "batched-broker-only", "batched-beffroi-1w",
           "batched-beffroi-2w", "batched-copy-only-again", "batched-broker-only-again",
           "baseline-insert", "backlog")
PACED_SHARE = 0.5
#: Suffix of a raw limit's second measurement in a run.
AGAIN = "-again"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=1_000_000,
                   help="messages in the stream (each holds at least one reading; "
                   "default 1,000,000)")
    p.add_argument("--batched-messages", type=int, default=100_000,
                   help=f"messages in the batched stream ({BATCH_READINGS} readings each; "
                   "default 100,000)")
    p.add_argument("--quick", action="store_true",
                   help="100,000 messages, 10,000 batched and a 5,000-message baseline")
    p.add_argument("--baseline-messages", type=int, default=20_000)
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--paced-rate", type=float, default=None,
                   help="messages/s of the paced run (default: half of beffroi-2w's rate)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated subset of {', '.join(SYSTEMS)}")
    p.add_argument("--ingest-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for `beffroi ingest` (e.g. "
                   "BEFFROI_INGEST_BATCH_SIZE=10000)")
    p.add_argument("--run-cap", type=float, default=120.0, metavar="SECONDS",
                   help="stop a Beffroi run that has not committed everything after this long "
                   "and report the rate so far (default 120)")
    p.add_argument("--ingest-module", default="beffroi.cli",
                   help="module run as `python -m MODULE ingest ...` (A/B runs of candidate "
                   "fixes: bench.ingestlib.experiment with BENCH_EXPERIMENT=uvloop,gc)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="results directory (default bench/results)")
    a = p.parse_args(argv)
    if a.quick:
        a.readings = min(a.readings, 100_000)
        a.batched_messages = min(a.batched_messages, 10_000)
        a.baseline_messages = min(a.baseline_messages, 5_000)
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    unknown = set(a.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    return a


def _stream_json(stream: Stream) -> dict[str, Any]:
    return {k: v for k, v in stream.manifest.to_json().items()
            if k not in ("version", "generated_at", "base_time")}


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    t = time.monotonic()
    log.info("%s ...", what)
    yield
    log.info("%s done in %.1fs", what, time.monotonic() - t)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write bench/results/ingest.json and ingest.md."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    a = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so child processes are stopped and sessions purged.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_all = time.monotonic()
    stack = Stack(Settings())
    if not all(s.running for s in stack.status()):
        raise SystemExit("the local stack is not running: `make stack-up` (or beffroi stack up)")
    WORK.mkdir(parents=True, exist_ok=True)
    logs = WORK / "logs"
    logs.mkdir(exist_ok=True)
    stream_dir, manifest = ensure_stream(WORK, messages=a.readings, seed=a.seed,
                                         publishers=a.publishers)
    single = Stream("single", stream_dir, manifest)
    batched = None
    if any(s.startswith("batched-") for s in a.systems):
        b_dir, b_manifest = ensure_stream(WORK, messages=a.batched_messages, seed=a.seed,
                                          publishers=a.publishers, batched=True)
        batched = Stream("batched", b_dir, b_manifest)
    with _timed("preparing database " + BENCH_DB):
        db_url = prepare_database(stack)
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    extra = dict(kv.split("=", 1) for kv in a.ingest_env)
    env = Env(stack, db_url, host, port, user, password, single, a.publishers,
              logs, extra, a.run_cap, a.ingest_module, batched)
    result: dict[str, Any] = {
        "machine": machine_info(env),
        "stream": _stream_json(single),
        "batched_stream": _stream_json(batched) if batched else None,
        "settings": {"ingest_env_overrides": extra, "baseline_messages": a.baseline_messages,
                     "copy_batch_readings": COPY_BATCH, "publisher": "raw MQTT 3.1.1 socket, "
                     "QoS 1, window 20000, chunks of 256"},
        "runs": [],
        "backlog": None,
    }
    a.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        result["targets"] = targets(result["runs"], result["backlog"])
        (a.out / "ingest.json").write_text(json.dumps(result, indent=2) + "\n")
        write_markdown(a.out / "ingest.md", result)

    def on_batched() -> Stream:
        assert batched is not None
        return batched

    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("copy-only", lambda: run_copy_only(env, single)),
        ("broker-only", lambda: run_broker_only(env, single)),
        ("beffroi-1w", lambda: run_beffroi(env, single, 1)),
        ("beffroi-2w", lambda: run_beffroi(env, single, 2)),
        ("beffroi-2w-paced", lambda: run_beffroi(env, single, 2, rate=paced_rate())),
        ("copy-only-again", lambda: run_copy_only(env, single, again=True)),
        ("broker-only-again", lambda: run_broker_only(env, single, again=True)),
        ("batched-copy-only", lambda: run_copy_only(env, on_batched())),
        ("batched-broker-only", lambda: run_broker_only(env, on_batched())),
        ("batched-beffroi-1w", lambda: run_beffroi(env, on_batched(), 1)),
        ("batched-beffroi-2w", lambda: run_beffroi(env, on_batched(), 2)),
        ("batched-copy-only-again", lambda: run_copy_only(env, on_batched(), again=True)),
        ("batched-broker-only-again",
         lambda: run_broker_only(env, on_batched(), again=True)),
        ("baseline-insert", lambda: run_baseline(env, a.baseline_messages)),
        ("backlog", lambda: run_backlog(env)),
    ]
    def paced_rate() -> float:
        """Half of what two workers sustained flat out: latency at a comfortable load."""
        if a.paced_rate:
            return float(a.paced_rate)
        done = [r for r in result["runs"] if r["system"] == "beffroi-2w" and "error" not in r]
        msgs = done[0]["messages"] / done[0]["elapsed_s"] if done else 10_000.0
        return round(msgs * PACED_SHARE, -2)

    failed = False
    for name, fn in plan:
        if name not in a.systems:
            continue
        others: list[str] = []
        run = {}
        for attempt in (1, 2):
            try:
                wait_for_services(env)
                reset_tables(env)
                others = concurrent_activity()
                if others:
                    log.warning("other processes are using this machine during %s: %s", name,
                                "; ".join(others))
                with _timed(name):
                    run = fn()
                break
            except Exception as exc:  # one failing system must not lose the others' results
                log.exception("%s failed (attempt %d)", name, attempt)
                run = {"system": name, "error": re.sub(r"\s+", " ", str(exc))[:500]}
        failed = failed or "error" in run
        run["concurrent_activity"] = others
        if name == "backlog":
            result["backlog"] = run
        else:
            result["runs"].append(run)
            if "error" not in run:
                log.info("%s: %s readings/s, latency p50 %s ms p99 %s ms, peak RSS %s MB, "
                         "CPU %s", name, run["readings_per_s"], run["latency_ms_p50"],
                         run["latency_ms_p99"], run["peak_rss_mb"], run["cpu_s"])
        save()
    with contextlib.suppress(Exception):
        wait_for_services(env)
        reset_tables(env)
    save()
    log.info("results in %s (%.0fs in all)", a.out, time.monotonic() - t_all)
    print((a.out / "ingest.md").read_text())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
