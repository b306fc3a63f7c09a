"""Bad input: each kind goes to dead_letters with its reason, and the ingestor carries on."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.ingest_helpers import await_committed, ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import Publisher, count, register

pytestmark = pytest.mark.stack

MAC = "02:ab:cd:ef:12:34"


async def test_each_rejection_has_its_reason(stack: Stack, settings: Settings, db_url: str,
                                             uid: str) -> None:
    s = ingest_settings(settings)
    ap, spot, old = f"{uid}-ap", f"{uid}-spot", f"{uid}-retired"
    register(db_url, uid, {ap: "wifi_ap", spot: "parking_spot", old: "wifi_ap"})
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET active = false WHERE id = %s", (old,))
    now = datetime.now(UTC)
    good = json.dumps({"clients": 3})
    cases: list[tuple[str, str, bytes | str]] = [
        ("unknown_device", f"{s.topic_prefix}/wifi/{uid}-nobody/stats", good),
        ("family_mismatch", f"{s.topic_prefix}/parking/{ap}/state", json.dumps({"state": "free"})),
        ("unknown_topic", f"{s.topic_prefix}/wifi/{ap}/bogus", good),
        ("unknown_topic", f"{s.topic_prefix}/{uid}/x", good),
        ("inactive_device", f"{s.topic_prefix}/wifi/{old}/stats", good),
        ("invalid_json", f"{s.topic_prefix}/wifi/{ap}/stats", b"{not json"),
        ("not_utf8", f"{s.topic_prefix}/wifi/{ap}/stats", b'{"clients": "\xff\xfe"}'),
        ("invalid_payload", f"{s.topic_prefix}/wifi/{ap}/stats", json.dumps({"radio": "up"})),
        ("out_of_range", f"{s.topic_prefix}/wifi/{ap}/stats", json.dumps({"clients": -5})),
        ("out_of_range", f"{s.topic_prefix}/parking/{spot}/state",
         json.dumps({"state": "free", "battery": 7})),
        ("bad_timestamp", f"{s.topic_prefix}/wifi/{ap}/stats",
         json.dumps({"ts": "2026-01-01T10:00:00", "clients": 1})),
        ("future_timestamp", f"{s.topic_prefix}/wifi/{ap}/stats",
         json.dumps({"ts": (now + timedelta(days=1)).isoformat(), "clients": 1})),
        ("too_old", f"{s.topic_prefix}/wifi/{ap}/stats",
         json.dumps({"ts": "2001-01-01T00:00:00Z", "clients": 1})),
        ("oversized", f"{s.topic_prefix}/wifi/{ap}/stats", b"[" + b" " * 70_000 + b"]"),
        ("senml_invalid", f"{s.topic_prefix}/wifi/{ap}/stats",
         json.dumps([{"bn": f"{ap}:", "n": "clients", "u": "count", "v": 3, "x_": 1}])),
        ("invalid_payload", f"{s.topic_prefix}/wifi/{ap}/sessions",
         json.dumps({"client_mac": MAC, "event": "roaming"})),
    ]
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            # Bad messages and a good one in the same batch: the good one is still written.
            await asyncio.to_thread(pub.publish_many, [(t, p) for _, t, p in cases]
                                    + [(f"{s.topic_prefix}/wifi/{ap}/stats", good)])
            await await_committed(ing, len(cases) + 1, timeout=20, what="every message committed")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, reason, detail, payload FROM dead_letters WHERE topic LIKE %s "
            "ORDER BY received_at", (f"%{uid}%",)).fetchall()
    got = sorted((r[1], r[0]) for r in rows)
    want = sorted((reason, topic) for reason, topic, _ in cases)
    assert got == want
    for _, _, detail, payload in rows:
        assert detail, "every rejection has a human-readable detail"
        assert MAC not in detail and MAC.encode() not in bytes(payload)
    oversized = next(r for r in rows if r[1] == "oversized")
    assert len(bytes(oversized[3])) <= settings.ingest_dead_letter_max_bytes
    assert count(db_url, "wifi_ap_stats", "device_id = %s", (ap,)) == 1
