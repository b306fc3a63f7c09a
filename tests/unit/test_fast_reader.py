"""The ingestor's MQTT packet reader: QoS 1 PUBLISH packets without properties go straight to
the handler, every other packet to gmqtt's own path, incomplete packets wait for more bytes."""

from __future__ import annotations

from typing import Any

from gmqtt.mqtt.package import Package

from ingest.mqtt import _fast_reader
from simulators.wire import varint


def publish(topic: str, payload: bytes, *, qos: int = 1, mid: int = 7,
            props: bytes = b"\x00", dup: bool = False) -> bytes:
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t
    if qos:
        body += mid.to_bytes(2, "big")
    body += props + payload
    return bytes([0x30 | (qos << 1) | (0x08 if dup else 0)]) + varint(len(body)) + body


class FakeConn:
    def __init__(self) -> None:
        self._handler = self
        self.current_connection: Any = self
        self.packages: list[Package] = []
        self._last_data_in = 0.0

    def put_package(self, pkg: Package) -> None:
        self.packages.append(pkg)


class FakeProtocol:
    def __init__(self) -> None:
        self.fallback: list[bytes] = []

    def _read_packet(self, data: bytes) -> int:
        self.fallback.append(data)
        return len(data)


def _reader() -> tuple[Any, FakeConn, FakeProtocol, list[tuple[int, bytes, str]]]:
    conn, proto = FakeConn(), FakeProtocol()
    got: list[tuple[int, bytes, str]] = []
    return (_fast_reader(proto, conn, lambda mid, p, t, props: got.append((mid, p, t))),
            conn, proto, got)


def test_qos1_publishes_take_the_short_path_others_gmqtts() -> None:
    read, conn, _proto, got = _reader()
    big = b"x" * 300  # two-byte remaining length
    stream = (publish("city/a/1/x", b"{}", mid=1)
              + publish("city/a/2/x", big, mid=65535, dup=True)
              + publish("city/a/3/x", b"p", mid=3, props=b"\x02\x01\x01")  # properties
              + publish("city/a/4/x", b"q0", qos=0)
              + bytes([0x90, 3, 0, 9, 0]))  # a SUBACK
    assert read(stream) == len(stream)
    assert got == [(1, b"{}", "city/a/1/x"), (65535, big, "city/a/2/x")]
    assert [p.cmd for p in conn.packages] == [0x32, 0x30, 0x90]
    assert conn.packages[0].data.endswith(b"\x02\x01\x01p")
    assert conn._last_data_in > 0


def test_incomplete_packets_wait_for_more_bytes() -> None:
    read, _conn, _proto, got = _reader()
    one, two = publish("t/a/1/x", b"a" * 200, mid=1), publish("t/a/2/x", b"b", mid=2)
    data = one + two
    for cut in (1, 2, len(one) - 1, len(one) + 1, len(data) - 1):
        got.clear()
        used = read(data[:cut])
        assert used == (len(one) if cut > len(one) else 0), cut
        assert len(got) == (1 if cut > len(one) else 0)
    got.clear()
    assert read(data) == len(data) and len(got) == 2


def test_malformed_length_and_superseded_connection() -> None:
    read, conn, proto, got = _reader()
    assert read(bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])) == -1
    conn.current_connection = object()
    data = publish("t/a/1/x", b"z")
    assert read(data) == len(data) and proto.fallback == [data] and got == []
