"""Simulator streams: determinism, every message decodes as the ingestor decodes it, fault
ratios, ground truth consistent with the stream, record/replay round trip."""

from __future__ import annotations

import io
import json
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices.privacy import MacHasher
from devices.readings import GridReading, ParkingSpotState, Reading, WifiApStats
from devices.registry import RegistryFile, parse_registry
from ingest.registry_cache import KnownDevice, RegistryCache, meter_index
from ingest.router import Router
from simulators.model import FAULTS, OUT_OF_ORDER, SimMessage
from simulators.recording import read_recording, write_jsonl
from simulators.scenario import Scenario, find_scenario, named_scenarios
from simulators.stream import Simulation

NOW = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)
START = datetime(2025, 11, 18, 6, 0, tzinfo=UTC)  # the scenarios' start, 07:00 in Paris
ALL_FORMATS: dict[str, Any] = {
    "wifi_ap": {"native": 1, "senml": 1},
    "parking_spot": {"native": 1, "senml": 1, "chirpstack": 1},
    "parking_meter": {"native": 1, "senml": 1},
    "grid_meter": {"native": 1, "senml": 1, "tic": 1},
}


def tiny_city(prefix: str = "") -> RegistryFile:
    """A square with 2 APs, a zone with 6 spots and a meter, a district with 4 Linky."""
    p = prefix
    tag = zlib.crc32(p.encode())  # distinct DevEUIs and meter ids per prefix
    sites = [
        {"id": f"{p}sq", "kind": "square", "name": "Place", "insee": "62041"},
        {"id": f"{p}pz", "kind": "parking_zone", "name": "Zone", "insee": "62041",
         "capacity": 6, "metadata": {"tariff_zone": "rouge"}},
        {"id": f"{p}dist", "kind": "district", "name": "Quartier", "insee": "62041"},
    ]
    devices: list[dict[str, Any]] = [
        {"id": f"{p}ap-{i}", "family": "wifi_ap", "site_id": f"{p}sq", "name": f"AP {i}"}
        for i in (1, 2)]
    devices += [{"id": f"{p}spot-{i}", "family": "parking_spot", "site_id": f"{p}pz",
                 "name": f"Spot {i}", "dev_eui": f"{0x70B3D57E00000000 + (tag << 8) + i:016x}"}
                for i in range(1, 7)]
    devices.append({"id": f"{p}pm-1", "family": "parking_meter", "site_id": f"{p}pz",
                    "name": "Horodateur", "metadata": {"payment": ["card", "coins"]}})
    metas = [{"profile": "residential", "phases": 1, "pref_kva": 6, "solar": False},
             {"profile": "residential", "phases": 1, "pref_kva": 9, "solar": True},
             {"profile": "professional", "phases": 3, "pref_kva": 36, "solar": True},
             {"profile": "residential", "phases": 3, "pref_kva": 12, "solar": False}]
    devices += [{"id": f"{p}linky-{i}", "family": "grid_meter", "site_id": f"{p}dist",
                 "name": f"Linky {i}", "meter_id": f"{10**13 + tag % 10**8 * 10 + i:014d}",
                 "meter_serial": f"{10**11 + tag % 10**8 * 10 + i:012d}",
                 "metadata": metas[i - 1]} for i in range(1, 5)]
    return parse_registry({"sites": sites, "devices": devices})


def scenario(**overrides: Any) -> Scenario:
    base: dict[str, Any] = {"name": "tiny", "start": "2025-11-18 07:00", "duration": "4h",
                            "seed": 5, "formats": ALL_FORMATS,
                            "parking": {"arrivals_per_spot_hour": 3},
                            "wifi": {"peak_visitors_per_ap_hour": 80, "outage_per_ap_day": 4},
                            "grid": {"replacements": 1, "gap_share": 0.3}}
    base.update(overrides)
    return Scenario.model_validate(base)


def stream(sc: Scenario, reg: RegistryFile | None = None) -> tuple[Simulation, list[SimMessage]]:
    sim = Simulation(sc, reg or tiny_city(), now=NOW)
    return sim, list(sim.messages())


def router_for(reg: RegistryFile) -> Router:
    cache = RegistryCache()
    cache.by_id = {d.id: KnownDevice(d.id, d.family, d.active) for d in reg.devices}
    cache.by_dev_eui = {d.dev_eui: d.id for d in reg.devices if d.dev_eui}
    cache.by_meter_id = meter_index((d.id, d.meter_id, d.meter_serial) for d in reg.devices)
    cache.loaded_at = float("inf")
    return Router(prefix="city", registry=cache, hasher=MacHasher(lambda at: b"k" * 32),
                  max_payload_bytes=65536, future_skew_s=300, max_age_days=3650)


def route(router: Router, m: SimMessage) -> tuple[list[Reading], str | None]:
    # Received when published (a wifi session received days later would be too old).
    received = START + timedelta(seconds=m.offset + 1)
    routed = router.route(m.topic, m.payload, received, m.content_type)
    return routed.readings, routed.rejection.reason if routed.rejection else None


def test_same_seed_same_bytes_and_another_seed_differs() -> None:
    sc = scenario(faults={"malformed": 0.02, "duplicates": 0.02, "out_of_order": 0.02,
                          "unknown_devices": 0.02, "oversized": 0.005, "clock_skew": 0.3})
    a, b = io.StringIO(), io.StringIO()
    write_jsonl(stream(sc)[1], a)
    write_jsonl(stream(sc)[1], b)
    assert a.getvalue() == b.getvalue()
    assert len(a.getvalue()) > 100_000
    c = io.StringIO()
    write_jsonl(stream(sc.model_copy(update={"seed": 6}))[1], c)
    assert c.getvalue() != a.getvalue()


def test_stream_is_sorted_and_covers_every_kind_and_format() -> None:
    sim, msgs = stream(scenario())
    offsets = [m.offset for m in msgs]
    assert offsets == sorted(offsets)
    assert {m.kind for m in msgs} == {"wifi/stats", "wifi/sessions", "parking/state",
                                      "parking/transaction", "parking/status", "grid/reading"}
    assert {d.format for d in sim.sim_devices} == {"native", "senml", "chirpstack", "tic"}
    assert any(m.topic.startswith("application/") for m in msgs)
    assert any(m.topic.startswith("teleinfo/") for m in msgs)
    assert any(m.content_type == "application/senml+json" for m in msgs)


def test_every_clean_message_decodes_into_the_reading_the_generator_meant() -> None:
    reg = tiny_city()
    sim, msgs = stream(scenario(), reg)
    router = router_for(reg)
    rows: Counter[str] = Counter()
    for m in msgs:
        readings, reason = route(router, m)
        assert reason is None, (m.topic, m.payload[:200], reason)
        assert len(readings) == 1
        r = readings[0]
        assert r.device_id == m.device_id
        rows[type(r).__name__] += 1
        start = sim.window.start
        assert start <= r.time <= sim.window.end, (m.topic, r.time)
        if isinstance(r, WifiApStats):
            assert r.radio_up is not None
    expected = sim.truth_document()["messages"]["expected_rows"]
    assert sum(expected.values()) == len(msgs)
    assert rows["GridReading"] == expected["grid_readings"]
    assert rows["ParkingSpotState"] == expected["parking_spot_state"]


def test_grid_indices_only_grow_except_at_a_replacement() -> None:
    reg = tiny_city()
    _, msgs = stream(scenario(formats={}), reg)
    router = router_for(reg)
    last: dict[str, int] = {}
    drops = 0
    for m in msgs:
        if m.kind != "grid/reading":
            continue
        r = route(router, m)[0][0]
        assert isinstance(r, GridReading) and r.energy_import_wh is not None
        assert r.voltage_l1_v is not None and 150 <= r.voltage_l1_v <= 280
        if r.device_id in last and r.energy_import_wh < last[r.device_id]:
            drops += 1
            assert r.energy_import_wh < 1000  # a new meter starts near 0
        last[r.device_id] = r.energy_import_wh
    assert drops == 1  # replacements: 1


def test_faults_appear_with_their_ratios_and_never_make_rows() -> None:
    ratios = {"malformed": 0.05, "duplicates": 0.04, "out_of_order": 0.03,
              "unknown_devices": 0.02, "oversized": 0.01}
    reg = tiny_city()
    sc = scenario(duration="1d", faults={**ratios, "clock_skew": 0.5})
    sim, msgs = stream(sc, reg)
    clean = sim.clean
    assert clean > 5000
    counts = Counter(m.fault for m in msgs)
    label = {"malformed": "malformed", "duplicates": "duplicate", "out_of_order": "out_of_order",
             "unknown_devices": "unknown_device", "oversized": "oversized"}
    for key, ratio in ratios.items():
        n = counts[label[key]]
        sd = (clean * ratio * (1 - ratio)) ** 0.5
        assert abs(n - clean * ratio) < 4 * sd + 2, (key, n, clean * ratio)
    router = router_for(reg)
    seen: set[tuple[str, str, datetime]] = set()
    for m in msgs:
        readings, reason = route(router, m)
        if m.fault is None or m.fault == OUT_OF_ORDER:
            assert reason is None
            continue
        assert m.fault in FAULTS
        if m.fault == "duplicate":
            assert readings  # valid, the database keeps one row of the two
            continue
        assert reason is not None, (m.fault, m.payload[:80])
        expected = {"malformed": {"invalid_json", "not_utf8", "invalid_payload", "senml_invalid",
                                  "unsupported_format", "bad_timestamp", "out_of_range"},
                    "oversized": {"oversized"},
                    "unknown_device": {"unknown_device"}}[m.fault]
        assert reason in expected, (m.fault, reason)
        seen.add((m.fault, reason, datetime.min))
    # Out-of-order messages are published later than messages stamped after them.
    late = [m for m in msgs if m.fault == OUT_OF_ORDER]
    assert late and all(m.offset > 0 for m in late)
    skewed = [d for d in sim.sim_devices if d.skew_s]
    assert skewed and all(10 <= abs(d.skew_s) <= 240 for d in skewed)
    assert all(d.format != "chirpstack" and d.family.value != "grid_meter" for d in skewed)


def test_truth_matches_the_stream() -> None:
    """The truth agrees with aggregates recomputed from the decoded stream."""
    reg = tiny_city()
    sim, msgs = stream(scenario(duration="4h", formats={}), reg)
    truth = sim.truth_document()
    router = router_for(reg)
    indices: dict[tuple[str, datetime], int] = {}
    spot_states: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for m in msgs:
        r = route(router, m)[0][0]
        if isinstance(r, GridReading) and r.energy_import_wh is not None:
            indices[(r.device_id, r.time)] = r.energy_import_wh
        if isinstance(r, ParkingSpotState):
            spot_states[r.device_id].append((r.time, r.state))
    complete = [row for row in truth["grid_energy"] if row["complete"]]
    assert len(complete) > 10
    for row in complete:  # a replaced meter's half hour is not complete: no index drops
        t0 = datetime.fromisoformat(row["period_start"]).astimezone(UTC)
        t1 = t0 + timedelta(minutes=30)
        diff = indices[(row["meter"], t1)] - indices[(row["meter"], t0)]
        assert diff == row["import_wh"], row
    # Occupancy: mean free spots of the first full period, from the decoded states.
    first = truth["parking_occupancy"][4]
    p0 = datetime.fromisoformat(first["period_start"]).astimezone(UTC).timestamp()
    occupied = 0.0
    for states in spot_states.values():
        states.sort()
        for j, (t, state) in enumerate(states):
            a = max(t.timestamp(), p0)
            b = min(states[j + 1][0].timestamp() if j + 1 < len(states) else 1e12, p0 + 900)
            if b > a and state == "occupied":
                occupied += b - a
    assert first["occupied_spot_s"] == int(occupied)


def test_truth_hand_checked() -> None:
    """A hand-made sequence of reports gives the aggregates worked out by hand."""
    from zoneinfo import ZoneInfo

    from devices.families import Family
    from simulators.model import Emission, SimDevice
    from simulators.truth import Truth

    start = int(datetime(2025, 11, 18, 8, 0, tzinfo=UTC).timestamp())  # 09:00 in Paris
    t = Truth(start_unix=start, duration_s=1800, tz=ZoneInfo("Europe/Paris"),
              capacity={"pz": 2})
    s1 = SimDevice("s1", Family.PARKING_SPOT, "pz", 0, 600, "native", "iso_utc")
    s2 = SimDevice("s2", Family.PARKING_SPOT, "pz", 1, 600, "native", "iso_utc")
    ap = SimDevice("ap", Family.WIFI_AP, "sq", 0, 60, "native", "iso_utc")
    pm = SimDevice("pm", Family.PARKING_METER, "pz", 0, 900, "native", "iso_utc")

    def e(dev: SimDevice, at: int, kind: str, **values: Any) -> None:
        t.observe(Emission(at, float(at), dev, kind, values), start + at)

    e(s1, 0, "parking/state", state="occupied")  # s1: occupied 0..450, then free
    e(s1, 450, "parking/state", state="free")
    e(s2, 300, "parking/state", state="occupied")  # s2 unknown until 300, then occupied
    e(ap, 0, "wifi/stats", clients=4)
    e(ap, 60, "wifi/stats", clients=6)
    e(ap, 10, "wifi/sessions", client_mac="02:00:00:00:00:01", event="associated")
    e(ap, 20, "wifi/sessions", client_mac="02:00:00:00:00:01", event="disassociated")
    e(ap, 30, "wifi/sessions", client_mac="02:00:00:00:00:02", event="associated")
    e(pm, 100, "parking/transaction", transaction_id="pm-1", amount_cents=250)
    e(pm, 200, "parking/transaction", transaction_id="pm-2", amount_cents=100)
    doc = t.result({})
    p1, p2 = doc["parking_occupancy"]
    # First 15 min: s1 occupied 450 s, s2 occupied 600 s; known 900 + 600 s.
    assert p1 == {"zone": "pz", "period_start": "2025-11-18T09:00:00+01:00", "seconds": 900,
                  "capacity": 2, "occupied_spot_s": 1050, "known_spot_s": 1500,
                  "occupancy": round(1050 / 1800, 4), "free_spots_mean": round(450 / 900, 2)}
    # Second: s1 free, s2 occupied the whole period.
    assert p2["occupied_spot_s"] == 900 and p2["known_spot_s"] == 1800
    assert p2["occupancy"] == 0.5 and p2["free_spots_mean"] == 1.0
    assert doc["wifi_presence"] == [{"square": "sq", "hour_start": "2025-11-18T09:00:00+01:00",
                                     "clients_mean": 5.0, "associations": 2,
                                     "unique_visitors": 2}]
    assert doc["parking_revenue"] == [{"meter": "pm", "zone": "pz", "local_date": "2025-11-18",
                                       "transactions": 2, "revenue_cents": 350}]
    assert doc["messages"]["expected_rows"]["parking_spot_state"] == 3


def test_events_shape_the_traffic() -> None:
    reg = tiny_city()
    market = [{"type": "market", "site": "sq", "start": "08:00", "end": "09:00", "factor": 6}]
    silent = [{"type": "silent_fleet", "family": "grid_meter", "start": "08:00", "end": "08:30"}]
    outage = [{"type": "broker_outage", "start": "08:00", "end": "08:10"}]

    def sessions(events: list[dict[str, Any]]) -> int:
        _, msgs = stream(scenario(events=events, formats={}), reg)
        return sum(1 for m in msgs if m.kind == "wifi/sessions" and 3600 <= m.offset < 7200)

    assert sessions(market) > 3 * sessions([])
    _, msgs = stream(scenario(events=silent, formats={}), reg)
    assert not [m for m in msgs if m.kind == "grid/reading" and 3600 <= m.offset < 5400 - 100]
    _, msgs = stream(scenario(events=outage, formats={}), reg)
    assert not [m for m in msgs if 3600 <= m.offset < 4200]
    assert sum(1 for m in msgs if m.offset == 4200) > 10  # held messages go out at once


def test_record_and_replay_round_trip(tmp_path: Path) -> None:
    sc = scenario(duration="1h", faults={"malformed": 0.05})
    _, msgs = stream(sc)
    path = tmp_path / "run.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        write_jsonl(msgs, fh)
    assert any('"payload_b64"' in line for line in path.read_text().splitlines())
    back = list(read_recording(path))
    assert [(m.offset, m.topic, m.qos, m.payload, m.content_type) for m in back] == [
        (round(m.offset, 3), m.topic, m.qos, m.payload, m.content_type) for m in msgs]


def test_replay_reads_mosquitto_sub_captures(tmp_path: Path) -> None:
    cap = tmp_path / "capture.txt"
    cap.write_text('city/wifi/ap-1/stats {"ts": 1763452800, "clients": 3}\n'
                   "teleinfo/041876543210 {\"ADSC\": \"041876543210\", \"EAST\": 12}\n\n"
                   "1763452800.25 city/grid/l-1/reading {\"power_w\": 10.0}\n"
                   "1763452802.75 city/grid/l-1/reading {\"power_w\": 11.0}\n")
    msgs = list(read_recording(cap, rate=10))
    assert [m.topic for m in msgs] == ["city/wifi/ap-1/stats", "teleinfo/041876543210",
                                       "city/grid/l-1/reading", "city/grid/l-1/reading"]
    assert json.loads(msgs[0].payload)["clients"] == 3
    assert [m.offset for m in msgs] == [0.0, 0.1, 0.0, 2.5]


def test_named_scenarios_are_valid() -> None:
    named = named_scenarios()
    assert {"weekday", "saturday-market", "stress"} <= set(named)
    for name in named:
        sc = find_scenario(name)
        window = sc.resolve(now=NOW)
        assert window.start < NOW.astimezone(window.tz)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("duration", "soon", "duration"),
    ("formats", {"wifi_ap": {"tic": 1}}, "cannot publish"),
    ("start", "next week", "start"),
    ("events", [{"type": "market", "start": "10:00", "end": "09:00", "site": "x"}], "ends"),
    ("faults", {"malformed": 2}, "less than or equal"),
])
def test_scenario_validation(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scenario.model_validate({"name": "x", field: value})


def test_relative_starts() -> None:
    from zoneinfo import ZoneInfo

    from simulators.scenario import resolve_start

    tz = ZoneInfo("Europe/Paris")
    now = datetime(2025, 11, 20, 12, 0, tzinfo=UTC)  # a Thursday
    assert resolve_start("last saturday 07:00", now=now, tz=tz).isoformat() == (
        "2025-11-15T07:00:00+01:00")
    assert resolve_start("last thursday", now=now, tz=tz).date().isoformat() == "2025-11-13"
    assert resolve_start("yesterday 23:30", now=now, tz=tz).isoformat() == (
        "2025-11-19T23:30:00+01:00")
    assert resolve_start("2025-07-01 10:00", now=now, tz=tz).isoformat() == (
        "2025-07-01T10:00:00+02:00")
