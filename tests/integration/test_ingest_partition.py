"""``beffroi ingest --workers N`` on plain subscriptions: the workers split the topics.

Each worker subscribes to its own groups of topics (ingest/subscriptions.py), so the broker
sends each message to one worker: with two, worker 0 stores the grid meters' readings and
worker 1 the parking's and the refused topics. Changing the number of workers while devices
publish loses and duplicates nothing: the runner subscribes every worker's session to its
new filters before any worker drops its old ones. Real Mosquitto, real database.
"""

from __future__ import annotations

import re
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
from tests.integration.mqtt_helpers import Publisher, count, wait_until

pytestmark = [pytest.mark.stack, pytest.mark.slow]

DEVICES = 6


def _committed(log: str, worker: int) -> tuple[int, int]:
    """What worker ``worker`` says it committed when it stopped: (readings, rejected)."""
    found = re.findall(rf"worker {worker} stopped: (\d+) readings committed, (\d+) messages "
                       r"rejected", log)
    assert len(found) == 1, log[-3000:]
    return int(found[0][0]), int(found[0][1])


@pytest.fixture
def procs() -> Iterator[list[IngestProcess]]:
    started: list[IngestProcess] = []
    yield started
    for p in started:
        p.close()


def test_two_workers_each_receive_their_own_topics(stack: Stack, db_url: str, uid: str,
                                                   tmp_path: Path,
                                                   procs: list[IngestProcess]) -> None:
    register_mixed(db_url, uid, DEVICES)
    ing = IngestProcess(stack, db_url, tmp_path / "ingest.log", workers=2)
    procs.append(ing)
    ing.start()
    n = 600
    pub = Publisher.as_role(stack, "admin")
    try:
        pub.publish_many([mixed_message(ing.prefix, uid, i, DEVICES) for i in range(n)]
                         + [(f"{ing.prefix}/{uid}/x", b"{}")])  # refused: unknown_topic
    finally:
        pub.close()
    wait_until(lambda: mixed_stored(db_url, uid) == (n // 2, n // 2)
               and count(db_url, "dead_letters", "topic = %s", (f"{ing.prefix}/{uid}/x",)) == 1,
               timeout=60, what="every message stored or refused")
    assert ing.stop() == 0
    log = ing.log_path.read_text()
    # The broker sent each worker its own topics only: neither stored the other's share.
    assert _committed(log, 0) == (n // 2, 0)
    assert _committed(log, 1) == (n // 2, 1)
    assert mixed_stored(db_url, uid) == (n // 2, n // 2)


class _Devices(threading.Thread):
    """Devices publishing (QoS 1, acknowledged by the broker) until stopped, about 2,000
    messages a second: the pause paces them, it synchronises nothing."""

    def __init__(self, stack: Stack, prefix: str, uid: str) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher.as_role(stack, "admin")
        self.prefix, self.uid = prefix, uid
        self.sent = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                batch = [mixed_message(self.prefix, self.uid, self.sent + k, DEVICES)
                         for k in range(20)]
                self.sent += self.pub.publish_many(batch)
                time.sleep(0.01)
        except BaseException as exc:
            self.error = exc
        finally:
            self.pub.close()


def test_changing_the_number_of_workers_loses_nothing(stack: Stack, db_url: str, uid: str,
                                                      tmp_path: Path,
                                                      procs: list[IngestProcess]) -> None:
    """1, 2, 3, then 1 worker again, each started while devices publish: the topics change
    hands between the sessions, and every published message is stored exactly once."""
    register_mixed(db_url, uid, DEVICES)
    first = IngestProcess(stack, db_url, tmp_path / "ingest.log", workers=3)
    same = {k: v for k, v in first.env.items()
            if k in ("BEFFROI_INGEST_CLIENT_ID", "BEFFROI_INGEST_SHARE_GROUP",
                     "BEFFROI_TOPIC_PREFIX")}
    procs.append(first)  # its close() forgets the three sessions
    devices = _Devices(stack, first.prefix, uid)
    try:
        for workers in (1, 2, 3, 1):
            ing = IngestProcess(stack, db_url, tmp_path / f"ingest-{workers}.log",
                                workers=workers, env=same)
            ing.client_ids, ing.prefix = [], first.prefix
            procs.append(ing)
            ing.start()
            if not devices.is_alive():  # from when the first session exists
                devices.start()
            # Barrier: this run stores what is published after it started, on both tables.
            wanted = devices.sent // 2 + 50
            wait_until(lambda: min(mixed_stored(db_url, uid)) > wanted, timeout=60,  # noqa: B023
                       what=f"{workers} worker(s) storing the new messages")
            assert ing.stop() == 0
    finally:
        devices.halt.set()
        if devices.is_alive():
            devices.join(timeout=60)
    assert devices.error is None, devices.error
    sent = devices.sent
    last = IngestProcess(stack, db_url, tmp_path / "ingest-last.log", workers=1, env=same)
    last.client_ids, last.prefix = [], first.prefix
    procs.append(last)
    last.start()
    wait_until(lambda: sum(mixed_stored(db_url, uid)) >= sent, timeout=120,
               what=f"the {sent} published messages stored")
    assert last.stop() == 0
    assert mixed_stored(db_url, uid) == ((sent + 1) // 2, sent // 2)
    assert count(db_url, "dead_letters", "topic LIKE %s", (f"{first.prefix}/%",)) == 0
