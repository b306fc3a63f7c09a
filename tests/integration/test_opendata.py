"""Open data on the demo city (Arras) driven through the real broker and ingestor into the
real database: the package validates (Frictionless), the places pass the national schema,
the NGSI-LD entities pass the Smart Data Models schemas, no published cell breaks a
secrecy threshold, nothing identifies a meter, a client, a MAC or a plate, and the routes
serve the same bytes without a token."""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from frictionless import Resource, Schema, validate
from pydantic import SecretStr

from api.maintenance import run_once
from api.opendata.collect import Period
from api.opendata.publish import PACKAGE_FILE, build, write
from beffroi.commands.opendata import publish, publish_if_due
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from devices.democity import DEMO_CITY_FILE
from devices.opendata import ngsild, stationnement
from devices.registry import RegistryFile, SiteKind, parse_registry
from simulators.scenario import Scenario
from simulators.stream import Simulation
from tests.conftest import throwaway_database
from tests.integration.ingest_helpers import ingest_settings, running_ingestor, zone_holding
from tests.integration.mqtt_helpers import await_until, count
from tests.integration.sim_helpers import publish_pooled

pytestmark = pytest.mark.stack

TZ = ZoneInfo("Europe/Paris")
SMALL = "hameau"  # a district of 4 meters: under the delivery-point threshold
MAC_RE = re.compile(r"(?i)\b[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}\b|\b[0-9a-f]{12}\b")
PLATE_RE = re.compile(r"\b[A-HJ-NP-TV-Z]{2}-?[0-9]{3}-?[A-HJ-NP-TV-Z]{2}\b")


def _registry() -> RegistryFile:
    doc = json.loads(DEMO_CITY_FILE.read_text(encoding="utf-8"))
    doc["sites"].append({"id": SMALL, "kind": "district", "name": "Hameau de Baudimont",
                         "insee": "62041", "latitude": 50.2990, "longitude": 2.7560})
    doc["devices"] += [
        {"id": f"linky-{SMALL}-{i}", "family": "grid_meter", "site_id": SMALL,
         "name": f"Compteur Linky Hameau {i}", "meter_id": f"3000000000000{i}",
         "latitude": 50.2990, "longitude": 2.7560,
         "metadata": {"profile": "residential", "phases": 1, "pref_kva": 6, "solar": i == 1}}
        for i in range(1, 5)]
    return parse_registry(doc)


@dataclass
class World:
    """The published package and what it was made from."""

    url: str
    settings: Settings
    period: Period
    out: Path
    files: dict[str, bytes]
    meter_ids: list[str]
    dev_euis: list[str]
    client_keys: list[bytes]

    def rows(self, name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.files[name].decode("utf-8"))))

    def entities(self, name: str) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json.loads(self.files[name])
        return data


async def _drive(stack: Stack, settings: Settings, url: str, reg: RegistryFile,
                 start: datetime) -> list[bytes]:
    """Three hours of the city through the broker into the database; the client keys the
    ingestor stored (to look for them in the files)."""
    s = ingest_settings(settings, timezone=zone_holding(start))
    scenario = Scenario.model_validate({
        "name": "opendata", "start": start.isoformat(), "duration": "3h", "seed": 62041,
        "speed": "max", "wifi": {"peak_visitors_per_ap_hour": 30},
        "parking": {"arrivals_per_spot_hour": 2}})
    sim = Simulation(scenario, reg, prefix=s.topic_prefix)
    msgs = list(sim.messages())
    expected = sim.truth_document()["messages"]["expected_rows"]

    async with running_ingestor(stack, s, url):
        await asyncio.to_thread(publish_pooled, stack, msgs, s.topic_prefix, "sim-opendata")

        async def landed() -> bool:
            for table, n in expected.items():
                if await asyncio.to_thread(count, url, table) != n:
                    return False
            return True

        await await_until(landed, timeout=120, what=f"rows {expected}")
    with psycopg.connect(url) as conn:
        keys = [bytes(r[0]) for r in conn.execute(
            "SELECT DISTINCT client_key FROM wifi_sessions").fetchall()]
    assert keys
    return keys


@pytest.fixture(scope="module")
def world(stack: Stack, settings: Settings, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    reg = _registry()
    now = datetime.now(UTC)
    end = now.replace(minute=0, second=0, microsecond=0)
    start = end - timedelta(hours=3)
    local_start = start.astimezone(TZ)
    period = Period(local_start.replace(hour=0), end.astimezone(TZ), TZ)
    out = tmp_path_factory.mktemp("opendata")
    with throwaway_database(stack, settings, "od") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            store.import_registry(conn, reg)
        keys = asyncio.run(_drive(stack, settings, url, reg, start))

        async def maintain() -> None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await run_once(conn, settings, now=end + timedelta(minutes=1),
                               rollups_only=True)

        asyncio.run(maintain())
        s = settings.model_copy(update={"database_url": SecretStr(url), "opendata_dir": out})
        asyncio.run(publish(url, s, out, period.start, period.end))
        files = {p.name: p.read_bytes() for p in out.iterdir()
                 if not p.name.startswith(".") and not p.name.endswith(".gz")}
        yield World(url, s, period, out, files,
                    [d.meter_id for d in reg.devices if d.meter_id],
                    [d.dev_eui for d in reg.devices if d.dev_eui], keys)


async def _build(w: World, **update: Any) -> dict[str, bytes]:
    async with await psycopg.AsyncConnection.connect(w.url, autocommit=True) as conn:
        return await build(conn, w.settings.model_copy(update=update), w.period,
                           progress=lambda _: None)


# -- formats ------------------------------------------------------------------------------

def test_the_package_validates_with_frictionless(world: World) -> None:
    report = validate(str(world.out / PACKAGE_FILE))
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])[:20]
    doc = json.loads(world.files[PACKAGE_FILE])
    assert doc["licenses"][0]["name"] == "etalab-2.0"
    assert doc["temporal"]["start"] == world.period.start.isoformat()
    assert doc["spatial"]["insee"] == ["62041"] and doc["frequency"] == "daily"
    assert {r["path"] for r in doc["resources"]} | {PACKAGE_FILE} == set(world.files)
    for name in ("occupation-stationnement-horaire.csv", "frequentation-wifi-journaliere.csv",
                 "consommation-electrique-journaliere.csv"):
        assert world.rows(name), name


def test_a_broken_file_fails_the_validation(world: World, tmp_path: Path) -> None:
    """The validation can fail: a wrong cell in a copy of the package is reported."""
    for name, data in world.files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / "consommation-electrique-journaliere.csv"
    text = path.read_text(encoding="utf-8").splitlines()
    cells = text[1].split(",")
    cells[3] = "hier"  # debut is a date-time
    text[1] = ",".join(cells)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    assert not validate(str(tmp_path / PACKAGE_FILE)).valid


def test_places_pass_the_national_schema(world: World) -> None:
    schema_doc = stationnement.official_schema()
    schema = Schema.from_descriptor({k: schema_doc[k] for k in
                                     ("fields", "missingValues", "primaryKey")})
    header = next(csv.reader(io.StringIO(world.files["lieux-stationnement.csv"].decode())))
    resource = Resource(path="lieux-stationnement.csv", basepath=str(world.out), schema=schema)
    report = validate(resource)
    assert report.valid, report.flatten(["rowNumber", "fieldName", "type", "note"])
    assert header == [f["name"] for f in schema_doc["fields"]]
    rows = {r["id"]: r for r in world.rows("lieux-stationnement.csv")}
    assert sorted(rows) == ["62041-P-001", "62041-P-002", "62041-P-003"]
    gare = rows["62041-P-002"]
    assert (gare["nb_places"], gare["nb_pmr"], gare["gratuit"], gare["type_usagers"],
            gare["tarif_24h"], gare["hauteur_max"]) == ("100", "3", "false", "tous", "6.50",
                                                         "N/A")
    geo = json.loads(world.files["lieux-stationnement.geojson"])
    assert [f["id"] for f in geo["features"]] == sorted(rows)
    assert geo["features"][1]["geometry"]["coordinates"] == [2.78185, 50.28667]


def test_entities_pass_the_smart_data_models_schemas(world: World) -> None:
    entities = [e for name in ("ngsi-ld-stationnement.json", "ngsi-ld-wifi.json",
                               "ngsi-ld-energie.json") for e in world.entities(name)]
    errors = [err for e in entities for err in ngsild.schema_errors(e)]
    assert errors == []
    types = [e["type"] for e in entities]
    assert types.count("OnStreetParking") == 3 and types.count("ParkingSpot") == 300
    assert types.count("AccessPoint") == 8 and types.count("WifiPointOfInterest") == 2
    assert types.count("ThreePhaseAcMeasurement") == 3  # districts only, never a meter
    for e in entities:
        assert e["@context"] == ngsild.CONTEXT
    zone = next(e for e in entities if e["id"].endswith(":parking-gare"))
    kv = ngsild.key_values(zone)
    assert kv["totalSpotNumber"] == 100
    assert kv["availableSpotNumber"] + kv["occupiedSpotNumber"] <= 100
    assert zone["availableSpotNumber"]["observedAt"] == ngsild.iso(world.period.end)
    # The schemas can fail: a status outside the model's enumeration is reported.
    spot = next(e for e in entities if e["type"] == "ParkingSpot")
    assert ngsild.schema_errors({**spot, "status": {"type": "Property", "value": "parked"}})


def test_publishing_again_gives_the_same_bytes(world: World, tmp_path: Path) -> None:
    again = asyncio.run(_build(world))
    assert again == world.files
    result = write(world.out, again)  # the gzip copies too: the same bytes again
    assert result.written == [] and len(result.unchanged) == 2 * len(world.files) - 1


# -- privacy ------------------------------------------------------------------------------

def _n(cell: str) -> int | None:
    return None if cell == "" else int(cell)


def test_no_published_cell_breaks_a_threshold(world: World) -> None:
    th = world.settings.opendata_wifi_min_count
    for name in ("frequentation-wifi-journaliere.csv", "frequentation-wifi-mensuelle.csv"):
        for r in world.rows(name):
            counts = [_n(r[c]) for c in ("visiteurs_uniques", "visiteurs_jours",
                                         "associations", "sessions_terminees") if c in r]
            assert all(c is None or c == 0 or c >= th for c in counts), r
            if r["secret_statistique"] == "true":
                assert counts == [None, None, None] and r["duree_moyenne_s"] == ""
    points = world.settings.opendata_energy_min_points
    small = 0
    for name in ("consommation-electrique-journaliere.csv",
                 "consommation-electrique-mensuelle.csv"):
        for r in world.rows(name):
            if r["energie_soutiree_kwh"] or r["energie_injectee_kwh"]:
                assert int(r["nb_points_livraison"]) >= points, r
            if r["id_quartier"] == SMALL and r["nb_points_livraison"] != "0":
                small += 1
                assert r["secret_statistique"] == "true"
                assert r["energie_soutiree_kwh"] == r["energie_injectee_kwh"] == ""
            if r["id_quartier"] == "baudimont":
                assert r["secret_statistique"] == "false" and r["energie_soutiree_kwh"]
    assert small >= 2  # a day and a month of the small district were suppressed
    hameau = next(e for e in world.entities("ngsi-ld-energie.json") if e["id"].endswith(SMALL))
    assert hameau["statisticalSecrecy"]["value"] is True
    assert "totalActiveEnergyImport" not in hameau


def test_zones_and_squares_stand_where_the_registry_puts_them(world: World) -> None:
    sites = {(s.kind, s.id): s for s in _registry().sites}
    entities = [(SiteKind.PARKING_ZONE, e) for e in world.entities("ngsi-ld-stationnement.json")
                if e["type"] in ("OnStreetParking", "OffStreetParking")]
    entities += [(SiteKind.SQUARE, e) for e in world.entities("ngsi-ld-wifi.json")
                 if e["type"] == "WifiPointOfInterest"]
    assert {k for k, _ in entities} == {SiteKind.PARKING_ZONE, SiteKind.SQUARE}
    for kind, e in entities:
        site = sites[(kind, e["id"].rsplit(":", 1)[1])]
        assert e["location"]["value"]["coordinates"] == [site.longitude, site.latitude], e["id"]


def test_nothing_identifies_a_meter_a_client_a_mac_or_a_plate(world: World) -> None:
    for name, data in world.files.items():
        text = data.decode("utf-8")
        assert not [m for m in world.meter_ids if m in text], name
        assert not [e for e in world.dev_euis if e in text.lower()], name
        assert "linky-" not in text, name  # no device id of a household meter
        for key in world.client_keys:
            for form in (key.hex(), base64.b64encode(key).decode(),
                         base64.urlsafe_b64encode(key).decode().rstrip("=")):
                assert form not in text, name
        assert not MAC_RE.search(text), (name, MAC_RE.search(text))
        assert not PLATE_RE.search(text), (name, PLATE_RE.search(text))


def test_suppression_follows_the_threshold_setting(world: World) -> None:
    """Against the unsuppressed numbers (threshold 1): a day is empty and flagged exactly
    when one of its counts lies under the threshold, and a month also when its suppressed
    days could be recovered from it."""
    truth = asyncio.run(_build(world, opendata_wifi_min_count=1))
    cols = ("visiteurs_uniques", "associations", "sessions_terminees")

    def rows(files: dict[str, bytes], name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(files[name].decode("utf-8"))))

    days = [r for r in rows(truth, "frequentation-wifi-journaliere.csv")
            if r["bornes_actives"] != "0"]
    assert days and not any(r["secret_statistique"] == "true" for r in days)
    keys = sorted({min(int(r[c]) for c in cols if int(r[c]) > 0) for r in days})
    assert len(keys) >= 2, keys  # the two squares differ: one is suppressed, one is not
    th = keys[-1]
    got = asyncio.run(_build(world, opendata_wifi_min_count=th))
    by_key = {(r["id_place"], r["debut"]): r
              for r in rows(got, "frequentation-wifi-journaliere.csv")}
    hidden: dict[str, int] = {}
    for t in days:
        r = by_key[(t["id_place"], t["debut"])]
        secret = any(0 < int(t[c]) < th for c in cols)
        assert r["secret_statistique"] == ("true" if secret else "false")
        assert all(r[c] == ("" if secret else t[c]) for c in cols)
        if secret:
            hidden[t["id_place"]] = hidden.get(t["id_place"], 0) + int(t["visiteurs_uniques"])
    assert hidden
    for m in rows(got, "frequentation-wifi-mensuelle.csv"):
        if 0 < hidden.get(m["id_place"], 0) < th:
            assert m["secret_statistique"] == "true" and m["visiteurs_jours"] == ""


# -- routes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(world: World) -> Iterator[TestClient]:
    from api.main import create_app

    with TestClient(create_app(world.settings)) as c:
        yield c


def test_routes_serve_the_same_files_without_a_token(world: World, client: TestClient) -> None:
    for name, data in world.files.items():
        r = client.get(f"/opendata/{name}")
        assert r.status_code == 200, (name, r.text)
        assert r.content == data
        assert r.headers["cache-control"] == "public, max-age=3600"
        again = client.get(f"/opendata/{name}", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    index = client.get("/opendata").json()
    assert len(index["files"]) == len(world.files) - 1
    big = max((n for n in world.files if n.endswith(".csv")), key=lambda n: len(world.files[n]))
    plain = {"Accept-Encoding": "identity"}
    r = client.get(f"/opendata/{big}", headers=plain)
    # A data file is streamed from the disk (a file answer: Last-Modified, byte ranges),
    # its ETag the SHA-256 the package lists, equal to its bytes' own.
    sha = hashlib.sha256(world.files[big]).hexdigest()
    assert r.headers["etag"] == f'"{sha}"' and "content-encoding" not in r.headers
    assert "last-modified" in r.headers and r.headers["accept-ranges"] == "bytes"
    assert r.headers["vary"] == "Accept-Encoding"
    part = client.get(f"/opendata/{big}", headers={"Range": "bytes=0-9"})  # gzip accepted
    assert part.status_code == 206 and part.content == world.files[big][:10]
    assert "content-encoding" not in part.headers


def test_clients_that_accept_gzip_get_the_files_gzip_copy(world: World,
                                                          client: TestClient) -> None:
    """Compressed once when published: the same file in a tenth of the bytes, its own ETag
    (another representation), the file itself to clients that do not accept gzip."""
    big = max((n for n in world.files if n.endswith(".csv")), key=lambda n: len(world.files[n]))
    sha = hashlib.sha256(world.files[big]).hexdigest()
    with client.stream("GET", f"/opendata/{big}", headers={"Accept-Encoding": "gzip"}) as r:
        sent = b"".join(r.iter_raw())
        assert r.headers["content-encoding"] == "gzip" and r.headers["etag"] == f'"{sha}-gzip"'
    assert gzip.decompress(sent) == world.files[big]
    assert len(sent) * 4 < len(world.files[big])
    copies = {p.name for p in world.out.iterdir() if p.name.endswith(".gz")}
    assert copies == {f"{n}.gz" for n in world.files if n != PACKAGE_FILE}
    for name in world.files.keys() - {PACKAGE_FILE}:
        assert gzip.decompress((world.out / f"{name}.gz").read_bytes()) == world.files[name]
    again = client.get(f"/opendata/{big}", headers={"Accept-Encoding": "gzip",
                                                    "If-None-Match": f'"{sha}-gzip"'})
    assert again.status_code == 304
    for refused in ("gzip;q=0", "br", "identity, gzip;q=0.0"):
        r = client.get(f"/opendata/{big}", headers={"Accept-Encoding": refused})
        assert "content-encoding" not in r.headers and r.content == world.files[big], refused
    assert client.get("/opendata/secret.csv").status_code == 404
    assert client.get("/opendata/..%2Fports.json").status_code in (404, 422)
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/opendata", "/opendata/{name}", "/ngsi-ld/v1/entities"} <= set(paths)


def test_ngsi_ld_feed(world: World, client: TestClient) -> None:
    r = client.get("/ngsi-ld/v1/entities", params={"type": "OnStreetParking"})
    assert r.status_code == 200, r.text
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in r.headers["link"]
    assert r.headers["cache-control"] == "public, max-age=60"
    zones = r.json()
    assert len(zones) == 3 and all(not ngsild.schema_errors(e) for e in zones)
    kv = client.get("/ngsi-ld/v1/entities", params={
        "type": "OnStreetParking", "options": "keyValues", "q": "totalSpotNumber>=100"}).json()
    assert sorted(e["totalSpotNumber"] for e in kv) == [100, 130]
    page = client.get("/ngsi-ld/v1/entities", params={"type": "ParkingSpot", "limit": 50,
                                                      "offset": 280, "count": "true"})
    assert len(page.json()) == 20 and page.headers["ngsild-results-count"] == "300"
    one = zones[0]["id"]
    assert client.get(f"/ngsi-ld/v1/entities/{one}").json()["id"] == one
    ld = client.get("/ngsi-ld/v1/entities", params={"id": one},
                    headers={"Accept": "application/ld+json"})
    assert ld.json()[0]["@context"] == ngsild.CONTEXT
    assert client.get("/ngsi-ld/v1/entities").status_code == 400
    assert client.get("/ngsi-ld/v1/entities", params={"q": "oops"}).status_code == 400
    energy = client.get("/ngsi-ld/v1/entities",
                        params={"type": "ThreePhaseAcMeasurement"}).json()
    assert len(energy) == 3 and not [e for e in energy if "linky" in e["id"]]


def test_open_data_can_be_switched_off_and_is_rate_limited(world: World) -> None:
    from api.main import create_app

    off = world.settings.model_copy(update={"opendata_enabled": False})
    with TestClient(create_app(off)) as c:
        assert c.get(f"/opendata/{PACKAGE_FILE}").status_code == 404
        assert c.get("/ngsi-ld/v1/entities?type=ParkingSpot").status_code == 404
    limited = world.settings.model_copy(update={"opendata_rate_per_minute": 3})
    with TestClient(create_app(limited)) as c:
        answers = [c.get(f"/opendata/{PACKAGE_FILE}") for _ in range(7)]
    # Three per minute: 7 requests span at most two minutes, so at least one is refused.
    codes = [a.status_code for a in answers]
    assert codes[:3] == [200, 200, 200] and 429 in codes, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["error"] == "too_many_requests" and refused.headers["retry-after"]


def test_maintain_publishes_once_a_day(world: World, tmp_path: Path) -> None:
    s = world.settings.model_copy(update={"opendata_dir": tmp_path, "opendata_days": 1})
    now = datetime.now(TZ)
    assert asyncio.run(publish_if_due(world.url, s, now))
    doc = json.loads((tmp_path / PACKAGE_FILE).read_text(encoding="utf-8"))
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert doc["temporal"]["end"] == midnight.isoformat()
    assert not asyncio.run(publish_if_due(world.url, s, now))  # already published today
