"""The ingestor's MQTT 5 subscriber: a persistent session, acknowledgement after commit.

Each QoS 1 message goes to ``submit`` (the ingestor's batcher), which returns a future that
resolves once the batch holding the message has committed; the PUBACKs of all the messages of
that batch then leave in one write. A batch that fails is never acknowledged: the broker
delivers its messages again. Every message counts against the in-flight gate until its future
is done; while the gate is closed the connection does not read the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from devices import mqttwire as w
from ingest.mqtt.connection import Connection, ConnectionClosed
from ingest.mqtt.gate import InflightGate

log = logging.getLogger("ingest.mqtt")

# topic, payload, qos, MQTT 5 properties -> a future that resolves once the message may be
# acknowledged (fails: it must not be).
SubmitHandler = Callable[[str, bytes, int, dict[str, Any]], "asyncio.Future[None]"]

KEEPALIVE_S = 30
CONNECT_TIMEOUT_S = 10.0
SUBSCRIBE_TIMEOUT_S = 30.0
DISCONNECT_WAIT_S = 3.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 15.0
STABLE_S = 10.0  # a connection that lived this long resets the backoff
#: MQTT 5 DISCONNECT reason: another connection took this client id's session (Mosquitto
#: 2.0.15 and later; 2.0.11 says 0x80, "unspecified error").
SESSION_TAKEN_OVER = 0x8E


class SubscriptionRefused(RuntimeError):
    """The broker refused a subscription (usually: the account may not read the topics)."""


class ConnectRefused(RuntimeError):
    """The broker refused the connection (CONNACK with a reason code of 0x80 or more)."""

    def __init__(self, message: str, reason: int) -> None:
        super().__init__(message)
        self.reason = reason


class Backoff:
    """Capped exponential delays with jitter: each delay is drawn in [d/2, d], d doubling
    from ``first`` to ``cap``, so that workers restarted together do not reconnect together."""

    def __init__(self, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S) -> None:
        self.first = first
        self.cap = cap
        self._d = first

    def next(self) -> float:
        """The next delay."""
        d = self._d
        self._d = min(self.cap, d * 2)
        return d / 2 + random.uniform(0, d / 2)

    def reset(self) -> None:
        """Start again from the first delay."""
        self._d = self.first


class _Acks:
    """Messages waiting for one commit: their packet ids (QoS 1), count, bytes, connection."""

    __slots__ = ("conn", "count", "mids", "size")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.mids: list[int] = []
        self.count = 0
        self.size = 0


_PUBACK = struct.Struct("!BBH")


class MqttSubscriber:
    """A persistent-session MQTT 5 subscriber that acknowledges after commit."""

    def __init__(self, *, host: str, port: int, username: str, password: str, client_id: str,
                 topics: Sequence[str], submit: SubmitHandler, receive_maximum: int,
                 session_expiry_s: int, stale_topics: Sequence[str] = (),
                 max_inflight_bytes: int = 0, max_packet_size: int = 1 << 20,
                 read_pause_s: float = 0.0,
                 keepalive_s: int = KEEPALIVE_S,
                 on_state: Callable[[bool], None] | None = None,
                 on_taken_over: Callable[[], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.client_id = client_id
        self.topics = list(topics)
        self.stale_topics = list(stale_topics)
        self.receive_maximum = receive_maximum
        self.session_expiry_s = session_expiry_s
        self.max_packet_size = max_packet_size
        self.read_pause_s = read_pause_s
        self.keepalive_s = keepalive_s
        self._submit = submit
        self._on_state = on_state
        self._on_taken_over = on_taken_over
        self.taken_over = False
        self.gate = InflightGate(receive_maximum, max_inflight_bytes)
        self.gate.on_change = self._gate_changed
        self.backoff = Backoff()
        self._conn: Connection | None = None
        self._pending: dict[asyncio.Future[None], _Acks] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._had_session = False
        self.session_present = False  # as the last CONNACK said
        self.received = 0
        self.redelivered = 0  # PUBLISH packets with DUP set (sent again after a reconnect)
        self.connections = 0

    @property
    def connected(self) -> bool:
        """True while connected (CONNACK received, connection open)."""
        c = self._conn
        return c is not None and c.is_open and c.connack.done()

    @property
    def reads(self) -> int:
        """Socket reads on the current connection (each is one system call and callback)."""
        c = self._conn
        return 0 if c is None else c.reads

    # -- messages -------------------------------------------------------------------------
    def _make_on_publish(self, conn_ref: list[Connection]) -> w.PublishHandler:
        """The per-message callback of a new connection (``conn_ref[0]``, for the PUBACKs)."""
        submit = self._submit
        pending = self._pending
        gate = self.gate
        send_acks = self._send_acks

        def on_publish(topic: str, payload: bytes, qos: int, mid: int, dup: bool,
                       properties: dict[str, Any]) -> None:
            self.received += 1
            if dup:
                self.redelivered += 1
            try:
                fut = submit(topic, payload, qos, properties)
            except Exception:
                log.exception("message on %s could not be handled; not acknowledged", topic)
                return
            conn = conn_ref[0]
            acks = pending.get(fut)
            if acks is None:
                acks = pending[fut] = _Acks(conn)
                fut.add_done_callback(send_acks)
            elif acks.conn is not conn:
                # Messages of this batch read on a connection that has since been lost:
                # their packet ids are void (the broker sends those messages again).
                acks.conn = conn
                acks.mids.clear()
            if qos:
                acks.mids.append(mid)
            size = len(payload) + len(topic)
            acks.count += 1
            acks.size += size
            gate.add(size)

        return on_publish

    def _send_acks(self, fut: asyncio.Future[None]) -> None:
        acks = self._pending.pop(fut, None)
        if acks is None:
            return
        self.gate.release(acks.count, acks.size)
        if fut.cancelled() or fut.exception() is not None:
            return  # not stored: no acknowledgement, the broker will deliver them again
        # On the connection the messages were read on, if it is still open (it may not be
        # ``self._conn`` yet: a message delivered with the CONNACK can commit that fast).
        conn = acks.conn
        if acks.mids and conn.is_open:
            conn.write(b"".join([_PUBACK.pack(0x40, 2, m) for m in acks.mids]))

    def _gate_changed(self, is_open: bool) -> None:
        conn = self._conn
        if conn is not None:
            if is_open:
                conn.resume()
            else:
                conn.pause()

    # -- connecting -----------------------------------------------------------------------
    async def _connect(self) -> Connection:
        """One connection: CONNECT, CONNACK, SUBSCRIBE, SUBACK. Raises on any failure."""
        loop = asyncio.get_running_loop()
        conn_ref: list[Connection] = []
        conn = Connection(self._make_on_publish(conn_ref), max_packet_size=self.max_packet_size,
                          read_pause_s=self.read_pause_s)
        conn_ref.append(conn)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await loop.create_connection(lambda: conn, self.host, self.port)
        try:
            conn.write(w.connect_packet(
                self.client_id, self.username, self.password, version=w.MQTT_5,
                clean_start=False, keepalive=self.keepalive_s, properties={
                    "session_expiry_interval": self.session_expiry_s,
                    "receive_maximum": self.receive_maximum,
                    "maximum_packet_size": self.max_packet_size}))
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                connack = await asyncio.shield(conn.connack)
            if connack.reason >= 0x80:
                text = connack.properties.get("reason_string")
                raise ConnectRefused(
                    f"the broker at {self.host}:{self.port} refused the connection of "
                    f"{self.client_id!r} as {self.username!r}: {w.reason_text(connack.reason)}"
                    + (f" ({text})" if text else "")
                    + (": check the user name and password" if connack.reason == 0x86 else "")
                    + (": check that this account may use this client id"
                       if connack.reason in (0x85, 0x87) else ""), connack.reason)
            log.info("connected to the broker at %s:%d (session present: %s)", self.host,
                     self.port, connack.session_present)
            if self._had_session and not connack.session_present:
                log.warning("the broker had no session for %s: messages queued while "
                            "disconnected, if any, are lost", self.client_id)
            self._had_session = True
            self.session_present = connack.session_present
            conn.start_keepalive(connack.properties.get("server_keep_alive", self.keepalive_s))
            # Subscribe on every connection, session present or not: Mosquitto 2.0 does not
            # restore shared subscriptions from its persistence file after a restart
            # (idempotent for a live subscription).
            suback = w.Ack(0, [], {})  # no filter: a retiring worker's session, drained only
            if self.topics:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                    suback = await asyncio.shield(conn.subscribe(self.topics, qos=1))
            # Only now may the gate pause reading: paused earlier, the SUBACK could not be
            # read (messages read meanwhile count, and close the gate, all the same).
            self._conn = conn
            if not self.gate.is_open:
                conn.pause()
            # A session kept from a run in the other mode (shared / not shared) would receive
            # every message twice: drop those filters; the session's queued messages stay.
            if self.stale_topics:
                conn.unsubscribe(self.stale_topics)
        except BaseException:
            conn.close(w.SUCCESS)
            if self._conn is conn:
                self._conn = None
            raise
        refused = [(f, r) for f, r in zip(self.topics, suback.reasons, strict=False)
                   if r != 1]
        if refused or len(suback.reasons) != len(self.topics):
            detail = ", ".join(
                f"{f} ({w.reason_text(r) if r >= 0x80 else f'granted QoS {r} only'})"
                for f, r in refused)
            raise SubscriptionRefused(
                f"the broker refused subscribing at QoS 1 to {detail or self.topics}; check "
                "that this account may read these topics")
        self.connections += 1
        if self._on_state:
            self._on_state(True)
        return conn

    async def start(self) -> None:
        """Connect and subscribe at QoS 1, then keep reconnecting until ``stop``.

        The first connection's failures are raised: ``ConnectRefused`` (wrong password, an
        account bound to another client id), ``SubscriptionRefused``, ``OSError``.
        """
        self._stopping = False
        try:
            conn = await self._connect()
        except SubscriptionRefused:
            await self.stop()
            raise
        self._supervisor = asyncio.create_task(self._supervise(conn),
                                               name=f"mqtt-{self.client_id}")

    async def _supervise(self, conn: Connection) -> None:
        """Wait for the connection to end, then reconnect with capped, jittered backoff."""
        while not self._stopping:
            since = time.monotonic()
            err = await conn.closed
            if self._stopping:
                return
            if self._conn is conn:
                self._conn = None
            if self._on_state:
                self._on_state(False)
            if getattr(err, "reason", None) == SESSION_TAKEN_OVER:
                # Another client connected with our client id (a second ingestor): taking the
                # session back would start a fight that loses messages. This one stops.
                log.error("another client connected as %s and took over its session: this "
                          "ingestor stops (is another `beffroi ingest` running with the same "
                          "BEFFROI_INGEST_CLIENT_ID?)", self.client_id)
                self.taken_over = True
                self._stopping = True
                if self._on_taken_over:
                    self._on_taken_over()
                return
            log.warning("disconnected from the broker at %s:%d (%s)", self.host, self.port, err)
            if time.monotonic() - since >= STABLE_S:
                self.backoff.reset()
            while not self._stopping:
                await asyncio.sleep(self.backoff.next())
                try:
                    conn = await self._connect()
                    break
                except SubscriptionRefused as exc:
                    log.error("%s", exc)  # connected all the same: the session may hold them
                    if self._conn is not None:
                        conn = self._conn
                        break
                except (OSError, TimeoutError, ConnectRefused, w.MalformedPacket) as exc:
                    log.warning("reconnecting to the broker at %s:%d failed: %s", self.host,
                                self.port, exc)

    async def abort(self) -> None:
        """Drop the connection at once, without DISCONNECT, and stop: what a crash does to
        the broker's view (it keeps the session and sends unacknowledged messages again)."""
        self._stopping = True
        conn = self._conn
        if conn is not None:
            conn.abort(ConnectionClosed("aborted"))
            await conn.closed
        await self.stop()

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect without ending the session (reason 0: the broker keeps it), or ending
        it (session expiry 0: the broker forgets it)."""
        self._stopping = True
        conn, self._conn = self._conn, None
        if conn is not None and conn.is_open and end_session:
            conn.write(w.disconnect_packet(properties={"session_expiry_interval": 0}))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DISCONNECT_WAIT_S):
                    await conn.closed
            conn.close()
        elif conn is not None and conn.is_open:
            # The broker closes the connection once it has read DISCONNECT, so after every
            # PUBACK written before it: waiting for that close means they all counted (a
            # restart with the same client id could otherwise take the session over first).
            conn.say_goodbye()
            try:
                async with asyncio.timeout(DISCONNECT_WAIT_S):
                    await conn.closed
            except TimeoutError:
                conn.close()
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._on_state:
            self._on_state(False)
