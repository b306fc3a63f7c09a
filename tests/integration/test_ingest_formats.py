"""Gateways and formats end to end, metrics, and the privacy guarantees."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import generate_latest

from beffroi.settings import Settings
from beffroi.stack import Stack
from devices.errors import DecodeError
from ingest.keys import KeyRing
from tests.integration.ingest_helpers import (
    await_committed,
    ingest_settings,
    running_ingestor,
    zone_holding,
)
from tests.integration.mqtt_helpers import Publisher, register

pytestmark = pytest.mark.stack


def _ids(db_url: str, uid: str) -> tuple[str, str]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT dev_eui FROM devices WHERE id = %s),"
            " (SELECT meter_serial FROM devices WHERE id = %s)",
            (f"{uid}-spot", f"{uid}-linky")).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_gateways_senml_and_metrics(stack: Stack, settings: Settings, db_url: str,
                                          uid: str) -> None:
    s = ingest_settings(settings)
    register(db_url, uid, {f"{uid}-spot": "parking_spot", f"{uid}-linky": "grid_meter",
                           f"{uid}-ap": "wifi_ap"})
    dev_eui, serial = _ids(db_url, uid)
    uplink = {
        "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "time": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
        "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                       "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
                       "deviceProfileName": "parking-sensor", "deviceName": f"{uid}-spot",
                       "devEui": dev_eui, "tags": {}},
        "devAddr": "01fa2b4c", "fCnt": 421, "fPort": 1,
        "data": base64.b64encode(b"\x01\x5a").decode(),
        "object": {"occupied": True, "battery": 0.93},
        "rxInfo": [{"gatewayId": "0016c001ff10a235", "rssi": -103, "snr": 6.5},
                   {"gatewayId": "0016c001ff10a236", "rssi": -97, "snr": 8.0}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {"bandwidth": 125000}}},
    }
    tic = {"ADSC": {"raw": serial, "value": int(serial)},
           "EAST": {"raw": "012345678", "value": 12345678},
           "SINSTS": {"raw": "00850", "value": 850},
           "URMS1": {"raw": "231", "value": 231}, "IRMS1": {"raw": "004", "value": 4}}
    senml = [{"bn": f"{uid}-ap:", "bt": datetime.now(UTC).timestamp() - 60, "n": "clients",
              "u": "count", "v": 7}, {"n": "rx", "u": "B", "v": 1234}]
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ContentType = "application/senml+json"
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            pub.publish(f"application/demo/device/{dev_eui}/event/up", json.dumps(uplink))
            pub.publish(f"teleinfo/{serial}", json.dumps(tic))
            pub.publish(f"{s.topic_prefix}/wifi/{uid}-ap/stats", json.dumps(senml),
                        properties=props)
            await await_committed(ing, 3, timeout=20, what="three messages committed")
            metrics = generate_latest(ing.metrics.registry).decode()
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        spot = conn.execute("SELECT state, battery, rssi_dbm FROM parking_spot_state "
                            "WHERE device_id = %s", (f"{uid}-spot",)).fetchall()
        grid = conn.execute("SELECT energy_import_wh, voltage_l1_v FROM grid_readings "
                            "WHERE device_id = %s", (f"{uid}-linky",)).fetchall()
        wifi = conn.execute("SELECT clients, rx_bytes FROM wifi_ap_stats WHERE device_id = %s",
                            (f"{uid}-ap",)).fetchall()
    assert [(st, round(b, 2), r) for st, b, r in spot] == [("occupied", 0.93, -97)]
    assert grid == [(12345678, 231.0)]
    assert wifi == [(7, 1234)]
    assert 'beffroi_ingest_messages_total{result="accepted"} 3.0' in metrics
    assert 'beffroi_ingest_readings_written_total{table="grid_readings"} 1.0' in metrics


def _mac(rng: random.Random) -> str:
    return ":".join(f"{rng.randrange(256):02x}" for _ in range(6))


async def test_no_mac_address_is_stored_or_logged(stack: Stack, settings: Settings,
                                                  db_url: str, uid: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    now = datetime.now(UTC)
    s = ingest_settings(settings, timezone=zone_holding(now - timedelta(minutes=30)))
    caplog.set_level(logging.DEBUG)
    aps = [f"{uid}-ap{i}" for i in range(3)]
    register(db_url, uid, dict.fromkeys(aps, "wifi_ap"))
    rng = random.Random(7)
    macs = [_mac(rng) for _ in range(200)]
    msgs = []
    for i, mac in enumerate(macs):
        ap = aps[i % 3]
        t = now - timedelta(minutes=30) + timedelta(seconds=i)
        msgs.append((f"{s.topic_prefix}/wifi/{ap}/sessions", json.dumps(
            {"ts": t.isoformat(), "client_mac": mac.upper() if i % 2 else mac,
             "event": "associated", "rssi": -60})))
        # Rejected messages carrying the MAC too: a bad event, and a bad rssi.
        msgs.append((f"{s.topic_prefix}/wifi/{ap}/sessions", json.dumps(
            {"ts": t.isoformat(), "client_mac": mac, "event": "roaming"})))
        msgs.append((f"{s.topic_prefix}/wifi/{ap}/sessions", json.dumps(
            {"client_mac": mac, "event": "associated", "rssi": 12})))
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            await asyncio.to_thread(pub.publish_many, msgs)
            await await_committed(ing, len(msgs), timeout=30, what="every wifi message committed")
    finally:
        pub.close()
    hexes = {m.replace(":", "") for m in macs}
    raw = {bytes.fromhex(h) for h in hexes}
    pattern = re.compile("|".join(re.escape(h) for h in hexes))
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM wifi_sessions WHERE device_id LIKE %s",
                            (f"{uid}-%",)).fetchone() == (len(macs),)
        # The refused messages that carried a MAC are in the scan below too.
        assert conn.execute("SELECT count(*) FROM dead_letters WHERE topic LIKE %s",
                            (f"%/{uid}-%",)).fetchone() == (2 * len(macs),)
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_type = 'BASE TABLE'").fetchall()
        for (table,) in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        b = bytes(value)
                        assert not any(m in b for m in raw), table
                        text = b.decode("latin-1").lower()
                    else:
                        text = str(value).lower()
                    flat = re.sub(r"[^0-9a-f]", "", text)
                    assert not pattern.search(flat), (table, text[:200])
    assert caplog.records  # the ingestor's own log lines were captured and scanned
    logged = re.sub(r"[^0-9a-f]", "", caplog.text.lower())
    assert not pattern.search(logged)


async def test_keys_are_shared_by_workers_and_destroyed_after_their_day(db_url: str) -> None:
    tz = ZoneInfo("Europe/Paris")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM privacy_keys")
        yesterday_noon = datetime(2026, 3, 28, 12, tzinfo=tz)   # the day before the DST change
        worker_a, worker_b = KeyRing(tz), KeyRing(tz)
        await worker_a.refresh(conn, yesterday_noon)
        await worker_b.refresh(conn, yesterday_noon)
        assert worker_a.keys == worker_b.keys and list(worker_a.keys) == [date(2026, 3, 28)]
        old_key = worker_a.keys[date(2026, 3, 28)]
        # Two minutes before midnight, tomorrow's key is prepared so all workers hold it.
        await worker_a.refresh(conn, datetime(2026, 3, 28, 23, 59, tzinfo=tz))
        assert set(worker_a.keys) == {date(2026, 3, 28), date(2026, 3, 29)}
        # Once the day is over, its key is gone from the database and from memory.
        await worker_b.refresh(conn, datetime(2026, 3, 29, 0, 30, tzinfo=tz))
        cur = await conn.execute("SELECT day, key FROM privacy_keys")
        rows = await cur.fetchall()
        assert [r[0] for r in rows] == [date(2026, 3, 29)]
        assert all(bytes(r[1]) != old_key for r in rows)
        assert list(worker_b.keys) == [date(2026, 3, 29)]
        # A late message from the destroyed day is refused, never hashed with the current
        # key (which would link it to the new day's clients).
        late = datetime(2026, 3, 28, 23, 0, tzinfo=tz)
        with pytest.raises(DecodeError) as err:
            worker_b.key_for(late)
        assert err.value.reason == "too_old"


async def test_bridges_under_their_own_topic_level(stack: Stack, settings: Settings,
                                                   db_url: str, uid: str) -> None:
    """With BEFFROI_BRIDGE_PREFIX the ingestor reads ChirpStack and Linky bridges under that
    level only (a LoRaWAN network server shared with other services)."""
    bridge = f"lns{uid[-6:]}".replace("_", "-")
    s = ingest_settings(settings, bridge_prefix=bridge)
    register(db_url, uid, {f"{uid}-spot": "parking_spot", f"{uid}-linky": "grid_meter"})
    dev_eui, serial = _ids(db_url, uid)

    def uplink(minutes: int, occupied: bool) -> str:
        return json.dumps({
            "time": (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(),
            "deviceInfo": {"devEui": dev_eui, "deviceName": f"{uid}-spot"},
            "fCnt": minutes, "fPort": 1, "object": {"occupied": occupied}})

    tic = {"ADSC": {"raw": serial, "value": int(serial)},
           "EAST": {"raw": "000001000", "value": 1000}}
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            # at the root: not this ingestor's topics any more (published first)
            pub.publish(f"application/other-service/device/{dev_eui}/event/up",
                        uplink(5, False))
            pub.publish(f"{bridge}/application/parking/device/{dev_eui}/event/up",
                        uplink(3, True))
            pub.publish(f"{bridge}/teleinfo/{serial}", json.dumps(tic))
            await await_committed(ing, 2, timeout=20, what="two bridged messages committed")
            metrics = generate_latest(ing.metrics.registry).decode()
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        spot = conn.execute("SELECT state FROM parking_spot_state WHERE device_id = %s",
                            (f"{uid}-spot",)).fetchall()
        grid = conn.execute("SELECT energy_import_wh FROM grid_readings WHERE device_id = %s",
                            (f"{uid}-linky",)).fetchall()
    assert spot == [("occupied",)] and grid == [(1000,)]
    assert 'beffroi_ingest_messages_total{result="accepted"} 2.0' in metrics
    assert 'beffroi_ingest_messages_total{result="rejected"} 0.0' in metrics


def test_bridge_prefix_must_differ_from_the_topic_prefix(settings: Settings) -> None:
    with pytest.raises(ValueError, match="bridge_prefix"):
        Settings.model_validate({**settings.model_dump(), "bridge_prefix": "city",
                                 "topic_prefix": "city"})


PARIS = ZoneInfo("Europe/Paris")


def _last_change_day(month: int, now: datetime) -> date:
    """The most recent last Sunday of ``month`` (a DST change day in the EU) before today."""
    for year in (now.year, now.year - 1):
        last = date(year, month, 31)
        sunday = last - timedelta(days=(last.weekday() - 6) % 7)
        if sunday < now.date():
            return sunday
    raise AssertionError("unreachable: a change day falls in every year")


def _wall(day: date, hour: int, minute: int, second: int = 0) -> str:
    return f"{day:%y%m%d}{hour:02d}{minute:02d}{second:02d}"


async def test_linky_frames_across_dst_changes(stack: Stack, settings: Settings, db_url: str,
                                               uid: str) -> None:
    """Frames stamped with the meter's local clock land at their true UTC instant on both
    change days, and the two 02:30 of the October night are two rows: teleinfo2mqtt's shape
    on the bridge topic, raw ``DATE`` text on the meter's own topic."""
    s = ingest_settings(settings)
    register(db_url, uid, {f"{uid}-linky": "grid_meter", f"{uid}-linky2": "grid_meter"})
    _, serial = _ids(db_url, uid)
    now = datetime.now(UTC)
    october, march = _last_change_day(10, now), _last_change_day(3, now)
    # (flag, local wall clock, expected UTC from the tz database, energy index)
    stamps = [
        ("E", _wall(october, 2, 30), datetime(october.year, 10, october.day, 2, 30,
                                                tzinfo=PARIS, fold=0)),
        ("H", _wall(october, 2, 30), datetime(october.year, 10, october.day, 2, 30,
                                                tzinfo=PARIS, fold=1)),
        ("H", _wall(october, 12, 0), datetime(october.year, 10, october.day, 12, 0,
                                                tzinfo=PARIS)),
        ("H", _wall(march, 1, 59, 59), datetime(march.year, 3, march.day, 1, 59, 59,
                                                  tzinfo=PARIS)),
        ("E", _wall(march, 3, 0), datetime(march.year, 3, march.day, 3, 0, tzinfo=PARIS)),
        ("E", _wall(march, 12, 0), datetime(march.year, 3, march.day, 12, 0, tzinfo=PARIS)),
    ]
    expected = [(t.astimezone(UTC), 1000 + i) for i, (_, _, t) in enumerate(stamps)]
    assert expected[1][0] - expected[0][0] == timedelta(hours=1)  # the repeated hour

    def teleinfo2mqtt(flag: str, wall: str, index: int) -> str:
        iso = (f"20{wall[0:2]}-{wall[2:4]}-{wall[4:6]}T{wall[6:8]}:{wall[8:10]}:"
               f"{wall[10:12]}.000Z")  # the local clock fields written as if UTC
        return json.dumps({
            "ADSC": {"raw": serial, "value": int(serial)},
            "DATE": {"raw": "", "value": "", "timestamp": {
                "date": iso, "dst": "summer" if flag == "E" else "winter"}},
            "EAST": {"raw": f"{index:09d}", "value": index}})

    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            for i, (flag, wall, _) in enumerate(stamps):
                pub.publish(f"teleinfo/{serial}", teleinfo2mqtt(flag, wall, 1000 + i))
                pub.publish(f"{s.topic_prefix}/grid/{uid}-linky2/reading",
                            json.dumps({"DATE": flag + wall, "EAST": f"{1000 + i:09d}"}))
            await await_committed(ing, 2 * len(stamps), timeout=20, what="every frame committed")
            metrics = generate_latest(ing.metrics.registry).decode()
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        for device in (f"{uid}-linky", f"{uid}-linky2"):
            rows = conn.execute("SELECT time, energy_import_wh FROM grid_readings"
                                " WHERE device_id = %s ORDER BY time", (device,)).fetchall()
            assert rows == sorted(expected), device
    assert f'beffroi_ingest_messages_total{{result="accepted"}} {2.0 * len(stamps)}' in metrics


async def test_chirpstack_event_naming_another_device_is_refused(
        stack: Stack, settings: Settings, db_url: str, uid: str) -> None:
    """An uplink whose deviceInfo.devEui differs from its topic's DevEUI is dead-lettered,
    although both DevEUIs are registered; the matching one is stored."""
    s = ingest_settings(settings)
    register(db_url, uid, {f"{uid}-a": "parking_spot", f"{uid}-b": "parking_spot"})
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT id, dev_eui FROM devices WHERE id = ANY(%s)",
                            ([f"{uid}-a", f"{uid}-b"],)).fetchall()
    euis: dict[str, str] = dict(rows)

    def uplink(dev_eui: str) -> str:
        return json.dumps({"time": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
                           "deviceInfo": {"devEui": dev_eui}, "object": {"occupied": True}})

    topic_b = f"application/parking/device/{euis[f'{uid}-b']}/event/up"
    topic_a = f"application/parking/device/{euis[f'{uid}-a'].upper()}/event/up"
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, db_url) as ing:
            pub.publish(topic_b, uplink(euis[f"{uid}-a"]))  # a's event on b's topic
            pub.publish(topic_a, uplink(euis[f"{uid}-a"]))  # a's event on its own topic
            await await_committed(ing, 2, timeout=20, what="two uplinks committed")
    finally:
        pub.close()
    with psycopg.connect(db_url) as conn:
        stored = conn.execute("SELECT device_id FROM parking_spot_state WHERE device_id ="
                              " ANY(%s)", ([f"{uid}-a", f"{uid}-b"],)).fetchall()
        dead = conn.execute("SELECT reason, detail, device_id FROM dead_letters"
                            " WHERE topic = %s", (topic_b,)).fetchall()
    assert stored == [(f"{uid}-a",)]
    assert dead == [("invalid_payload", "deviceInfo.devEui differs from the topic's DevEUI",
                     None)]
