"""Running the ingestor: one process, or N worker processes sharing the stream."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing import connection as mp_connection
from multiprocessing.process import BaseProcess
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import start_http_server

from beffroi.broker_auth import connection_user
from beffroi.gctune import tune_gc
from beffroi.settings import Settings
from ingest.claim import lock_key
from ingest.metrics import Metrics
from ingest.service import BrokerConfig, Ingestor
from ingest.subscriptions import max_plain_workers, session_filters

log = logging.getLogger(__name__)


#: Exit code of a worker whose broker session another client took over (not restarted).
TAKEN_OVER_EXIT = 3
#: A worker that dies more often than this within RESTART_WINDOW_S is not restarted again:
#: the whole ingestor stops (its supervisor, compose or systemd, restarts it).
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
_PR_SET_PDEATHSIG = 1


async def run_worker(settings: Settings, db_url: str, broker: BrokerConfig, worker: int,
                     *, shared: bool, progress: bool | None = None, workers: int = 1) -> int:
    """Run one ingestor until SIGTERM or SIGINT, then stop gracefully; return an exit code
    (``TAKEN_OVER_EXIT`` when another client took over its broker session)."""
    tune_gc(settings.ingest_gc_threshold)
    metrics = Metrics()
    if settings.ingest_metrics_port:
        port = settings.ingest_metrics_port + worker
        host = settings.ingest_metrics_host
        try:
            start_http_server(port, addr=host, registry=metrics.registry)
            log.info("worker %d: metrics on http://%s:%d/metrics", worker, host, port)
        except OSError as exc:
            log.warning("worker %d: metrics port %d unavailable (%s)", worker, port, exc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ingestor = Ingestor(settings, db_url=db_url, broker=broker, worker=worker, shared=shared,
                        metrics=metrics, progress=progress, workers=workers)
    await ingestor.run(stop)
    taken_over = getattr(ingestor.subscriber, "taken_over", False)
    return TAKEN_OVER_EXIT if taken_over else 0


class TooManyWorkers(ValueError):
    """More workers than plain subscriptions can split the topics between."""


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this worker when its parent dies (Linux), so that a
    parent killed alone never leaves workers behind to fight the next run's."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(settings_json: str, db_url: str, broker: dict[str, Any], worker: int,
                 shared: bool, progress: bool, log_level: int, parent: int,
                 workers: int) -> None:
    logging.basicConfig(level=log_level,
                        format="%(asctime)s %(levelname)s %(name)s[w%(process)d]: %(message)s")
    settings = Settings.model_validate_json(settings_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    _die_with_parent(parent)
    _install_uvloop()
    code = asyncio.run(run_worker(settings, db_url, BrokerConfig(**broker), worker,
                                  shared=shared, progress=progress, workers=workers))
    sys.exit(code)


def _install_uvloop() -> None:
    """Use uvloop's event loop when installed (less CPU per message than asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


@contextlib.contextmanager
def _worker_session(settings: Settings, broker: BrokerConfig, worker: int
                    ) -> Iterator[tuple[mqtt.Client, bool] | None]:
    """A short MQTT 5 connection that resumes worker ``worker``'s session: the client and
    whether the broker had the session, or None when the broker cannot be reached.

    It acknowledges nothing: with manual acknowledgement and a Receive Maximum of 1, what
    the broker sends of the session's queue stays in flight and comes again to the worker.
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                         client_id=f"{settings.ingest_client_id}-{worker}", manual_ack=True)
    client.username_pw_set(connection_user(broker.username, worker), broker.password)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = settings.ingest_session_expiry_s
    props.ReceiveMaximum = 1
    answer: list[tuple[bool, bool]] = []
    client.on_connect = lambda c, u, flags, rc, p: answer.append(
        (not rc.is_failure, bool(flags.session_present)))
    try:
        client.connect(broker.host, broker.port, clean_start=False, properties=props)
        _loop_until(client, lambda: bool(answer))
    except OSError as exc:
        log.warning("cannot reach worker %d's broker session (%s)", worker, exc)
        yield None
        return
    ok, present = answer[0] if answer else (False, False)
    try:
        yield (client, present) if ok else None
    finally:
        if client.is_connected():  # not yet ended by the caller
            client.disconnect()
        with contextlib.suppress(OSError):
            client.loop(0.1)


def _loop_until(client: mqtt.Client, done: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        client.loop(0.1)


def session_present(settings: Settings, broker: BrokerConfig, worker: int) -> bool:
    """Whether the broker keeps a session for worker ``worker`` (a quick MQTT 5 connection
    that resumes it, and ends the empty one it made when there was none)."""
    with _worker_session(settings, broker, worker) as session:
        if session is None:
            return False
        client, present = session
        if not present:
            end = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            end.SessionExpiryInterval = 0
            client.disconnect(properties=end)
        return present


def _in_use(db_url: str, client_id: str) -> bool:
    """Whether another ingestor holds ``client_id`` (its claim, ingest/claim.py)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", lock_key(client_id)).fetchone()
        if not row or not row[0]:
            return True
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock_key(client_id))
    return False


def prepare_sessions(settings: Settings, db_url: str, broker: BrokerConfig, workers: int, *,
                     shared: bool) -> None:
    """Subscribe each worker's session to its own filters before any worker starts.

    A worker drops from its session the filters of an earlier run with another number of
    workers or another mode as soon as it connects (ingest/subscriptions.py). Were the new
    owner of such a filter not subscribed yet, what is published in between would match
    nobody and be lost; subscribed here first, every message matches some session at every
    moment. What both sessions receive meanwhile is stored once (the readings' unique keys).
    """
    for worker in range(workers):
        client_id = f"{settings.ingest_client_id}-{worker}"
        if _in_use(db_url, client_id):
            log.info("client id %s is in use by another ingestor: its session is left as is",
                     client_id)
            continue
        own, _ = session_filters(settings, worker, workers, shared=shared)
        _subscribe_session(settings, broker, worker, own)


def _subscribe_session(settings: Settings, broker: BrokerConfig, worker: int,
                       own: list[str]) -> None:
    with _worker_session(settings, broker, worker) as session:
        if session is None:
            return  # the worker says why when it connects
        client, _ = session
        granted: list[list[int]] = []
        client.on_subscribe = lambda c, u, mid, codes, p: granted.append(
            [code.value for code in codes])
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in own])
        _loop_until(client, lambda: bool(granted))
        if not granted or any(code != 1 for code in granted[0]):
            log.warning("worker %d's session could not be subscribed to %s beforehand (%s); "
                        "the worker subscribes when it starts", worker, ", ".join(own),
                        granted[0] if granted else "no answer")


def retire_sessions(settings: Settings, db_url: str, broker: BrokerConfig, workers: int) -> int:
    """Drain and end the broker sessions of worker numbers ``workers`` and up (up to
    ``ingest_max_workers``) that an earlier run with more workers left behind: the broker
    would otherwise keep a copy of every message for them. Return how many were ended."""
    retired = 0
    for worker in range(workers, settings.ingest_max_workers):
        client_id = f"{settings.ingest_client_id}-{worker}"
        if _in_use(db_url, client_id):
            log.info("client id %s is in use by another ingestor: its session stays",
                     client_id)
            continue
        if not session_present(settings, broker, worker):
            continue
        log.warning("an earlier run left the broker session of worker %d (%s): storing what "
                    "it holds, then ending it", worker, client_id)
        asyncio.run(Ingestor(settings, db_url=db_url, broker=broker, worker=worker,
                             shared=False, progress=False, retire=True).run(asyncio.Event()))
        retired += 1
    return retired


def run(settings: Settings, db_url: str, broker: BrokerConfig, *, workers: int = 1,
        progress: bool | None = None) -> int:
    """Run ``workers`` ingestor processes until interrupted; return an exit code."""
    # Plain subscriptions by default, the workers splitting the topics by filter: a broker
    # restart loses nothing (Mosquitto 2.0 restores plain subscriptions of persistent
    # sessions, not shared ones). A shared subscription deals the messages of every topic
    # to the workers, at the cost of those published after a broker restart (docs/scale.md).
    shared = bool(settings.ingest_shared_subscription)
    if not shared and workers > max_plain_workers():
        raise TooManyWorkers(
            f"--workers {workers}: plain subscriptions split the topics between at most "
            f"{max_plain_workers()} workers (docs/ingest.md, Subscriptions); set "
            "BEFFROI_INGEST_SHARED_SUBSCRIPTION=true for more")
    prepare_sessions(settings, db_url, broker, workers, shared=shared)
    retire_sessions(settings, db_url, broker, workers)
    if workers == 1:
        _install_uvloop()
        return asyncio.run(run_worker(settings, db_url, broker, 0, shared=shared,
                                      progress=progress))
    return Supervisor(settings, db_url, broker, workers=workers, shared=shared,
                      progress=bool(progress)).run()


class Supervisor:
    """The parent of ``--workers N``: starts the workers, restarts one that dies (and says
    so), forwards SIGTERM/SIGINT, and stops everything when a worker keeps dying or lost
    its session to another ingestor."""

    def __init__(self, settings: Settings, db_url: str, broker: BrokerConfig, *,
                 workers: int, shared: bool, progress: bool) -> None:
        self.settings = settings
        self.db_url = db_url
        self.broker = broker
        self.workers = workers
        self.shared = shared
        self.progress = progress
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.deaths: dict[int, list[float]] = {i: [] for i in range(workers)}
        self.restarts = 0
        self.stopping = False

    def start(self, i: int) -> None:
        p = self.ctx.Process(
            target=_worker_main, name=f"beffroi-ingest-{i}",
            args=(self.settings.model_dump_json(), self.db_url, dataclasses.asdict(self.broker), i,
                  self.shared, self.progress, logging.getLogger().level, os.getpid(),
                  self.workers))
        p.start()
        self.procs[i] = p

    def stop_all(self, *_: Any) -> None:
        self.stopping = True
        for p in self.procs.values():
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop_all)
        signal.signal(signal.SIGINT, self.stop_all)
        for i in range(self.workers):
            self.start(i)
        log.info("started %d ingestor workers: %s", self.workers,
                 ", ".join(str(p.pid) for p in self.procs.values()))
        code = 0
        while self.procs:
            sentinels = {p.sentinel: i for i, p in self.procs.items()}
            ready = mp_connection.wait(list(sentinels), timeout=1.0)
            for sentinel in ready:
                assert isinstance(sentinel, int)
                i = sentinels[sentinel]
                p = self.procs.pop(i)
                p.join()
                if self.stopping:
                    if p.exitcode not in (0, -signal.SIGTERM):
                        code = 1
                    continue
                code = max(code, self._worker_died(i, p))
        return code

    def _worker_died(self, i: int, p: BaseProcess) -> int:
        """A worker ended while nobody asked: restart it, or stop everything (exit code)."""
        if p.exitcode == TAKEN_OVER_EXIT:
            log.error("worker %d (pid %s) lost its broker session to another client: stopping "
                      "every worker (another `beffroi ingest` uses the same client ids)", i, p.pid)
            self.stop_all()
            return 1
        now = time.monotonic()
        recent = [t for t in self.deaths[i] if now - t < RESTART_WINDOW_S] + [now]
        self.deaths[i] = recent
        if len(recent) > MAX_RESTARTS:
            log.error("worker %d died %d times within %.0f s (last exit code %s): stopping "
                      "every worker", i, len(recent), RESTART_WINDOW_S, p.exitcode)
            self.stop_all()
            return 1
        self.restarts += 1
        log.error("worker %d (pid %s) died (exit code %s): restarting it; its broker session "
                  "kept its share of the messages (%d restart(s) so far)", i, p.pid, p.exitcode,
                  self.restarts)
        self.start(i)
        log.info("worker %d restarted: pid %s", i, self.procs[i].pid)
        return 0
