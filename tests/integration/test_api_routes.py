"""The /v1 API against the real database: auth, hostile parameters, DST days, empty
ranges, CSV, counter resets, silent sensors (synthetic rows inserted directly)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.tokens import create_token, revoke_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from tests.conftest import random_tag
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

PARIS_DST_END = "2025-10-26"  # 25-hour day
PARIS_DST_START = "2025-03-30"  # 23-hour day


class World:
    """A client, tokens, and the ids of a tiny city unique to this module."""

    def __init__(self, client: TestClient, uid: str, tokens: dict[str, str]) -> None:
        self.client = client
        self.p = f"{uid}-"
        self.tokens = tokens

    def get(self, url: str, *, token: str = "read", **kw: Any) -> Any:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {self.tokens[token]}"
        return self.client.get(url, headers=headers, **kw)


def _insert(conn: psycopg.Connection[Any], table: str, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                        f"({', '.join(['%s'] * len(cols))})", [tuple(r[c] for c in cols)
                                                               for r in rows])
        # Written past the ingestor: device health learns of them as the maintenance
        # job's reconciliation does.
        cur.execute("SELECT metric.device_last_seen_reconcile()")


def _seed(conn: psycopg.Connection[Any], p: str) -> None:
    store.import_registry(conn, tiny_city(prefix=p))
    # Grid: linky-1 reports every 10 minutes across both DST days with 600 Wh per
    # reading (3.6 kW), and its index resets at 2025-10-27 12:00.
    rows = []
    for day in (PARIS_DST_START, PARIS_DST_END, "2025-10-27"):
        t = datetime.fromisoformat(day).replace(tzinfo=UTC) - timedelta(hours=3)
        for k in range(6 * 30):
            rows.append({"time": t + timedelta(minutes=10 * k)})
    rows = sorted({r["time"]: r for r in rows}.values(), key=lambda r: r["time"])
    reset_at = datetime(2025, 10, 27, 11, tzinfo=UTC)
    index = 1_000_000
    out = []
    for r in rows:
        index += 600
        if r["time"] == reset_at:
            index = 0  # replaced meter: counts from 0 again
        out.append({"time": r["time"], "device_id": f"{p}linky-1", "energy_import_wh": index,
                    "energy_export_wh": 0, "power_w": 3600.0, "voltage_l1_v": 231.0})
    _insert(conn, "grid_readings", out)
    # Parking: spot-1 occupied 10:00-10:30 UTC then free until 11:00 with heartbeats;
    # spot-2 reports once at 10:00 then goes silent (unknown after 3 heartbeats).
    base = datetime(2025, 11, 18, 10, tzinfo=UTC)
    _insert(conn, "parking_spot_state", [
        {"time": base, "device_id": f"{p}spot-1", "state": "occupied"},
        {"time": base + timedelta(minutes=30), "device_id": f"{p}spot-1", "state": "free"},
        {"time": base + timedelta(minutes=40), "device_id": f"{p}spot-1", "state": "free"},
        {"time": base + timedelta(minutes=50), "device_id": f"{p}spot-1", "state": "free"},
        {"time": base, "device_id": f"{p}spot-2", "state": "free"},
    ])


@pytest.fixture(scope="module")
def world(stack: Stack, settings: Settings, db_url: str) -> Iterator[World]:

    from api.main import create_app

    uid = random_tag("a")
    tokens: dict[str, str] = {}
    with psycopg.connect(db_url) as conn:
        for name, scopes in (("read", ["read"]), ("operate", ["operate"]),
                             ("admin", ["admin"]), ("revoked", ["read"])):
            tokens[name], _info = create_token(conn, f"{uid}-{name}", scopes)
        revoke_token(conn, name=f"{uid}-revoked")
    with psycopg.connect(db_url, autocommit=True) as conn:
        _seed(conn, f"{uid}-")
    app_settings = settings.model_copy(update={"database_url": SecretStr(db_url)})
    with TestClient(create_app(app_settings)) as client:
        yield World(client, uid, tokens)


# -- auth ---------------------------------------------------------------------------------
def test_health_needs_no_token_but_v1_does(world: World) -> None:
    assert world.get("/health", token="").status_code == 200
    r = world.get("/v1/sites", token="")
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("token", "status"), [("read", 200), ("admin", 200),
                                               ("operate", 403), ("revoked", 401)])
def test_scopes_and_revocation(world: World, token: str, status: int) -> None:
    r = world.get("/v1/sites", token=token)
    assert r.status_code == status, r.text
    if status != 200:
        assert set(r.json()) == {"error", "detail"}


@pytest.mark.parametrize("header", ["Bearer bfr_nope", "Basic dXNlcjpwYXNz", "Bearer ",
                                    "Bearer " + "x" * 5000, "bfr_token-without-scheme"])
def test_bad_authorization_headers_are_401(world: World, header: str) -> None:
    r = world.get("/v1/sites", token="", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized", r.text
    assert "data" not in r.json()


def test_last_used_is_recorded(world: World, db_url: str) -> None:
    world.get("/v1/sites", token="admin")
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT last_used_at FROM api_tokens WHERE name = %s",
                           (f"{world.p}admin",)).fetchone()
    assert row is not None and row[0] is not None


# -- hostile parameters -----------------------------------------------------------------
HOSTILE = [
    "/v1/devices/x'%20OR%201=1--",
    "/v1/devices/" + "a" * 300,
    "/v1/devices/..%2F..%2Fetc",
    "/v1/sites/%00",
    "/v1/devices?limit=100000000",
    "/v1/devices?offset=-1",
    "/v1/devices?family=toaster",
    "/v1/devices?site=x;DROP TABLE devices",
    "/v1/parking/zones/{p}pz/occupancy?from=2000-01-01&to=2099-12-31&bucket=15m",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&bucket=2h",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&bucket=1h%27--",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-02&to=2025-01-01",
    "/v1/parking/zones/{p}pz/occupancy?from=yesterday&to=2025-01-01",
    "/v1/parking/zones/{p}pz/occupancy?from=99999-01-01&to=2025-01-01",
    "/v1/parking/zones/{p}pz/occupancy?to=2025-01-01",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&tz=Mars/Olympus",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&tz=x%27;select",
    "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&format=xml",
    "/v1/parking/zones/{p}sq/occupancy?from=2025-01-01&to=2025-01-02",
    "/v1/parking/zones/nowhere/occupancy?from=2025-01-01&to=2025-01-02",
    "/v1/grid/districts/{p}dist/energy?from=2000-01-01&to=2020-01-01&bucket=1d",
    "/v1/grid/districts/{p}dist/energy?from=2025-01-01T00:00&to=2025-02-02&bucket=5m",
    "/v1/grid/districts/{p}dist/peaks?from=2025-01-01&to=2025-01-02&bucket=1h",
    "/v1/grid/meters/{p}spot-1/energy?from=2025-01-01&to=2025-01-02",
    "/v1/wifi/squares/{p}sq/visitors?from=2025-01-01&to=2025-03-01&bucket=1mo",
    "/v1/wifi/squares/{p}sq/clients?from=2025-01-01&to=2025-01-02&bucket=1d&bucket=",
]


@pytest.mark.parametrize("url", HOSTILE)
def test_hostile_parameters_are_4xx_with_an_error_body(world: World, url: str) -> None:
    r = world.get(url.format(p=world.p))
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] in ("invalid_parameter", "not_found")


def test_range_limit_is_stated(world: World) -> None:
    r = world.get(f"/v1/parking/zones/{world.p}pz/occupancy?from=2025-01-01&to=2025-06-01"
                  "&bucket=15m")
    assert r.status_code == 422
    assert "at most 93 days" in str(r.json()["detail"])


def test_five_minute_buckets_answer_one_day_at_most(world: World) -> None:
    """5-minute buckets are computed from raw rows: one calendar day (25 hours when summer
    time ends) at most; longer is 422 naming the limit, for every route taking them."""
    day = f"/v1/grid/districts/{world.p}dist/energy?from={PARIS_DST_END}&to=2025-10-27&bucket=5m"
    r = world.get(day)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 25 * 12
    for path in (f"grid/districts/{world.p}dist/energy", f"grid/meters/{world.p}linky-1/energy",
                 f"parking/zones/{world.p}pz/occupancy", f"wifi/squares/{world.p}sq/clients"):
        r = world.get(f"/v1/{path}?from=2025-11-17&to=2025-11-18T00:05&bucket=5m")
        assert r.status_code == 422, (path, r.text)
        assert r.json()["detail"] == {
            "param": "to", "message": "range too long for bucket 5m: at most 1 day; ask a "
            "shorter range or a larger bucket"}


def test_large_answers_are_streamed_and_whole(world: World,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``STREAM_ROWS`` rows an answer goes in pieces (no Content-Length: chunked),
    byte for byte what the one-piece answer is, in JSON and CSV."""
    import api.output

    url = (f"/v1/grid/meters/{world.p}linky-1/energy?from=2025-10-01&to=2025-10-31"
           "&bucket=10m")
    streamed = {f: world.get(f"{url}&format={f}") for f in ("json", "csv")}
    threshold = api.output.STREAM_ROWS
    monkeypatch.setattr(api.output, "STREAM_ROWS", 10**9)
    whole = {f: world.get(f"{url}&format={f}") for f in ("json", "csv")}
    for f in ("json", "csv"):
        assert streamed[f].status_code == whole[f].status_code == 200, streamed[f].text
        assert "content-length" not in streamed[f].headers
        assert int(whole[f].headers["content-length"]) == len(whole[f].content)
        assert streamed[f].content == whole[f].content
        assert streamed[f].headers["content-type"] == whole[f].headers["content-type"]
    data = streamed["json"].json()["data"]
    assert len(data) == 30 * 144 + 6 > threshold  # 10-minute buckets; the 25-hour day
    assert any(r["import_wh"] for r in data)  # the meter's readings of 2025-10-26 and 27
    assert streamed["csv"].content.count(b"\n") == len(data) + 1
    assert streamed["csv"].headers["content-disposition"].endswith('.csv"')


def test_devices_table_still_there(world: World, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM devices WHERE id LIKE %s",
                           (f"{world.p}%",)).fetchone()
    assert row is not None and row[0] == 13


# -- inventory and health -----------------------------------------------------------------
def test_device_lists_filter_and_paginate(world: World) -> None:
    r = world.get(f"/v1/devices?site={world.p}pz&family=parking_spot&limit=4")
    body = r.json()
    assert r.status_code == 200 and body["count"] == 6 and len(body["data"]) == 4
    nxt = world.get(f"/v1/devices?site={world.p}pz&family=parking_spot&limit=4&offset=4")
    ids = [d["id"] for d in body["data"]] + [d["id"] for d in nxt.json()["data"]]
    assert ids == sorted(f"{world.p}spot-{i}" for i in range(1, 7))
    # old readings only: everything is offline
    off = world.get(f"/v1/devices?site={world.p}pz&status=online").json()
    assert off["count"] == 0


def test_one_device_has_its_latest_reading(world: World) -> None:
    r = world.get(f"/v1/devices/{world.p}linky-1")
    assert r.status_code == 200
    body = r.json()
    assert body["latest"]["reading"]["power_w"] == 3600.0
    assert body["health"]["status"] == "offline"
    assert world.get(f"/v1/devices/{world.p}nope").status_code == 404


def test_silent_devices_include_never_seen(world: World) -> None:
    body = world.get(f"/v1/health/silent?site={world.p}pz&limit=100").json()
    ids = {d["id"] for d in body["data"]}
    assert f"{world.p}spot-6" in ids and f"{world.p}spot-1" in ids
    never = next(d for d in body["data"] if d["id"] == f"{world.p}spot-6")
    assert never["last_seen"] is None and never["status"] == "offline"
    site = world.get(f"/v1/health/sites/{world.p}pz").json()
    assert site["families"]["parking_spot"]["offline"] == 6


# -- time: DST, empty ranges, CSV ----------------------------------------------------------
def _energy(world: World, day_from: str, day_to: str, bucket: str, **extra: str) -> Any:
    q = "&".join(f"{k}={v}" for k, v in extra.items())
    r = world.get(f"/v1/grid/meters/{world.p}linky-1/energy?from={day_from}&to={day_to}"
                  f"&bucket={bucket}&{q}")
    assert r.status_code == 200, r.text
    return r


@pytest.mark.parametrize(("day", "nxt", "hours"), [(PARIS_DST_START, "2025-03-31", 23),
                                                   (PARIS_DST_END, "2025-10-27", 25)])
def test_local_days_of_23_and_25_hours(world: World, day: str, nxt: str, hours: int) -> None:
    data = _energy(world, day, nxt, "1d").json()["data"]
    assert len(data) == 1
    assert data[0]["start"].startswith(day + "T00:00:00")
    assert data[0]["import_wh"] == hours * 6 * 600  # 600 Wh every 10 minutes
    assert data[0]["complete"] is True
    hourly = _energy(world, day, nxt, "1h").json()["data"]
    assert len(hourly) == hours and {h["import_wh"] for h in hourly} == {3600}
    assert {h["mean_power_w"] for h in hourly} == {3600.0}


def test_tz_override_moves_the_day(world: World) -> None:
    utc = _energy(world, PARIS_DST_END, "2025-10-27", "1d", tz="UTC").json()
    assert utc["tz"] == "UTC" and utc["data"][0]["start"] == "2025-10-26T00:00:00+00:00"
    assert utc["data"][0]["import_wh"] == 24 * 6 * 600


def test_counter_reset_is_flagged_never_negative(world: World) -> None:
    # The index restarts at 11:00: the interval (10:50, 11:00] belongs to the 10:00 hour.
    data = _energy(world, "2025-10-27T10:00Z", "2025-10-27T12:00Z", "1h").json()["data"]
    assert [d["reset"] for d in data] == [True, False]
    assert data[0]["import_wh"] == 5 * 600  # the swap interval counts from 0, not negative
    assert data[1]["import_wh"] == 3600 and data[1]["complete"]
    assert not data[0]["complete"]


def test_empty_range_gives_every_bucket_explicitly(world: World) -> None:
    data = _energy(world, "2025-06-01", "2025-06-02", "30m").json()["data"]
    assert len(data) == 48
    assert all(d["import_wh"] is None and d["meters"] == 0 and not d["complete"]
               for d in data)
    occ = world.get(f"/v1/parking/zones/{world.p}pz/occupancy?from=2025-06-01&to=2025-06-02"
                    "&bucket=1h").json()["data"]
    assert len(occ) == 24 and all(o["unknown_share"] == 1.0 for o in occ)


def test_csv_by_accept_and_by_format(world: World) -> None:
    url = f"/v1/grid/meters/{world.p}linky-1/energy?from={PARIS_DST_END}&to=2025-10-27&bucket=1h"
    for r in (world.get(url + "&format=csv"), world.get(url, headers={"Accept": "text/csv"})):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == 25 and rows[0]["import_wh"] == "3600.0"
        assert rows[0]["start"] == "2025-10-26T00:00:00+02:00"


# -- parking: silent sensors apart -------------------------------------------------------------
def test_occupancy_time_weighted_with_unknown_apart(world: World) -> None:
    r = world.get(f"/v1/parking/zones/{world.p}pz/occupancy?from=2025-11-18T10:00Z"
                  "&to=2025-11-18T11:00Z&bucket=15m")
    data = r.json()["data"]
    # spot-1: occupied 0-30 min, free 30-60 (heartbeats); spot-2 free 0-30 (3 heartbeats of
    # 600 s), then unknown; spots 3-6 never reported: unknown.
    assert [d["occupied_spot_s"] for d in data] == [900, 900, 0, 0]
    assert [d["free_spot_s"] for d in data] == [900, 900, 900, 900]
    assert data[0]["occupancy"] == round(900 / (6 * 900), 4)
    assert data[0]["occupancy_of_known"] == 0.5
    assert [d["unknown_spot_s"] for d in data] == [4 * 900, 4 * 900, 5 * 900, 5 * 900]
    spot = world.get(f"/v1/parking/spots/{world.p}spot-1/occupancy?from=2025-11-18T10:00Z"
                     "&to=2025-11-18T11:00Z&bucket=1h").json()["data"]
    assert spot[0]["occupancy"] == 0.5


def test_current_counts_silent_as_unknown(world: World) -> None:
    body = world.get(f"/v1/parking/zones/{world.p}pz/current").json()
    assert body == {"zone": f"{world.p}pz", "capacity": 6, "sensors": 6, "free": 0,
                    "occupied": 0, "unknown": 6}


def test_turnover_counts_arrivals(world: World) -> None:
    data = world.get(f"/v1/parking/zones/{world.p}pz/turnover?from=2025-11-18&to=2025-11-19"
                     "&bucket=1d").json()["data"]
    assert data[0]["arrivals"] == 1 and data[0]["mean_stay_s"] == 1800


def test_openapi_lists_every_route_with_error_examples(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/parking/zones/{zone_id}/occupancy", "/v1/grid/districts/{district_id}/energy",
            "/v1/wifi/squares/{square_id}/visitors", "/v1/health/silent"} <= set(paths)
    for path, ops in paths.items():
        if path.startswith("/v1"):
            for op in ops.values():
                assert "401" in op["responses"], path


# -- formats: CSV cells, content negotiation, lists ----------------------------------------
def _energy_url(world: World) -> str:
    return f"/v1/grid/meters/{world.p}linky-1/energy?from={PARIS_DST_END}&to=2025-10-27&bucket=1h"


def test_csv_writes_booleans_and_nulls_as_json_does(world: World) -> None:
    js = world.get(_energy_url(world)).json()["data"]
    rows = list(csv.DictReader(io.StringIO(world.get(_energy_url(world) + "&format=csv").text)))
    assert js[0]["complete"] is True and js[0]["reset"] is False
    assert rows[0]["complete"] == "true" and rows[0]["reset"] == "false"
    assert {r["estimated"] for r in rows} <= {"true", "false"}
    empty = world.get(f"/v1/grid/meters/{world.p}linky-1/energy?from=2025-06-01&to=2025-06-02"
                      "&bucket=1d&format=csv").text
    row = next(csv.DictReader(io.StringIO(empty)))
    assert row["import_wh"] == "" and row["complete"] == "false"


@pytest.mark.parametrize(("accept", "media"), [
    ("text/csv, application/json;q=0.5", "text/csv"),
    ("application/json;q=0.5, text/csv", "text/csv"),
    ("application/json, text/csv;q=0.9", "application/json"),
    ("text/csv;q=0.2, */*;q=0.1", "text/csv"),
    ("text/*", "text/csv"),
    ("text/csv;q=0, */*", "application/json"),
    ("*/*", "application/json"),
    ("text/csv, application/json", "application/json"),  # a tie: JSON, the default
    ("text/html,application/xhtml+xml,*/*;q=0.8", "application/json"),  # a browser
])
def test_accept_q_values_choose_the_format(world: World, accept: str, media: str) -> None:
    r = world.get(_energy_url(world), headers={"Accept": accept})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)


@pytest.mark.parametrize("accept", ["application/xml", "text/csv;q=0, application/json;q=0",
                                    "image/*"])
def test_nothing_acceptable_is_406(world: World, accept: str) -> None:
    r = world.get(_energy_url(world), headers={"Accept": accept})
    assert r.status_code == 406, r.text
    assert r.json()["error"] == "not_acceptable"


@pytest.mark.parametrize("url", ["/v1/sites", "/v1/devices?site={p}pz",
                                 "/v1/health/devices?site={p}pz",
                                 "/v1/health/silent?site={p}pz"])
def test_lists_answer_csv(world: World, url: str) -> None:
    url = url.format(p=world.p)
    js = world.get(url).json()
    for r in (world.get(url + ("&" if "?" in url else "?") + "format=csv"),
              world.get(url, headers={"Accept": "text/csv"})):
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["id"] for row in rows] == [d["id"] for d in js["data"]]
    if "devices" in url or "silent" in url:
        assert {row["active"] for row in rows} <= {"true", "false"}


def test_sites_csv_keeps_nested_counts_as_json(world: World) -> None:
    r = world.get("/v1/sites?format=csv&limit=1000")
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(r.text))}
    assert json.loads(rows[f"{world.p}pz"]["devices"])["parking_spot"] == 6


@pytest.mark.parametrize("url", ["/v1/sites/{p}pz", "/v1/devices/{p}linky-1",
                                 "/v1/health/sites/{p}pz", "/v1/parking/zones/{p}pz/current"])
def test_single_objects_refuse_csv(world: World, url: str) -> None:
    url = url.format(p=world.p)
    assert world.get(url).status_code == 200
    for r in (world.get(url + "?format=csv"), world.get(url, headers={"Accept": "text/csv"})):
        assert r.status_code == 406, r.text
        assert r.json()["error"] == "not_acceptable"
    assert world.get(url + "?format=json").status_code == 200


def test_operator_lists_answer_csv_and_counts_refuse_it(world: World) -> None:
    for url in ("/v1/operate/dead-letters?format=csv", "/v1/operate/runs?format=csv",
                "/v1/operate/scenarios?format=csv"):
        r = world.get(url, token="operate")
        assert r.status_code == 200, (url, r.text)
        assert r.headers["content-type"].startswith("text/csv")
        assert r.text.splitlines()[0].split(",")[0] in ("received_at", "id", "name")
    r = world.get("/v1/operate/dead-letters/counts?format=csv", token="operate")
    assert r.status_code == 406


# -- hostile text: NUL and control characters in every text parameter ----------------------
NUL_URLS = [
    ("operate", "/v1/operate/dead-letters?topic_prefix=city%00"),
    ("operate", "/v1/operate/dead-letters/counts?topic_prefix=city%00"),
    ("operate", "/v1/operate/dead-letters?topic_prefix=%00"),
    ("operate", "/v1/operate/dead-letters?topic_prefix=city%0Aparking"),
    ("operate", "/v1/operate/dead-letters?reason=a%00"),
    ("operate", "/v1/operate/dead-letters?device=a%00"),
    ("operate", "/v1/operate/dead-letters?from=2025-01-01%00"),
    ("operate", "/v1/operate/dead-letters/counts?to=2025-01-01%00"),
    ("operate", "/v1/operate/dead-letters?tz=Europe/Paris%00"),
    ("operate", "/v1/operate/dead-letters?from="),
    ("operate", "/v1/operate/runs/%00"),
    ("read", "/v1/devices?site=a%00"),
    ("read", "/v1/devices/a%00"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01%00&to=2025-01-02"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&tz=UTC%00"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&bucket=1h%00"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&format=csv%00"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=&to=2025-01-02"),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01&to=2025-01-02&tz="),
    ("read", "/v1/parking/zones/{p}pz/occupancy?from=2025-01-01%20&to=2025-01-02"),
]


@pytest.mark.parametrize(("token", "url"), NUL_URLS)
def test_control_characters_in_text_parameters_are_422(world: World, token: str,
                                                      url: str) -> None:
    r = world.get(url.format(p=world.p), token=token)
    assert r.status_code == 422, (r.status_code, r.text)
    assert r.json()["error"] == "invalid_parameter"


def test_a_value_the_database_refuses_is_400_not_500(world: World) -> None:
    # The guard behind the parameter checks: whatever text reaches a query, a value the
    # database cannot take (here a NUL, through the real pool) is the request's fault.
    from api.deps import get_conn

    app = world.client.app

    @app.get("/test-only/echo")  # type: ignore[attr-defined, untyped-decorator]
    async def echo(text: str, conn: Any = Depends(get_conn)) -> Any:  # noqa: B008
        cur = await conn.execute("SELECT %s::text AS t", (text,))
        return {"t": (await cur.fetchone())[0]}

    try:
        assert world.get("/test-only/echo?text=ok", token="").json() == {"t": "ok"}
        r = world.get("/test-only/echo?text=city%00", token="")
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "bad_request"
    finally:
        app.router.routes[:] = [rt for rt in app.router.routes  # type: ignore[attr-defined]
                                if getattr(rt, "path", "") != "/test-only/echo"]


# -- the contract: methods, buckets, documented codes ---------------------------------------
def test_options_and_wrong_methods_name_every_served_method(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['operate']}"}
    r = world.client.options("/v1/operate/runs", headers=headers)
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "POST"}
    r = world.client.delete("/v1/operate/runs", headers=headers)
    assert r.status_code == 405 and "GET" in r.headers["allow"] and "POST" in r.headers["allow"]
    assert r.json()["error"] == "method_not_allowed"
    r = world.client.put(f"/v1/sites/{world.p}pz", headers=headers)
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_each_route_accepts_every_bucket_its_schema_lists(world: World) -> None:
    spec = world.client.get("/openapi.json").json()
    ids = {"zone_id": f"{world.p}pz", "spot_id": f"{world.p}spot-1", "meter_id": None,
           "square_id": f"{world.p}sq", "ap_id": None, "district_id": f"{world.p}dist"}
    checked = 0
    for path, ops in spec["paths"].items():
        params = {p["name"]: p for p in ops.get("get", {}).get("parameters", [])}
        if "bucket" not in params:
            continue
        if "{meter_id}" in path or "{ap_id}" in path:
            continue  # the tiny city's meters and APs differ per family: zones suffice
        url = path.format(**ids)
        listed = params["bucket"]["schema"]["enum"]
        assert params["bucket"]["schema"]["default"] in listed, path
        for bucket in ("5m", "10m", "15m", "30m", "1h", "1d", "1w", "1mo"):
            r = world.get(f"{url}?from=2025-11-17&to=2025-11-18&bucket={bucket}")
            if bucket in listed:
                assert r.status_code == 200, (path, bucket, r.text)
            else:
                assert r.status_code == 422, (path, bucket, r.text)
            checked += 1
        assert world.get(f"{url}?from=2025-11-17&to=2025-11-18").status_code == 200, path
    assert checked >= 8 * 12


def test_docs_list_every_error_code() -> None:
    from pathlib import Path

    from api.errors import ERROR_CODES

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text[text.index("## Errors"):text.index("## Time series")]
    missing = [c for c in ERROR_CODES if f"`{c}`" not in section]
    assert not missing, missing
