"""Native JSON, ChirpStack and Linky TIC decoders, format detection, range checks."""

from __future__ import annotations

import copy
import traceback
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from devices.decoders import (
    JSON_SCHEMAS,
    DecodeContext,
    decode_chirpstack_uplink,
    decode_device_message,
    decode_teleinfo,
)
from devices.decoders.common import check_reading
from devices.errors import DecodeError
from devices.families import KIND_BY_TOPIC, MESSAGE_KINDS, MessageKind
from devices.privacy import MacHasher
from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    Reading,
    WifiApStats,
    WifiSession,
)

NOW = datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)
KEY = b"0123456789abcdef0123456789abcdef"
MAC = "a4:c3:f0:85:1b:2e"
MAC_FORMS = (MAC, "A4-C3-F0-85-1B-2E", "a4c3.f085.1b2e", "a4c3f0851b2e")
WIFI_STATS = KIND_BY_TOPIC["wifi", "stats"]
WIFI_SESSIONS = KIND_BY_TOPIC["wifi", "sessions"]
SPOT = KIND_BY_TOPIC["parking", "state"]
TRANSACTION = KIND_BY_TOPIC["parking", "transaction"]
METER_STATUS = KIND_BY_TOPIC["parking", "status"]
GRID = KIND_BY_TOPIC["grid", "reading"]
DEV_EUIS = {"70b3d57ed0051a2b": "spot-042", "70b3d57ed0051a2d": "spot-043"}
METERS = {"041876097283": "linky-mairie", "012345678901": "linky-ecole",
          "30001610071843": "linky-gymnase"}  # fmt: skip


def make_ctx(received_at: datetime = NOW) -> DecodeContext:
    return DecodeContext(received_at, MacHasher(lambda at: KEY), DEV_EUIS.get, METERS.get)


def decode(kind: MessageKind, message: Any, *, content_type: str | None = None) -> list[Any]:
    payload = message if isinstance(message, bytes) else orjson.dumps(message)
    return decode_device_message("dev-1", kind, payload, make_ctx(), content_type=content_type)


def reject(kind: MessageKind, message: Any, reason: str, *, content_type: str | None = None) -> str:
    with pytest.raises(DecodeError) as exc:
        decode(kind, message, content_type=content_type)
    assert exc.value.reason == reason, exc.value.detail
    return exc.value.detail


# --- native JSON -------------------------------------------------------------------------


def test_wifi_stats() -> None:
    message = {"ts": "2024-05-14T10:42:00+02:00", "clients": 12, "rx_bytes": 123,
               "tx_bytes": 456, "radio": "down"}  # fmt: skip
    assert decode(WIFI_STATS, message) == [
        WifiApStats(datetime(2024, 5, 14, 8, 42, tzinfo=UTC), "dev-1", 12, 123, 456, False)
    ]
    assert decode(WIFI_STATS, {"clients": 0}) == [WifiApStats(NOW, "dev-1", 0, None, None, None)]


@pytest.mark.parametrize("mac", MAC_FORMS)
def test_wifi_session_hashes_the_mac(mac: str) -> None:
    message = {"ts": 1715676137, "client_mac": mac, "event": "disassociated", "rssi": -67,
               "session_s": 120}  # fmt: skip
    (r,) = decode(WIFI_SESSIONS, message)
    assert isinstance(r, WifiSession)
    assert r.time == datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)
    assert r.client_key == make_ctx().hasher.client_key(MAC, r.time)
    assert len(r.client_key) == 16
    assert bytes.fromhex("a4c3f0851b2e") not in r.client_key
    assert (r.event, r.rssi_dbm, r.session_s) == ("disassociated", -67, 120)
    assert MAC not in repr(r)


def test_wifi_session_is_hashed_with_the_key_of_its_own_time() -> None:
    keys = {NOW.date(): KEY, (NOW - timedelta(days=1)).date(): KEY[::-1]}
    hasher = MacHasher(lambda at: keys[at.date()])
    ctx = DecodeContext(NOW, hasher, DEV_EUIS.get, METERS.get)
    yesterday = NOW - timedelta(days=1)
    message = {"ts": yesterday.isoformat(), "client_mac": MAC, "event": "associated"}
    (r,) = decode_device_message("ap-1", WIFI_SESSIONS, orjson.dumps(message), ctx)
    assert isinstance(r, WifiSession)
    assert r.client_key == hasher.client_key(MAC, yesterday)
    assert r.client_key != hasher.client_key(MAC, NOW)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"client_mac": "a4:c3:f0:85:1b", "event": "associated"}, "invalid_payload"),
        ({"client_mac": MAC, "event": "roamed"}, "invalid_payload"),
        ({"client_mac": MAC, "event": "associated", "rssi": 5}, "out_of_range"),
        ({"client_mac": MAC, "event": "associated", "rssi": "-60"}, "invalid_payload"),
        ({"client_mac": MAC, "event": "associated", "session_s": -1}, "out_of_range"),
        ({"client_mac": MAC, "event": "associated", "ts": "2024-05-14T10:00:00"}, "bad_timestamp"),
        ({"client_mac": MAC, "event": "associated", "ts": "a4:c3:f0:85:1b:2e"}, "bad_timestamp"),
        ({"client_mac": 0xA4C3F0851B2E, "event": "associated"}, "invalid_payload"),
        ({"client_mac": "a4c3f0851b2e!", "event": "associated"}, "invalid_payload"),
        ([{"client_mac": MAC, "event": "associated"}, {"client_mac": MAC}], "invalid_payload"),
    ],
)
def test_the_mac_never_appears_in_errors(message: Any, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode(WIFI_SESSIONS, message)
    err = exc.value
    assert err.reason == reason
    logged = "".join(traceback.format_exception(err)) + repr(err) + str(err.args)
    for form in ("a4:c3:f0:85:1b", "a4c3f0851b2e", "a4:c3", str(0xA4C3F0851B2E)):
        assert form not in logged


def test_parking_state_forms() -> None:
    full = {"ts": "2024-05-14T08:42:17Z", "state": "occupied", "battery": 0.87, "rssi": -104,
            "snr": 7.5}  # fmt: skip
    assert decode(SPOT, full) == [ParkingSpotState(NOW, "dev-1", "occupied", 0.87, -104, 7.5)]
    assert decode(SPOT, {"occupied": False})[0].state == "free"
    assert decode(SPOT, {"occupied": True, "state": "occupied"})[0].state == "occupied"
    assert decode(SPOT, {"state": "unknown", "battery": 1})[0].battery == 1.0
    assert type(decode(SPOT, {"state": "free", "battery": 1})[0].battery) is float


@pytest.mark.parametrize(
    ("message", "reason"),
    [({"battery": 0.5}, "invalid_payload"),
     ({"occupied": True, "state": "free"}, "invalid_payload"),
     ({"state": "closed"}, "invalid_payload"), ({"occupied": 1}, "invalid_payload"),
     ({"state": "free", "battery": 1.01}, "out_of_range"),
     ({"state": "free", "battery": 87}, "out_of_range"),
     ({"state": "free", "rssi": -151}, "out_of_range"),
     ({"state": "free", "rssi": 1}, "out_of_range"),
     ({"state": "free", "rssi": -100.5}, "invalid_payload"),
     ({"state": "free", "snr": -30.5}, "out_of_range")],
)  # fmt: skip
def test_parking_state_rejections(message: Any, reason: str) -> None:
    reject(SPOT, message, reason)


def test_transaction_ignores_plates() -> None:
    message = {"ts": "2024-05-14T10:05:00+02:00", "transaction_id": "HZ12-000457",
               "amount_cents": 250, "duration_s": 3600, "payment_method": "contactless",
               "plate": "AB-123-CD", "immatriculation": "AB-123-CD"}  # fmt: skip
    (r,) = decode(TRANSACTION, message)
    assert r == ParkingTransaction(datetime(2024, 5, 14, 8, 5, tzinfo=UTC), "dev-1",
                                   "HZ12-000457", 250, 3600, "contactless")  # fmt: skip
    assert "AB-123-CD" not in repr(r)


@pytest.mark.parametrize("field", ["payment_method", "amount_cents", "duration_s"])
def test_a_plate_in_a_refused_field_never_appears_in_the_error(field: str) -> None:
    message = {"transaction_id": "HZ12-000457", "amount_cents": 250, "duration_s": 3600,
               "payment_method": "card", field: "AB-123-CD", "note": 1}  # fmt: skip
    with pytest.raises(DecodeError) as exc:  # "note": the reference path, msgspec.convert
        decode(TRANSACTION, message)
    logged = "".join(traceback.format_exception(exc.value)) + repr(exc.value)
    assert field in logged
    assert "AB-123-CD" not in logged


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"transaction_id": ""}, "out_of_range"), ({"transaction_id": "x" * 65}, "out_of_range"),
     ({"transaction_id": "a\x00b"}, "invalid_payload"), ({"amount_cents": 100_001}, "out_of_range"),
     ({"amount_cents": -1}, "out_of_range"), ({"amount_cents": 2.5}, "invalid_payload"),
     ({"duration_s": 604_801}, "out_of_range"), ({"payment_method": "cheque"}, "invalid_payload"),
     ({"transaction_id": None}, "invalid_payload")],
)  # fmt: skip
def test_transaction_rejections(change: dict[str, Any], reason: str) -> None:
    message = {"transaction_id": "t1", "amount_cents": 100_000, "duration_s": 604_800,
               "payment_method": "mobile"}  # fmt: skip
    assert decode(TRANSACTION, message)[0].amount_cents == 100_000
    reject(TRANSACTION, {**message, **change}, reason)


def test_meter_status() -> None:
    message = {"ts": "2024-05-14T10:00:00+02:00", "battery": 0.8, "paper": 0.4, "fault": None}
    assert decode(METER_STATUS, message) == [
        ParkingMeterStatus(datetime(2024, 5, 14, 8, tzinfo=UTC), "dev-1", 0.8, 0.4, None)
    ]
    assert decode(METER_STATUS, {"fault": "E12"})[0].fault_code == "E12"
    assert decode(METER_STATUS, {"fault": ""})[0].fault_code is None
    reject(METER_STATUS, {"fault": "E" * 33}, "out_of_range")
    reject(METER_STATUS, {"paper": -0.01}, "out_of_range")
    reject(METER_STATUS, {"fault": 12}, "invalid_payload")


def test_grid_reading() -> None:
    message = {"energy_import_wh": 2738033, "energy_export_wh": 0, "power_w": -1840,
               "voltage_l1_v": 231, "voltage_l2_v": 230.5, "voltage_l3_v": 229,
               "current_l1_a": 8, "current_l2_a": 0, "current_l3_a": 1000,
               "frequency_hz": 50.01}  # fmt: skip
    (r,) = decode(GRID, message)
    assert r == GridReading(NOW, "dev-1", 2738033, 0, -1840.0, 231.0, 230.5, 229.0, 8.0, 0.0,
                            1000.0, 50.01)  # fmt: skip
    assert all(type(x) is float for x in r[4:])
    assert decode(GRID, {"power_w": 0})[0].power_w == 0.0


@pytest.mark.parametrize(
    ("message", "reason"),
    [({}, "invalid_payload"), ({"ts": 1715676137}, "invalid_payload"),
     ({"energy_import_wh": 1.5}, "invalid_payload"), ({"energy_import_wh": -1}, "out_of_range"),
     ({"energy_import_wh": 2**63}, "out_of_range"), ({"voltage_l1_v": 501}, "out_of_range"),
     ({"current_l2_a": 1000.1}, "out_of_range"), ({"frequency_hz": 0}, "out_of_range"),
     ({"power_w": 1e39}, "out_of_range"), ({"power_w": "1"}, "invalid_payload")],
)  # fmt: skip
def test_grid_rejections(message: Any, reason: str) -> None:
    reject(GRID, message, reason)


def test_native_batch() -> None:
    batch = [{"ts": 1715676000, "clients": 3}, {"ts": 1715676060, "clients": 4}]
    readings = decode(WIFI_STATS, batch)
    assert [r.clients for r in readings if isinstance(r, WifiApStats)] == [3, 4]
    assert decode(WIFI_STATS, []) == []
    detail = reject(WIFI_STATS, [{"clients": 3}, {"clients": -3}], "out_of_range")
    assert detail.startswith("item 1: ")
    reject(WIFI_STATS, [{"clients": 3}, 4], "invalid_payload")
    reject(WIFI_STATS, [1, 2], "invalid_payload")


@pytest.mark.parametrize(
    ("ts", "expected"),
    [("2024-05-14T08:42:17Z", NOW), ("2024-05-14T10:42:17+02:00", NOW),
     ("2024-05-14T10:42:17.000+0200", NOW), ("2024-05-14 03:42:17-05:00", NOW),
     ("2024-05-14T08:42:17.123456789Z", NOW + timedelta(microseconds=123456)),
     (1715676137, NOW), (1715676137.25, NOW + timedelta(milliseconds=250)), (None, NOW)],
)  # fmt: skip
def test_timestamps(ts: object, expected: datetime) -> None:
    (r,) = decode(WIFI_STATS, {"ts": ts, "clients": 1})
    assert r.time == expected
    assert r.time.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "ts",
    ["2024-05-14T10:42:17", "2024-05-14", "yesterday", "", "1715676137", 1715676137000,
     1e300, -1e300, True, [1715676137], {"s": 1}],
)  # fmt: skip
def test_bad_timestamps(ts: object) -> None:
    reason = "invalid_payload" if isinstance(ts, bool | list | dict) else "bad_timestamp"
    reject(WIFI_STATS, {"ts": ts, "clients": 1}, reason)


def test_naive_local_time_is_refused_with_a_hint() -> None:
    assert "offset" in reject(SPOT, {"ts": "2024-05-14T10:42:17", "state": "free"}, "bad_timestamp")


# --- reason codes of the envelope and format detection -----------------------------------


def test_not_utf8_and_invalid_json() -> None:
    reject(WIFI_STATS, b'{"clients": "\xff"}', "not_utf8")
    reject(WIFI_STATS, b"\xfe\xff\x00{", "not_utf8")
    reject(WIFI_STATS, b'{"clients": 1', "invalid_json")
    reject(WIFI_STATS, b"", "invalid_json")
    reject(WIFI_STATS, b'{"clients": NaN}', "invalid_json")
    reject(WIFI_STATS, b'{"clients": "\\ud800"}', "invalid_json")


@pytest.mark.parametrize("payload", [b"42", b'"occupied"', b"null", b"true"])
def test_json_scalars_are_unsupported(payload: bytes) -> None:
    reject(SPOT, payload, "unsupported_format")


@pytest.mark.parametrize("content_type", ["application/cbor", "application/senml+cbor",
                                          "application/octet-stream", "text/xml"])  # fmt: skip
def test_non_json_content_types_are_unsupported(content_type: str) -> None:
    reject(SPOT, {"state": "free"}, "unsupported_format", content_type=content_type)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/plain",
     "application/vnd.beffroi+json"],
)  # fmt: skip
def test_json_content_types_are_read(content_type: str) -> None:
    assert decode(SPOT, {"state": "free"}, content_type=content_type)[0].state == "free"


def test_senml_content_type_refuses_an_object() -> None:
    reject(SPOT, {"state": "free"}, "senml_invalid", content_type="application/senml+json")


def test_detection_senml_array_vs_native_batch() -> None:
    (senml,) = decode(SPOT, [{"n": "occupied", "vb": True}])
    (native,) = decode(SPOT, [{"occupied": True}])
    assert senml == native


def test_tic_is_detected_only_on_grid_readings() -> None:
    reject(SPOT, {"ADSC": "041876097283", "EAST": 1}, "invalid_payload")  # no state


# --- ChirpStack v4 -----------------------------------------------------------------------

CHIRPSTACK_UPLINK: dict[str, Any] = {
    "deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
    "time": "2024-05-14T08:42:16.953151+00:00",
    "deviceInfo": {
        "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
        "tenantName": "Ville",
        "applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
        "applicationName": "stationnement",
        "deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
        "deviceProfileName": "Capteur de place",
        "deviceName": "place-rue-nationale-042",
        "devEui": "70b3d57ed0051a2b",
        "deviceClassEnabled": "CLASS_A",
        "tags": {"site": "zone-centre"},
    },
    "devAddr": "00fc2a13",
    "adr": True,
    "dr": 5,
    "fCnt": 1284,
    "fPort": 2,
    "confirmed": False,
    "data": "AVcS",
    "object": {"occupied": True, "battery": 87, "temperature": 18.5},
    "rxInfo": [
        {
            "gatewayId": "0016c001f153a14c",
            "uplinkId": 4217106255,
            "nsTime": "2024-05-14T08:42:16.980312Z",
            "rssi": -112,
            "snr": -3.2,
            "channel": 2,
            "rfChain": 0,
            "location": {"latitude": 48.1106, "longitude": -1.6793},
            "context": "EFwMtA==",
            "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
            "crcStatus": "CRC_OK",
        },
        {
            "gatewayId": "0016c001f153a15d",
            "uplinkId": 1903387263,
            "rssi": -97,
            "snr": 8.5,
            "channel": 2,
            "location": {},
            "context": "Ab3x9w==",
            "crcStatus": "CRC_OK",
        },
    ],
    "txInfo": {
        "frequency": 868500000,
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}},
    },
}


def uplink(**changes: Any) -> dict[str, Any]:
    message = copy.deepcopy(CHIRPSTACK_UPLINK)
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    return message


def chirpstack(message: dict[str, Any], **kwargs: Any) -> tuple[str, MessageKind, list[Any]]:
    return decode_chirpstack_uplink(orjson.dumps(message), make_ctx(), **kwargs)


def chirpstack_reject(message: Any, reason: str, **kwargs: Any) -> DecodeError:
    with pytest.raises(DecodeError) as exc:
        decode_chirpstack_uplink(orjson.dumps(message), make_ctx(), **kwargs)
    assert exc.value.reason == reason, exc.value.detail
    return exc.value


def test_chirpstack_full_uplink() -> None:
    device_id, kind, readings = chirpstack(CHIRPSTACK_UPLINK)
    assert (device_id, kind) == ("spot-042", SPOT)
    time = datetime(2024, 5, 14, 8, 42, 16, 953151, tzinfo=UTC)
    # battery 87 (> 1) is a percentage; rssi/snr of the strongest gateway
    assert readings == [ParkingSpotState(time, "spot-042", "occupied", 0.87, -97, 8.5)]


@pytest.mark.parametrize(
    ("obj", "state", "battery"),
    [({"occupied": False, "battery": 0.5}, "free", 0.5), ({"occupied": 1}, "occupied", None),
     ({"occupied": 0, "battery": 1}, "free", 1.0), ({"status": "unknown"}, "unknown", None),
     ({"status": "free", "battery": 100}, "free", 1.0),
     ({"occupied": True, "status": "ok"}, "occupied", None)],
)  # fmt: skip
def test_chirpstack_objects(obj: dict[str, Any], state: str, battery: float | None) -> None:
    (r,) = chirpstack(uplink(object=obj))[2]
    assert isinstance(r, ParkingSpotState)
    assert (r.state, r.battery) == (state, battery)


def test_chirpstack_defaults_omitted() -> None:
    _, _, (r,) = chirpstack(uplink(time=None, rxInfo=None))
    assert isinstance(r, ParkingSpotState)
    assert (r.time, r.rssi_dbm, r.snr_db) == (NOW, None, None)


def test_chirpstack_without_codec() -> None:
    err = chirpstack_reject(uplink(object=None), "invalid_payload")
    assert "codec" in err.detail
    assert err.device_id == "spot-042"


def test_chirpstack_unknown_device() -> None:
    info = {**CHIRPSTACK_UPLINK["deviceInfo"], "devEui": "70B3D57ED0051A2C"}
    err = chirpstack_reject(uplink(deviceInfo=info), "unknown_device")
    assert "70b3d57ed0051a2c" in err.detail
    assert err.device_id is None


@pytest.mark.parametrize("topic", ["70b3d57ed0051a2d", "70b3d57ed0051a2c", "not-an-eui"])
def test_chirpstack_event_of_another_device_than_its_topic_is_refused(topic: str) -> None:
    """deviceInfo.devEui says spot-042; the topic names another device (spot-043, an unknown
    one, or no DevEUI at all): neither is believed."""
    err = chirpstack_reject(CHIRPSTACK_UPLINK, "invalid_payload", topic_dev_eui=topic)
    assert "differs from the topic's DevEUI" in err.detail
    assert err.device_id is None


def test_chirpstack_dev_eui_from_topic() -> None:
    message = uplink(deviceInfo=None)
    assert chirpstack(message, topic_dev_eui="70B3D57ED0051A2B")[0] == "spot-042"
    chirpstack_reject(message, "invalid_payload")
    chirpstack_reject(CHIRPSTACK_UPLINK, "invalid_payload", topic_dev_eui="70b3d57ed0051a2c")
    assert chirpstack(CHIRPSTACK_UPLINK, topic_dev_eui="70b3d57ed0051a2b")[0] == "spot-042"


@pytest.mark.parametrize(
    ("message", "reason"),
    [(uplink(object={"battery": 0.9}), "invalid_payload"),
     (uplink(object={"occupied": "yes"}), "invalid_payload"),
     (uplink(object={"status": "closed"}), "invalid_payload"),
     (uplink(object={"occupied": True, "battery": 101}), "out_of_range"),
     (uplink(object={"occupied": True, "battery": "87%"}), "invalid_payload"),
     (uplink(object=[1]), "invalid_payload"),
     (uplink(time="2024-05-14T08:42:16"), "bad_timestamp"),
     (uplink(rxInfo=[{"rssi": -160, "snr": 1}]), "out_of_range"),
     (uplink(deviceInfo={"devEui": "70b3d57ed0051a2"}), "invalid_payload"),
     ([CHIRPSTACK_UPLINK], "invalid_payload")],
)  # fmt: skip
def test_chirpstack_rejections(message: Any, reason: str) -> None:
    chirpstack_reject(message, reason)


def test_chirpstack_not_json() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_chirpstack_uplink(b"\x0a\x10protobuf", make_ctx())
    assert exc.value.reason == "invalid_json"


# --- Linky TIC ---------------------------------------------------------------------------

TELEINFO2MQTT_STANDARD: dict[str, Any] = {
    "ADSC": {"raw": "041876097283", "value": 41876097283},
    "VTIC": {"raw": "02", "value": 2},
    "DATE": {"raw": "", "value": "",
             "timestamp": {"date": "2024-05-14T10:40:00.000Z", "dst": "summer"}},
    "NGTF": {"raw": "      BASE      ", "value": "BASE"},
    "EAST": {"raw": "002738033", "value": 2738033},
    "EASF01": {"raw": "002738033", "value": 2738033},
    "EAIT": {"raw": "000001500", "value": 1500},
    "IRMS1": {"raw": "008", "value": 8},
    "URMS1": {"raw": "231", "value": 231},
    "PREF": {"raw": "09", "value": 9},
    "SINSTS": {"raw": "01840", "value": 1840},
    "SMAXSN": {"raw": "04560", "value": 4560,
               "timestamp": {"date": "2024-05-14T06:05:31.000Z", "dst": "summer"}},
}  # fmt: skip


def teleinfo(frame: dict[str, Any], meter_id: str | None = None) -> tuple[str, list[Any]]:
    return decode_teleinfo(meter_id, orjson.dumps(frame), make_ctx())


def teleinfo_reject(frame: Any, reason: str, meter_id: str | None = None) -> DecodeError:
    with pytest.raises(DecodeError) as exc:
        decode_teleinfo(meter_id, orjson.dumps(frame), make_ctx())
    assert exc.value.reason == reason, exc.value.detail
    return exc.value


def test_teleinfo2mqtt_standard_mode() -> None:
    device_id, (r,) = teleinfo(TELEINFO2MQTT_STANDARD, "041876097283")
    assert device_id == "linky-mairie"
    # summer time, +02:00
    assert r == GridReading(datetime(2024, 5, 14, 8, 40, tzinfo=UTC), "linky-mairie", 2738033,
                            1500, 1840.0, 231.0, None, None, 8.0, None, None, None)  # fmt: skip


def test_flat_standard_three_phase_with_injection() -> None:
    frame = {"ADSC": "041876097283", "DATE": "H240114104217", "EAST": "002738033",
             "EAIT": 12, "SINSTS": "00000", "SINSTI": 2300, "URMS1": 231, "URMS2": "229",
             "URMS3": 230, "IRMS1": 3, "IRMS2": 4, "IRMS3": "005"}  # fmt: skip
    _, (r,) = teleinfo(frame)
    assert r == GridReading(datetime(2024, 1, 14, 9, 42, 17, tzinfo=UTC), "linky-mairie", 2738033,
                            12, -2300.0, 231.0, 229.0, 230.0, 3.0, 4.0, 5.0, None)  # fmt: skip


@pytest.mark.parametrize(
    ("date", "utc"),
    [
        ("E241027023000", datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),  # first 02:30, summer
        ("H241027023000", datetime(2024, 10, 27, 1, 30, tzinfo=UTC)),  # repeated 02:30, winter
        ("H240331015959", datetime(2024, 3, 31, 0, 59, 59, tzinfo=UTC)),  # before spring jump
        ("E240331030000", datetime(2024, 3, 31, 1, 0, tzinfo=UTC)),  # after spring jump
        ("H241231235959", datetime(2024, 12, 31, 22, 59, 59, tzinfo=UTC)),
        ("E240701000000", datetime(2024, 6, 30, 22, 0, tzinfo=UTC)),
    ],
)
def test_tic_date_season_flag_settles_dst(date: str, utc: datetime) -> None:
    frame = {"ADSC": "041876097283", "DATE": {"raw": date, "value": ""}, "EAST": 1}
    assert teleinfo(frame)[1][0].time == utc
    frame["DATE"] = date
    assert teleinfo(frame)[1][0].time == utc


@pytest.mark.parametrize("date", ["e240514104217", "h240514104217", "240514104217",
                                  "E240114104217", "H240714104217"])
def test_tic_date_without_reliable_season_is_reception_time(date: str) -> None:
    assert teleinfo({"ADSC": "041876097283", "DATE": date, "EAST": 1})[1][0].time == NOW


def teleinfo2mqtt_date(date: str) -> dict[str, Any]:
    """DATE as teleinfo2mqtt publishes it: the local clock fields written as if UTC
    (``new Date(Date.UTC(...)).toISOString()``), the season in ``dst``, an empty value."""
    flag, d = date[0], date[1:]
    iso = f"20{d[0:2]}-{d[2:4]}-{d[4:6]}T{d[6:8]}:{d[8:10]}:{d[10:12]}.000Z"
    return {"raw": "", "value": "",
            "timestamp": {"date": iso, "dst": "winter" if flag == "H" else "summer"}}


@pytest.mark.parametrize(
    ("date", "utc"),
    [
        ("E241027023000", datetime(2024, 10, 27, 0, 30, tzinfo=UTC)),  # first 02:30, summer
        ("H241027023000", datetime(2024, 10, 27, 1, 30, tzinfo=UTC)),  # repeated 02:30, winter
        ("E261025025959", datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC)),
        ("H261025020000", datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
        ("H260329015959", datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC)),  # before spring jump
        ("E260329030000", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),  # after spring jump
        ("E240514120000", datetime(2024, 5, 14, 10, 0, tzinfo=UTC)),
        ("H240114104217", datetime(2024, 1, 14, 9, 42, 17, tzinfo=UTC)),
    ],
)
def test_tic_date_from_teleinfo2mqtt_timestamp(date: str, utc: datetime) -> None:
    frame = {"ADSC": "041876097283", "DATE": teleinfo2mqtt_date(date), "EAST": 1}
    assert teleinfo(frame)[1][0].time == utc
    del frame["ADSC"]
    (r,) = decode(GRID, frame)  # the same frame on a meter's own topic
    assert r.time == utc


def test_teleinfo2mqtt_repeated_october_hour_gives_two_times() -> None:
    times = [teleinfo({"ADSC": "041876097283", "DATE": teleinfo2mqtt_date(d), "EAST": 1})[1][0]
             .time for d in ("E241027023000", "H241027023000")]
    assert times[1] - times[0] == timedelta(hours=1)


@pytest.mark.parametrize(
    "timestamp",
    [{"date": "2024-01-14T10:42:17.000Z", "dst": "summer"},  # summer time in January
     {"date": "2024-07-14T10:42:17.000Z", "dst": "winter"},
     {"date": "2024-03-31T02:30:00.000Z", "dst": "summer"}],  # a time that did not exist
)  # fmt: skip
def test_teleinfo2mqtt_season_contradicting_the_calendar_is_reception_time(
    timestamp: dict[str, str],
) -> None:
    date = {"raw": "", "value": "", "timestamp": timestamp}
    assert teleinfo({"ADSC": "041876097283", "DATE": date, "EAST": 1})[1][0].time == NOW


def test_teleinfo2mqtt_date_with_a_real_offset_is_taken_as_is() -> None:
    timestamp = {"date": "2024-05-14T10:42:17+02:00", "dst": "summer"}
    date = {"raw": "", "value": "", "timestamp": timestamp}
    frame = {"ADSC": "041876097283", "DATE": date, "EAST": 1}
    assert teleinfo(frame)[1][0].time == datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)


@pytest.mark.parametrize("date", ["0001-01-01T00:30:00.000Z", "2024-05-14T10:42:17",
                                  "tomorrow", "0001-01-01T00:00:00+01:00"])
def test_teleinfo2mqtt_bad_dates(date: str) -> None:
    timestamp = {"date": date, "dst": "winter"}
    frame = {"ADSC": "041876097283", "DATE": {"raw": "", "value": "", "timestamp": timestamp},
             "EAST": 1}
    teleinfo_reject(frame, "bad_timestamp")


@pytest.mark.parametrize("dst", [None, "", "E", "Summer", 1])
def test_teleinfo2mqtt_date_without_season(dst: object) -> None:
    timestamp = {"date": "2024-05-14T10:42:17.000Z", "dst": dst}
    date = {"raw": "", "value": "", "timestamp": timestamp}
    teleinfo_reject({"ADSC": "041876097283", "DATE": date, "EAST": 1}, "bad_timestamp")


@pytest.mark.parametrize("date", ["X240514104217", "E241314104217", "E24051410421", "E2405141042xx",
                                  "E240230104217", 240514104217.5])  # fmt: skip
def test_bad_tic_dates(date: object) -> None:
    teleinfo_reject({"ADSC": "041876097283", "DATE": date, "EAST": 1}, "bad_timestamp")


def test_historic_mode_sums_period_indices() -> None:
    frame = {"ADCO": {"raw": "12345678901", "value": 12345678901},
             "OPTARIF": {"raw": "HC..", "value": "HC"}, "ISOUSC": {"raw": "45", "value": 45},
             "HCHC": {"raw": "009058688", "value": 9058688},
             "HCHP": {"raw": "009752846", "value": 9752846},
             "PTEC": {"raw": "HP..", "value": "HP"}, "IINST": {"raw": "022", "value": 22},
             "IMAX": {"raw": "090", "value": 90},
             "PAPP": {"raw": "04110", "value": 4110}}  # fmt: skip
    device_id, (r,) = teleinfo(frame)
    assert device_id == "linky-ecole"  # the lost leading zero is restored
    assert r == GridReading(NOW, "linky-ecole", 9058688 + 9752846, None, 4110.0, None, None,
                            None, 22.0, None, None, None)  # fmt: skip


def test_historic_base_flat() -> None:
    _, (r,) = teleinfo({"ADCO": "041876097283", "BASE": "012345678", "PAPP": "00750",
                        "IINST": "003"})  # fmt: skip
    assert (r.energy_import_wh, r.power_w, r.current_l1_a) == (12345678, 750.0, 3.0)


def test_teleinfo_meter_id_from_topic_and_prm_fallback() -> None:
    frame = {"EAST": 10}
    assert teleinfo(frame, "041876097283")[0] == "linky-mairie"
    # linky-gymnase has a PRM and no registered serial: its PRM identifies it.
    assert teleinfo({"ADSC": "099999999999", "EAST": 10}, "30001610071843")[0] == "linky-gymnase"
    prm = {"raw": "30001610071843", "value": 30001610071843}
    assert teleinfo({"ADSC": "099999999999", "PRM": prm, "EAST": 10})[0] == "linky-gymnase"
    teleinfo_reject(frame, "invalid_payload")


def test_teleinfo_matches_the_serial_not_the_topic() -> None:
    # The frame's serial decides; another serial in the topic does not stand in for it.
    err = teleinfo_reject({"ADSC": "099999999999", "EAST": 10}, "unknown_device", "041876097283")
    assert "099999999999" in err.detail
    # PRM 30001610071844 is linky-mairie's, whose serial is registered: the lookup (built by
    # meter_index) does not answer it, so a frame from another meter there is refused.
    teleinfo_reject({"ADSC": "099999999999", "EAST": 10}, "unknown_device", "30001610071844")


def test_teleinfo_unknown_meter() -> None:
    err = teleinfo_reject({"ADSC": "099999999999", "EAST": 10}, "unknown_device", "099999999999")
    assert "099999999999" in err.detail


@pytest.mark.parametrize(
    ("frame", "reason"),
    [({"ADSC": "041876097283", "VTIC": 2}, "invalid_payload"),
     ({"ADSC": "041876097283", "EAST": "12a"}, "invalid_payload"),
     ({"ADSC": "041876097283", "EAST": 1.5}, "invalid_payload"),
     ({"ADSC": "041876097283", "EAST": True}, "invalid_payload"),
     ({"ADSC": "041876097283", "EAST": "-5"}, "out_of_range"),
     ({"ADSC": "041876097283", "URMS1": 600}, "out_of_range"),
     ({"ADSC": "041876097283", "IRMS1": 1001}, "out_of_range")],
)  # fmt: skip
def test_teleinfo_rejections_carry_the_device(frame: dict[str, Any], reason: str) -> None:
    assert teleinfo_reject(frame, reason).device_id == "linky-mairie"


@pytest.mark.parametrize("adsc", ["ABCDEF123456", "0418760972831234", "30001610071843",
                                  "0418760972831", "\u0664" * 12, "", None, True])
def test_bad_meter_ids(adsc: object) -> None:
    teleinfo_reject({"ADSC": adsc, "EAST": 1}, "invalid_payload", "041876097283")


def test_teleinfo_payload_shape() -> None:
    with pytest.raises(DecodeError) as exc:
        decode_teleinfo("041876097283", b"[1]", make_ctx())
    assert exc.value.reason == "invalid_payload"


def test_tic_on_a_device_topic() -> None:
    frame = copy.deepcopy(TELEINFO2MQTT_STANDARD)
    del frame["ADSC"]
    (r,) = decode(GRID, frame)
    assert (r.device_id, r.time) == ("dev-1", datetime(2024, 5, 14, 8, 40, tzinfo=UTC))
    frame["ADSC"] = "099999999999"  # a meter the registry does not know: the topic decides
    assert decode(GRID, frame)[0].device_id == "dev-1"
    frame["ADSC"] = "041876097283"  # registered to linky-mairie, not dev-1
    assert "another device" in reject(GRID, frame, "invalid_payload")


# --- schemas and range checks ------------------------------------------------------------


def test_json_schemas_cover_every_kind_and_their_examples_decode() -> None:
    assert set(JSON_SCHEMAS) == {f"{k.segment}/{k.name}" for k in MESSAGE_KINDS}
    for name, schema in JSON_SCHEMAS.items():
        assert schema["type"] == "object"
        assert "ts" in schema["properties"]
        kind = KIND_BY_TOPIC[tuple(name.split("/"))]  # type: ignore[index]
        assert schema["examples"]
        for example in schema["examples"]:
            assert len(decode(kind, example)) == 1
    clients = JSON_SCHEMAS["wifi/stats"]["properties"]["clients"]
    assert (clients["minimum"], clients["maximum"]) == (0, 2**31 - 1)
    assert "client_mac" in JSON_SCHEMAS["wifi/sessions"]["required"]


T = NOW
BOUNDS_OK: list[Reading] = [
    WifiApStats(T, "d", 2**31 - 1, 2**63 - 1, 0, None),
    WifiSession(T, "d", b"\x00" * 16, "associated", -120, 2**31 - 1),
    WifiSession(T, "d", b"\x00" * 16, "disassociated", 0, 0),
    ParkingSpotState(T, "d", "unknown", 0.0, -150, -30.0),
    ParkingSpotState(T, "d", "free", 1.0, 0, 30.0),
    ParkingTransaction(T, "d", "x" * 64, 100_000, 604_800, "coins"),
    ParkingTransaction(T, "d", "x", 0, 0, "card"),
    ParkingMeterStatus(T, "d", None, None, "x" * 32),
    GridReading(T, "d", 0, 2**63 - 1, -3.4e38, 0.0, 500.0, 0.0, 0.0, 1000.0, 0.0, 40.0),
    GridReading(T, "d", None, None, None, None, None, None, None, None, None, 70.0),
]
BOUNDS_BAD: list[tuple[Reading, str]] = [
    (WifiApStats(T, "d", 2**31, None, None, None), "out_of_range"),
    (WifiApStats(T, "d", True, None, None, None), "invalid_payload"),  # bool is an int subclass
    (WifiApStats(T, "d", 1, 2**63, None, None), "out_of_range"),
    (WifiApStats(T, "d", 1, None, None, 1), "invalid_payload"),  # type: ignore[arg-type]
    (WifiSession(T, "d", b"\x00" * 15, "associated", None, None), "invalid_payload"),
    (WifiSession(T, "d", b"\x00" * 16, "associated", -121, None), "out_of_range"),
    (ParkingSpotState(T, "d", "free", float("nan"), None, None), "out_of_range"),
    (ParkingSpotState(T, "d", "free", 1, None, None), "invalid_payload"),
    (ParkingSpotState(T, "d", "free", None, None, 30.01), "out_of_range"),
    (ParkingTransaction(T, "d", "x", 0, 604_801, "card"), "out_of_range"),
    (ParkingMeterStatus(T, "d", None, None, "x" * 33), "out_of_range"),
    (ParkingMeterStatus(T, "d", None, float("inf"), None), "out_of_range"),
    (GridReading(T, "d", None, None, float("-inf"), None, None, None, None, None, None, None),
     "out_of_range"),
    (GridReading(T, "d", None, None, None, None, None, None, None, None, None, 70.5),
     "out_of_range"),
    (GridReading(datetime(2024, 5, 14), "d", 1, None, None, None, None, None, None, None, None,
                 None), "bad_timestamp"),
    (GridReading(T, "", 1, None, None, None, None, None, None, None, None, None),
     "invalid_payload"),
]  # fmt: skip


@pytest.mark.parametrize("reading", BOUNDS_OK)
def test_check_reading_accepts_the_check_bounds(reading: Reading) -> None:
    assert check_reading(reading) is reading


@pytest.mark.parametrize(("reading", "reason"), BOUNDS_BAD)
def test_check_reading_refuses_beyond_the_bounds(reading: Reading, reason: str) -> None:
    with pytest.raises(DecodeError) as exc:
        check_reading(reading)
    assert exc.value.reason == reason


def test_context_needs_an_aware_utc_time() -> None:
    with pytest.raises(ValueError, match="UTC"):
        DecodeContext(datetime(2024, 5, 14), MacHasher(lambda at: KEY), DEV_EUIS.get, METERS.get)
