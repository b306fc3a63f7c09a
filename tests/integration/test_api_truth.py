"""The API's aggregates equal the simulators' ground truth: a tiny scenario goes through
the real broker and ingestor into the database, then parking occupancy, meter revenue and
grid energy (per meter and per district) are read back over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.tokens import create_token
from beffroi.settings import Settings
from beffroi.stack import Stack
from devices import store
from simulators.model import TABLE_OF_KIND
from simulators.scenario import Scenario
from simulators.stream import Simulation
from tests.conftest import random_tag
from tests.integration.api_helpers import ApiReader, api_client
from tests.integration.ingest_helpers import ingest_settings, running_ingestor
from tests.integration.mqtt_helpers import await_until
from tests.integration.sim_helpers import publish_pooled, rows_by_table
from tests.unit.test_sim_stream import ALL_FORMATS, tiny_city

pytestmark = pytest.mark.stack


class Loaded(ApiReader):
    """The scenario's truth, its window and an API client."""

    def __init__(self, client: TestClient, token: str, truth: dict[str, Any], p: str,
                 start: datetime, end: datetime) -> None:
        super().__init__(client, token)
        self.truth = truth
        self.p = p
        self.start = start
        self.end = end

    @property
    def window(self) -> str:
        f = self.start.isoformat().replace("+00:00", "Z")
        t = self.end.isoformat().replace("+00:00", "Z")
        return f"from={f}&to={t}"


@pytest.fixture(scope="module")
async def loaded(stack: Stack, settings: Settings, db_url: str) -> AsyncIterator[Loaded]:
    uid = random_tag("g")
    p = f"{uid}-"
    full = tiny_city(prefix=p)
    # No wifi: client keys are per local day and a window across midnight would lose some.
    reg = replace(full, devices=[d for d in full.devices if d.family != "wifi_ap"])
    with psycopg.connect(db_url, autocommit=True) as conn:
        store.import_registry(conn, reg)
    with psycopg.connect(db_url) as conn:
        token, _ = create_token(conn, f"{uid}-truth", ["read"])
    # A 90-minute window aligned on half hours, in the past (readings are refused more than
    # 5 minutes in the future), at the same local time every day (09:00 yesterday in Paris):
    # the simulated city then does not depend on when the test runs (at night a zone can
    # have no parked car at all).
    yesterday = datetime.now(_paris()).date() - timedelta(days=1)
    start = datetime.combine(yesterday, time(9), tzinfo=_paris()).astimezone(UTC)
    s = ingest_settings(settings)
    sc = Scenario.model_validate({
        "name": "api", "start": start.isoformat(), "duration": "90m", "seed": 30,
        "speed": "max", "formats": ALL_FORMATS,
        # Paid every day, so that there is revenue to compare whatever day yesterday was.
        # With this seed the district has a half hour where every meter is complete and
        # others where some are not (gaps, a replaced meter).
        "parking": {"arrivals_per_spot_hour": 3, "silent_share": 0.2,
                    "paid_days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
        "grid": {"replacements": 1, "gap_share": 0.5, "gap_minutes": [20, 40]},
        "faults": {"duplicates": 0.05, "out_of_order": 0.05, "malformed": 0.01,
                   "clock_skew": 0.3}})
    sim = Simulation(sc, reg, prefix=s.topic_prefix)
    ids = sim.device_ids
    msgs = list(sim.messages())
    truth = sim.truth_document()
    expected = truth["messages"]["expected_rows"]

    async with running_ingestor(stack, s, db_url):
        await asyncio.to_thread(publish_pooled, stack, msgs, s.topic_prefix, f"api-truth-{uid}")

        async def settled() -> bool:
            return bool(await rows_by_table(db_url, TABLE_OF_KIND.values(), ids) == expected)

        await await_until(settled, timeout=60, what=f"rows {expected}")
    with api_client(settings, db_url) as (client, _):
        yield Loaded(client, token, truth, p, start, start + timedelta(minutes=90))


def test_parking_occupancy_equals_the_truth(loaded: Loaded) -> None:
    zone = f"{loaded.p}pz"
    body = loaded.get(f"/v1/parking/zones/{zone}/occupancy?{loaded.window}&bucket=15m")
    truth = [t for t in loaded.truth["parking_occupancy"] if t["zone"] == zone]
    assert len(body["data"]) == len(truth) == 6
    assert any(t["occupied_spot_s"] for t in truth) and any(
        t["known_spot_s"] < 6 * 900 for t in truth)  # silent sensors exist
    for got, want in zip(body["data"], truth, strict=True):
        assert datetime.fromisoformat(got["start"]) == datetime.fromisoformat(
            want["period_start"])
        assert abs(got["occupied_spot_s"] - want["occupied_spot_s"]) <= 1, (got, want)
        known = got["occupied_spot_s"] + got["free_spot_s"]
        assert abs(known - want["known_spot_s"]) <= 1, (got, want)
        assert abs(got["occupancy"] - want["occupancy"]) <= 0.0002
        assert abs(got["free_spots_mean"] - want["free_spots_mean"]) <= 0.01


def test_meter_revenue_equals_the_truth(loaded: Loaded) -> None:
    meter = f"{loaded.p}pm-1"
    truth = {t["local_date"]: t for t in loaded.truth["parking_revenue"] if t["meter"] == meter}
    first = loaded.start.astimezone(_paris()).date()
    last = (loaded.end.astimezone(_paris()) + timedelta(days=1)).date()
    assert sum(t["transactions"] for t in truth.values()) > 0  # something to compare
    body = loaded.get(f"/v1/parking/meters/{meter}/revenue?from={first}&to={last}&bucket=1d")
    got = {d["start"][:10]: d for d in body["data"] if d["transactions"]}
    assert set(got) == set(truth)
    for day, want in truth.items():
        assert got[day]["transactions"] == want["transactions"]
        assert got[day]["revenue_cents"] == want["revenue_cents"]
    zone = loaded.get(f"/v1/parking/zones/{loaded.p}pz/revenue?from={first}&to={last}"
                      "&bucket=1d")
    assert sum(d["revenue_cents"] for d in zone["data"]) == sum(
        t["revenue_cents"] for t in truth.values())


def _paris() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Paris")


def test_meter_energy_equals_the_truth_where_complete(loaded: Loaded) -> None:
    checked = 0
    flagged = 0
    for i in range(1, 5):
        meter = f"{loaded.p}linky-{i}"
        body = loaded.get(f"/v1/grid/meters/{meter}/energy?{loaded.window}&bucket=30m")
        truth = {datetime.fromisoformat(t["period_start"]): t
                 for t in loaded.truth["grid_energy"] if t["meter"] == meter}
        assert len(body["data"]) == len(truth) == 3
        for got in body["data"]:
            want = truth[datetime.fromisoformat(got["start"])]
            # The truth's `complete` is exactly what the API can know (a swapped meter's
            # half hour is not).
            assert got["complete"] == want["complete"], (meter, got, want)
            if got["complete"]:
                assert got["import_wh"] == want["import_wh"], (meter, got, want)
                assert got["export_wh"] == want["export_wh"], (meter, got, want)
                checked += 1
            else:
                flagged += 1
                assert got["reset"] or got["estimated"] or got["covered_s"] < 1800
            if got["import_wh"] is not None:
                assert got["import_wh"] >= 0
    assert checked >= 4 and flagged >= 1  # the scenario has gaps and a replaced meter


def test_district_energy_equals_the_truth(loaded: Loaded) -> None:
    district = f"{loaded.p}dist"
    body = loaded.get(f"/v1/grid/districts/{district}/energy?{loaded.window}&bucket=30m")
    truth = {datetime.fromisoformat(t["period_start"]): t
             for t in loaded.truth["grid_energy_district"] if t["district"] == district}
    assert body["meters_total"] == 4
    assert len(body["data"]) == len(truth) == 3
    compared = 0
    for got in body["data"]:
        want = truth[datetime.fromisoformat(got["start"])]
        assert got["complete_meters"] == want["complete_meters"], (got, want)
        assert got["complete"] == (want["complete_meters"] == want["meters"] == 4)
        if got["complete"]:
            assert got["import_wh"] == want["import_wh"], (got, want)
            assert got["export_wh"] == want["export_wh"], (got, want)
            compared += 1
    assert 0 < compared < len(truth)  # complete and incomplete half hours both checked


def test_voltage_and_peaks_answer_for_the_window(loaded: Loaded) -> None:
    district = f"{loaded.p}dist"
    day = loaded.start.astimezone(_paris()).date()
    v = loaded.get(f"/v1/grid/districts/{district}/voltage?{loaded.window}&bucket=1h")
    assert sum(d["values"] for d in v["data"]) > 0
    shares = [d["share_within"] for d in v["data"] if d["share_within"] is not None]
    assert shares and all(0 <= x <= 1 for x in shares)
    peaks = loaded.get(f"/v1/grid/districts/{district}/peaks?from={day}"
                       f"&to={day + timedelta(days=1)}&bucket=1d")
    assert peaks["data"][0]["peak_power_w"] is not None
