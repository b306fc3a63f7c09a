"""Through the broker: a wifi session older than its key's life is refused, not re-hashed."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.ingest_helpers import await_committed, ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import Publisher, register

pytestmark = pytest.mark.stack

MAC = "02:00:5e:10:00:07"


async def test_session_26_hours_old_is_dead_lettered_too_old(stack: Stack, settings: Settings,
                                                             db_url: str, uid: str) -> None:
    s = ingest_settings(settings)
    ap = f"{uid}-ap"
    register(db_url, uid, {ap: "wifi_ap"})
    now = datetime.now(UTC).replace(microsecond=0)
    topic = f"{s.topic_prefix}/wifi/{ap}/sessions"

    def session(at: datetime) -> str:
        return json.dumps({"ts": at.isoformat(), "client_mac": MAC, "event": "associated"})

    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            await asyncio.to_thread(pub.publish_many, [
                (topic, session(now - timedelta(hours=26))), (topic, session(now))])
            await await_committed(ing, 2, timeout=20, what="both sessions committed")
            refused = ing.metrics.registry.get_sample_value(
                "beffroi_ingest_rejected_total", {"reason": "too_old"})
            assert ing.rejected == 1 and refused == 1
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        times = conn.execute("SELECT time FROM wifi_sessions WHERE device_id = %s",
                             (ap,)).fetchall()
        dead = conn.execute("SELECT reason, detail, payload FROM dead_letters "
                            "WHERE device_id = %s", (ap,)).fetchall()
    assert times == [(now,)]
    assert [d[0] for d in dead] == ["too_old"], dead
    raw = bytes.fromhex(MAC.replace(":", ""))
    assert MAC not in dead[0][1] and MAC.encode() not in dead[0][2] and raw not in dead[0][2]
