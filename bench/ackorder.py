"""The broker's CPU per message against the order of a subscriber's PUBACKs
(``python -m bench.ackorder``; docs/ingest.md, "Two workers on plain subscriptions").

One raw MQTT 5 subscriber (clean start, Receive Maximum 20,000) and one raw publisher, on the
local stack's Mosquitto, ``--messages`` QoS 1 messages over 820 topics. The subscriber
acknowledges in one of three ways, as an ingestor worker would:

- ``in-order``: every message is its own; all acknowledged in receive order once ``--hold``
  wait (one worker);
- ``half-at-once``: the messages of half of the topics (CRC-32 even) are its own, held until
  ``--hold`` of them wait; the others are acknowledged as they come (what a worker on plain
  subscriptions did);
- ``half-in-order``: the same holding, every PUBACK in receive order (what it does now).

It prints the broker's CPU (from ``/proc``) per message for each. What waits must stay below
the Receive Maximum (``--hold``, twice that for ``half-in-order``), or the broker stops
sending before anything is acknowledged.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import threading
import time
import zlib

from beffroi.settings import Settings
from beffroi.stack import Stack
from bench.ingestlib.procstat import cpu_seconds
from devices import mqttwire as w

MODES = ("in-order", "half-at-once", "half-in-order")
RECEIVE_MAXIMUM = 20_000
TOPICS = 820
PAYLOAD = b'{"energy_import_wh": 12345678, "power_w": 1840.5, "voltage_l1_v": 231.2}'


class Subscriber:
    """Reads PUBLISH packets and sends PUBACKs in the order of its mode."""

    def __init__(self, host: str, port: int, user: str, password: str, tag: str, mode: str,
                 hold: int, expected: int) -> None:
        self.mode = mode
        self.hold = hold
        self.expected = expected
        self.received = 0
        self.sock = socket.create_connection((host, port))
        self.sock.sendall(w.connect_packet(
            f"bench-ackorder-sub-{tag}", user, password, version=w.MQTT_5,
            properties={"receive_maximum": RECEIVE_MAXIMUM}))
        self.subscribed = threading.Event()
        self._held: list[int] = []  # own share waiting (half-* modes)
        self._sequence: list[int] = []  # everything waiting, in receive order
        self._out: list[bytes] = []
        self._reader = w.PacketReader(self._on_publish, self._on_packet)
        self.sock.sendall(w.subscribe_packet(1, [f"bench-ackorder/{tag}/#"]))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _on_packet(self, kind: int, flags: int, body: bytes) -> None:
        if kind == w.SUBACK:
            self.subscribed.set()

    def _on_publish(self, topic: str, payload: bytes, qos: int, mid: int, dup: bool,
                    properties: object) -> None:
        self.received += 1
        if self.mode == "in-order":
            self._sequence.append(mid)
            if len(self._sequence) >= self.hold:
                self._flush(self._sequence)
            return
        own = zlib.crc32(topic.encode()) % 2 == 0
        if self.mode == "half-at-once":
            if not own:
                self._out.append(w.puback_packet(mid))
                return
            self._held.append(mid)
            if len(self._held) >= self.hold:
                self._flush(self._held)
            return
        self._sequence.append(mid)
        if own:
            self._held.append(mid)
            if len(self._held) >= self.hold:
                self._flush(self._sequence)
                self._held.clear()

    def _flush(self, mids: list[int]) -> None:
        self._out.extend(w.puback_packet(m) for m in mids)
        mids.clear()

    def _run(self) -> None:
        while self.received < self.expected:
            data = self.sock.recv(1 << 18)
            if not data:
                return
            self._reader.feed(data)
            if self._out:
                self.sock.sendall(b"".join(self._out))
                self._out.clear()
        self._flush(self._sequence)
        self._flush(self._held)
        self.sock.sendall(b"".join(self._out))

    def close(self) -> None:
        """DISCONNECT (clean start: the broker forgets the session)."""
        self.sock.sendall(w.disconnect_packet())
        self.sock.close()


def publish(host: str, port: int, user: str, password: str, tag: str, n: int) -> None:
    """``n`` QoS 1 messages, at most 5,000 unacknowledged, from one raw MQTT 3.1.1 client."""
    sock = socket.create_connection((host, port))
    sock.sendall(w.connect_packet(f"bench-ackorder-pub-{tag}", user, password))
    sock.recv(4)
    sent = acked = pid = 0
    pending = b""
    while acked < n:
        if sent < n and sent - acked < 5000:
            chunk = []
            for i in range(sent, min(n, sent + 256)):
                pid = pid % 65535 + 1
                chunk.append(w.publish_packet(f"bench-ackorder/{tag}/grid/d{i % TOPICS}/reading",
                                              PAYLOAD, packet_id=pid))
            sent += len(chunk)
            sock.sendall(b"".join(chunk))
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT if sent < n else 0)
        except BlockingIOError:
            continue
        if not data:
            raise ConnectionError("the broker closed the publisher's connection")
        k, pending = w.split_pubacks(pending + data)
        acked += k
    sock.sendall(w.disconnect_packet())
    sock.close()


def measure(stack: Stack, mode: str, messages: int, hold: int) -> float:
    """The broker's CPU seconds per message for one mode."""
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    broker = next(s.pid for s in stack.status() if s.name == "mosquitto")
    if broker is None:
        raise SystemExit("the local broker is not running: `beffroi stack up`")
    tag = secrets.token_hex(3)
    sub = Subscriber(host, port, user, password, tag, mode, hold, messages)
    if not sub.subscribed.wait(10):
        raise SystemExit("no SUBACK from the broker")
    before = cpu_seconds(broker) or 0.0
    publish(host, port, user, password, tag, messages)
    sub.thread.join(600)
    time.sleep(0.5)  # the last PUBACKs reach the broker
    used = (cpu_seconds(broker) or 0.0) - before
    sub.close()
    return used / messages


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m bench.ackorder", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--hold", type=int, default=7_500,
                   help="own messages held before a flush (default 7,500; half-in-order "
                   f"holds as many of the others: twice that must stay below "
                   f"{RECEIVE_MAXIMUM:,})")
    p.add_argument("--modes", default=",".join(MODES))
    a = p.parse_args()
    modes = a.modes.split(",")
    for mode in modes:
        if mode not in MODES:
            p.error(f"unknown mode {mode!r}")
        waiting = 2 * a.hold if mode == "half-in-order" else a.hold
        if not 0 < waiting < RECEIVE_MAXIMUM:
            p.error(f"{mode} would hold {waiting:,} messages: not below {RECEIVE_MAXIMUM:,}")
    stack = Stack(Settings())
    for mode in modes:
        per = measure(stack, mode, a.messages, a.hold)
        print(f"{mode:14s} {a.messages:,} messages, hold {a.hold:,}: broker CPU "
              f"{per * 1e6:.1f} µs per message", flush=True)


if __name__ == "__main__":
    main()
