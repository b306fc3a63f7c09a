"""The ingestor: MQTT messages in, batches committed to TimescaleDB, acknowledgements out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from beffroi.broker_auth import connection_user
from beffroi.settings import Settings
from devices.privacy import MacHasher
from devices.redact import dead_letter_parts, source
from ingest import hotpath
from ingest.batch import Batch, DeadLetterRow
from ingest.claim import ClientIdClaim
from ingest.keys import KeyRing
from ingest.logsafe import guard_loggers
from ingest.metrics import Metrics
from ingest.mqtt import MqttSubscriber, Subscriber
from ingest.registry_cache import RegistryCache
from ingest.router import UNKNOWN_DEVICE, Routed, Router
from ingest.subscriptions import session_filters
from ingest.writer import BatchWriter

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
MAINTENANCE_EVERY_S = 30.0
CLOSE_TIMEOUT_S = 5.0
#: A retiring worker ends its session once nothing arrived for this long.
RETIRE_QUIET_S = 2.0


@dataclass(frozen=True)
class BrokerConfig:
    """Where and as whom the ingestor subscribes."""

    host: str
    port: int
    username: str
    password: str


class Ingestor:
    """One ingestor process (a worker of ``beffroi ingest --workers N``)."""

    def __init__(self, settings: Settings, *, db_url: str, broker: BrokerConfig,
                 worker: int = 0, shared: bool | None = None, metrics: Metrics | None = None,
                 progress: bool | None = None, workers: int = 1,
                 retire: bool = False) -> None:
        self.settings = settings
        self.db_url = db_url
        self.broker = broker
        self.worker = worker
        self.shared = (settings.ingest_shared_subscription if shared is None else shared) or False
        # Without a shared subscription, the N workers split the topics by filter
        # (ingest/subscriptions.py): each stores every message it receives.
        self.workers = max(1, workers)
        # Retiring: a worker number a smaller --workers no longer uses. Its session is
        # drained (every message it holds is stored; rows already stored are kept once) and
        # ended, so the broker stops keeping a copy of the stream for it.
        self.retire = retire
        self.metrics = metrics or Metrics()
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.tz = ZoneInfo(settings.timezone)
        self.registry = RegistryCache()
        self.keys = KeyRing(self.tz)
        self.hasher = MacHasher(self.keys.key_for)
        self.router = Router(
            prefix=settings.topic_prefix, registry=self.registry, hasher=self.hasher,
            bridge_prefix=settings.bridge_prefix,
            max_payload_bytes=settings.ingest_max_payload_bytes,
            future_skew_s=settings.ingest_future_skew_s,
            max_age_days=settings.ingest_max_age_days)
        self.writer = BatchWriter(db_url, self.metrics, make_dead=self._dead_row)
        self.queue: asyncio.Queue[Batch] = asyncio.Queue(maxsize=settings.ingest_queue_batches)
        self.current: Batch | None = None
        self.unacked = 0
        self.committed_messages = 0
        self.committed_readings = 0
        self.rejected = 0
        self.subscriber: Subscriber | None = None
        self._stopping = False
        self._started = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sealing: set[asyncio.Future[None]] = set()
        self._refresh_lock = asyncio.Lock()
        self._maint_conn: psycopg.AsyncConnection[Any] | None = None
        self._claim: ClientIdClaim | None = None

    # -- message path -------------------------------------------------------------------
    def submit(self, topic: str, payload: bytes, qos: int,
               properties: dict[str, Any]) -> asyncio.Future[None]:
        """Route a message into the open batch; the returned future resolves on commit.

        Synchronous on purpose: the MQTT client calls it for each message and sends the
        PUBACKs from a callback on the future, with no task per message.
        """
        now = datetime.now(UTC)
        content_type = properties.get("content_type")
        routed = self.router.route(topic, payload, now, content_type)
        rej = routed.rejection
        if rej is not None and rej.reason == UNKNOWN_DEVICE and self.registry.stale():
            # Rare: a device registered a moment ago. Refresh, then route again.
            return asyncio.ensure_future(self._submit_after_refresh(topic, payload, now,
                                                                    content_type))
        return self._add(topic, payload, now, routed)

    async def _submit_after_refresh(self, topic: str, payload: bytes, now: datetime,
                                    content_type: str | None) -> None:
        await self._refresh_registry()
        routed = self.router.route(topic, payload, now, content_type)
        await asyncio.shield(self._add(topic, payload, now, routed))

    def _add(self, topic: str, payload: bytes, now: datetime, routed: Routed
             ) -> asyncio.Future[None]:
        batch = self.current
        if batch is None:
            batch = self._open_batch()
        rej = routed.rejection
        if rej is None:
            batch.add(topic, payload, now, routed.readings)
        else:
            self.rejected += 1
            self.metrics.rejected.labels(rej.reason).inc()
            batch.add_dead(self._dead_row(now, topic, rej.device_id, rej.reason, rej.detail,
                                          payload))
        self.unacked += 1
        if batch.n_readings >= self.settings.ingest_batch_size:
            self._seal(batch)
        return batch.done

    def _dead_row(self, received_at: datetime, topic: str, device_id: str | None,
                  reason: str, detail: str, payload: bytes) -> DeadLetterRow:
        """The row of a refused message: redacted by allow-list when its topic or its device
        may carry personal data, else scrubbed of MACs and plates (see ``devices.redact``)."""
        dev = self.registry.by_id.get(device_id) if device_id is not None else None
        src = source(topic, self.settings.topic_prefix, self.settings.bridge_prefix,
                     dev.family if dev is not None else None)
        kept_topic, kept_device, kept_detail, kept = dead_letter_parts(
            src, topic, device_id, detail, payload,
            limit=self.settings.ingest_dead_letter_max_bytes,
            max_parse_bytes=self.settings.ingest_max_payload_bytes)
        return (received_at, kept_topic, kept_device, reason, kept_detail, kept, len(payload))

    def _open_batch(self) -> Batch:
        loop = asyncio.get_running_loop()
        batch = self.current = Batch(loop)
        loop.call_later(self.settings.ingest_batch_max_age_ms / 1000, self._seal_on_age, batch)
        return batch

    def _seal_on_age(self, batch: Batch) -> None:
        self._seal(batch)

    def _seal(self, batch: Batch) -> None:
        """Hand the batch to the writer; wait in a task when the queue is full."""
        if self.current is not batch:
            return
        self.current = None
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            # Backpressure: the batch waits for room; its messages stay unacknowledged, so
            # the subscriber stops reading once receive_maximum messages are in flight.
            task = asyncio.ensure_future(self.queue.put(batch))
            self._sealing.add(task)
            task.add_done_callback(self._sealing.discard)
        self.metrics.queue_depth.set(self.queue.qsize())

    # -- writer ---------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            batch = await self.queue.get()
            self.metrics.queue_depth.set(self.queue.qsize())
            try:
                written = await self.writer.write(batch)
            except Exception as exc:
                # Not a database outage (those are retried inside write): fail the batch so
                # its messages stay unacknowledged and the broker redelivers them.
                log.exception("batch of %d messages failed; it will be redelivered",
                              batch.n_messages)
                self.unacked -= batch.n_messages
                batch.done.set_exception(exc)
                batch.done.exception()  # mark retrieved
                continue
            finally:
                self.queue.task_done()
            self.unacked -= batch.n_messages
            self.committed_messages += batch.n_messages
            for table, n in written.items():
                self.metrics.readings.labels(table).inc(n)
                self.committed_readings += n
            refused = len(batch.dead) + batch.refused
            self.rejected += batch.refused
            self.metrics.messages.labels("accepted").inc(batch.n_messages - refused)
            self.metrics.messages.labels("rejected").inc(refused)
            self.metrics.batch_size.observe(batch.n_messages)
            batch.done.set_result(None)

    # -- periodic work --------------------------------------------------------------------
    async def _maint_connection(self) -> psycopg.AsyncConnection[Any]:
        if self._maint_conn is None or self._maint_conn.closed:
            self._maint_conn = await psycopg.AsyncConnection.connect(
                self.db_url, application_name="beffroi-ingest-maint")
        return self._maint_conn

    async def _refresh_registry(self) -> None:
        async with self._refresh_lock:
            if not self.registry.stale():
                return
            await self.registry.load(await self._maint_connection())

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(min(MAINTENANCE_EVERY_S, self.settings.ingest_registry_refresh_s))
            try:
                conn = await self._maint_connection()
                await self.keys.refresh(conn, datetime.now(UTC))
                self.hasher.forget()  # drop the cached copy of a destroyed key
                await self.registry.load(conn)
            except psycopg.Error as exc:
                log.warning("registry/key refresh failed (%s); will retry", exc)
                if self._maint_conn is not None:
                    await self._maint_conn.close()

    async def _progress_loop(self) -> None:
        last_t, last_n = time.monotonic(), 0
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            now, n = time.monotonic(), self.committed_readings
            log.info("worker %d: %d readings committed (%.0f/s), %d messages rejected, "
                     "%d unacknowledged, %d batches queued", self.worker, n,
                     (n - last_n) / (now - last_t), self.rejected, self.unacked,
                     self.queue.qsize())
            self.metrics.unacked.set(self.unacked)
            last_t, last_n = now, n

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then flush, commit, acknowledge and disconnect."""
        guard_loggers()
        log.info("worker %d: %s", self.worker, hotpath.describe())
        if stale := hotpath.stale():
            log.warning("worker %d runs C extensions older than their source (%s): run "
                        "`make venv` to rebuild them", self.worker, ", ".join(stale))
        conn = await self._maint_connection()
        await self.registry.load(conn)
        await self.keys.refresh(conn, datetime.now(UTC))
        self._tasks = [
            asyncio.create_task(self._write_loop(), name="ingest-writer"),
            asyncio.create_task(self._maintenance_loop(), name="ingest-maintenance"),
        ]
        if self.progress:
            self._tasks.append(asyncio.create_task(self._progress_loop(), name="ingest-progress"))
        # Worker n has an account and a client id of its own: the broker binds one to the other.
        client_id = f"{self.settings.ingest_client_id}-{self.worker}"
        self._claim = ClientIdClaim(self.db_url, client_id)
        claimed = asyncio.ensure_future(self._claim.acquire())  # one process per session
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({claimed, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not claimed.done():
            claimed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claimed
            await self.shutdown()
            return
        claimed.result()
        # The runner subscribed every worker to its own filters before any worker started
        # (ingest/runner.py, ``prepare_sessions``): what the session holds besides is dropped.
        own, stale = session_filters(self.settings, self.worker, self.workers,
                                     shared=self.shared, retire=self.retire)
        sub = MqttSubscriber(
            host=self.broker.host, port=self.broker.port,
            username=connection_user(self.broker.username, self.worker),
            password=self.broker.password, client_id=client_id,
            topics=own,
            submit=self.submit,
            stale_topics=stale,
            receive_maximum=self.settings.ingest_receive_maximum,
            max_inflight_bytes=self.settings.ingest_max_inflight_bytes,
            read_pause_s=self.settings.ingest_read_pause_ms / 1000,
            max_packet_size=self.settings.ingest_max_packet_bytes,
            session_expiry_s=self.settings.ingest_session_expiry_s,
            on_state=lambda up: self.metrics.connected.set(1 if up else 0),
            on_taken_over=stop.set)
        self.subscriber = sub
        await sub.start()
        log.info("worker %d subscribed as %s to %s", self.worker, client_id,
                 ", ".join(sub.topics))
        self._started.set()
        if self.retire:
            await self._drain(stop)
        await stop.wait()
        await self.shutdown()

    async def _drain(self, stop: asyncio.Event) -> None:
        """Retiring: stop once nothing more arrives and everything received is committed."""
        seen, quiet_since = -1, time.monotonic()
        while not stop.is_set():
            now_seen = self.committed_messages + self.unacked
            if now_seen != seen or self.unacked:
                seen, quiet_since = now_seen, time.monotonic()
            elif time.monotonic() - quiet_since >= RETIRE_QUIET_S:
                log.info("worker %d retired: %d messages of its session stored", self.worker,
                         self.committed_messages)
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async def wait_started(self) -> None:
        """Wait until subscribed."""
        await self._started.wait()

    async def shutdown(self) -> None:
        """Flush, commit and acknowledge what the database takes within the stop timeout.

        Past ``ingest_stop_timeout_s`` (the database down, say) the writer is cancelled and
        the messages not yet committed are left unacknowledged: the broker keeps them in the
        session and delivers them again, so a stop is bounded and loses nothing.
        """
        if self._stopping:
            return
        self._stopping = True
        limit = self.settings.ingest_stop_timeout_s
        log.info("worker %d stopping: flushing %d unacknowledged messages (at most %.0f s)",
                 self.worker, self.unacked, limit)
        try:
            async with asyncio.timeout(limit):
                await self._flush()
        except TimeoutError:
            log.warning("worker %d: nothing committed for %.0f s; stopping with %d messages "
                        "unacknowledged, which the broker will deliver again", self.worker,
                        limit, self.unacked)
        for task in (*self._tasks, *self._sealing):
            task.cancel()
        for task in (*self._tasks, *self._sealing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Disconnecting and closing are quick unless a peer hangs: bound them too.
        with contextlib.suppress(TimeoutError, OSError, psycopg.Error):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if self.subscriber is not None:
                    await self.subscriber.stop(end_session=self.retire)
        with contextlib.suppress(TimeoutError, OSError, psycopg.Error):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                if self._claim is not None:
                    await self._claim.release()
        with contextlib.suppress(TimeoutError, OSError, psycopg.Error):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.writer.close()
                if self._maint_conn is not None:
                    await self._maint_conn.close()
        log.info("worker %d stopped: %d readings committed, %d messages rejected",
                 self.worker, self.committed_readings, self.rejected)

    async def _flush(self) -> None:
        """Seal the open batch, wait for every commit and the acknowledgements it sends."""
        if self.current is not None:
            self._seal(self.current)
        while self._sealing:
            await asyncio.gather(*self._sealing)
        await self.queue.join()
        # Let the acknowledgement callbacks of the last batch run before disconnecting.
        for _ in range(100):
            if self.unacked == 0:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)

