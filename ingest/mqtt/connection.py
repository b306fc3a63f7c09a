"""One MQTT 5 connection of the subscriber: an ``asyncio.Protocol`` over the transport.

Bytes read go straight from ``data_received`` to the packet reader of ``devices.mqttwire``
(no ``StreamReader``, no task per packet); PUBLISH packets go to the subscriber's callback,
the rest is handled here: CONNACK, SUBACK/UNSUBACK, PINGRESP, a server's DISCONNECT. Flow
control is the transport's own: ``pause()`` stops reading the socket, ``resume()`` reads again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from devices import mqttwire as w

log = logging.getLogger(__name__)

#: A read this short emptied the socket: the next one waits ``read_pause_s`` (uvloop and
#: asyncio read up to 256 KiB at a time).
SHORT_READ_BYTES = 64 * 1024


def _drop(topic: str, payload: bytes, qos: int, mid: int, dup: bool,
          properties: dict[str, Any]) -> None:
    """A message read while disconnecting: left to the broker, which sends it again."""


class ConnectionClosed(ConnectionError):
    """The connection ended; ``reason`` is the MQTT reason code when one was given."""

    def __init__(self, message: str, reason: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class Connection(asyncio.Protocol):
    """Frames packets in and out of one TCP connection to the broker."""

    def __init__(self, on_publish: w.PublishHandler, *, max_packet_size: int,
                 read_pause_s: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.reader = w.PacketReader(on_publish, self._on_packet, max_packet_size)
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[w.Connack] = loop.create_future()
        self.closed: asyncio.Future[ConnectionClosed] = loop.create_future()
        self._acks: dict[int, asyncio.Future[w.Ack]] = {}
        self._next_id = 0
        self.paused = False  # by the subscriber's flow control
        # After a short read, reading rests for read_pause_s so that the next read takes what
        # arrived meanwhile in one system call (docs/ingest.md, "Reading in bursts").
        self.read_pause_s = read_pause_s
        self.resting = False
        self._reading = True  # what the transport was last told
        self.reads = 0
        self.last_sent = self.last_received = time.monotonic()
        self._ping_sent: float | None = None
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._error: ConnectionClosed | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once connected)."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        """Hand the bytes to the packet reader; a malformed packet ends the connection."""
        self.last_received = time.monotonic()
        self._ping_sent = None  # the broker is alive
        self.reads += 1
        try:
            self.reader.feed(data)
        except w.MalformedPacket as exc:
            log.error("malformed packet from the broker: %s; disconnecting with reason %s",
                      exc, w.reason_text(exc.reason))
            self.close(exc.reason, ConnectionClosed(f"malformed packet: {exc}", exc.reason))
            return
        if self.read_pause_s > 0 and len(data) < SHORT_READ_BYTES and not self.resting:
            self.resting = True
            self._apply_reading()
            self._loop.call_later(self.read_pause_s, self._end_rest)

    def eof_received(self) -> bool:
        """The broker closed its side: close ours."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever waits on this connection, and tell the subscriber."""
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
        err = self._error or ConnectionClosed(
            f"connection lost: {exc}" if exc else "connection closed by the broker")
        waiting: list[asyncio.Future[Any]] = [self.connack, *self._acks.values()]
        for fut in waiting:
            if not fut.done():
                fut.set_exception(err)
                fut.exception()  # retrieved: nobody may wait on it any more
        self._acks.clear()
        if not self.closed.done():
            self.closed.set_result(err)

    # -- writing --------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True until the transport is closing."""
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        """Send bytes (dropped once the connection is closing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_sent = time.monotonic()

    def close(self, reason: int = w.SUCCESS, error: ConnectionClosed | None = None) -> None:
        """Send DISCONNECT with ``reason`` and close (the session stays on the broker)."""
        if error is not None and self._error is None:
            self._error = error
        if self.is_open:
            assert self.transport is not None
            self.write(w.disconnect_packet(reason))
            self.transport.close()

    def say_goodbye(self) -> None:
        """Send DISCONNECT (reason 0: the session stays) and leave the closing to the broker.

        Messages read from now on are dropped unacknowledged (the broker keeps them), and
        reading resumes so that the broker's close is seen.
        """
        self.reader.on_publish = _drop
        self.write(w.disconnect_packet())
        self.resume()

    def abort(self, error: ConnectionClosed) -> None:
        """Drop the connection without a word (a dead broker cannot read one)."""
        if self._error is None:
            self._error = error
        if self.transport is not None:
            self.transport.abort()

    # -- flow control ---------------------------------------------------------------------
    def pause(self) -> None:
        """Stop reading the socket: TCP backpressure keeps the rest in the broker."""
        if not self.paused and self.is_open:
            self.paused = True
            self._apply_reading()
            self._ping_sent = None  # a PINGRESP cannot be read while paused

    def resume(self) -> None:
        """Read the socket again (once a rest after a short read is over)."""
        if self.paused and self.is_open:
            self.paused = False
            self._apply_reading()

    def _end_rest(self) -> None:
        self.resting = False
        self._apply_reading()

    def _apply_reading(self) -> None:
        """Tell the transport to read or not: not while paused or resting."""
        want = not self.paused and not self.resting
        if want != self._reading and self.is_open:
            assert self.transport is not None
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()
            self._reading = want

    # -- requests -------------------------------------------------------------------------
    def _packet_id(self) -> int:
        self._next_id = self._next_id % 0xFFFF + 1
        return self._next_id

    def subscribe(self, filters: list[str], *, qos: int = 1) -> asyncio.Future[w.Ack]:
        """Send SUBSCRIBE; the future holds the SUBACK."""
        pid = self._packet_id()
        fut = self._acks[pid] = self._loop.create_future()
        self.write(w.subscribe_packet(pid, filters, qos=qos))
        return fut

    def unsubscribe(self, filters: list[str]) -> asyncio.Future[w.Ack]:
        """Send UNSUBSCRIBE; the future holds the UNSUBACK."""
        pid = self._packet_id()
        fut = self._acks[pid] = self._loop.create_future()
        self.write(w.unsubscribe_packet(pid, filters))
        return fut

    # -- keepalive ------------------------------------------------------------------------
    def start_keepalive(self, keepalive: int) -> None:
        """PINGREQ whenever nothing was sent for half the keepalive, or nothing received
        for a keepalive; no answer within a keepalive means a dead broker.

        While reading is paused nothing is read, PINGRESP included: the silence is then
        ours, not the broker's, and does not end the connection. PINGREQs still leave so
        the broker keeps us (it drops a client silent for 1.5 keepalives); a dead broker
        shows as a failed write, or once reading resumes.
        """
        if keepalive <= 0:
            return
        interval = max(0.5, keepalive / 4)

        def tick() -> None:
            now = time.monotonic()
            if self._ping_sent is not None and not self.paused \
                    and now - self._ping_sent > keepalive:
                log.warning("no answer from the broker for %d s; reconnecting", keepalive)
                self.abort(ConnectionClosed("keepalive timeout", 0x8D))
                return
            quiet_in = not self.paused and now - self.last_received >= keepalive
            if now - self.last_sent >= keepalive / 2 or (quiet_in and self._ping_sent is None):
                self.write(w.PINGREQ_PACKET)
                if self._ping_sent is None and not self.paused:
                    self._ping_sent = now
            self._keepalive_timer = self._loop.call_later(interval, tick)

        self._keepalive_timer = self._loop.call_later(interval, tick)

    # -- packets in -----------------------------------------------------------------------
    def _on_packet(self, kind: int, flags: int, body: bytes) -> None:
        if kind == w.CONNACK and not self.connack.done():
            self.connack.set_result(w.decode_connack(body))
        elif kind in (w.SUBACK, w.UNSUBACK):
            ack = w.decode_suback(body)
            fut = self._acks.pop(ack.packet_id, None)
            if fut is None:
                raise w.MalformedPacket(f"acknowledgement of unknown packet id "
                                        f"{ack.packet_id}", w.PROTOCOL_ERROR)
            if not fut.done():
                fut.set_result(ack)
        elif kind == w.PINGRESP:
            pass  # any bytes received already count as the broker's sign of life
        elif kind == w.DISCONNECT:
            reason, props = w.decode_disconnect(body)
            text = props.get("reason_string")
            log.warning("the broker closed the connection: %s%s", w.reason_text(reason),
                        f" ({text})" if text else "")
            self._error = ConnectionClosed(
                f"the broker disconnected: {w.reason_text(reason)}", reason)
            if self.transport is not None:
                self.transport.close()
        else:
            raise w.MalformedPacket(f"unexpected packet of type {kind} from the broker",
                                    w.PROTOCOL_ERROR)

    def info(self) -> dict[str, Any]:
        """State for logs and tests."""
        return {"paused": self.paused, "buffered": self.reader.buffered,
                "awaiting_acks": len(self._acks)}
