"""SenML (RFC 8428): resolution of the section 5 examples, mapping to readings, rejections."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from devices.decoders import DecodeContext, decode_device_message, resolve_pack
from devices.decoders.senml import MEASUREMENTS, SenMLRecord
from devices.errors import DecodeError
from devices.families import KIND_BY_TOPIC, MessageKind
from devices.privacy import MacHasher
from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    WifiApStats,
)

NOW = datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)
SENML = "application/senml+json"
WIFI_STATS = KIND_BY_TOPIC["wifi", "stats"]
WIFI_SESSIONS = KIND_BY_TOPIC["wifi", "sessions"]
SPOT = KIND_BY_TOPIC["parking", "state"]
METER_STATUS = KIND_BY_TOPIC["parking", "status"]
TRANSACTION = KIND_BY_TOPIC["parking", "transaction"]
GRID = KIND_BY_TOPIC["grid", "reading"]


def make_ctx(received_at: datetime = NOW) -> DecodeContext:
    return DecodeContext(received_at, MacHasher(lambda at: b"k" * 32), no_device, no_device)


def no_device(key: str) -> str | None:
    return None


def unix(seconds: float) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def decode(kind: MessageKind, pack: Any, *, content_type: str | None = SENML) -> list[Any]:
    return decode_device_message("dev-1", kind, orjson.dumps(pack), make_ctx(),
                                 content_type=content_type)  # fmt: skip


def reject(kind: MessageKind, pack: Any, reason: str, *, content_type: str | None = SENML) -> str:
    with pytest.raises(DecodeError) as exc:
        decode(kind, pack, content_type=content_type)
    assert exc.value.reason == reason, exc.value.detail
    return exc.value.detail


def close(a: datetime, b: datetime) -> bool:
    return abs(a - b) < timedelta(milliseconds=1)


# --- RFC 8428 section 5 examples ------------------------------------------------------------

RFC_SINGLE = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
RFC_MULTIPLE_DATAPOINTS = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]
RFC_RELATIVE_TIMES = [
    {"bn": "urn:dev:ow:10e2073a0108006:", "bt": 1.276020076001e09, "bu": "A", "bver": 5,
     "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]  # fmt: skip
RFC_MULTIPLE_MEASUREMENTS: list[dict[str, Any]] = [
    {"bn": "urn:dev:ow:10e2073a01080063", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
    {"u": "lon", "v": 24.30621},
    {"u": "lat", "v": 60.07965},
    {"t": 60, "v": 20.3},
    {"u": "lon", "t": 60, "v": 24.30622},
    {"u": "lat", "t": 60, "v": 60.07965},
    {"t": 120, "v": 20.7},
    {"u": "lon", "t": 120, "v": 24.30623},
    {"u": "lat", "t": 120, "v": 60.07966},
    {"u": "%EL", "t": 150, "v": 98},
    {"t": 180, "v": 21.2},
    {"u": "lon", "t": 180, "v": 24.30628},
    {"u": "lat", "t": 180, "v": 60.07967},
]
RFC_RESOLVED = [
    {"n": "urn:dev:ow:10e2073a01080063", "u": r.get("u", "%RH"),
     "t": 1.320067464e09 + r.get("t", 0), "v": r["v"]}
    for r in RFC_MULTIPLE_MEASUREMENTS
]  # fmt: skip
RFC_DATA_TYPES = [
    {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
    {"n": "label", "vs": "Machine Room"},
    {"n": "open", "vb": False},
    {"n": "nfc-reader", "vd": "aGkgCg"},
]
RFC_COLLECTION = [
    {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
    {"n": "humidity", "u": "%RH", "v": 30},
    {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
    {"n": "humidity", "u": "%RH", "v": 67},
]
RFC_ACTUATOR = [
    {"bn": "urn:dev:ow:10e2073a01080063:"},
    {"n": "temp", "u": "Cel", "v": 23.1},
    {"n": "heat", "u": "/", "v": 1},
    {"n": "fan", "u": "/", "v": 0},
]
RFC_LIGHTS_OFF = [
    {"bt": 1.320078429e09, "bu": "/", "n": "2001:db8::3", "v": 0.5},
    {"n": "2001:db8::4", "v": 0.5},
    {"n": "2001:db8::3", "t": 0.1, "v": 0},
    {"n": "2001:db8::4", "t": 0.1, "v": 0},
]
ALL_RFC_PACKS = [RFC_SINGLE, RFC_MULTIPLE_DATAPOINTS, RFC_RELATIVE_TIMES,
                 RFC_MULTIPLE_MEASUREMENTS, RFC_RESOLVED, RFC_DATA_TYPES, RFC_COLLECTION,
                 RFC_ACTUATOR, RFC_LIGHTS_OFF]  # fmt: skip


def test_rfc_single_datapoint() -> None:
    (r,) = resolve_pack(RFC_SINGLE, NOW)
    assert r == SenMLRecord("urn:dev:ow:10e2073a01080063", "10e2073a01080063", "Cel", 23.1,
                            None, None, None, None, NOW, None)  # fmt: skip


def test_rfc_multiple_datapoints() -> None:
    voltage, current = resolve_pack(RFC_MULTIPLE_DATAPOINTS, NOW)
    assert (voltage.name, voltage.measurement, voltage.unit, voltage.value) == (
        "urn:dev:ow:10e2073a01080063:voltage", "voltage", "V", 120.1)  # fmt: skip
    assert (current.name, current.measurement, current.unit, current.value) == (
        "urn:dev:ow:10e2073a01080063:current", "current", "A", 1.2)  # fmt: skip
    assert voltage.time == current.time == NOW


def test_rfc_base_time_unit_and_version() -> None:
    records = resolve_pack(RFC_RELATIVE_TIMES, NOW)
    assert len(records) == 7
    base = unix(1.276020076001e09)
    assert records[0].unit == "V"
    assert close(records[0].time, base)
    assert [r.unit for r in records[1:]] == ["A"] * 6
    assert [r.value for r in records[1:]] == [1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    for r, back in zip(records[1:], (5, 4, 3, 2, 1, 0), strict=True):
        assert r.name == "urn:dev:ow:10e2073a0108006:current"
        assert close(r.time, base - timedelta(seconds=back))


def test_rfc_multiple_measurements_and_resolved_form_agree() -> None:
    records = resolve_pack(RFC_MULTIPLE_MEASUREMENTS, NOW)
    assert len(records) == 13
    assert {r.name for r in records} == {"urn:dev:ow:10e2073a01080063"}
    assert [r.unit for r in records[:4]] == ["%RH", "lon", "lat", "%RH"]
    assert records[9].unit == "%EL"
    assert close(records[9].time, unix(1.320067464e09 + 150))
    assert close(records[12].time, unix(1.320067464e09 + 180))
    assert records == resolve_pack(RFC_RESOLVED, NOW)


def test_rfc_multiple_data_types() -> None:
    temp, label, is_open, nfc = resolve_pack(RFC_DATA_TYPES, NOW)
    assert (temp.measurement, temp.value, temp.unit) == ("temp", 23.1, "Cel")
    assert (label.measurement, label.string_value, label.value) == ("label", "Machine Room", None)
    assert (is_open.measurement, is_open.bool_value) == ("open", False)
    assert (nfc.name, nfc.data_value) == ("urn:dev:ow:10e2073a01080063:nfc-reader", "aGkgCg")


def test_rfc_collection_of_resources_keeps_base_time_across_base_names() -> None:
    records = resolve_pack(RFC_COLLECTION, NOW)
    assert [r.name for r in records] == [
        "2001:db8::2/temperature", "2001:db8::2/humidity",
        "2001:db8::1/temperature", "2001:db8::1/humidity",
    ]  # fmt: skip
    assert [r.measurement for r in records] == ["temperature", "humidity"] * 2
    assert all(close(r.time, unix(1.320078429e09)) for r in records)


def test_rfc_actuator_record_with_only_base_fields_sets_them() -> None:
    records = resolve_pack(RFC_ACTUATOR, NOW)
    assert [(r.name, r.unit, r.value) for r in records] == [
        ("urn:dev:ow:10e2073a01080063:temp", "Cel", 23.1),
        ("urn:dev:ow:10e2073a01080063:heat", "/", 1),
        ("urn:dev:ow:10e2073a01080063:fan", "/", 0),
    ]


def test_rfc_lights_off_fractional_relative_offsets_of_an_absolute_base_time() -> None:
    records = resolve_pack(RFC_LIGHTS_OFF, NOW)
    assert [r.unit for r in records] == ["/"] * 4
    assert [r.measurement for r in records] == ["3", "4", "3", "4"]
    assert close(records[2].time, unix(1.320078429e09 + 0.1))
    assert records[2].time - records[0].time == timedelta(milliseconds=100)


@pytest.mark.parametrize("pack", ALL_RFC_PACKS)
@pytest.mark.parametrize("kind", [WIFI_STATS, SPOT, METER_STATUS, TRANSACTION, GRID])
def test_rfc_examples_have_only_unknown_names_and_are_ignored(pack: Any, kind: MessageKind) -> None:
    assert decode(kind, pack) == []


def test_rfc_datapoints_adapted_to_grid_names() -> None:
    pack = [dict(r) for r in RFC_RELATIVE_TIMES]
    pack[0]["n"] = "voltage_l1"
    for r in pack[1:]:
        r["n"] = "current_l1"
    readings = decode(GRID, pack)
    assert len(readings) == 6  # six distinct times
    assert all(isinstance(r, GridReading) and r.device_id == "dev-1" for r in readings)
    assert [r.current_l1_a for r in readings] == [1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    assert [r.voltage_l1_v for r in readings] == [None] * 5 + [120.1]
    assert readings == sorted(readings, key=lambda r: r.time)


# --- time --------------------------------------------------------------------------------


def test_relative_times_are_made_absolute_against_reception() -> None:
    pack = [{"bt": -120, "n": "clients", "u": "count", "v": 3, "t": 60},
            {"n": "clients", "v": 4, "t": 120}]  # fmt: skip
    first, second = decode(WIFI_STATS, pack)
    assert first.time == NOW - timedelta(seconds=60)
    assert second.time == NOW


def test_missing_time_is_reception_time() -> None:
    (r,) = decode(WIFI_STATS, [{"n": "clients", "v": 4}])
    assert r.time == NOW


@pytest.mark.parametrize(
    ("t", "expected"),
    [(2**28 - 1, NOW + timedelta(seconds=2**28 - 1)), (2**28, unix(2**28)),
     (1715676137, unix(1715676137)), (-3600, NOW - timedelta(hours=1))],
)  # fmt: skip
def test_relative_absolute_threshold(t: float, expected: datetime) -> None:
    (r,) = resolve_pack([{"n": "x", "v": 1, "t": t}], NOW)
    assert r.time == expected


@pytest.mark.parametrize("t", [1e300, -1e300])
def test_time_out_of_range_is_bad_timestamp(t: float) -> None:
    reject(WIFI_STATS, [{"n": "clients", "v": 1, "t": t}], "bad_timestamp")


# --- mapping and units -------------------------------------------------------------------


def test_wifi_stats() -> None:
    pack = [{"bn": "urn:dev:ap:place-du-marche:", "n": "clients", "u": "count", "v": 12},
            {"n": "rx", "u": "B", "v": 123456}, {"n": "tx", "u": "B", "s": 654321},
            {"n": "radio", "vb": True}, {"n": "temperature", "u": "Cel", "v": 41}]  # fmt: skip
    assert decode(WIFI_STATS, pack) == [WifiApStats(NOW, "dev-1", 12, 123456, 654321, True)]


def test_parking_state_with_dbw_and_percent() -> None:
    pack = [{"bn": "parking-042/", "n": "occupied", "vb": True},
            {"n": "battery", "u": "%", "v": 0.87}, {"n": "rssi", "u": "dBW", "v": -134},
            {"n": "snr", "u": "dB", "v": 7.5}]  # fmt: skip
    assert decode(SPOT, pack) == [ParkingSpotState(NOW, "dev-1", "occupied", 0.87, -104, 7.5)]


@pytest.mark.parametrize(("v", "ratio"), [(87, 0.87), (100, 1.0), (0, 0.0), (57.5, 0.575)])
def test_battery_in_percent_energy_level(v: float, ratio: float) -> None:
    """RFC 8428 registers %EL (remaining battery energy level, percent) for batteries."""
    (r,) = decode(SPOT, [{"n": "occupied", "vb": True}, {"n": "battery", "u": "%EL", "v": v}])
    assert r.battery == pytest.approx(ratio, abs=1e-12)
    (s,) = decode(METER_STATUS, [{"n": "battery", "u": "%EL", "v": v}])
    assert s.battery == pytest.approx(ratio, abs=1e-12)
    (b,) = decode(SPOT, [{"bu": "%EL"}, {"n": "occupied", "vb": False}, {"n": "battery", "v": v}])
    assert b.battery == pytest.approx(ratio, abs=1e-12)  # the base unit applies too


@pytest.mark.parametrize(("kind", "record"), [
    (SPOT, {"n": "battery", "u": "%EL", "v": 100.5}),
    (SPOT, {"n": "battery", "u": "%EL", "v": -1}),
    (METER_STATUS, {"n": "battery", "u": "%EL", "v": 250}),
])
def test_battery_energy_level_beyond_100_percent(kind: MessageKind, record: dict[str, Any]) -> None:
    reject(kind, [{"n": "occupied", "vb": True}, record] if kind == SPOT else [record],
           "out_of_range")


@pytest.mark.parametrize(("v", "state"), [(0, "free"), (1, "occupied")])
def test_parking_occupied_as_a_ratio(v: int, state: str) -> None:
    (r,) = decode(SPOT, [{"n": "occupied", "u": "/", "v": v}, {"n": "rssi", "u": "dBm", "v": -90}])
    assert (r.state, r.rssi_dbm) == (state, -90)


def test_parking_state_word() -> None:
    (r,) = decode(SPOT, [{"n": "state", "vs": "unknown"}])
    assert r.state == "unknown"


def test_meter_status() -> None:
    pack = [{"n": "battery", "u": "/", "v": 0.8}, {"n": "paper", "u": "/", "v": 0.4},
            {"n": "fault", "vs": "E12"}]  # fmt: skip
    assert decode(METER_STATUS, pack) == [ParkingMeterStatus(NOW, "dev-1", 0.8, 0.4, "E12")]
    (r,) = decode(METER_STATUS, [{"n": "fault", "vs": ""}, {"n": "paper", "v": 1}])
    assert (r.fault_code, r.paper) == (None, 1.0)


def test_transaction_in_euros() -> None:
    pack = [{"bn": "hz-12:", "n": "transaction_id", "vs": "HZ12-000457"},
            {"n": "amount", "u": "EUR", "v": 2.5}, {"n": "duration", "u": "s", "v": 3600},
            {"n": "payment_method", "vs": "coins"}, {"n": "plate", "vs": "AB-123-CD"}]  # fmt: skip
    assert decode(TRANSACTION, pack) == [
        ParkingTransaction(NOW, "dev-1", "HZ12-000457", 250, 3600, "coins")
    ]


def test_transaction_in_cents_rounds_euros_exactly() -> None:
    pack = [{"n": "transaction_id", "vs": "t"}, {"n": "amount", "u": "EUR", "v": 0.29},
            {"n": "duration", "v": 900}, {"n": "payment_method", "vs": "card"}]  # fmt: skip
    assert decode(TRANSACTION, pack)[0].amount_cents == 29
    pack[1] = {"n": "amount_cents", "u": "count", "v": 29}
    assert decode(TRANSACTION, pack)[0].amount_cents == 29


@pytest.mark.parametrize(
    ("unit", "v", "wh"),
    [("Wh", 2738033, 2738033), ("kWh", 2738.033, 2738033), ("J", 3600 * 1000, 1000),
     (None, 42, 42)],
)  # fmt: skip
def test_grid_energy_units(unit: str | None, v: float, wh: int) -> None:
    record: dict[str, Any] = {"n": "energy_import", "v": v}
    if unit:
        record["u"] = unit
    (r,) = decode(GRID, [record])
    assert r.energy_import_wh == wh
    assert type(r.energy_import_wh) is int


def test_grid_all_columns_with_base_value() -> None:
    pack = [{"bn": "urn:dev:prm:30001610071843:", "bu": "V", "bv": 200, "n": "voltage_l1", "v": 31},
            {"n": "voltage_l2", "v": 30}, {"n": "voltage_l3", "v": 29},
            {"bv": 0, "n": "current_l1", "u": "A", "v": 8}, {"n": "current_l2", "u": "A", "v": 7},
            {"n": "current_l3", "u": "A", "v": 6}, {"n": "power", "u": "W", "v": -1500},
            {"n": "frequency", "u": "Hz", "v": 50.01},
            {"n": "energy_export", "u": "kWh", "bs": 1000, "s": 1.5}]  # fmt: skip
    (r,) = decode(GRID, pack)
    assert r == GridReading(NOW, "dev-1", None, 1001500, -1500.0, 231.0, 230.0, 229.0,
                            8.0, 7.0, 6.0, 50.01)  # fmt: skip
    assert all(type(x) is float for x in r[4:])


def test_measurement_is_the_part_after_the_last_separator() -> None:
    (r,) = decode(WIFI_STATS, [{"n": "ap/radio0:clients", "v": 3}])
    assert r.clients == 3
    (r,) = decode(WIFI_STATS, [{"bn": "ap-07_", "n": "clients", "v": 5}])
    assert r.clients == 5  # the base name is stripped even without a separator
    (r,) = decode(WIFI_STATS, [{"bn": "urn:dev:ap:07:clients", "v": 6}])
    assert r.clients == 6  # no n: the resolved name's last segment


def test_detection_without_content_type() -> None:
    (r,) = decode(WIFI_STATS, [{"bn": "ap7/", "n": "clients", "v": 3}], content_type=None)
    assert r.clients == 3
    content_type = "Application/SenML+JSON; charset=utf-8"
    (r,) = decode(WIFI_STATS, [{"n": "clients", "v": 3}], content_type=content_type)
    assert r.clients == 3


# --- rejections --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pack",
    [
        [{"n": "clients", "v": 1, "foo_": 1}],
        [{"bn": "ap/", "bx_": "must understand"}, {"n": "clients", "v": 1}],
        [{"n": "clients", "v": 1}, {"n": "clients", "v": 1, "t": 1, "ct_": "60"}],
    ],
)
def test_labels_ending_in_underscore_are_refused(pack: Any) -> None:
    assert "ends with '_'" in reject(WIFI_STATS, pack, "senml_invalid")


def test_bver() -> None:
    assert decode(WIFI_STATS, [{"bver": 10, "n": "clients", "v": 1}])[0].clients == 1
    assert "newer" in reject(WIFI_STATS, [{"bver": 11, "n": "clients", "v": 1}], "senml_invalid")
    reject(WIFI_STATS, [{"bver": "10", "n": "clients", "v": 1}], "senml_invalid")
    reject(WIFI_STATS, [{"bver": 0, "n": "clients", "v": 1}], "senml_invalid")


@pytest.mark.parametrize(
    "record",
    [{"n": "bat tery", "v": 1}, {"n": "-clients", "v": 1}, {"n": "clients!", "v": 1},
     {"v": 1}, {"bn": "", "n": "", "v": 1}, {"n": "café", "v": 1}],
)  # fmt: skip
def test_bad_names_are_refused(record: dict[str, Any]) -> None:
    assert "name" in reject(WIFI_STATS, [record], "senml_invalid")


@pytest.mark.parametrize(
    "record",
    [{"n": "clients"}, {"n": "clients", "u": "count", "t": 0},
     {"n": "clients", "v": 1, "vs": "1"}, {"n": "clients", "vb": True, "vd": "AA"}],
)  # fmt: skip
def test_exactly_one_value_field_unless_a_sum(record: dict[str, Any]) -> None:
    reject(WIFI_STATS, [record], "senml_invalid")


@pytest.mark.parametrize(
    "record",
    [{"n": "clients", "v": "1"}, {"n": "clients", "v": True}, {"n": "radio", "vb": 1},
     {"n": "fault", "vs": 12}, {"n": "clients", "v": 1, "t": "now"}, {"n": 7, "v": 1},
     {"n": "clients", "v": 1, "u": 1}, {"bt": "0", "n": "clients", "v": 1},
     {"n": "clients", "v": 1, "ut": "x"}],
)  # fmt: skip
def test_field_types(record: dict[str, Any]) -> None:
    reject(WIFI_STATS, [record], "senml_invalid")


def test_pack_shape() -> None:
    reject(WIFI_STATS, {"n": "clients", "v": 1}, "senml_invalid")
    reject(WIFI_STATS, [{"n": "clients", "v": 1}, 3], "senml_invalid")
    assert decode(WIFI_STATS, []) == []


def test_unknown_fields_are_ignored() -> None:
    (r,) = decode(WIFI_STATS, [{"n": "clients", "v": 2, "foo": {"bar": 1}, "ct": "60"}])
    assert r.clients == 2


@pytest.mark.parametrize(
    ("kind", "record"),
    [(SPOT, {"n": "battery", "u": "V", "v": 3.6}), (SPOT, {"n": "rssi", "u": "dB", "v": -90}),
     (METER_STATUS, {"n": "paper", "u": "%EL", "v": 40}),  # %EL is a battery's level only
     (SPOT, {"n": "occupied", "u": "W", "v": 1}), (GRID, {"n": "power", "u": "VA", "v": 10}),
     (GRID, {"n": "energy_import", "u": "VAh", "v": 10}),
     (GRID, {"bu": "A", "n": "voltage_l1", "v": 230}),
     (WIFI_STATS, {"n": "rx", "u": "bit", "v": 8}),
     (TRANSACTION, {"n": "amount", "u": "USD", "v": 1})],
)  # fmt: skip
def test_unit_mismatch(kind: MessageKind, record: dict[str, Any]) -> None:
    reject(kind, [record], "unit_mismatch")


@pytest.mark.parametrize(
    ("kind", "pack"),
    [(SPOT, [{"n": "occupied", "vb": True}, {"n": "battery", "v": 1.5}]),
     (SPOT, [{"n": "occupied", "vb": True}, {"n": "rssi", "u": "dBW", "v": -20}]),
     (SPOT, [{"n": "occupied", "vb": True}, {"n": "snr", "v": 31}]),
     (WIFI_STATS, [{"n": "clients", "v": -1}]),
     (GRID, [{"n": "frequency", "v": 39.9}]), (GRID, [{"n": "voltage_l2", "v": 500.5}]),
     (GRID, [{"n": "current_l3", "v": -0.1}]), (GRID, [{"n": "energy_import", "v": -1}]),
     (GRID, [{"n": "power", "v": 1e39}]),
     (GRID, [{"bv": 1e308, "n": "power", "v": 1e308}])],
)  # fmt: skip
def test_out_of_range(kind: MessageKind, pack: Any) -> None:
    reject(kind, pack, "out_of_range")


@pytest.mark.parametrize(
    ("kind", "pack"),
    [(WIFI_STATS, [{"n": "rx", "v": 5}]),  # clients is required
     (WIFI_STATS, [{"n": "clients", "v": 2.5}]),
     (WIFI_STATS, [{"n": "clients", "vs": "2"}]),
     (WIFI_STATS, [{"n": "radio", "v": 1}, {"n": "clients", "v": 1}]),
     (SPOT, [{"n": "battery", "v": 0.5}]),  # state is required
     (SPOT, [{"n": "occupied", "u": "/", "v": 0.5}]),
     (SPOT, [{"n": "state", "vs": "closed"}]),
     (SPOT, [{"n": "occupied", "vb": True}, {"n": "state", "vs": "occupied"}]),
     (WIFI_STATS, [{"n": "clients", "v": 1}, {"n": "clients", "v": 2}]),
     (TRANSACTION, [{"n": "transaction_id", "vs": "t"}, {"n": "duration", "v": 60},
                    {"n": "payment_method", "vs": "card"}]),
     (TRANSACTION, [{"n": "transaction_id", "vs": "t"}, {"n": "amount_cents", "v": 1},
                    {"n": "duration", "v": 60}, {"n": "payment_method", "vs": "cheque"}])],
)  # fmt: skip
def test_invalid_payload(kind: MessageKind, pack: Any) -> None:
    reject(kind, pack, "invalid_payload")


def test_sessions_cannot_be_senml() -> None:
    reject(WIFI_SESSIONS, [{"n": "client_mac", "vs": "a4:c3:f0:85:1b:2e"}], "unsupported_format")
    assert "wifi/sessions" not in MEASUREMENTS


def test_details_never_carry_a_mac_from_a_name() -> None:
    detail = reject(SPOT, [{"bn": "urn:dev:mac:a4c3f0851b2e:", "n": "battery", "v": 7},
                           {"n": "occupied", "vb": False}], "out_of_range")  # fmt: skip
    assert "a4c3f0851b2e" not in detail
    detail = reject(SPOT, [{"bn": "a4:c3:f0:85:1b:2e/", "n": "bat tery", "v": 1}],
                    "senml_invalid")  # fmt: skip
    assert "a4:c3" not in detail
