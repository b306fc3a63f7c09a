"""The subscriber on the hot path, behind a small interface so the MQTT client can be swapped.

gmqtt is used because it is asyncio-native and fast (about ten times aiomqtt's rate on this
kind of machine). With ``optimistic_acknowledgement=False`` it sends the PUBACK of a QoS 1
message only when the awaited ``on_message`` coroutine returns: the handler returns after the
transaction holding the message has committed, so nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import gmqtt

log = logging.getLogger(__name__)

# topic, payload, qos, MQTT 5 properties -> PUBACK reason code (0 = success)
MessageHandler = Callable[[str, bytes, int, dict[str, Any]], Awaitable[int]]
# The same, synchronous: returns a future that resolves once the message may be acknowledged.
SubmitHandler = Callable[[str, bytes, int, dict[str, Any]], "asyncio.Future[None]"]


class SubscriptionRefused(RuntimeError):
    """The broker refused a subscription (usually: the account may not read the topics)."""


class Subscriber(Protocol):
    """What the ingestor needs from an MQTT client."""

    async def start(self) -> None:
        """Connect, subscribe, and keep reconnecting until ``stop``."""

    async def stop(self) -> None:
        """Disconnect cleanly (the broker keeps the session)."""

    @property
    def connected(self) -> bool:
        """True while connected."""


class GmqttSubscriber:
    """A persistent-session MQTT 5 subscriber that acknowledges after the handler returns."""

    def __init__(self, *, host: str, port: int, username: str, password: str, client_id: str,
                 topics: Sequence[str], handler: MessageHandler, receive_maximum: int,
                 stale_topics: Sequence[str] = (),
                 submit: SubmitHandler | None = None,
                 session_expiry_s: int,
                 on_state: Callable[[bool], None] | None = None) -> None:
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.stale_topics = list(stale_topics)
        self._handler = handler
        self._on_state = on_state
        self._subscribed = asyncio.Event()
        self.receive_maximum = receive_maximum
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
        MQTT 5 properties also skip gmqtt's generic property parser.
        """
        handler = self.client._package_handler
        parse_properties = handler._parse_properties
        # Messages waiting for the same commit share one future: their PUBACKs leave in one
        # write when it resolves (a PUBACK with reason "success" is 4 bytes in MQTT 5).
        pending: dict[asyncio.Future[None], list[int]] = {}
        puback = struct.Struct("!BBH")
        # Our own in-flight bound: Mosquitto 2.0.11 was seen sending far past the Receive
        # Maximum when acknowledgements arrive in bursts, so stop reading the socket while
        # that many messages wait for their commit (TCP backpressure does the rest).
        limit = self.receive_maximum
        state = {"inflight": 0, "paused": False}

        def transport() -> Any:
            conn = self.client._connection
            return getattr(conn, "_transport", None) if conn is not None else None

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
            mids = pending.get(fut)
            if mids is None:
                mids = pending[fut] = []
                fut.add_done_callback(send_acks)
            mids.append(mid)
            state["inflight"] += 1
            if state["inflight"] >= limit and not state["paused"]:
                t = transport()
                if t is not None:
                    t.pause_reading()
                    state["paused"] = True

        def send_acks(fut: asyncio.Future[None]) -> None:
            mids = pending.pop(fut, [])
            state["inflight"] -= len(mids)
            if state["paused"] and state["inflight"] < limit * 0.8:
                t = transport()
                if t is not None and not t.is_closing():
                    t.resume_reading()
                state["paused"] = False
            if fut.cancelled() or fut.exception() is not None:
                return  # not stored: no acknowledgement, the broker will redeliver
            conn = self.client._connection
            if conn is not None and mids:
                conn._protocol.write_data(b"".join(puback.pack(0x40, 2, m) for m in mids))

        handler._parse_properties = fast_properties
        handler._handle_qos_1_publish_packet = on_qos1

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
        if self._subscribed.is_set():
            # gmqtt does not resubscribe when the broker reports a session, but Mosquitto
            # 2.0 does not restore shared subscriptions from its persistence file after a
            # restart: subscribe again (idempotent for a live subscription).
            for topic in self.topics:
                self.client.subscribe(topic, qos=1)
        if self._on_state:
            self._on_state(True)

    def _on_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
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
        await asyncio.wait_for(self._subscribed.wait(), timeout=30)
        if self._refused:
            await self.stop()
            raise SubscriptionRefused(
                f"the broker refused subscribing to {', '.join(self.topics)} (reason codes "
                f"{self._refused}); check that this account may read these topics")

    async def stop(self) -> None:
        """Disconnect without ending the session."""
        if self.client.is_connected:
            await self.client.disconnect()
