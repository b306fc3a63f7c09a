"""Helpers for integration tests: publish through the real broker, wait on conditions."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from beffroi.stack import Stack
from simulators.wire import connect_packet, disconnect_packet, publish_packet, split_pubacks


class Publisher:
    """A paho MQTT 5 publisher with a given account (QoS 1 publishes wait for PUBACK)."""

    def __init__(self, stack: Stack, *, username: str, password: str,
                 client_id: str = "") -> None:
        host, port = stack.broker_address()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self._connected = threading.Event()
        self.connect_rc: Any = None
        self.acks: dict[int, Any] = {}

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            self.connect_rc = rc
            self._connected.set()

        def on_publish(c: Any, u: Any, mid: int, rc: Any, p: Any) -> None:
            self.acks[mid] = rc

        self.client.on_connect = on_connect
        self.client.on_publish = on_publish
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("no CONNACK from the broker")

    @classmethod
    def as_role(cls, stack: Stack, role: str = "sim") -> Publisher:
        """A publisher with one of Beffroi's own broker accounts."""
        user, password = stack.mqtt_credentials(role)
        return cls(stack, username=user, password=password)

    def publish(self, topic: str, payload: bytes | str, *, qos: int = 1,
                properties: Any = None) -> int:
        """Publish one message; return its mid (the PUBACK lands in ``acks``)."""
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        return int(info.mid)

    def publish_many(self, messages: Iterable[tuple[str, bytes | str]], *, qos: int = 1,
                     timeout: float = 120) -> int:
        """Publish messages and wait until the broker acknowledged all of them."""
        infos = [self.client.publish(t, p, qos=qos) for t, p in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("broker did not acknowledge every message")
        return len(infos)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def publish_fast(stack: Stack, messages: Iterable[tuple[str, bytes]], *, role: str = "admin",
                 window: int = 10_000, timeout: float = 120) -> int:
    """Publish at QoS 1 over a bare MQTT 3.1.1 socket, pipelined; return once all are acked.

    paho spends tens of microseconds per message; this queues a backlog of 100,000 messages in
    about a second. The broker's only packets back are PUBACKs (no subscription, keepalive off).
    """
    if not 0 < window < 65_535:
        raise ValueError("window must be below the 65,535 packet ids")
    user, password = stack.mqtt_credentials(role)
    host, port = stack.broker_address()
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(connect_packet(f"pub-{secrets.token_hex(4)}", user, password))
        ack = b""
        while len(ack) < 4:
            chunk = sock.recv(4 - len(ack))
            if not chunk:
                raise ConnectionError("broker closed the connection before CONNACK")
            ack += chunk
        if ack[0] != 0x20 or ack[3] != 0:
            raise ConnectionError(f"CONNACK refused: {ack!r}")
        sent = acked = 0
        rest = b""

        def read_acks() -> None:
            nonlocal acked, rest
            if time.monotonic() > deadline:
                raise TimeoutError(f"broker acknowledged {acked} of {sent} messages")
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError(f"broker closed the connection after {acked} PUBACKs")
            k, rest = split_pubacks(rest + data)
            acked += k

        out: list[bytes] = []
        for topic, payload in messages:
            while sent - acked >= window:
                if out:
                    sock.sendall(b"".join(out))
                    out.clear()
                read_acks()
            out.append(publish_packet(topic, payload, qos=1, packet_id=sent % 65_535 + 1,
                                      version=4))
            sent += 1
            if len(out) >= 256:
                sock.sendall(b"".join(out))
                out.clear()
        if out:
            sock.sendall(b"".join(out))
        while acked < sent:
            read_acks()
        sock.sendall(disconnect_packet())
    return sent


def purge_session(stack: Stack, client_id: str) -> None:
    """Delete a persistent session on the broker (connect clean with expiry 0)."""
    user, password = stack.mqtt_credentials("admin")
    host, port = stack.broker_address()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    done = threading.Event()
    c.on_connect = lambda *a: done.set()
    c.connect(host, port, clean_start=True)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def wait_until(cond: Callable[[], bool], *, timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll ``cond`` every ``interval`` s until true; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


async def await_until(cond: Callable[[], Awaitable[bool]], *, timeout: float,
                      what: str) -> None:
    """Async ``wait_until``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def count(db_url: str, table: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
    """Rows of ``table`` matching ``where``."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
    assert row is not None
    return int(row[0])


def register(db_url: str, uid: str, devices: dict[str, str]) -> None:
    """Register sites for ``uid`` and devices {id: family} directly in the database."""
    kinds = {"wifi_ap": "square", "parking_spot": "parking_zone",
             "parking_meter": "parking_zone", "grid_meter": "district"}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for kind in set(kinds.values()):
            conn.execute(
                "INSERT INTO sites (id, kind, name, insee) VALUES (%s, %s, %s, '62041')"
                " ON CONFLICT DO NOTHING", (f"{uid}-{kind.replace('_', '-')}", kind, kind))
        for dev_id, family in devices.items():
            extra = {}
            if family == "parking_spot":
                extra["dev_eui"] = f"{abs(hash(dev_id)) % (1 << 64):016x}"
            if family == "grid_meter":
                extra["meter_id"] = f"{abs(hash(dev_id)) % (10 ** 14):014d}"
                extra["meter_serial"] = f"{abs(hash(dev_id + '/serial')) % (10 ** 12):012d}"
            conn.execute(
                "INSERT INTO devices (id, family, site_id, name, report_interval_s, dev_eui,"
                " meter_id, meter_serial) VALUES (%s, %s, %s, %s, 60, %s, %s, %s)",
                (dev_id, family, f"{uid}-{kinds[family].replace('_', '-')}", dev_id,
                 extra.get("dev_eui"), extra.get("meter_id"), extra.get("meter_serial")))
