"""One publisher process: ``python -m bench.ingestlib.publisher FILE ...``.

Loads its share of the stream (``--skip`` records, then ``--limit``), connects, prints
``READY``, waits for ``GO`` on stdin, then publishes every message at QoS 1 and prints one JSON
line of statistics. SIGUSR1 ends a run early (``raw`` client): no new message is sent, those
sent are acknowledged, and the statistics count the messages sent.

Two clients:

- ``raw`` (default): MQTT 3.1.1 written straight to the socket — pre-encoded PUBLISH packets
  sent in chunks, a window of unacknowledged messages, PUBACKs counted as they come back.
  About 2 µs of Python per message, so on this 2-core box the publishers take little CPU
  from the system being measured (paho takes about 30-50 µs per message).
- ``paho``: paho-mqtt 2 with a large inflight window, for comparison.

``ts`` of native messages is the wall clock (microseconds) when the packet is built, at most
one chunk (a few hundred µs) before it is written to the socket; strictly increasing in a
process, and every device is published by one process only, so readings never collide.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

from bench.ingestlib.stream import TS_LEN, Record, fill, read_records
from simulators.wire import connect_packet, disconnect_packet, publish_head, split_pubacks

CHUNK = 256
_PIDS = [struct.pack("!H", i) for i in range(65536)]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        buf += chunk
    return buf


class RawPublisher:
    """QoS 1 publishing over a bare socket."""

    def __init__(self, host: str, port: int, user: str, password: str, client_id: str,
                 window: int) -> None:
        if not 0 < window < 65000:
            raise ValueError("window must be below the 65,535 packet ids")
        self.window = window
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        self.sock.sendall(connect_packet(client_id, user, password))
        ack = _recv_exact(self.sock, 4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise ConnectionError(f"CONNACK refused: {ack!r}")

    def run(self, records: list[Record], rate: float | None,
            stop: threading.Event | None = None) -> tuple[float, float, int]:
        """Publish everything (or until ``stop`` is set); return wall times of the first
        write and of the last PUBACK, and the number of messages sent (all acknowledged)."""
        heads = []
        for r in records:
            heads.append(publish_head(r.topic, sum(map(len, r.parts)) + r.slots * TS_LEN))
        n = len(records)
        sock = self.sock
        sent = acked = 0
        pid = 0
        pending = b""
        last_us = 0
        first = 0.0
        t_start = time.monotonic()
        while acked < n:
            if stop is not None and n > sent and stop.is_set():
                n = sent  # stopped: wait for the PUBACKs of what was sent
                continue
            can_send = sent < n and sent - acked < self.window
            block = not can_send  # nothing to do but wait for PUBACKs
            if can_send and rate:
                ahead = sent / rate - (time.monotonic() - t_start)
                if ahead > 0:
                    time.sleep(min(ahead, 0.005))
                    can_send = False
            if can_send:
                m = min(CHUNK, n - sent, self.window - (sent - acked))
                if rate:
                    m = min(m, 16)
                buf = []
                for i in range(sent, sent + m):
                    rec = records[i]
                    pid = pid % 65535 + 1
                    k = len(rec.parts) - 1
                    if k:
                        now_us = time.time_ns() // 1000
                        last_us = max(now_us, last_us + k)
                        payload = fill(rec, last_us)
                    else:
                        payload = rec.parts[0]
                    buf.append(heads[i])
                    buf.append(_PIDS[pid])
                    buf.append(payload)
                if not first:
                    first = time.time()
                sock.sendall(b"".join(buf))
                sent += m
            flags = 0 if block else socket.MSG_DONTWAIT
            try:
                data = sock.recv(1 << 18, flags)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError(f"broker closed the connection after {acked} PUBACKs")
            k, pending = split_pubacks(pending + data)
            acked += k
        return first, time.time(), n

    def close(self) -> None:
        """DISCONNECT."""
        try:
            self.sock.sendall(disconnect_packet())
        finally:
            self.sock.close()


def run_paho(records: list[Record], host: str, port: int, user: str, password: str,
             client_id: str, window: int, rate: float | None) -> tuple[float, float]:
    """Publish with paho-mqtt (loop thread, QoS 1, large inflight window)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)
    done = threading.Event()
    connected = threading.Event()
    acked = [0]
    n = len(records)

    def on_publish(*_: Any) -> None:
        acked[0] += 1
        if acked[0] >= n:
            done.set()

    c.on_publish = on_publish
    c.on_connect = lambda *_: connected.set()
    c.connect(host, port, keepalive=60)
    c.loop_start()
    connected.wait(10)
    first = time.time()
    t0 = time.monotonic()
    last_us = 0
    for i, rec in enumerate(records):
        if rate and i % 16 == 0:
            ahead = i / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        k = rec.slots
        if k:
            last_us = max(time.time_ns() // 1000, last_us + k)
            payload = fill(rec, last_us)
        else:
            payload = rec.parts[0]
        c.publish(rec.topic.decode(), payload, qos=1)
    done.wait()
    last = time.time()
    c.disconnect()
    c.loop_stop()
    return first, last


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--skip", type=int, default=0, help="records of the file to leave out")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--window", type=int, default=20000)
    p.add_argument("--rate", type=float, default=None, help="messages/s (default: flat out)")
    p.add_argument("--client", choices=("raw", "paho"), default="raw")
    a = p.parse_args()
    password = os.environ["BENCH_MQTT_PASSWORD"]
    records = read_records(__import__("pathlib").Path(a.file), a.limit, skip=a.skip)
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: stop.set())
    raw: RawPublisher | None = None
    if a.client == "raw":
        raw = RawPublisher(a.host, a.port, a.user, password, a.client_id, a.window)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return
    if raw is not None:
        first, last, sent = raw.run(records, a.rate, stop)
        raw.close()
    else:
        sent = len(records)
        first, last = run_paho(records, a.host, a.port, a.user, password, a.client_id,
                               a.window, a.rate)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"messages": sent, "readings": sum(r.readings for r in records[:sent]),
                      "first_publish": first, "last_ack": last,
                      "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}),
          flush=True)


if __name__ == "__main__":
    main()
