"""A broker restart under ``beffroi ingest --workers 2`` loses and duplicates nothing, on
either worker's topics (grid meters for one, parking spots for the other).

Mosquitto 2.0 does not restore shared subscriptions of persistent sessions after a restart:
messages published before the workers subscribe again would match nobody and be dropped,
after the publisher was acknowledged (docs/scale.md). The workers therefore hold plain
subscriptions to their own groups of topics, which the broker restores.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from beffroi.stack import Stack
from tests.integration.ingest_helpers import (
    IngestProcess,
    mixed_message,
    mixed_stored,
    register_mixed,
)
from tests.integration.mqtt_helpers import Publisher, count, purge_session, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]

METERS = 20
PER_PHASE = 2000


@pytest.fixture
def ingest_proc(stack: Stack, db_url: str, tmp_path: Path) -> Iterator[IngestProcess]:
    p = IngestProcess(stack, db_url, tmp_path / "ingest.log", workers=2)
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.kill()
    for cid in p.client_ids:
        purge_session(stack, cid)


def _publish(stack: Stack, prefix: str, uid: str, start: int) -> None:
    pub = Publisher.as_role(stack, "admin")
    try:
        acked = pub.publish_many([mixed_message(prefix, uid, i, METERS)
                                  for i in range(start, start + PER_PHASE)])
    finally:
        pub.close()
    assert acked == PER_PHASE


def _rows(db_url: str, uid: str) -> int:
    return sum(mixed_stored(db_url, uid))


def test_broker_restart_under_two_workers_loses_nothing(stack: Stack, db_url: str, uid: str,
                                                        ingest_proc: IngestProcess) -> None:
    register_mixed(db_url, uid, METERS)
    ingest_proc.start()
    _publish(stack, ingest_proc.prefix, uid, 0)
    wait_until(lambda: _rows(db_url, uid) >= PER_PHASE, timeout=60, what="the first phase")
    broker = stack.broker()
    log_before = ingest_proc.log_path.read_text().count("connected to the broker")
    broker.stop()
    broker.start()
    # Published at once: the first messages before the workers (reconnecting after a
    # backoff) are back.
    assert ingest_proc.log_path.read_text().count("connected to the broker") - log_before < 2
    _publish(stack, ingest_proc.prefix, uid, PER_PHASE)
    wait_until(lambda: ingest_proc.log_path.read_text().count("connected to the broker")
               - log_before >= 2, timeout=60, what="both workers to reconnect")
    _publish(stack, ingest_proc.prefix, uid, 2 * PER_PHASE)
    wait_until(lambda: _rows(db_url, uid) >= 3 * PER_PHASE, timeout=90,
               what="every message stored")
    assert ingest_proc.stop() == 0
    assert _rows(db_url, uid) == 3 * PER_PHASE  # none lost, none twice
    assert count(db_url, "dead_letters", "topic LIKE %s", (f"%{uid}%",)) == 0


def test_broker_restart_while_devices_publish(stack: Stack, db_url: str, uid: str,
                                              ingest_proc: IngestProcess) -> None:
    """A publisher keeps publishing across the restart, as a device does: what the broker
    did not acknowledge is published again once it is back. Every message is stored, once
    (a message sent twice is one row)."""
    n = 6000
    early = 500  # published by a device connecting as soon as the broker is back
    register_mixed(db_url, uid, METERS)
    ingest_proc.start()
    messages = [mixed_message(ingest_proc.prefix, uid, i, METERS) for i in range(n + early)]
    pub = Publisher.as_role(stack, "admin")
    done: list[int] = []

    def publish() -> None:
        deadline = time.monotonic() + 120
        for k in range(0, n, 200):  # about 2,000 messages a second
            while True:
                try:
                    done.append(pub.publish_many(messages[k:k + 200], timeout=5))
                    break
                except (RuntimeError, TimeoutError):  # not connected, or not acknowledged
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)  # paho reconnects by itself
            time.sleep(0.1)

    sender = threading.Thread(target=publish)
    sender.start()
    try:
        wait_until(lambda: len(done) >= 5, timeout=60, what="publishing under way")
        broker = stack.broker()
        broker.stop()
        broker.start()
        device = Publisher.as_role(stack, "admin")
        try:
            assert device.publish_many(messages[n:]) == early
        finally:
            device.close()
        sender.join(timeout=180)
        assert not sender.is_alive() and sum(done) == n  # every message acknowledged
        wait_until(lambda: _rows(db_url, uid) >= n + early, timeout=120,
                   what="every message stored")
    finally:
        sender.join(timeout=180)
        pub.close()
    assert ingest_proc.stop() == 0
    assert _rows(db_url, uid) == n + early
