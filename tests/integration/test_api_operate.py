"""Operator routes against the real broker and database: scopes, scenario runs that finish
with the simulator's exact message count (counted again by a subscriber), runs stopped
mid-way, the concurrency limit, and dead letters filtered and counted (rows inserted
directly)."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import psycopg
import pytest
from fastapi.testclient import TestClient
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from api.routes.operate import show_payload
from api.runs import BrokerTarget, RunManager
from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices.registry import load_registry_file
from simulators.scenario import load_scenario
from simulators.stream import Simulation
from tests.conftest import random_tag
from tests.integration.mqtt_helpers import wait_until
from tests.unit.test_sim_stream import tiny_city

pytestmark = pytest.mark.stack

TINY_START = "2025-11-18 07:00"


class Counting:
    """A subscriber on the run's topic prefix that counts what the broker delivers."""

    def __init__(self, stack: Stack, prefix: str) -> None:
        host, port = stack.broker_address()
        user, password = stack.mqtt_credentials("admin")
        self.n = 0
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=f"test-count-{secrets.token_hex(3)}")
        self.client.username_pw_set(user, password)

        def on_connect(c: Any, u: Any, f: Any, rc: Any, p: Any) -> None:
            c.subscribe(f"{prefix}/#", qos=1)

        def on_subscribe(c: Any, u: Any, mid: Any, rcs: Any, p: Any) -> None:
            assert not any(rc.is_failure for rc in rcs), rcs
            subscribed.set()

        def on_message(c: Any, u: Any, m: Any) -> None:
            with self._lock:
                self.n += 1

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("subscription not acknowledged")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Ops:
    """A client, tokens, the run manager and the test's own topic prefix."""

    def __init__(self, client: TestClient, tokens: dict[str, str], prefix: str,
                 scenario_dir: Path, city: Path) -> None:
        self.client = client
        self.tokens = tokens
        self.prefix = prefix
        self.scenario_dir = scenario_dir
        self.city = city

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[token]}"} if token else {}

    def get(self, url: str, *, token: str = "operate", **kw: Any) -> Any:
        return self.client.get(url, headers=self._headers(token), **kw)

    def post(self, url: str, body: Any = None, *, token: str = "operate") -> Any:
        return self.client.post(url, json=body, headers=self._headers(token))

    def wait_state(self, run_id: str, states: tuple[str, ...], *, timeout: float,
                   cond: Any = None) -> dict[str, Any]:
        got: dict[str, Any] = {}

        def ok() -> bool:
            nonlocal got
            got = self.get(f"/v1/operate/runs/{run_id}").json()
            return got["state"] in states and (cond is None or cond(got))

        try:
            wait_until(ok, timeout=timeout, what=f"run {run_id} in {states}")
        except AssertionError:
            raise AssertionError(f"run never reached {states}: {got}") from None
        return got


def _write_scenarios(d: Path, city: Path) -> None:
    common = f"city: {json.dumps(str(city))}\nseed: 3\n"
    (d / "tiny.yaml").write_text(
        f"description: two hours of a tiny city\n{common}start: {TINY_START}\n"
        "duration: 2h\nspeed: max\n", encoding="utf-8")
    (d / "long.yaml").write_text(
        f"description: a day of a tiny city, slowly\n{common}start: yesterday 00:00\n"
        "duration: 1d\nspeed: 60\n", encoding="utf-8")
    (d / "broken.yaml").write_text("name: broken\nspeed: -3\n", encoding="utf-8")


@pytest.fixture(scope="module")
def ops(stack: Stack, settings: Settings, db_url: str,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ops]:
    from api.main import create_app

    uid = random_tag("o")
    tokens: dict[str, str] = {}
    with psycopg.connect(db_url) as conn:
        for name, scopes in (("read", ["read"]), ("operate", ["operate"]),
                             ("admin", ["admin"])):
            tokens[name], _info = create_token(conn, f"{uid}-{name}", scopes)
    d = tmp_path_factory.mktemp("scenarios")
    city = d / "city.json"
    reg = tiny_city(prefix=f"{uid}-")
    city.write_text(json.dumps({
        "sites": [s.model_dump(mode="json") for s in reg.sites],
        "devices": [x.model_dump(mode="json") for x in reg.devices]}), encoding="utf-8")
    _write_scenarios(d, city)
    # A topic prefix of the test's own (no ingestor reads it) and the admin broker account,
    # which may write any prefix; the application otherwise uses the simulator's account.
    prefix = f"t{uid}"
    host, port = stack.broker_address()
    user, password = stack.mqtt_credentials("admin")
    app_settings = settings.model_copy(update={"database_url": SecretStr(db_url),
                                               "topic_prefix": prefix})
    app = create_app(app_settings)
    app.state.runs = RunManager(BrokerTarget(host, port, user, password, prefix),
                                scenario_dir=d, database_url=db_url, max_active=2,
                                progress_s=0.2)
    with TestClient(app) as client:
        yield Ops(client, tokens, prefix, d, city)


# -- scopes ---------------------------------------------------------------------------------
ROUTES = ["/v1/operate/scenarios", "/v1/operate/runs", "/v1/operate/dead-letters",
          "/v1/operate/dead-letters/counts", "/v1/operate/runs/0123456789ab"]


@pytest.mark.parametrize("url", ROUTES)
@pytest.mark.parametrize(("token", "status"), [("", 401), ("read", 403), ("operate", 200),
                                               ("admin", 200)])
def test_scopes(ops: Ops, url: str, token: str, status: int) -> None:
    r = ops.get(url, token=token)
    expected = 404 if status == 200 and url.endswith("ab") else status
    assert r.status_code == expected, r.text
    if expected != 200:
        assert set(r.json()) == {"error", "detail"}


def test_start_and_stop_need_the_operate_scope(ops: Ops) -> None:
    before = ops.get("/v1/operate/runs").json()["count"]
    r = ops.post("/v1/operate/runs", {"scenario": "tiny"}, token="read")
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert ops.post("/v1/operate/runs/0123456789ab/stop", token="read").status_code == 403
    assert ops.get("/v1/operate/runs").json()["count"] == before  # nothing was started


def test_scenarios_are_listed(ops: Ops) -> None:
    body = ops.get("/v1/operate/scenarios").json()
    by_name = {s["name"]: s for s in body["data"]}
    assert set(by_name) == {"tiny", "long", "broken"}
    assert by_name["tiny"]["valid"] and by_name["tiny"]["duration_s"] == 7200
    assert by_name["tiny"]["description"] == "two hours of a tiny city"
    assert not by_name["broken"]["valid"] and "speed" in by_name["broken"]["error"]


def test_shipped_scenarios_are_listed_by_default(settings: Settings) -> None:
    names = set(RunManager.from_settings(settings).scenarios())
    assert {"weekday", "saturday-market", "stress"} <= names


# -- runs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "status"), [
    ({"scenario": "nope"}, 404),
    ({"scenario": "broken"}, 422),
    ({"scenario": "../tiny"}, 422),
    ({"scenario": "tiny", "speed": 0}, 422),
    ({"scenario": "tiny", "speed": "fast-ish"}, 422),
    ({"scenario": "tiny", "duration": "40d"}, 422),
    ({"scenario": "tiny", "duration": "soon"}, 422),
    ({"scenario": "tiny", "start": "next year"}, 422),
    ({"scenario": "tiny", "seed": -1}, 422),
    ({"scenario": "tiny", "city": "registry"}, 422),
    ({}, 422),
])
def test_bad_run_requests_are_4xx(ops: Ops, body: dict[str, Any], status: int) -> None:
    r = ops.post("/v1/operate/runs", body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "detail"}


def test_unknown_and_malformed_run_ids(ops: Ops) -> None:
    for r, status, error in (
            (ops.get("/v1/operate/runs/0123456789ab"), 404, "not_found"),
            (ops.get("/v1/operate/runs/x'%20OR%201=1"), 422, "invalid_parameter"),
            (ops.post("/v1/operate/runs/0123456789ab/stop"), 404, "not_found")):
        assert r.status_code == status and r.json()["error"] == error, r.text


def _expected(ops: Ops, **overrides: Any) -> Counter[str]:
    sc = load_scenario(ops.scenario_dir / "tiny.yaml")
    if overrides:
        sc = sc.model_validate(sc.model_dump() | overrides)
    sim = Simulation(sc, load_registry_file(ops.city), prefix=ops.prefix)
    return Counter(m.family for m in sim.messages())


def test_a_tiny_run_finishes_with_the_simulators_count(ops: Ops, stack: Stack) -> None:
    expected = _expected(ops, seed=9)
    assert sum(expected.values()) > 100
    sub = Counting(stack, ops.prefix)
    try:
        r = ops.post("/v1/operate/runs", {"scenario": "tiny", "speed": "max", "seed": 9})
        assert r.status_code == 201, r.text
        run = r.json()
        assert r.headers["location"] == f"/v1/operate/runs/{run['id']}"
        assert run["state"] in ("starting", "running") and run["seed"] == 9
        done = ops.wait_state(run["id"], ("finished", "failed", "stopped"), timeout=60)
        assert done["state"] == "finished", done
        assert done["sent"] == dict(sorted(expected.items()))
        assert done["sent_total"] == done["acked"] == sum(expected.values())
        assert done["unacked"] == 0 and done["error"] is None
        assert done["sim_start"].startswith("2025-11-18T07:00:00")
        assert done["sim_end"].startswith("2025-11-18T09:00:00")
        assert done["progress"] > 0.9 and done["finished_at"] >= done["started_at"]
        # The broker delivered every message of the run to a subscriber of the prefix.
        wait_until(lambda: sub.n >= sum(expected.values()), timeout=30,
                   what=f"{sum(expected.values())} messages at the subscriber")
        assert sub.n == sum(expected.values())
    finally:
        sub.close()
    listed = ops.get("/v1/operate/runs").json()["data"]
    assert run["id"] in [x["id"] for x in listed]
    assert listed[0]["started_at"] >= listed[-1]["started_at"]
    first = ops.get("/v1/operate/runs", params={"limit": 1}).json()
    assert first["limit"] == 1 and first["data"] == listed[:1]
    again = ops.post(f"/v1/operate/runs/{run['id']}/stop")
    assert again.status_code == 409 and again.json()["error"] == "conflict"


@pytest.mark.parametrize(("start", "duration", "sim_end"), [
    ("2026-03-29 01:00", "2h", "2026-03-29T04:00:00+02:00"),  # 02:00-03:00 does not exist
    ("2026-10-25 01:00", "3h", "2026-10-25T03:00:00+01:00"),  # 02:00-03:00 twice
])
def test_a_runs_window_across_a_dst_change_is_elapsed_time(ops: Ops, start: str,
                                                            duration: str,
                                                            sim_end: str) -> None:
    r = ops.post("/v1/operate/runs", {"scenario": "tiny", "speed": "max", "start": start,
                                      "duration": duration})
    assert r.status_code == 201, r.text
    done = ops.wait_state(r.json()["id"], ("finished", "failed", "stopped"), timeout=60)
    assert done["state"] == "finished", done
    assert done["sim_start"] == datetime.fromisoformat(start).replace(
        tzinfo=ZoneInfo("Europe/Paris")).isoformat()
    assert done["sim_end"] == sim_end
    elapsed = (datetime.fromisoformat(done["sim_end"])
               - datetime.fromisoformat(done["sim_start"])).total_seconds()
    assert elapsed == done["duration_s"] and done["sent_total"] > 0


def test_a_long_run_is_stopped_and_the_limit_is_enforced(ops: Ops) -> None:
    full = sum(_expected(ops, start="yesterday 00:00", duration=86400).values())
    first = ops.post("/v1/operate/runs", {"scenario": "long"}).json()
    second = ops.post("/v1/operate/runs", {"scenario": "long", "speed": 30})
    assert second.status_code == 201, second.text
    third = ops.post("/v1/operate/runs", {"scenario": "tiny"})
    assert third.status_code == 409 and "at most 2" in third.json()["detail"]
    running = ops.wait_state(first["id"], ("running",), timeout=30,
                             cond=lambda r: r["sent_total"] > 0)
    assert running["sim_clock"] is not None and running["progress"] < 0.5
    t0 = time.monotonic()
    stopped = ops.post(f"/v1/operate/runs/{first['id']}/stop")
    assert stopped.status_code == 200, stopped.text
    body = stopped.json()
    assert time.monotonic() - t0 < 15
    assert body["state"] == "stopped" and body["finished_at"] is not None
    assert 0 < body["sent_total"] < full
    assert body["acked"] == body["sent_total"]
    # Once stopped it stays stopped and counts no more.
    again = ops.get(f"/v1/operate/runs/{first['id']}").json()
    assert again["state"] == "stopped" and again["sent_total"] == body["sent_total"]
    # A slot is free again.
    fourth = ops.post("/v1/operate/runs", {"scenario": "long"})
    assert fourth.status_code == 201, fourth.text
    for run_id in (second.json()["id"], fourth.json()["id"]):
        assert ops.post(f"/v1/operate/runs/{run_id}/stop").json()["state"] == "stopped"


def test_a_run_that_cannot_connect_fails_with_the_reason(ops: Ops) -> None:
    manager = RunManager(BrokerTarget("127.0.0.1", 9, "nobody", "nothing", ops.prefix),
                         scenario_dir=ops.scenario_dir)
    run = manager.start(manager.scenario("tiny"))
    assert run.ended.wait(30)
    got = manager.get(run.id)
    assert got["state"] == "failed" and "cannot reach the broker" in got["error"]


# -- dead letters ---------------------------------------------------------------------------
BASE = datetime(2031, 3, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def letters(ops: Ops, db_url: str) -> str:
    """Dead letters under a topic prefix of this module; returns the prefix."""
    p = random_tag("dl")
    rows: list[tuple[Any, ...]] = []
    for i in range(30):  # 30 unknown_device from 3 devices, one a minute
        rows.append((BASE + timedelta(minutes=i), f"{p}/parking/{p}-ghost-{i % 3}/state",
                     f"{p}-ghost-{i % 3}", "unknown_device", "not in the registry",
                     b'{"state":"free"}', 16))
    for i in range(5):  # 5 invalid_json of one device, an hour later
        rows.append((BASE + timedelta(hours=1, minutes=i), f"{p}/wifi/{p}-ap/stats",
                     f"{p}-ap", "not_utf8", "payload is not UTF-8", b"\xff\xfe\x00{" * 3, 12))
    rows.append((BASE + timedelta(hours=2), f"{p}/nonsense", None, "unknown_topic",
                 "bad topic", "é".encode() * 3000, 70_000))  # truncated by the ingestor
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO dead_letters (received_at, topic, device_id, reason, "
                        "detail, payload, payload_size) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        rows)
    return p


def test_dead_letters_filters_and_pages(ops: Ops, letters: str) -> None:
    p = letters
    url = "/v1/operate/dead-letters"
    everything = ops.get(url, params={"topic_prefix": f"{p}/"}).json()
    assert everything["count"] == 36
    times = [r["received_at"] for r in everything["data"]]
    assert times == sorted(times, reverse=True)
    one = ops.get(url, params={"topic_prefix": f"{p}/", "device": f"{p}-ghost-1"}).json()
    assert one["count"] == 10 and {r["device_id"] for r in one["data"]} == {f"{p}-ghost-1"}
    by_reason = ops.get(url, params={"topic_prefix": f"{p}/", "reason": "not_utf8"}).json()
    assert by_reason["count"] == 5
    parking = ops.get(url, params={"topic_prefix": f"{p}/parking/"}).json()
    assert parking["count"] == 30
    window = ops.get(url, params={"topic_prefix": f"{p}/", "from": "2031-03-02T12:10:00Z",
                                  "to": "2031-03-02T12:20:00Z"}).json()
    assert window["count"] == 10
    local = ops.get(url, params={"topic_prefix": f"{p}/", "from": "2031-03-02T13:10",
                                 "to": "2031-03-02T13:20", "tz": "Europe/Paris"}).json()
    assert local["count"] == 10  # 13:10 in Paris (UTC+1) is 12:10 UTC
    pages = [ops.get(url, params={"topic_prefix": f"{p}/", "limit": 7, "offset": o}).json()
             for o in range(0, 36, 7)]
    seen = [(r["received_at"], r["topic"]) for pg in pages for r in pg["data"]]
    assert len(seen) == 36 and len(set(seen)) == 36
    assert ops.get(url, params={"topic_prefix": "nothing-here/"}).json()["count"] == 0


def test_dead_letter_payloads_are_text_or_base64_and_truncated(ops: Ops, letters: str) -> None:
    url = "/v1/operate/dead-letters"
    p = letters
    text = ops.get(url, params={"topic_prefix": f"{p}/parking/", "limit": 1}).json()["data"][0]
    assert text["payload_encoding"] == "utf-8" and text["payload"] == '{"state":"free"}'
    assert not text["payload_truncated"]
    raw = ops.get(url, params={"topic_prefix": f"{p}/wifi/", "limit": 1}).json()["data"][0]
    assert raw["payload_encoding"] == "base64"
    assert base64.b64decode(raw["payload"]) == b"\xff\xfe\x00{" * 3
    big = ops.get(url, params={"topic_prefix": f"{p}/nonsense", "payload_max": 101}
                  ).json()["data"][0]
    # 101 bytes cut an "é" (2 bytes) in the middle: the half character is dropped.
    assert big["payload_encoding"] == "utf-8" and big["payload"] == "é" * 50
    assert big["payload_truncated"] and big["payload_size"] == 70_000
    assert big["payload_stored"] == 6000


def test_show_payload_edge_cases() -> None:
    assert show_payload(b"", 0, 0)["payload"] == ""
    assert show_payload(b"\xc3", 1, 1)["payload_encoding"] == "base64"  # not cut: invalid
    assert show_payload(b"ab\xc3", 4, 4) == {
        "payload_encoding": "utf-8", "payload": "ab", "payload_size": 4,
        "payload_stored": 4, "payload_truncated": True}


def test_dead_letter_counts(ops: Ops, letters: str) -> None:
    p = letters
    body = ops.get("/v1/operate/dead-letters/counts", params={
        "topic_prefix": f"{p}/", "from": "2031-03-02", "to": "2031-03-03"}).json()
    assert body["total"] == 36
    assert body["by_reason"] == [{"reason": "unknown_device", "count": 30},
                                 {"reason": "not_utf8", "count": 5},
                                 {"reason": "unknown_topic", "count": 1}]
    devices = {d["device_id"]: d for d in body["by_device"]}
    assert devices[f"{p}-ghost-0"] == {"device_id": f"{p}-ghost-0", "count": 10,
                                       "by_reason": {"unknown_device": 10}}
    assert devices[f"{p}-ap"]["count"] == 5
    assert devices[None]["by_reason"] == {"unknown_topic": 1}
    top = ops.get("/v1/operate/dead-letters/counts", params={
        "topic_prefix": f"{p}/", "from": "2031-03-02", "to": "2031-03-03", "top": 1}).json()
    assert len(top["by_device"]) == 1 and top["by_device"][0]["count"] == 10
    outside = ops.get("/v1/operate/dead-letters/counts", params={
        "topic_prefix": f"{p}/", "from": "2031-03-03", "to": "2031-03-04"}).json()
    assert outside["total"] == 0 and outside["by_reason"] == [] and outside["by_device"] == []
    default = ops.get("/v1/operate/dead-letters/counts",
                      params={"topic_prefix": f"{p}/"}).json()
    assert default["total"] == 0  # the last 24 hours by default; these are in 2031


HOSTILE = ["reason=x'%20OR%201=1", "device=..%2Fetc", "from=yesterday",
           "from=2031-03-02&to=2031-03-01", "tz=Mars/Olympus", "topic_prefix=",
           "from=99999-01-01", "reason=" + "a" * 100]


@pytest.mark.parametrize("query", [*HOSTILE, "limit=0", "limit=100000", "offset=-1",
                                   "payload_max=1000000"])
def test_hostile_dead_letter_parameters_are_422(ops: Ops, query: str) -> None:
    r = ops.get(f"/v1/operate/dead-letters?{query}")
    assert r.status_code == 422, (query, r.text)
    assert r.json()["error"] == "invalid_parameter"


@pytest.mark.parametrize("query", [*HOSTILE, "top=0", "top=5000"])
def test_hostile_dead_letter_count_parameters_are_422(ops: Ops, query: str) -> None:
    r = ops.get(f"/v1/operate/dead-letters/counts?{query}")
    assert r.status_code == 422, (query, r.text)
    assert r.json()["error"] == "invalid_parameter"
