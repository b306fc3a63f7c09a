"""The ingestor end to end, through the real broker into the real database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from tests.integration.ingest_helpers import (
    await_committed,
    ingest_settings,
    running_ingestor,
    zone_holding,
)
from tests.integration.mqtt_helpers import Publisher, await_until, count, register

pytestmark = pytest.mark.stack

TABLES = ("wifi_ap_stats", "wifi_sessions", "parking_spot_state", "parking_transactions",
          "parking_meter_status", "grid_readings")


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


async def _count(db_url: str, table: str, where: str, params: tuple[object, ...]) -> int:
    return await asyncio.to_thread(count, db_url, table, where, params)


async def test_every_message_kind_lands_once(stack: Stack, settings: Settings, db_url: str,
                                             uid: str) -> None:
    ap, spot, meter, linky = f"{uid}-ap", f"{uid}-spot", f"{uid}-pm", f"{uid}-linky"
    register(db_url, uid, {ap: "wifi_ap", spot: "parking_spot", meter: "parking_meter",
                           linky: "grid_meter"})
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    s = ingest_settings(settings, timezone=zone_holding(t0))
    pre = s.topic_prefix
    msgs = [
        (f"{pre}/wifi/{ap}/stats", {"ts": _iso(t0), "clients": 12, "rx_bytes": 1000,
                                   "tx_bytes": 2000, "radio": "up"}),
        (f"{pre}/wifi/{ap}/sessions", {"ts": _iso(t0), "client_mac": "02:11:22:33:44:55",
                                      "event": "associated", "rssi": -61}),
        (f"{pre}/parking/{spot}/state", {"ts": _iso(t0), "state": "occupied", "battery": 0.9}),
        (f"{pre}/parking/{meter}/transaction", {"ts": _iso(t0), "transaction_id": "tx-1",
                                               "amount_cents": 250, "duration_s": 3600,
                                               "payment_method": "card"}),
        (f"{pre}/parking/{meter}/status", {"ts": _iso(t0), "battery": 0.8, "paper": 0.5,
                                          "fault": None}),
        (f"{pre}/grid/{linky}/reading", [
            {"ts": _iso(t0 + timedelta(minutes=i * 10)), "energy_import_wh": 1000 + i,
             "power_w": 420.0, "voltage_l1_v": 231.2} for i in range(3)]),
    ]
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            for topic, body in msgs:
                await asyncio.to_thread(pub.publish_many, [(topic, json.dumps(body))])
            expected = dict.fromkeys(TABLES, 1) | {"grid_readings": 3}

            async def all_there() -> bool:
                for table, n in expected.items():
                    if await _count(db_url, table, "device_id LIKE %s", (f"{uid}-%",)) < n:
                        return False
                return True

            await await_until(all_there, timeout=20, what="one row per message")
            # Publish everything again: redelivery must not make a second row.
            await asyncio.to_thread(pub.publish_many,
                                    [(t, json.dumps(b)) for t, b in msgs])
            await await_committed(ing, 2 * len(msgs), timeout=20,
                                  what="the second delivery to be committed")
            assert ing.rejected == 0
    finally:
        pub.close()
    for table, n in expected.items():
        got = await _count(db_url, table, "device_id LIKE %s", (f"{uid}-%",))
        assert got == n, (table, got)
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT clients, rx_bytes, radio_up FROM wifi_ap_stats "
                           "WHERE device_id = %s", (ap,)).fetchone()
        key = conn.execute("SELECT client_key FROM wifi_sessions WHERE device_id = %s",
                           (ap,)).fetchone()
    assert row == (12, 1000, True)
    assert key is not None and len(key[0]) == 16 and bytes.fromhex("021122334455") not in key[0]
