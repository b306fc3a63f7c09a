"""The simulators' ground truth on both DST change days (Europe/Paris, 2026-03-29: 23 hours,
2026-10-25: 25 hours) against what lands in the database through the real broker and
ingestor, against the API, and against zoneinfo arithmetic done here.

One whole local day of a tiny city per change day. Wifi session events are not published:
they are per-client data, refused once older than the pseudonymisation key's day."""

from __future__ import annotations

import asyncio
import zlib
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from devices.registry import RegistryFile, parse_registry
from simulators.model import TABLE_OF_KIND
from simulators.scenario import Scenario
from simulators.stream import Simulation
from tests.conftest import random_tag
from tests.integration.api_helpers import ApiReader, api_client
from tests.integration.ingest_helpers import await_committed, ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import await_until, count
from tests.integration.sim_helpers import publish_pooled, rows_by_table
from tests.unit.test_sim_stream import ALL_FORMATS, tiny_city

pytestmark = pytest.mark.stack

PARIS = ZoneInfo("Europe/Paris")
DAYS = {date(2026, 3, 29): 23, date(2026, 10, 25): 25}  # local day -> its hours
PUBLISHED = [t for t in TABLE_OF_KIND.values() if t != "wifi_sessions"]


class Day(ApiReader):
    """One change day loaded: its truth, window, device ids and an API client."""

    def __init__(self, day: date, truth: dict[str, Any], p: str, ids: list[str],
                 db_url: str, client: TestClient, token: str) -> None:
        super().__init__(client, token)
        self.day = day
        self.truth = truth
        self.p = p
        self.ids = ids
        self.db_url = db_url
        self.start = datetime(day.year, day.month, day.day, tzinfo=PARIS)
        nxt = day + timedelta(days=1)
        self.end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=PARIS)

    @property
    def window(self) -> str:
        f = self.start.isoformat().replace("+", "%2B")
        t = self.end.isoformat().replace("+", "%2B")
        return f"from={f}&to={t}&source=raw"

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture(scope="module", params=sorted(DAYS), ids=str)
async def loaded(request: pytest.FixtureRequest, stack: Stack, settings: Settings,
                 db_url: str) -> AsyncIterator[Day]:
    day: date = request.param
    uid = random_tag("d")
    p = f"{uid}-"
    reg = tiny_city(prefix=p)
    with psycopg.connect(db_url, autocommit=True) as conn:
        store.import_registry(conn, reg)
    with psycopg.connect(db_url) as conn:
        token, _ = create_token(conn, f"{uid}-dst", ["read"])
    s = ingest_settings(settings)
    sc = Scenario.model_validate({
        "name": "dst", "start": f"{day} 00:00", "duration": f"{DAYS[day]}h", "seed": 29,
        "speed": "max", "formats": ALL_FORMATS,
        "parking": {"arrivals_per_spot_hour": 2, "paid_days": ["sun"]},
        "grid": {"replacements": 1, "gap_share": 0.25, "gap_minutes": [20, 40]},
        "events": [{"type": "silent_fleet", "family": "grid_meter", "start": "10:00",
                    "end": "10:10"}],
        "faults": {"duplicates": 0.02, "out_of_order": 0.02}})
    sim = Simulation(sc, reg, prefix=s.topic_prefix)
    ids = sim.device_ids
    msgs = [m for m in sim.messages() if m.kind != "wifi/sessions"]
    truth = sim.truth_document()
    expected = {t: n for t, n in truth["messages"]["expected_rows"].items() if t in PUBLISHED}
    assert all(expected.values()), expected

    async with running_ingestor(stack, s, db_url):
        await asyncio.to_thread(publish_pooled, stack, msgs, s.topic_prefix, f"dst-{uid}")

        async def settled() -> bool:
            return await rows_by_table(db_url, PUBLISHED, ids) == expected

        try:
            await await_until(settled, timeout=90, what=f"rows {expected}")
        except AssertionError:
            got = await rows_by_table(db_url, PUBLISHED, ids)
            raise AssertionError(f"rows {got} != expected {expected}") from None
    with api_client(settings, db_url) as (client, _):
        yield Day(day, truth, p, ids, db_url, client, token)


def test_the_window_is_the_whole_local_day(loaded: Day) -> None:
    hours = DAYS[loaded.day]
    assert loaded.truth["start"] == loaded.start.isoformat()
    assert loaded.truth["end"] == loaded.end.isoformat()
    assert (loaded.end.timestamp() - loaded.start.timestamp()) == hours * 3600
    lo, hi = loaded.sql("SELECT min(time), max(time) FROM grid_readings WHERE device_id = "
                        "ANY(%s)", (loaded.ids,))[0]
    assert lo == loaded.start and hi == loaded.end  # the closing reading at the end mark
    for table in ("wifi_ap_stats", "parking_spot_state", "parking_meter_status"):
        lo, hi = loaded.sql(f"SELECT min(time), max(time) FROM {table} WHERE device_id = "
                            "ANY(%s)", (loaded.ids,))[0]
        assert loaded.start <= lo and hi < loaded.end, table


def test_occupancy_periods_and_values_equal_the_api(loaded: Day) -> None:
    zone = f"{loaded.p}pz"
    truth = [t for t in loaded.truth["parking_occupancy"] if t["zone"] == zone]
    assert len(truth) == DAYS[loaded.day] * 4
    # Compared as text and as instants (PEP 495: aware datetimes in the repeated hour are
    # never equal across tzinfo objects).
    instants = [loaded.start.timestamp() + 900 * k for k in range(len(truth))]
    assert [t["period_start"] for t in truth] == [
        datetime.fromtimestamp(u, PARIS).isoformat() for u in instants]
    assert [datetime.fromisoformat(t["period_start"]).timestamp() for t in truth] == instants
    body = loaded.get(f"/v1/parking/zones/{zone}/occupancy?{loaded.window}&bucket=15m")
    assert len(body["data"]) == len(truth)
    assert sum(t["occupied_spot_s"] for t in truth) > 0
    for got, want in zip(body["data"], truth, strict=True):
        assert got["start"] == want["period_start"]
        assert abs(got["occupied_spot_s"] - want["occupied_spot_s"]) <= 1, (got, want)
        known = got["occupied_spot_s"] + got["free_spot_s"]
        assert abs(known - want["known_spot_s"]) <= 1, (got, want)


def test_meter_energy_and_completeness_equal_the_database_and_the_api(loaded: Day) -> None:
    """Complete periods are those the stored readings measure (both ends, no index drop
    between two readings overlapping them); the API agrees period by period."""
    rows = loaded.sql("SELECT device_id, time, energy_import_wh, energy_export_wh "
                      "FROM grid_readings WHERE device_id = ANY(%s) ORDER BY 1, 2",
                      (loaded.ids,))
    stored: dict[str, dict[datetime, tuple[int, int]]] = defaultdict(dict)
    for dev, t, ei, ee in rows:
        stored[dev][t] = (ei, ee)
    checked = swapped = 0
    for meter in sorted(stored):
        mine = stored[meter]
        times = sorted(mine)
        drops = [(a, b) for a, b in pairwise(times)
                 if mine[b][0] < mine[a][0]]
        truth = [t for t in loaded.truth["grid_energy"] if t["meter"] == meter]
        assert len(truth) == DAYS[loaded.day] * 2
        body = loaded.get(f"/v1/grid/meters/{meter}/energy?{loaded.window}&bucket=30m")
        assert len(body["data"]) == len(truth)
        for got, want in zip(body["data"], truth, strict=True):
            t0 = datetime.fromisoformat(want["period_start"])
            t1 = t0 + timedelta(minutes=30)
            assert got["start"] == want["period_start"]
            drop = any(a < t1 and b > t0 for a, b in drops)
            swapped += drop
            assert want["complete"] == (t0 in mine and t1 in mine and not drop), want
            assert got["complete"] == want["complete"], (got, want)
            if want["complete"]:
                assert mine[t1][0] - mine[t0][0] == want["import_wh"] == got["import_wh"]
                assert mine[t1][1] - mine[t0][1] == want["export_wh"] == got["export_wh"]
                checked += 1
            if drop:
                assert got["reset"], got
    assert swapped >= 1  # the replaced meter's half hour
    assert checked >= len(stored) * DAYS[loaded.day]


def test_revenue_per_local_day_and_paid_hours(loaded: Day) -> None:
    """Paid hours (09-12, 14-19 local) and the local day follow the offset of the day."""
    meter = f"{loaded.p}pm-1"
    local = loaded.sql("SELECT (time AT TIME ZONE 'Europe/Paris')::date, "
                       "(time AT TIME ZONE 'Europe/Paris')::time, amount_cents "
                       "FROM parking_transactions WHERE device_id = %s", (meter,))
    assert local
    for _day, clock, _amount in local:  # paid within 4 minutes of a car parked in paid hours
        minutes = clock.hour * 60 + clock.minute
        assert 9 * 60 < minutes <= 12 * 60 + 4 or 14 * 60 < minutes <= 19 * 60 + 4, clock
    by_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d, _clock, amount in local:
        by_day[d.isoformat()][0] += 1
        by_day[d.isoformat()][1] += amount
    truth = {t["local_date"]: [t["transactions"], t["revenue_cents"]]
             for t in loaded.truth["parking_revenue"] if t["meter"] == meter}
    assert truth == dict(by_day) and list(truth) == [loaded.day.isoformat()]
    body = loaded.get(f"/v1/parking/meters/{meter}/revenue?from={loaded.day}"
                      f"&to={loaded.day + timedelta(days=1)}&bucket=1d")
    assert [(d["transactions"], d["revenue_cents"]) for d in body["data"]] == [
        tuple(truth[loaded.day.isoformat()])]


def test_wifi_hours_equal_the_stored_stats(loaded: Day) -> None:
    square = f"{loaded.p}sq"
    truth = {datetime.fromisoformat(t["hour_start"]): t["clients_mean"]
             for t in loaded.truth["wifi_presence"] if t["square"] == square}
    assert len(truth) == DAYS[loaded.day]
    stored = loaded.sql(
        "SELECT hour, round(sum(m)::numeric, 2) FROM (SELECT device_id, "
        "date_trunc('hour', time) AS hour, avg(clients) AS m FROM wifi_ap_stats "
        "WHERE device_id = ANY(%s) GROUP BY 1, 2) x GROUP BY 1 ORDER BY 1", (loaded.ids,))
    got = {h: float(v) for h, v in stored}
    assert set(got) == set(truth)
    for hour, mean in truth.items():
        assert abs(got[hour] - mean) <= 0.011, (hour, got[hour], mean)


def test_a_local_event_silences_at_local_time(loaded: Day) -> None:
    at = datetime(loaded.day.year, loaded.day.month, loaded.day.day, 10, tzinfo=PARIS)
    during = loaded.sql("SELECT count(*) FROM grid_readings WHERE device_id = ANY(%s) "
                        "AND time >= %s AND time < %s",
                        (loaded.ids, at, at + timedelta(minutes=10)))[0][0]
    after = loaded.sql("SELECT count(*) FROM grid_readings WHERE device_id = ANY(%s) "
                       "AND time = %s", (loaded.ids, at + timedelta(minutes=10)))[0][0]
    assert during == 0 and after >= 1


def _parking_city(p: str, n: int) -> RegistryFile:
    tag = zlib.crc32(p.encode()) % (1 << 20)
    sites = [{"id": f"{p}pz", "kind": "parking_zone", "name": "Zone", "insee": "62041",
              "capacity": n}]
    devices = [{"id": f"{p}spot-{i}", "family": "parking_spot", "site_id": f"{p}pz",
                "name": f"Spot {i}", "dev_eui": f"{0x70B3D50000000000 + (tag << 12) + i:016x}"}
               for i in range(n)]
    return parse_registry({"sites": sites, "devices": devices})


@pytest.mark.parametrize("day", sorted(DAYS), ids=str)
async def test_every_clean_uplink_is_a_row_of_its_own(day: date, stack: Stack,
                                                      settings: Settings, db_url: str) -> None:
    """300 spot sensors through the night of the change: each clean message is one stored
    row and ``expected_rows`` counts exactly the stored rows. (With this seed and zone, a
    heartbeat and a change uplink used to fall on the same second: two readings, one key.)"""
    p = "dstkeys-"  # fixed: the zone id seeds the zone's random stream
    reg = _parking_city(p, 300)
    ids = [d.id for d in reg.devices]
    with psycopg.connect(db_url, autocommit=True) as conn:
        store.import_registry(conn, reg)
        conn.execute("DELETE FROM parking_spot_state WHERE device_id = ANY(%s)", (ids,))
    s = ingest_settings(settings)
    sc = Scenario.model_validate({
        "name": "keys", "start": f"{day} 01:00", "duration": "3h", "seed": 4,
        "speed": "max", "parking": {"arrivals_per_spot_hour": 3},
        "formats": {"parking_spot": {"chirpstack": 1, "native": 1, "senml": 1}},
        "faults": {"duplicates": 0.01}})
    sim = Simulation(sc, reg, prefix=s.topic_prefix)
    msgs = list(sim.messages())
    truth = sim.truth_document()
    expected = truth["messages"]["expected_rows"]["parking_spot_state"]
    assert expected == truth["messages"]["by_kind"]["parking/state"] > 4000

    def stored() -> int:
        return count(db_url, "parking_spot_state", "device_id = ANY(%s)", (ids,))

    async with running_ingestor(stack, s, db_url) as ing:
        await asyncio.to_thread(publish_pooled, stack, msgs, s.topic_prefix, f"dstkeys-{day}")
        await await_committed(ing, len(msgs), timeout=90, what=f"{len(msgs)} messages committed")
    assert await asyncio.to_thread(stored) == expected
