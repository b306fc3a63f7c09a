"""The in-flight gate: the ingestor stops reading the socket at its own bound."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ingest.mqtt import GmqttSubscriber, InflightGate


def test_gate_closes_at_the_message_limit_and_reopens_below_80_percent() -> None:
    gate = InflightGate(10)
    for _ in range(9):
        gate.add(100)
    assert gate.is_open
    gate.add(100)
    assert not gate.is_open and gate.closures == 1
    gate.release(2, 200)  # 8 left: not below 80 %
    assert not gate.is_open
    gate.release(1, 100)
    assert gate.is_open and gate.messages == 7 and gate.bytes == 700


def test_gate_closes_at_the_byte_limit() -> None:
    gate = InflightGate(1000, max_bytes=10_000)
    gate.add(6_000)
    assert gate.is_open
    gate.add(4_000)
    assert not gate.is_open
    gate.release(1, 4_000)  # 6,000 bytes, below 80 % of the limit
    assert gate.is_open


def test_gate_without_byte_limit() -> None:
    gate = InflightGate(3, max_bytes=0)
    gate.add(10**12)
    assert gate.is_open


def test_gate_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        InflightGate(0)
    with pytest.raises(ValueError):
        InflightGate(10, max_bytes=-1)


class _Protocol:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reads = 0

    async def read(self, n: int = -1) -> bytes:
        self.reads += 1
        return b"data"

    def write_data(self, data: bytes) -> None:
        self.written.append(data)

    def _read_packet(self, data: bytes) -> int:
        return len(data)


class _Connection:
    def __init__(self) -> None:
        self._protocol = _Protocol()
        self._handler = self
        self.current_connection = self
        self.keepalive = 30
        self._last_data_in = 0.0

    def put_package(self, pkg: Any) -> None:
        pass


def _subscriber(submit: Any, receive_maximum: int = 3) -> GmqttSubscriber:
    async def handler(topic: str, payload: bytes, qos: int, props: dict[str, Any]) -> int:
        return 0

    return GmqttSubscriber(host="127.0.0.1", port=1, username="u", password="p",
                           client_id="unit", topics=["t/#"], handler=handler,
                           receive_maximum=receive_maximum, submit=submit,
                           session_expiry_s=60)


async def test_reads_wait_while_messages_wait_for_their_commit() -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    sub = _subscriber(lambda topic, payload, qos, props: commit)
    conn = _Connection()
    sub.client._connection = conn
    sub._gate_reads()
    sub._gate_reads()  # idempotent: one wrapper per connection
    protocol = conn._protocol
    on_qos1 = sub.client._package_handler._handle_qos_1_publish_packet
    for mid in (1, 2, 3):
        on_qos1(mid, b"payload", "t/x", {})
    assert not sub.gate.is_open and sub.gate.messages == 3
    read = asyncio.ensure_future(protocol.read(65536))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not read.done() and protocol.reads == 0  # nothing is read past the bound
    assert conn._last_data_in == 0.0
    commit.set_result(None)  # the batch committed: PUBACKs leave in one write, reading resumes
    assert await asyncio.wait_for(read, 1) == b"data"
    assert protocol.written == [b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x00\x03"]
    assert sub.gate.is_open and sub.gate.messages == 0 and sub.gate.bytes == 0


async def test_a_failed_batch_releases_the_gate_without_acknowledging() -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    sub = _subscriber(lambda topic, payload, qos, props: commit, receive_maximum=2)
    conn = _Connection()
    sub.client._connection = conn
    sub._gate_reads()
    on_qos1 = sub.client._package_handler._handle_qos_1_publish_packet
    on_qos1(7, b"a", "t/x", {})
    on_qos1(8, b"b", "t/x", {})
    assert not sub.gate.is_open
    commit.set_exception(RuntimeError("batch failed"))
    commit.exception()
    await asyncio.sleep(0)
    assert sub.gate.is_open and conn._protocol.written == []  # the broker will redeliver


async def test_waiting_reads_keep_the_connection_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    commit: asyncio.Future[None] = loop.create_future()
    sub = _subscriber(lambda topic, payload, qos, props: commit, receive_maximum=1)
    conn = _Connection()
    conn.keepalive = 0  # wake up every second (the minimum)
    sub.client._connection = conn
    sub._gate_reads()
    sub.client._package_handler._handle_qos_1_publish_packet(1, b"a", "t/x", {})
    read = asyncio.ensure_future(conn._protocol.read(10))
    t0 = time.monotonic()
    done, _ = await asyncio.wait({read}, timeout=1.5)  # the read waits, and wakes after 1 s
    assert not done and conn._last_data_in > t0
    commit.set_result(None)
    assert await asyncio.wait_for(read, 2) == b"data"
