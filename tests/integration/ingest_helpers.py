"""Run an ingestor inside the test process, or ``beffroi ingest`` as a child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson

from beffroi.settings import Settings
from beffroi.stack import Stack
from ingest.batch import DeadLetterRow
from ingest.service import BrokerConfig, Ingestor
from tests.conftest import random_tag
from tests.integration.mqtt_helpers import (
    await_until,
    count,
    purge_session,
    register,
    wait_until,
)

#: The mixed stream's message ``i`` is timed ``i`` seconds after this, a month ago.
MIXED_T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)


def mixed_message(prefix: str, uid: str, i: int, devices: int) -> tuple[str, bytes]:
    """Message ``i`` of a stream on two workers' topics, each unique: a grid reading (even
    ``i``, worker 0's of two) or a parking spot state (odd, worker 1's)."""
    t = (MIXED_T0 + timedelta(seconds=i)).isoformat()
    if i % 2 == 0:
        return (f"{prefix}/grid/{uid}-m{i % devices}/reading",
                orjson.dumps({"ts": t, "energy_import_wh": i}))
    return (f"{prefix}/parking/{uid}-s{i % devices}/state",
            orjson.dumps({"ts": t, "state": "occupied" if i % 4 == 1 else "free"}))


def register_mixed(db_url: str, uid: str, devices: int) -> None:
    """Register the meters and spots of ``mixed_message``."""
    register(db_url, uid, {f"{uid}-m{i}": "grid_meter" for i in range(devices)}
             | {f"{uid}-s{i}": "parking_spot" for i in range(devices)})


def mixed_stored(db_url: str, uid: str) -> tuple[int, int]:
    """Grid readings and parking states stored of ``mixed_message``'s devices."""
    return (count(db_url, "grid_readings", "device_id LIKE %s", (f"{uid}-m%",)),
            count(db_url, "parking_spot_state", "device_id LIKE %s", (f"{uid}-s%",)))


def zone_holding(start: datetime, ahead: timedelta = timedelta(hours=1)) -> str:
    """A fixed-offset zone (the nearest to UTC+1) in which ``start`` and the clock for the
    next ``ahead`` fall on one local day.

    The ingestor refuses a per-client reading of a local day that has ended: that day's
    pseudonymisation key is destroyed at local midnight. A test publishing the last hours
    of wifi sessions would then fail at 00:30 in Paris; such a test gives its ingestor this
    zone (the ingestor's zone decides only the key's day) and passes at any hour.
    """
    until = datetime.now(UTC) + ahead
    for hours in sorted(range(-12, 15), key=lambda h: abs(h - 1)):
        tz = timezone(timedelta(hours=hours))
        if start.astimezone(tz).date() == until.astimezone(tz).date():
            return f"Etc/GMT{-hours:+d}"  # POSIX signs: Etc/GMT-1 is UTC+1
    raise ValueError(f"no zone holds {start.isoformat()} to {until.isoformat()} in one day")


def make_dead(at: datetime, topic: str, device_id: str | None, reason: str, detail: str,
              payload: bytes) -> DeadLetterRow:
    """A dead-letter row as the ingestor makes it, for a BatchWriter under test."""
    return (at, topic, device_id, reason, detail, payload, len(payload))


def ingest_settings(settings: Settings, **overrides: Any) -> Settings:
    """Settings for a test ingestor: unique client id and share group, no metrics port."""
    tag = random_tag()
    values: dict[str, Any] = {
        "ingest_client_id": f"test-ingest-{tag}",
        "ingest_share_group": f"test{tag}",
        "ingest_metrics_port": 0,
        "ingest_batch_max_age_ms": 50,
        # A topic prefix of its own, so traffic of other tests or tools is not seen.
        "topic_prefix": f"t{tag}",
    }
    values.update(overrides)
    return settings.model_copy(update=values)


def broker_config(stack: Stack) -> BrokerConfig:
    """A broker account for test ingestors: the admin one, which may read any test prefix."""
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    return BrokerConfig(host, port, user, password)


@contextlib.asynccontextmanager
async def running_ingestor(stack: Stack, settings: Settings, db_url: str, *,
                           worker: int = 0, purge: bool = True,
                           broker: BrokerConfig | None = None) -> AsyncIterator[Ingestor]:
    """Start an ingestor (by default with the admin account), yield it once subscribed, stop
    it gracefully afterwards."""
    ing = Ingestor(settings, db_url=db_url, broker=broker or broker_config(stack),
                   worker=worker, progress=False)
    stop = asyncio.Event()
    task = asyncio.create_task(ing.run(stop))
    started = asyncio.create_task(ing.wait_started())
    done, _ = await asyncio.wait({task, started}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # raises the start-up error
    if started not in done:
        raise TimeoutError("ingestor did not subscribe within 30s")
    try:
        yield ing
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=60)
        if purge:
            await asyncio.to_thread(purge_session, stack,
                                    f"{settings.ingest_client_id}-{worker}")


async def await_committed(ing: Ingestor, n: int, *, timeout: float, what: str) -> None:
    """Wait until the ingestor has committed at least ``n`` messages (as rows, dead letters
    or refusals): nothing published before is still in flight."""

    async def committed() -> bool:
        return ing.committed_messages >= n

    await await_until(committed, timeout=timeout, what=what)


class IngestProcess:
    """``beffroi ingest`` as a child process against the test database."""

    def __init__(self, stack: Stack, db_url: str, log_path: Path, *, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        host, port = stack.broker_address()
        user, password = stack.mqtt_credentials("admin")  # may read the test prefix
        tag = random_tag()
        self.client_ids = [f"crash-{tag}-{i}" for i in range(workers)]
        self.env = os.environ | {
            "BEFFROI_DATABASE_URL": db_url,
            "BEFFROI_BROKER_URL": f"mqtt://{host}:{port}",
            "BEFFROI_INGEST_MQTT_USERNAME": user,
            "BEFFROI_INGEST_MQTT_PASSWORD": password,
            "BEFFROI_STATE_DIR": str(stack.state_dir),
            "BEFFROI_INGEST_CLIENT_ID": f"crash-{tag}",
            "BEFFROI_INGEST_SHARE_GROUP": f"crash{tag}",
            "BEFFROI_INGEST_METRICS_PORT": "0",
            "BEFFROI_INGEST_BATCH_SIZE": "2000",
            "BEFFROI_TOPIC_PREFIX": f"c{tag}",
        } | (env or {})
        self.prefix = f"c{tag}"
        self.stack = stack
        self.workers = workers
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start and wait until every worker has subscribed."""
        before = self.log_path.read_text() if self.log_path.exists() else ""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beffroi.cli", "ingest", "--workers", str(self.workers),
             "--no-progress"], env=self.env, stdout=log, stderr=log)
        wait_until(lambda: self.log_path.read_text().count("subscribed as")
                   - before.count("subscribed as") >= self.workers
                   or self.proc is None or self.proc.poll() is not None,
                   timeout=30, what=f"ingestor to subscribe (log: {self.log_path})")
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send a signal and reap."""
        assert self.proc is not None
        if self.workers > 1 and sig == signal.SIGKILL:
            subprocess.run(["pkill", "-KILL", "-P", str(self.proc.pid)], check=False)
        self.proc.send_signal(sig)
        self.proc.wait(timeout=60)

    def close(self) -> None:
        """Kill the process if it still runs; forget its workers' broker sessions."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        for cid in self.client_ids:
            purge_session(self.stack, cid)

    def stop(self) -> int:
        """SIGTERM: flush and exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def status_kb(self, field: str) -> int:
        """A memory field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``: peak RSS), in kB.

        With one worker, ``beffroi ingest`` runs the ingestor in the process itself.
        """
        assert self.proc is not None and self.workers == 1
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise KeyError(field)
