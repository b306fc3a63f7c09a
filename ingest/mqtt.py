"""The subscriber on the hot path, behind a small interface so the MQTT client can be swapped.

gmqtt is used because it is asyncio-native and fast (about ten times aiomqtt's rate on this
kind of machine). With ``optimistic_acknowledgement=False`` it sends the PUBACK of a QoS 1
message only when the awaited ``on_message`` coroutine returns: the handler returns after the
transaction holding the message has committed, so nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import gmqtt

log = logging.getLogger(__name__)

# topic, payload, qos, MQTT 5 properties -> PUBACK reason code (0 = success)
MessageHandler = Callable[[str, bytes, int, dict[str, Any]], Awaitable[int]]
# The same, synchronous: returns a future that resolves once the message may be acknowledged.
SubmitHandler = Callable[[str, bytes, int, dict[str, Any]], "asyncio.Future[None]"]


#: MQTT 5 DISCONNECT reason code: another connection took this client id's session.
SESSION_TAKEN_OVER = 0x8E


class SubscriptionRefused(RuntimeError):
    """The broker refused a subscription (usually: the account may not read the topics)."""


class Subscriber(Protocol):
    """What the ingestor needs from an MQTT client."""

    async def start(self) -> None:
        """Connect, subscribe, and keep reconnecting until ``stop``."""

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect cleanly (the broker keeps the session unless ``end_session``)."""

    @property
    def connected(self) -> bool:
        """True while connected."""


class InflightGate:
    """Messages (and their bytes) received but not yet acknowledged; closed above a limit.

    With acknowledgement after commit, what the ingestor holds in memory is what it has read
    from the socket and not yet acknowledged. The broker should stop at our Receive Maximum,
    but Mosquitto 2.0.11 does not: draining a persistent session's backlog, it sent the whole
    queue (760,000 of 1,000,000 messages unacknowledged at once, 800 MB resident). So the
    ingestor holds the bound itself: while the gate is closed the subscriber stops reading
    the socket and TCP backpressure keeps the rest of the backlog in the broker. It reopens
    below ``RESUME_AT`` of both limits, so it does not flap on every commit.
    """

    RESUME_AT = 0.8

    __slots__ = ("_open", "bytes", "closures", "max_bytes", "max_messages", "messages")

    def __init__(self, max_messages: int, max_bytes: int = 0) -> None:
        if max_messages < 1 or max_bytes < 0:
            raise ValueError("max_messages must be >= 1 and max_bytes >= 0 (0: no byte limit)")
        self.max_messages = max_messages
        self.max_bytes = max_bytes or sys.maxsize
        self.messages = 0
        self.bytes = 0
        self.closures = 0
        self._open = asyncio.Event()
        self._open.set()

    @property
    def is_open(self) -> bool:
        """False while reading must wait."""
        return self._open.is_set()

    def add(self, size: int) -> None:
        """A message of ``size`` bytes was received; close the gate at a limit."""
        self.messages += 1
        self.bytes += size
        if (self.messages >= self.max_messages or self.bytes >= self.max_bytes) \
                and self._open.is_set():
            self._open.clear()
            self.closures += 1

    def release(self, messages: int, size: int) -> None:
        """Messages were acknowledged (or given up to redelivery); reopen below the limits."""
        self.messages -= messages
        self.bytes -= size
        if not self._open.is_set() and self.messages < self.max_messages * self.RESUME_AT \
                and self.bytes < self.max_bytes * self.RESUME_AT:
            self._open.set()

    async def wait_open(self) -> None:
        """Return once the gate is open."""
        await self._open.wait()


def _fast_reader(protocol: Any, conn: Any,
                 on_qos1: Callable[[int, bytes, str, dict[str, Any]], None]
                 ) -> Callable[[bytes], int]:
    """gmqtt's ``_read_packet`` (split the bytes read into MQTT packets, return how many
    bytes were used, -1 when malformed) with a short path for the packets of the stream:
    a QoS 1 PUBLISH without MQTT 5 properties goes straight to ``on_qos1``, without gmqtt's
    packet object, dispatch, generic parsing and debug logging (about a quarter of the
    ingestor's CPU per message, profiled). Every other packet takes gmqtt's own path."""
    put_package = conn.put_package
    package = gmqtt.mqtt.protocol.Package
    original = protocol._read_packet
    monotonic = time.monotonic
    no_properties: dict[str, Any] = {}

    def read_packets(data: bytes) -> int:
        if conn._handler.current_connection is not conn:
            return int(original(data))  # a superseded connection: gmqtt drops its packets
        n = len(data)
        pos = 0
        while n - pos >= 2:
            i = pos + 1
            size = 0
            shift = 0
            complete = False
            while i < n:  # remaining length: 1 to 4 bytes of 7 bits
                b = data[i]
                i += 1
                size |= (b & 0x7F) << shift
                if b < 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    return -1
            if not complete:
                break
            end = i + size
            if end > n:
                break
            cmd = data[pos]
            if cmd & 0xF6 == 0x32 and size >= 5:  # PUBLISH, QoS 1
                t1 = i + 2 + ((data[i] << 8) | data[i + 1])
                if t1 + 3 <= end and data[t1 + 2] == 0:  # packet id, no properties
                    try:
                        topic = data[i + 2:t1].decode("utf-8")
                    except UnicodeDecodeError:
                        topic = ""
                    if topic:
                        on_qos1((data[t1] << 8) | data[t1 + 1], data[t1 + 3:end], topic,
                                no_properties)
                        pos = end
                        continue
            put_package(package(cmd, data[i:end]))
            pos = end
        if pos:
            conn._last_data_in = monotonic()
        return pos

    return read_packets


class _Acks:
    """Packet ids (and their bytes) of the messages waiting for one commit."""

    __slots__ = ("mids", "size")

    def __init__(self) -> None:
        self.mids: list[int] = []
        self.size = 0


class GmqttSubscriber:
    """A persistent-session MQTT 5 subscriber that acknowledges after the handler returns."""

    def __init__(self, *, host: str, port: int, username: str, password: str, client_id: str,
                 topics: Sequence[str], handler: MessageHandler, receive_maximum: int,
                 stale_topics: Sequence[str] = (),
                 submit: SubmitHandler | None = None,
                 max_inflight_bytes: int = 0,
                 session_expiry_s: int,
                 on_state: Callable[[bool], None] | None = None,
                 on_taken_over: Callable[[], None] | None = None) -> None:
        self.host = host
        self.client_id = client_id
        self._on_taken_over = on_taken_over
        self.taken_over = False
        self._closing: asyncio.Future[None] | None = None
        self.port = port
        self.topics = list(topics)
        self.stale_topics = list(stale_topics)
        self._handler = handler
        self._on_state = on_state
        self._subscribed = asyncio.Event()
        self.receive_maximum = receive_maximum
        self.gate = InflightGate(receive_maximum, max_inflight_bytes)
        self._gated = False
        self._on_qos1: Callable[[int, bytes, str, dict[str, Any]], None] | None = None
        self._refused: list[int] = []
        self._pending_subacks = 0
        self.client = gmqtt.Client(
            client_id, clean_session=False, optimistic_acknowledgement=False,
            session_expiry_interval=session_expiry_s, receive_maximum=receive_maximum)
        self.client.set_auth_credentials(username, password)
        # Reconnect forever with gmqtt's own delay; the session survives on the broker.
        self.client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        if submit is not None:
            self._install_fast_path(submit)

    def _install_fast_path(self, submit: SubmitHandler) -> None:
        """Acknowledge QoS 1 messages from a future callback instead of a task per message.

        gmqtt wraps every message in a task running our coroutine and sends the PUBACK when
        it ends; for a stream of small messages that machinery costs more than decoding them.
        Here its QoS 1 handler calls ``submit`` directly and sends the PUBACK when the returned
        future succeeds (never when it fails: the broker then redelivers). Messages without
        MQTT 5 properties also skip gmqtt's generic property parser. Every message counts
        against the in-flight gate until its future is done (see ``InflightGate``).
        """
        handler = self.client._package_handler
        parse_properties = handler._parse_properties
        # Messages waiting for the same commit share one future: their PUBACKs leave in one
        # write when it resolves (a PUBACK with reason "success" is 4 bytes in MQTT 5).
        pending: dict[asyncio.Future[None], _Acks] = {}
        puback = struct.Struct("!BBH")
        gate = self.gate

        def fast_properties(packet: bytes) -> tuple[dict[str, Any] | None, bytes | None]:
            if packet[:1] == b"\x00":  # property length 0
                return {}, packet[1:]
            result: tuple[dict[str, Any] | None, bytes | None] = parse_properties(packet)
            return result

        def on_qos1(mid: int, packet: bytes, topic: str, properties: dict[str, Any]) -> None:
            try:
                fut = submit(topic, packet, 1, properties)
            except Exception:
                log.exception("message on %s could not be handled; not acknowledged", topic)
                return
            acks = pending.get(fut)
            if acks is None:
                acks = pending[fut] = _Acks()
                fut.add_done_callback(send_acks)
            size = len(packet) + len(topic)
            acks.mids.append(mid)
            acks.size += size
            gate.add(size)

        def send_acks(fut: asyncio.Future[None]) -> None:
            acks = pending.pop(fut, None)
            if acks is None:
                return
            gate.release(len(acks.mids), acks.size)
            if fut.cancelled() or fut.exception() is not None:
                return  # not stored: no acknowledgement, the broker will redeliver
            conn = self.client._connection
            if conn is not None and acks.mids:
                conn._protocol.write_data(b"".join(puback.pack(0x40, 2, m) for m in acks.mids))

        handler._parse_properties = fast_properties
        handler._handle_qos_1_publish_packet = on_qos1
        self._on_qos1 = on_qos1
        self._gated = True

    def _gate_reads(self) -> None:
        """Make the current connection's read loop wait while the in-flight gate is closed.

        gmqtt reads the socket in a loop through an ``asyncio.StreamReader``. Pausing the
        transport from outside does not hold: the StreamReader pauses and resumes the same
        transport for its own 128 KiB buffer, and resumes it as soon as the loop drains that
        buffer (measured: the whole broker queue was read while our gate said "paused").
        Holding the loop itself lets the StreamReader's buffer fill, the StreamReader pause
        the transport and keep it paused, and TCP backpressure keep the rest in the broker.
        """
        conn = self.client._connection
        protocol = getattr(conn, "_protocol", None)
        if protocol is None or getattr(protocol, "_beffroi_gated", False):
            return
        read = protocol.read
        gate = self.gate

        async def gated_read(n: int = -1) -> bytes:
            while not gate.is_open:
                # Nothing is read while we wait, not even PINGRESP: keep gmqtt's keepalive
                # from taking our own silence for a dead broker and reconnecting (which
                # would only bring the same unacknowledged messages again). PINGREQs still
                # leave; a dead broker shows as a failed write, or once reading resumes.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gate.wait_open(), max(1.0, conn.keepalive / 4))
                conn._last_data_in = time.monotonic()
            data: bytes = await read(n)
            return data

        protocol.read = gated_read
        protocol._beffroi_gated = True
        if self._on_qos1 is not None:
            protocol._read_packet = _fast_reader(protocol, conn, self._on_qos1)

    @property
    def connected(self) -> bool:
        """True while connected."""
        return bool(self.client.is_connected)

    async def _on_message(self, client: Any, topic: str, payload: bytes, qos: int,
                          properties: dict[str, Any]) -> int:
        return await self._handler(topic, payload, qos, properties)

    def _on_connect(self, client: Any, flags: Any, rc: Any, properties: Any) -> None:
        log.info("connected to the broker at %s:%d (session present: %s)", self.host,
                 self.port, bool(flags))
        if self._gated:
            self._gate_reads()  # a new connection (and read loop) after every reconnect
        if self._subscribed.is_set():
            # gmqtt does not resubscribe when the broker reports a session, but Mosquitto
            # 2.0 does not restore shared subscriptions from its persistence file after a
            # restart: subscribe again (idempotent for a live subscription).
            for topic in self.topics:
                self.client.subscribe(topic, qos=1)
        if self._on_state:
            self._on_state(True)

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        if isinstance(packet, bytes | bytearray) and packet[:1] == bytes((SESSION_TAKEN_OVER,)):
            # Another client connected with our client id: another ingestor (a leftover of
            # an earlier run, or a second one started by mistake). Reconnecting would take
            # the session back and start a fight that loses messages; the newest one keeps
            # it and this one stops.
            log.error("another client connected as %s and took over its session: this "
                      "ingestor stops (is another `beffroi ingest` running with the same "
                      "BEFFROI_INGEST_CLIENT_ID?)", self.client_id)
            self.taken_over = True
            self._closing = asyncio.ensure_future(self.client.disconnect())  # no reconnection
            if self._on_taken_over:
                self._on_taken_over()
        else:
            log.warning("disconnected from the broker at %s:%d", self.host, self.port)
        if self._on_state:
            self._on_state(False)

    def _on_subscribe(self, client: Any, mid: int, qos: Any, properties: Any) -> None:
        refused = [q for q in qos if q >= 128]
        if refused:
            log.error("the broker refused a subscription (codes %s): check the ACL", qos)
            self._refused.extend(refused)
        self._pending_subacks -= 1
        if self._pending_subacks <= 0:
            self._subscribed.set()

    async def start(self) -> None:
        """Connect and subscribe at QoS 1 (gmqtt resubscribes after each reconnect)."""
        await self.client.connect(self.host, self.port, version=gmqtt.constants.MQTTv50,
                                  keepalive=30)
        self._pending_subacks = len(self.topics)
        for topic in self.topics:
            self.client.subscribe(topic, qos=1)
        # A session kept from a run in the other mode (shared / not shared) would receive
        # every message twice: drop those filters; the session's queued messages stay.
        for topic in self.stale_topics:
            self.client.unsubscribe(topic)
        if not self.topics:
            self._subscribed.set()
        await asyncio.wait_for(self._subscribed.wait(), timeout=30)
        if self._refused:
            await self.stop()
            raise SubscriptionRefused(
                f"the broker refused subscribing to {', '.join(self.topics)} (reason codes "
                f"{self._refused}); check that this account may read these topics")

    async def stop(self, *, end_session: bool = False) -> None:
        """Disconnect, keeping the session (or ending it: the broker then forgets it)."""
        if self.client.is_connected:
            if end_session:
                await self.client.disconnect(session_expiry_interval=0)
            else:
                await self.client.disconnect()
