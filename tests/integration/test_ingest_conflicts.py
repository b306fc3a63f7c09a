"""A reading whose key is stored with other values is a conflict: dead-lettered, never lost.

Redelivery (same key, same values) makes no second row and no dead letter; the same key with
other values, from an earlier batch or earlier in the same batch, dead-letters its message
with reason ``conflict``, on the staging fallback and on the message-by-message path alike.
Against the real database, for every reading table; end to end through the broker for one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from beffroi.settings import Settings
from beffroi.stack import Stack
from devices.readings import (
    KEY_COLUMNS,
    PG_TYPES,
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    Reading,
    WifiApStats,
    WifiSession,
)
from ingest.batch import Batch
from ingest.metrics import Metrics
from ingest.writer import BatchWriter
from tests.integration.ingest_helpers import (
    await_committed,
    ingest_settings,
    make_dead,
    running_ingestor,
)
from tests.integration.mqtt_helpers import Publisher, count, register

pytestmark = pytest.mark.stack

KEY = b"\x01" * 16  # a client pseudonym (16 bytes)

# Per table: a reading of (device, time) in variants. "base" is what is stored first; "same"
# equals it once stored (a float that only differs past float4's precision); "other" and
# "null" differ in one value (null: a NULL against a value, or a value against a NULL);
# "bad" breaks a CHECK constraint.
Variant = Callable[[str, datetime], Reading]
VARIANTS: dict[str, dict[str, Variant]] = {
    "wifi_ap_stats": {
        "base": lambda d, t: WifiApStats(t, d, 5, 1000, None, True),
        "same": lambda d, t: WifiApStats(t, d, 5, 1000, None, True),
        "other": lambda d, t: WifiApStats(t, d, 5, 1001, None, True),
        "null": lambda d, t: WifiApStats(t, d, 5, 1000, 0, True),
        "bad": lambda d, t: WifiApStats(t, d, -1, None, None, None),
    },
    "wifi_sessions": {
        "base": lambda d, t: WifiSession(t, d, KEY, "associated", -60, None),
        "same": lambda d, t: WifiSession(t, d, KEY, "associated", -60, None),
        "other": lambda d, t: WifiSession(t, d, KEY, "associated", -61, None),
        "null": lambda d, t: WifiSession(t, d, KEY, "associated", -60, 0),
        "bad": lambda d, t: WifiSession(t, d, KEY, "associated", 5, None),
    },
    "parking_spot_state": {
        "base": lambda d, t: ParkingSpotState(t, d, "occupied", 0.1, -100, 7.5),
        "same": lambda d, t: ParkingSpotState(t, d, "occupied", 0.1000000001, -100, 7.5),
        "other": lambda d, t: ParkingSpotState(t, d, "occupied", 0.1000001, -100, 7.5),
        "null": lambda d, t: ParkingSpotState(t, d, "occupied", 0.1, -100, None),
        "bad": lambda d, t: ParkingSpotState(t, d, "free", 2.0, None, None),
    },
    "parking_transactions": {
        "base": lambda d, t: ParkingTransaction(t, d, "tx-1", 250, 3600, "card"),
        "same": lambda d, t: ParkingTransaction(t, d, "tx-1", 250, 3600, "card"),
        "other": lambda d, t: ParkingTransaction(t, d, "tx-1", 300, 3600, "card"),
        "null": lambda d, t: ParkingTransaction(t, d, "tx-1", 250, 3600, "coins"),
        "bad": lambda d, t: ParkingTransaction(t, d, "tx-1", -1, 3600, "card"),
    },
    "parking_meter_status": {
        "base": lambda d, t: ParkingMeterStatus(t, d, 0.8, 0.5, None),
        "same": lambda d, t: ParkingMeterStatus(t, d, 0.8000000001, 0.5, None),
        "other": lambda d, t: ParkingMeterStatus(t, d, 0.8, 0.25, None),
        "null": lambda d, t: ParkingMeterStatus(t, d, 0.8, 0.5, "E42"),
        "bad": lambda d, t: ParkingMeterStatus(t, d, 2.0, None, None),
    },
    "grid_readings": {
        "base": lambda d, t: GridReading(t, d, 1000, None, 420.0, 231.2, None, None, 1.5,
                                         None, None, 50.0),
        "same": lambda d, t: GridReading(t, d, 1000, None, 420.0, 231.20000000001, None, None,
                                         1.5, None, None, 50.0),
        "other": lambda d, t: GridReading(t, d, 1001, None, 420.0, 231.2, None, None, 1.5,
                                          None, None, 50.0),
        "null": lambda d, t: GridReading(t, d, 1000, None, None, 231.2, None, None, 1.5,
                                         None, None, 50.0),
        "bad": lambda d, t: GridReading(t, d, 1000, None, 420.0, 231.2, None, None, 1.5,
                                        None, None, 10.0),
    },
}


def test_every_reading_table_is_covered() -> None:
    assert set(VARIANTS) == set(PG_TYPES) == set(KEY_COLUMNS)


def _batch(uid: str, step: str, readings: list[Reading]) -> Batch:
    batch = Batch(asyncio.get_running_loop())
    now = datetime.now(UTC)
    for i, r in enumerate(readings):
        batch.add(f"test/{uid}/{step}/{i}", f"m{i}".encode(), now, [r])
    return batch


def _dead(db_url: str, uid: str, step: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT topic, reason, detail FROM dead_letters WHERE topic LIKE %s ORDER BY topic",
            (f"test/{uid}/{step}/%",)).fetchall()
    return [(t.rsplit("/", 1)[1], r, d) for t, r, d in rows]


def _stored(db_url: str, table: str, device: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT * FROM {table} WHERE device_id = %s ORDER BY time",
                            (device,)).fetchall()


def _value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return got or 0.0


@pytest.mark.parametrize("table", sorted(VARIANTS))
async def test_conflicts_are_dead_lettered_on_every_path(db_url: str, uid: str,
                                                         table: str) -> None:
    v = VARIANTS[table]
    dev = f"{uid}-d"
    t1 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    t2, t3, t4 = (t1 + timedelta(minutes=m) for m in (1, 2, 3))
    metrics = Metrics()
    writer = BatchWriter(db_url, metrics, make_dead=make_dead)
    try:
        # 1. The first delivery goes in by COPY (no duplicate, no fallback).
        first = _batch(uid, "a", [v["base"](dev, t1)])
        assert await writer.write(first) == {table: 1}
        assert _value(metrics, "beffroi_ingest_duplicate_batches_total", {}) == 0
        stored = _stored(db_url, table, dev)

        # 2. Redeliveries, conflicts with the stored row and inside the batch: the fallback.
        second = _batch(uid, "b", [
            v["base"](dev, t1),   # 0 redelivery
            v["same"](dev, t1),   # 1 equal as stored (float4)
            v["other"](dev, t1),  # 2 conflict with the stored row
            v["null"](dev, t1),   # 3 conflict: NULL against a value (or the reverse)
            v["base"](dev, t2),   # 4 new
            v["other"](dev, t2),  # 5 conflict with message 4 of the same batch
            v["base"](dev, t2),   # 6 redelivery of message 4 within the batch
        ])
        assert await writer.write(second) == {table: 1}
        assert _value(metrics, "beffroi_ingest_duplicate_batches_total", {}) == 1
        assert second.refused == 3
        dead = _dead(db_url, uid, "b")
        assert [(m, r) for m, r, _ in dead] == [("2", "conflict"), ("3", "conflict"),
                                                ("5", "conflict")], dead
        for _, _, detail in dead:
            assert detail.startswith(f"{table} key (device_id={dev}, "), detail
            assert "already stored with other values: " in detail and "(stored " in detail
            assert "\\x01" not in detail  # a client pseudonym is not repeated
        assert _stored(db_url, table, dev)[0] == stored[0]  # the first delivery is kept
        assert len(_stored(db_url, table, dev)) == 2

        # 3. A CHECK violation sends the batch message by message: conflicts still show.
        third = _batch(uid, "c", [
            v["bad"](dev, t3),    # 0 refused by a CHECK
            v["other"](dev, t1),  # 1 conflict
            v["base"](dev, t4),   # 2 new
            v["base"](dev, t2),   # 3 redelivery
            v["other"](dev, t4),  # 4 conflict with message 2
        ])
        assert await writer.write(third) == {table: 1}
        assert third.refused == 3
        assert [(m, r) for m, r, _ in _dead(db_url, uid, "c")] == [
            ("0", "db_rejected"), ("1", "conflict"), ("4", "conflict")]
        assert len(_stored(db_url, table, dev)) == 3

        # 4. The same conflict first met by COPY together with a CHECK violation later in the
        # batch still ends as conflict (fallback refused, then message by message).
        fourth = _batch(uid, "d", [v["other"](dev, t1), v["bad"](dev, t3)])
        assert await writer.write(fourth) == {table: 0}
        assert [(m, r) for m, r, _ in _dead(db_url, uid, "d")] == [
            ("0", "conflict"), ("1", "db_rejected")]
    finally:
        await writer.close()
    assert _value(metrics, "beffroi_ingest_conflicts_total", {"table": table}) == 6
    assert _value(metrics, "beffroi_ingest_rejected_total", {"reason": "conflict"}) == 6
    assert _value(metrics, "beffroi_ingest_rejected_total", {"reason": "db_rejected"}) == 2


async def test_conflict_detail_names_the_differing_values(db_url: str, uid: str) -> None:
    """The detail names each differing column with the new and the stored value."""
    writer = BatchWriter(db_url, Metrics(), make_dead=make_dead)
    t = datetime(2026, 11, 30, 12, tzinfo=UTC)
    dev = f"{uid}-g"
    try:
        await writer.write(_batch(uid, "a", [VARIANTS["grid_readings"]["base"](dev, t)]))
        await writer.write(_batch(uid, "b", [
            GridReading(t, dev, 1001, None, None, 231.2, None, None, 1.5, None, None, 50.0)]))
    finally:
        await writer.close()
    [(_, reason, detail)] = _dead(db_url, uid, "b")
    assert reason == "conflict"
    assert detail == (f"grid_readings key (device_id={uid}-g, time=2026-11-30T12:00:00+00:00) "
                      "already stored with other values: energy_import_wh 1001 (stored 1000), "
                      "power_w null (stored 420)")


def test_key_columns_are_the_unique_indexes(db_url: str) -> None:
    """KEY_COLUMNS (used to compare a duplicate with the stored row) mirror the schema."""
    with psycopg.connect(db_url) as conn:
        for table, keys in KEY_COLUMNS.items():
            rows = conn.execute(
                "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = %s::regclass AND i.indisunique GROUP BY i.indexrelid",
                (table,)).fetchall()
            assert [tuple(r[0]) for r in rows] == [keys], table


async def test_conflict_through_the_broker(stack: Stack, settings: Settings, db_url: str,
                                           uid: str) -> None:
    """A parking payment sent again with another amount is a dead letter, not a lost message."""
    s = ingest_settings(settings)
    meter = f"{uid}-pm"
    register(db_url, uid, {meter: "parking_meter"})
    ts = (datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)).isoformat()
    topic = f"{s.topic_prefix}/parking/{meter}/transaction"

    def tx(amount: int) -> str:
        return json.dumps({"ts": ts, "transaction_id": "tx-7", "amount_cents": amount,
                           "duration_s": 3600, "payment_method": "card"})

    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            await asyncio.to_thread(pub.publish_many, [(topic, tx(250))])
            await await_committed(ing, 1, timeout=20, what="the first payment committed")
            # The same payment again (redelivery), then the same key with another amount.
            await asyncio.to_thread(pub.publish_many, [(topic, tx(250)), (topic, tx(400))])
            await await_committed(ing, 3, timeout=20, what="three messages committed")
            conflicts = ing.metrics.registry.get_sample_value(
                "beffroi_ingest_conflicts_total", {"table": "parking_transactions"})
            assert ing.rejected == 1 and conflicts == 1
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        amounts = conn.execute("SELECT amount_cents FROM parking_transactions "
                               "WHERE device_id = %s", (meter,)).fetchall()
        dead = conn.execute("SELECT reason, detail, convert_from(payload, 'UTF8') "
                            "FROM dead_letters WHERE device_id = %s", (meter,)).fetchall()
    assert amounts == [(250,)]
    assert len(dead) == 1 and dead[0][0] == "conflict", dead
    assert "amount_cents 400 (stored 250)" in dead[0][1] and "tx-7" in dead[0][1]
    assert json.loads(dead[0][2])["amount_cents"] == 400
    assert count(db_url, "dead_letters", "device_id = %s AND reason <> 'conflict'",
                 (meter,)) == 0
