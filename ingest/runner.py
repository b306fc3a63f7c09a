"""Running the ingestor: one process, or N worker processes sharing the stream."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from typing import Any

from prometheus_client import start_http_server

from beffroi.gctune import tune_gc
from beffroi.settings import Settings
from ingest.metrics import Metrics
from ingest.service import BrokerConfig, Ingestor

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, db_url: str, broker: BrokerConfig, worker: int,
                     *, shared: bool, progress: bool | None = None) -> None:
    """Run one ingestor until SIGTERM or SIGINT, then stop gracefully."""
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
                        metrics=metrics, progress=progress)
    await ingestor.run(stop)


def _worker_main(settings_json: str, db_url: str, broker: dict[str, Any], worker: int,
                 shared: bool, progress: bool, log_level: int) -> None:
    logging.basicConfig(level=log_level,
                        format="%(asctime)s %(levelname)s %(name)s[w%(process)d]: %(message)s")
    settings = Settings.model_validate_json(settings_json)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGTERM
    _install_uvloop()
    asyncio.run(run_worker(settings, db_url, BrokerConfig(**broker), worker, shared=shared,
                           progress=progress))


def _install_uvloop() -> None:
    """Use uvloop's event loop when installed (less CPU per message than asyncio's)."""
    try:
        import uvloop
    except ImportError:
        return
    uvloop.install()


def run(settings: Settings, db_url: str, broker: BrokerConfig, *, workers: int = 1,
        progress: bool | None = None) -> int:
    """Run ``workers`` ingestor processes until interrupted; return an exit code."""
    shared = settings.ingest_shared_subscription
    if shared is None:
        shared = workers > 1
    if workers > 1 and not shared:
        raise ValueError("several workers need a shared subscription")
    if workers == 1:
        _install_uvloop()
        asyncio.run(run_worker(settings, db_url, broker, 0, shared=shared, progress=progress))
        return 0
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_worker_main, name=f"beffroi-ingest-{i}",
                    args=(settings.model_dump_json(), db_url, broker.__dict__, i, shared,
                          bool(progress), logging.getLogger().level))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    log.info("started %d ingestor workers: %s", workers, ", ".join(str(p.pid) for p in procs))

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.pid and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    return 0 if all(c == 0 for c in codes) else 1
