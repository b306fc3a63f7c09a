"""Importing and reading the registry in the real TimescaleDB.

The demo city's ids, DevEUIs and meter ids are fixed, so this module imports it into a
database of its own (created and dropped here) rather than the session's shared one, where
other tests may have imported it already. With an external database (BEFFROI_DATABASE_URL)
the session database is used and counts are taken relative to what it already holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from beffroi import cli
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from devices.democity import DEMO_CITY_FILE
from devices.families import Family
from devices.registry import RegistryFileError, load_registry_file, parse_registry
from tests.conftest import throwaway_database
from tests.integration.ingest_helpers import await_committed, ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import Publisher

pytestmark = pytest.mark.stack

DEMO_SITES = 7
DEMO_DEVICES = 820


@pytest.fixture(scope="module")
def registry_db(stack: Stack, settings: Settings, db_url: str) -> Iterator[str]:
    """A migrated database for this module only (the session one with an external DB)."""
    with throwaway_database(stack, settings, "reg_") as url:
        yield url


@pytest.fixture(scope="module")
def demo(registry_db: str) -> store.ImportResult:
    """The demo city, imported once for the module; returns the first import's result."""
    reg = load_registry_file(DEMO_CITY_FILE)
    with psycopg.connect(registry_db, autocommit=True) as conn:
        before = _count(conn, "devices WHERE id = ANY(%s)", [d.id for d in reg.devices])
        result = store.import_registry(conn, reg)
    assert result.devices_inserted == DEMO_DEVICES - before
    return result


@pytest.fixture
def rconn(registry_db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(registry_db, autocommit=True) as c:
        yield c


def _count(conn: psycopg.Connection[Any], what: str, *params: Any) -> int:
    row = conn.execute(f"SELECT count(*) FROM {what}", params).fetchone()
    assert row is not None
    return int(row[0])


def test_demo_city_import_counts(demo: store.ImportResult,
                                 rconn: psycopg.Connection[Any]) -> None:
    assert demo.sites_inserted + demo.sites_updated == DEMO_SITES
    assert demo.devices_inserted + demo.devices_updated == DEMO_DEVICES
    reg = load_registry_file(DEMO_CITY_FILE)
    ids = [d.id for d in reg.devices]
    assert _count(rconn, "devices WHERE id = ANY(%s)", ids) == DEMO_DEVICES
    assert _count(rconn, "devices WHERE id = ANY(%s) AND family = 'parking_spot'"
                  " AND dev_eui IS NOT NULL", ids) == 300
    assert _count(rconn, "devices WHERE id = ANY(%s) AND length(meter_id) = 14", ids) == 500
    assert _count(rconn, "devices WHERE id = ANY(%s) AND length(meter_serial) = 12", ids) == 500
    row = rconn.execute("SELECT report_interval_s, installed_at, metadata FROM devices"
                        " WHERE id = 'spot-gare-042'").fetchone()
    assert row is not None
    assert row[0] == 600 and row[1].tzinfo is not None and "pmr" in row[2]


def test_reimport_updates_without_duplicates(demo: store.ImportResult,
                                             rconn: psycopg.Connection[Any]) -> None:
    reg = load_registry_file(DEMO_CITY_FILE)
    total = _count(rconn, "devices")
    again = store.import_registry(rconn, reg)
    assert again == store.ImportResult(sites_inserted=0, sites_updated=DEMO_SITES,
                                       devices_inserted=0, devices_updated=DEMO_DEVICES)
    assert _count(rconn, "devices") == total


def test_changed_values_are_updated_and_dry_run_changes_nothing(
        demo: store.ImportResult, rconn: psycopg.Connection[Any]) -> None:
    doc = json.loads(DEMO_CITY_FILE.read_text(encoding="utf-8"))
    ap = next(d for d in doc["devices"] if d["id"] == "ap-heros-02")
    changed = {"devices": [{**ap, "name": "Borne renommée", "report_interval_s": 30}]}
    result = store.import_registry(rconn, parse_registry(changed), dry_run=True)
    assert result.devices_updated == 1
    device = store.get_device(rconn, "ap-heros-02")
    assert device is not None and device.report_interval_s == 60
    store.import_registry(rconn, parse_registry(changed))
    device = store.get_device(rconn, "ap-heros-02")
    assert device is not None
    assert (device.name, device.report_interval_s) == ("Borne renommée", 30)
    store.import_registry(rconn, parse_registry({"devices": [ap]}))


def test_file_with_a_bad_row_imports_nothing(demo: store.ImportResult, tmp_path: Path,
                                             rconn: psycopg.Connection[Any], uid: str) -> None:
    site = {"id": f"sq-{uid}", "kind": "square", "name": "S", "insee": "62041"}
    doc: dict[str, list[dict[str, Any]]] = {
        "sites": [site],
        "devices": [{"id": f"ap-{uid}-{i}", "family": "wifi_ap", "site_id": f"sq-{uid}",
                     "name": f"AP {i}"} for i in range(5)],
    }
    doc["devices"][2]["report_interval_s"] = 0
    doc["devices"][4]["latitude"] = 123.0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    before = _count(rconn, "devices")
    code = cli.main(["devices", "import", str(path)])
    assert code == 1
    with pytest.raises(RegistryFileError) as info:
        load_registry_file(path)
    assert [(e.where, e.record_id) for e in info.value.errors] == [
        ("devices[2]", f"ap-{uid}-2"), ("devices[4]", f"ap-{uid}-4")]
    assert _count(rconn, "devices") == before
    assert _count(rconn, "sites WHERE id = %s", f"sq-{uid}") == 0


def test_database_checks_list_every_problem_and_import_nothing(
        demo: store.ImportResult, rconn: psycopg.Connection[Any], uid: str) -> None:
    taken_eui = next(d.dev_eui for d in load_registry_file(DEMO_CITY_FILE).devices
                     if d.id == "spot-grand-place-011")
    doc = {"devices": [
        {"id": f"ok-{uid}", "family": "parking_spot", "site_id": "parking-gare", "name": "ok"},
        {"id": f"lost-{uid}", "family": "parking_spot", "site_id": f"nowhere-{uid}",
         "name": "lost"},
        {"id": f"twin-{uid}", "family": "parking_spot", "site_id": "parking-gare",
         "name": "twin", "dev_eui": taken_eui},
        {"id": f"misplaced-{uid}", "family": "grid_meter", "site_id": "grand-place",
         "name": "misplaced"},
    ]}
    reg = parse_registry(doc)  # sites outside the file: left for the database check
    with pytest.raises(RegistryFileError) as info:
        store.import_registry(rconn, reg)
    assert sorted(e.record_id or "" for e in info.value.errors) == sorted(
        [f"lost-{uid}", f"twin-{uid}", f"misplaced-{uid}"])
    reasons = " | ".join(e.reason for e in info.value.errors)
    assert f"unknown site 'nowhere-{uid}'" in reasons
    assert "already belongs to device 'spot-grand-place-011'" in reasons
    assert "belongs on a district site" in reasons
    assert store.get_device(rconn, f"ok-{uid}") is None
    # A site whose kind changes must still suit the devices the database has on it.
    gare = next(s for s in load_registry_file(DEMO_CITY_FILE).sites if s.id == "parking-gare")
    moved = {"sites": [{**gare.model_dump(mode="json"), "kind": "district", "parking": None}]}
    with pytest.raises(RegistryFileError, match="does not suit device 'spot-gare-001'"):
        store.import_registry(rconn, parse_registry(moved))


def test_list_filters_and_sites(demo: store.ImportResult,
                                rconn: psycopg.Connection[Any]) -> None:
    spots = store.list_devices(rconn, family=Family.PARKING_SPOT, site="parking-gare")
    assert len(spots) == 100 and all(d.family is Family.PARKING_SPOT for d in spots)
    assert [d.id for d in spots][:2] == ["spot-gare-001", "spot-gare-002"]
    gare = store.list_devices(rconn, site="parking-gare")
    assert len(gare) == 103
    assert {d.family for d in gare} == {Family.PARKING_SPOT, Family.PARKING_METER}
    linky = [d for d in store.list_devices(rconn, family="grid_meter")
             if d.site_id in ("baudimont", "saint-michel")]
    assert len(linky) == 500
    sites = {s.id: s for s in store.list_sites(rconn)}
    assert sites["parking-gare"].capacity == 100
    assert store.device_counts(rconn)["grand-place"] == 5


def test_show_with_latest_message(demo: store.ImportResult, rconn: psycopg.Connection[Any],
                                  registry_db: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    device = store.get_device(rconn, "ap-grand-place-03")
    assert device is not None and device.family is Family.WIFI_AP
    assert store.get_device(rconn, "no-such-device") is None
    rconn.execute("DELETE FROM wifi_ap_stats WHERE device_id = %s", (device.id,))
    assert store.last_message_at(rconn, device) is None
    t = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    rconn.execute("INSERT INTO wifi_ap_stats (time, device_id, clients) VALUES"
                  " (%s, %s, 3), (%s, %s, 4)", (t, device.id, t.replace(hour=11), device.id))
    assert store.last_message_at(rconn, device) == t
    monkeypatch.setenv("BEFFROI_DATABASE_URL", registry_db)
    assert cli.main(["devices", "show", device.id]) == 0
    out = capsys.readouterr().out
    assert "site_id            grand-place" in out
    assert "last_message_at    2024-06-01T12:00:00+00:00" in out
    assert cli.main(["devices", "show", "no-such-device"]) == 1
    assert cli.main(["devices", "list", "--family", "wifi_ap", "--site", "place-des-heros",
                     "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [d["id"] for d in listed] == ["ap-heros-01", "ap-heros-02", "ap-heros-03"]
    assert cli.main(["devices", "sites"]) == 0
    assert "parking-gare" in capsys.readouterr().out


async def test_a_real_frame_matches_a_demo_meter(demo: store.ImportResult, registry_db: str,
                                                 stack: Stack, settings: Settings) -> None:
    """A frame as teleinfo2mqtt publishes it, from a demo meter's serial, is stored under that
    meter; the same frame from a serial the registry does not hold is refused."""
    meter = next(d for d in load_registry_file(DEMO_CITY_FILE).devices
                 if d.id == "linky-saint-michel-0042")
    assert meter.meter_serial is not None and meter.meter_id is not None
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    local = t.astimezone(ZoneInfo("Europe/Paris"))
    summer = local.utcoffset() == timedelta(hours=2)

    def frame(serial: str) -> str:
        return json.dumps({
            "ADSC": {"raw": serial, "value": int(serial)},
            "VTIC": {"raw": "02", "value": 2},
            "DATE": {"raw": "", "value": "", "timestamp": {
                "date": local.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "dst": "summer" if summer else "winter"}},
            "EAST": {"raw": "004512345", "value": 4512345},
            "PRM": {"raw": meter.meter_id, "value": int(meter.meter_id or 0)},
            "SINSTS": {"raw": "01840", "value": 1840}})

    s = ingest_settings(settings)
    with psycopg.connect(registry_db, autocommit=True) as c:
        c.execute("DELETE FROM grid_readings WHERE device_id = %s", (meter.id,))
    pub = Publisher.as_role(stack, "admin")
    try:
        async with running_ingestor(stack, s, registry_db) as ing:
            pub.publish(f"teleinfo/{meter.meter_serial}", frame(meter.meter_serial))
            # Another meter at this delivery point (its PRM in the frame): not this device.
            pub.publish(f"teleinfo/{meter.meter_id}", frame("021999000001"))
            await await_committed(ing, 2, timeout=20, what="two frames committed")
    finally:
        pub.close()
    with psycopg.connect(registry_db) as c:
        rows = c.execute("SELECT time, energy_import_wh FROM grid_readings WHERE device_id = %s",
                         (meter.id,)).fetchall()
        dead = c.execute("SELECT reason FROM dead_letters WHERE topic = %s",
                         (f"teleinfo/{meter.meter_id}",)).fetchall()
    assert rows == [(t, 4512345)]
    assert dead == [("unknown_device",)]


def test_import_refuses_a_serial_held_by_another_device(demo: store.ImportResult,
                                                        rconn: psycopg.Connection[Any]) -> None:
    held = store.get_device(rconn, "linky-baudimont-0001")
    assert held is not None and held.meter_serial is not None
    doc = {"devices": [{"id": "linky-new", "family": "grid_meter", "site_id": "baudimont",
                        "name": "Nouveau", "meter_serial": held.meter_serial}]}
    with pytest.raises(RegistryFileError, match=f"meter serial {held.meter_serial} already "
                       "belongs to device 'linky-baudimont-0001'"):
        store.import_registry(rconn, parse_registry(doc))


def test_parking_places_follow_their_site(demo: store.ImportResult,
                                          rconn: psycopg.Connection[Any]) -> None:
    sites = {s.id: s for s in store.list_sites(rconn)}
    gare = sites["parking-gare"]
    assert gare.parking is not None and gare.parking.national_id == "62041-P-002"
    assert gare.parking.tariff_24h_eur == 6.5 and sites["grand-place"].parking is None
    # A listing imported back keeps the place; a zone imported without it loses it.
    doc = {"sites": [gare.model_dump(mode="json")]}
    store.import_registry(rconn, parse_registry(doc))
    assert store.parking_places(rconn)["parking-gare"] == gare.parking
    try:
        store.import_registry(rconn, parse_registry(
            {"sites": [{**doc["sites"][0], "parking": None}]}))
        assert "parking-gare" not in store.parking_places(rconn)
    finally:
        store.import_registry(rconn, parse_registry(doc))
    with pytest.raises(psycopg.errors.CheckViolation):
        rconn.execute("UPDATE parking_places SET national_id = '62041-9' "
                      "WHERE site_id = 'parking-gare'")
