"""The in-flight gate: the ingestor stops reading the socket at its own bound (the client's
use of it, pausing and resuming the transport, is in ``test_mqtt_client.py``)."""

from __future__ import annotations

import pytest

from ingest.mqtt import InflightGate


def test_gate_closes_at_the_message_limit_and_reopens_below_80_percent() -> None:
    gate = InflightGate(10)
    changes: list[bool] = []
    gate.on_change = changes.append
    for _ in range(9):
        gate.add(100)
    assert gate.is_open and changes == []
    gate.add(100)
    gate.add(100)  # past the limit: closed once
    assert not gate.is_open and gate.closures == 1 and changes == [False]
    gate.release(3, 300)  # 8 left: not below 80 %
    assert not gate.is_open
    gate.release(1, 100)
    gate.release(1, 100)
    assert gate.is_open and gate.messages == 6 and gate.bytes == 600
    assert changes == [False, True]


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
