"""The simulators' ground truth on both DST change days (Europe/Paris, 2026-03-29 and
2026-10-25), checked against zoneinfo arithmetic and against the stream decoded as the
ingestor decodes it: window ends, local calendars and events, period labels, the meter
replacement's half-hour, and rows counted by their table's unique key."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devices.families import Family
from devices.readings import (
    GridReading,
    ParkingTransaction,
    Reading,
    WifiSession,
)
from devices.registry import load_registry_file
from ingest.router import Router
from simulators.model import OUT_OF_ORDER, TABLE_OF_KIND, Emission, SimDevice, SimMessage
from simulators.rhythms import LocalClock
from simulators.scenario import Scenario
from simulators.stream import Simulation
from simulators.truth import Truth
from tests.unit.test_sim_stream import ALL_FORMATS, router_for, tiny_city

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPRING, AUTUMN = "2026-03-29", "2026-10-25"
DEMO_CITY = Path(__file__).resolve().parents[2] / "devices" / "data" / "demo-city.json"
TABLE_OF_READING = {"WifiApStats": "wifi_ap_stats", "WifiSession": "wifi_sessions",
                    "ParkingSpotState": "parking_spot_state",
                    "ParkingTransaction": "parking_transactions",
                    "ParkingMeterStatus": "parking_meter_status",
                    "GridReading": "grid_readings"}


def _local(day: str, hh: int, mm: int = 0, *, fold: int = 0) -> datetime:
    d = datetime.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hh, mm, tzinfo=PARIS, fold=fold)


def _zoneinfo_after(start: datetime, seconds: int) -> datetime:
    """Independent: the local instant ``seconds`` after ``start``, from its Unix time."""
    return datetime.fromtimestamp(start.timestamp() + seconds, PARIS)


def _sim(start: str, duration: str, **overrides: Any) -> Simulation:
    base: dict[str, Any] = {"name": "dst", "start": start, "duration": duration, "seed": 4,
                            "formats": ALL_FORMATS,
                            "parking": {"arrivals_per_spot_hour": 3},
                            "wifi": {"peak_visitors_per_ap_hour": 40},
                            "grid": {"replacements": 1, "gap_share": 0.25}}
    base.update(overrides)
    return Simulation(Scenario.model_validate(base), tiny_city(), now=NOW)


@pytest.mark.parametrize(("start", "duration", "end"), [
    # 24 hours of elapsed time from local midnight end at 01:00 / 23:00 local.
    (_local(SPRING, 0), 24 * 3600, "2026-03-30T01:00:00+02:00"),
    (_local(AUTUMN, 0), 24 * 3600, "2026-10-25T23:00:00+01:00"),
    # The whole local day is 23 / 25 hours long.
    (_local(SPRING, 0), 23 * 3600, "2026-03-30T00:00:00+02:00"),
    (_local(AUTUMN, 0), 25 * 3600, "2026-10-26T00:00:00+01:00"),
    (_local(SPRING, 1, 30), 3600, "2026-03-29T03:30:00+02:00"),
    (_local(AUTUMN, 2, 30), 3600, "2026-10-25T02:30:00+01:00"),  # the repeated half hour
    (_local(AUTUMN, 1, 0), 3 * 3600, "2026-10-25T03:00:00+01:00"),
])
def test_a_window_ends_after_its_duration_of_elapsed_time(start: datetime, duration: int,
                                                          end: str) -> None:
    sim = _sim(start.isoformat(), f"{duration}s")
    assert sim.window.start == start
    assert sim.window.end.isoformat() == end
    assert sim.window.end == _zoneinfo_after(start, duration)
    assert sim.window.end.timestamp() - sim.window.start.timestamp() == duration
    assert sim.window.end_unix == int(sim.window.end.timestamp())
    doc = sim.truth_document()
    assert doc["start"] == start.isoformat() and doc["end"] == end
    assert f"-> {end}" in sim.describe()


@pytest.mark.parametrize("day", [SPRING, AUTUMN])
def test_the_local_calendar_follows_the_offset(day: str) -> None:
    sim = _sim(f"{day} 00:00", "26h")
    clock = LocalClock.build(sim.window)
    assert len(clock.sod) >= 26 * 60
    first = sim.window.start.date()
    for k in range(len(clock.sod)):
        local = _zoneinfo_after(sim.window.start, 60 * k)
        assert clock.sod[k] == local.hour * 3600 + local.minute * 60, (k, local)
        assert clock.day[k] == (local.date() - first).days
        assert clock.weekday[k] == local.weekday()
    # 03:00 local is minute 120 in spring (02:00-03:00 does not exist), 240 in autumn
    # (02:00-03:00 twice); the minute before is 01:59 / the second 02:59.
    k3, before = (120, 1 * 3600 + 59 * 60) if day == SPRING else (240, 2 * 3600 + 59 * 60)
    assert clock.sod[k3] == 3 * 3600 and clock.sod[k3 - 1] == before
    if day == AUTUMN:
        assert clock.sod[120] == clock.sod[180] == 2 * 3600


@pytest.mark.parametrize("day", [SPRING, AUTUMN])
def test_events_happen_at_their_local_time(day: str) -> None:
    """A district silent from 10:00 to 10:10 local sends nothing then, readings around."""
    reg = tiny_city()
    sim = _sim(f"{day} 00:00", "12h", formats={}, grid={"replacements": 0, "gap_share": 0},
               events=[{"type": "silent_fleet", "family": "grid_meter", "start": "10:00",
                        "end": "10:10"}])
    router = router_for(reg)
    times = {r.time for m in sim.messages() for r in _route(router, m)[0]
             if isinstance(r, GridReading)}
    silent_from, silent_to = _local(day, 10), _local(day, 10, 10)
    assert not [t for t in times if silent_from <= t < silent_to]
    assert silent_to in times and _local(day, 9, 50) in times


@pytest.mark.parametrize("day", [SPRING, AUTUMN])
def test_truth_periods_are_consecutive_instants_labelled_in_local_time(day: str) -> None:
    duration = 6 * 3600  # 00:00 to 07:00 (spring) / 05:00 (autumn) local
    sim = _sim(f"{day} 00:00", f"{duration}s")
    doc = sim.truth_document()
    start = sim.window.start_unix
    zones = {r["zone"] for r in doc["parking_occupancy"]}
    assert zones == {"pz"}
    labels = [r["period_start"] for r in doc["parking_occupancy"]]
    assert labels == [_zoneinfo_after(sim.window.start, s).isoformat()
                      for s in range(0, duration, 900)]
    assert [datetime.fromisoformat(x).timestamp() - start for x in labels] == list(
        range(0, duration, 900))
    meters = {r["meter"] for r in doc["grid_energy"]}
    assert len(meters) == 4
    for meter in meters:
        rows = [r["period_start"] for r in doc["grid_energy"] if r["meter"] == meter]
        assert rows == [_zoneinfo_after(sim.window.start, s).isoformat()
                        for s in range(0, duration, 1800)]
    if day == AUTUMN:  # 02:00 local twice, an hour apart
        assert "2026-10-25T02:00:00+02:00" in labels and "2026-10-25T02:00:00+01:00" in labels
    else:  # no 02:xx local at all
        assert not [x for x in labels if "T02:" in x] and "2026-03-29T03:00:00+02:00" in labels
    hours = [r["hour_start"] for r in doc["wifi_presence"]]
    assert len(hours) == len(set(hours)) and hours
    assert all(datetime.fromisoformat(h).timestamp() % 3600 == 0 for h in hours)


def _route(router: Router, m: SimMessage) -> tuple[list[Reading], str | None]:
    """As the ingestor routes ``m``, received a while after the DST days."""
    routed = router.route(m.topic, m.payload, NOW, m.content_type)
    return routed.readings, routed.rejection.reason if routed.rejection else None


def _decoded(sim: Simulation, reg: Any) -> list[tuple[SimMessage, Reading]]:
    router = router_for(reg)
    out: list[tuple[SimMessage, Reading]] = []
    for m in sim.messages():
        if m.fault not in (None, OUT_OF_ORDER):
            continue
        readings, reason = _route(router, m)
        assert reason is None, (reason, m)
        out.extend((m, r) for r in readings)
    return out


@pytest.mark.parametrize("day", [SPRING, AUTUMN])
def test_the_replaced_meters_half_hour_is_not_complete(day: str) -> None:
    """A period is complete exactly when the decoded readings measure it: readings at both
    ends and no index decrease (a meter swap) between two readings that overlap it; its
    energy is then the indices' difference."""
    reg = load_registry_file(DEMO_CITY)
    sim = Simulation(Scenario.model_validate({
        "name": "swap", "start": f"{day} 00:00", "duration": "6h", "seed": 8,
        "formats": {"grid_meter": {"native": 1, "senml": 1, "tic": 1}},
        "city": {"source": "demo", "families": ["grid_meter"]},
        "grid": {"replacements": 6, "gap_share": 0.05, "gap_minutes": [20, 50]}}), reg,
        now=NOW)
    readings: dict[str, dict[int, int]] = defaultdict(dict)
    for _m, r in _decoded(sim, reg):
        assert isinstance(r, GridReading) and r.energy_import_wh is not None
        readings[r.device_id][int(r.time.timestamp())] = r.energy_import_wh
    resets: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for meter, mine in readings.items():
        times = sorted(mine)
        resets[meter] = [(a, b) for a, b in pairwise(times)
                         if mine[b] < mine[a]]
    assert sum(len(v) for v in resets.values()) == 6
    doc = sim.truth_document()
    complete = flagged = 0
    for row in doc["grid_energy"]:
        u0 = int(datetime.fromisoformat(row["period_start"]).timestamp())
        u1 = u0 + 1800
        mine = readings[row["meter"]]
        swapped = any(a < u1 and b > u0 for a, b in resets[row["meter"]])
        flagged += swapped
        assert row["complete"] == (u0 in mine and u1 in mine and not swapped), row
        if row["complete"]:
            complete += 1
            assert mine[u1] - mine[u0] == row["import_wh"], row
    assert flagged >= 6 and complete > 1000
    district: dict[tuple[str, str], int] = defaultdict(int)
    for row in doc["grid_energy"]:
        district[(row["district"], row["period_start"])] += row["complete"]
    assert {(r["district"], r["period_start"]): r["complete_meters"]
            for r in doc["grid_energy_district"]} == district


def test_the_truth_counts_a_key_once() -> None:
    """Two clean readings with one table key make one row (the database keeps one)."""
    start = int(_local(AUTUMN, 2, 30, fold=1).timestamp())
    t = Truth(start_unix=start, duration_s=1800, tz=PARIS, capacity={"pz": 1})
    spot = SimDevice("s1", Family.PARKING_SPOT, "pz", 0, 600, "native", "iso_utc")
    pm = SimDevice("pm", Family.PARKING_METER, "pz", 0, 900, "native", "iso_utc")
    ap = SimDevice("ap", Family.WIFI_AP, "sq", 0, 60, "native", "iso_utc")

    def e(dev: SimDevice, at: int, kind: str, **values: Any) -> None:
        t.observe(Emission(at, float(at), dev, kind, values), start + at)

    e(spot, 0, "parking/state", state="occupied", rssi=-90)
    e(spot, 0, "parking/state", state="occupied", rssi=-95)  # same second: same row
    e(spot, 1, "parking/state", state="occupied", rssi=-95)
    e(pm, 5, "parking/transaction", transaction_id="pm-1", amount_cents=100)
    e(pm, 5, "parking/transaction", transaction_id="pm-2", amount_cents=100)
    e(pm, 5, "parking/transaction", transaction_id="pm-2", amount_cents=100)
    e(ap, 7, "wifi/sessions", client_mac="02:00:00:00:00:01", event="associated")
    e(ap, 7, "wifi/sessions", client_mac="02:00:00:00:00:01", event="disassociated")
    e(ap, 7, "wifi/sessions", client_mac="02:00:00:00:00:01", event="associated")
    doc = t.result({})
    assert doc["messages"]["clean"] == 9
    rows = doc["messages"]["expected_rows"]
    assert rows["parking_spot_state"] == 2 and rows["parking_transactions"] == 2
    assert rows["wifi_sessions"] == 2
    assert doc["parking_revenue"][0]["transactions"] == 2
    assert doc["parking_revenue"][0]["revenue_cents"] == 200
    assert doc["wifi_presence"][0]["associations"] == 1


def _db_key(r: Reading) -> tuple[Any, ...]:
    if isinstance(r, WifiSession):
        return (r.device_id, r.client_key, r.event, r.time)
    if isinstance(r, ParkingTransaction):
        return (r.device_id, r.transaction_id, r.time)
    return (r.device_id, r.time)


@pytest.mark.parametrize(("start", "seed"), [(f"{SPRING} 00:00", 1), (f"{AUTUMN} 00:00", 2),
                                             ("2026-10-24 06:00", 3)])
def test_expected_rows_are_the_distinct_keys_of_the_decoded_stream(start: str,
                                                                   seed: int) -> None:
    """Every clean message of the demo city's parking zones decodes into a row of its own
    (a heartbeat and a change uplink due on the same second make one uplink), and
    ``expected_rows`` is the number of distinct table keys."""
    reg = load_registry_file(DEMO_CITY)
    sc = Scenario.model_validate({
        "name": "keys", "start": start, "duration": "18h", "seed": seed,
        "formats": {"parking_spot": {"chirpstack": 1, "native": 1, "senml": 1}},
        "city": {"source": "demo", "families": ["parking_spot", "parking_meter"]},
        "parking": {"arrivals_per_spot_hour": 0.8, "paid_days": ["sun", "sat"]},
        "faults": {"duplicates": 0.01, "out_of_order": 0.01}})
    sim = Simulation(sc, reg, now=NOW)
    keys: dict[str, Counter[tuple[Any, ...]]] = defaultdict(Counter)
    for _m, r in _decoded(sim, reg):
        keys[TABLE_OF_READING[type(r).__name__]][_db_key(r)] += 1
    doc = sim.truth_document()
    expected = doc["messages"]["expected_rows"]
    assert expected["parking_spot_state"] > 20_000 and expected["parking_transactions"] > 0
    for table in TABLE_OF_KIND.values():
        assert expected[table] == len(keys[table]), table
        assert not [k for k, n in keys[table].items() if n > 1], table
    assert doc["messages"]["clean"] == sum(expected.values())


def test_a_runs_progress_clock_is_local_elapsed_time() -> None:
    from simulators.publisher import RunStats, progress_line

    stats = RunStats()
    stats.last_offset = 3 * 3600.0
    line = progress_line(stats, _local(SPRING, 0))
    assert "2026-03-29 04:00:00+0200 (+3h00m00s)" in line, line
    assert _local(SPRING, 0) + timedelta(hours=3) != _zoneinfo_after(_local(SPRING, 0), 10800)


@pytest.mark.parametrize(("spec", "start"), [
    ("2026-03-29 02:30", "2026-03-29T03:30:00+02:00"),  # does not exist: offset before
    ("2026-10-25 02:30", "2026-10-25T02:30:00+02:00"),  # twice: the first
    ("2026-10-25T02:30+01:00", "2026-10-25T02:30:00+01:00"),  # the second, by its offset
])
def test_local_starts_in_a_change_hour(spec: str, start: str) -> None:
    assert _sim(spec, "1h").window.start.isoformat() == start
