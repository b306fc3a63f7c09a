"""A worker of ``--workers N`` on plain subscriptions acknowledges in the order it receives.

Each worker receives every message and stores its share (topic CRC-32 modulo N). The PUBACKs
of the other workers' messages must not overtake those of its own messages waiting for their
commit: Mosquitto finds the message a PUBACK names by walking the session's in-flight list
from the oldest, so out-of-order PUBACKs cost it a walk past every message still waiting
(docs/ingest.md). The order is only visible on the wire, so the broker here is the scripted
one of the client's unit tests, in front of the real database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zlib import crc32

import orjson
import pytest

from beffroi.settings import Settings
from devices import mqttwire as w
from ingest.service import BrokerConfig, Ingestor
from tests.integration.ingest_helpers import ingest_settings
from tests.integration.mqtt_helpers import count, register
from tests.unit.mqtt_peer import PeerSession, scripted_broker

pytestmark = pytest.mark.stack

WORKERS = 2


@contextlib.asynccontextmanager
async def _worker_on_peer(settings: Settings, db_url: str
                          ) -> AsyncIterator[tuple[Ingestor, PeerSession]]:
    """Worker 0 of 2 (plain subscriptions) connected to a scripted broker, handshake done."""
    async with scripted_broker() as peer:
        ing = Ingestor(settings, db_url=db_url,
                       broker=BrokerConfig("127.0.0.1", peer.port, "u", "p"), worker=0,
                       workers=WORKERS, shared=False, progress=False)
        stop = asyncio.Event()
        task = asyncio.create_task(ing.run(stop))
        session = await peer.next_session(timeout=30)
        _, filters = await session.handshake(reasons=(1,) * 3)
        assert not any(f.startswith("$share/") for f in filters)
        body = await session.expect(w.UNSUBSCRIBE)  # the shared filters of the other mode
        session.send(w.suback_packet((body[0] << 8) | body[1], [0x11] * 3, unsubscribe=True))
        await asyncio.wait_for(ing.wait_started(), 10)
        try:
            yield ing, session
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


def _topics(prefix: str, uid: str, n: int) -> tuple[list[str], list[str]]:
    """``n`` grid meter topics of worker 0's share and ``n`` of worker 1's."""
    own: list[str] = []
    other: list[str] = []
    i = 0
    while len(own) < n or len(other) < n:
        topic = f"{prefix}/grid/{uid}-m{i}/reading"
        share = own if crc32(topic.encode()) % WORKERS == 0 else other
        if len(share) < n:
            share.append(topic)
        i += 1
    return own, other


async def _pubacks(session: PeerSession, n: int) -> list[int]:
    return [w.decode_puback(await session.expect(w.PUBACK, timeout=30))[0] for _ in range(n)]


async def test_pubacks_leave_in_receive_order_across_shares(settings: Settings, db_url: str,
                                                            uid: str) -> None:
    s = ingest_settings(settings, ingest_batch_max_age_ms=300)
    own, other = _topics(s.topic_prefix, uid, 6)
    register(db_url, uid, {t.split("/")[2]: "grid_meter" for t in own + other})
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    async with _worker_on_peer(s, db_url) as (ing, session):
        # Own and other messages alternate, in one read: the other worker's must wait.
        packets = []
        for k in range(12):
            topic = (own if k % 2 == 0 else other)[k // 2]
            body = orjson.dumps({"ts": (t0 + timedelta(seconds=k)).isoformat(),
                                 "energy_import_wh": k})
            packets.append(w.publish_packet(topic, body, packet_id=k + 1))
        session.send(b"".join(packets))
        assert await _pubacks(session, 12) == list(range(1, 13))
        assert ing.committed_messages == 6
        assert count(db_url, "grid_readings", "device_id LIKE %s", (f"{uid}-m%",)) == 6

        # Only the other worker's messages: acknowledged all the same, nothing stored.
        session.send(b"".join(
            w.publish_packet(topic, b'{"energy_import_wh": 1}', packet_id=100 + k)
            for k, topic in enumerate(other)))
        assert await _pubacks(session, 6) == list(range(100, 106))
        assert ing.unacked == 0 and ing.committed_messages == 6
