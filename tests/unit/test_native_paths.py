"""Native messages: the msgspec declarations, their two decoding paths, their published schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest

from devices.decoders import DecodeContext, decode_device_message
from devices.decoders.common import check_reading
from devices.decoders.native import (
    _DECLARED_IN_FULL,
    MODELS,
    decode_native,
    decode_native_json,
    json_schemas,
)
from devices.decoders.schemas import schema_files
from devices.errors import DecodeError
from devices.families import KIND_BY_TOPIC, MESSAGE_KINDS, MessageKind
from devices.privacy import MacHasher
from devices.readings import Reading

DOCS_SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"
NOW = datetime(2024, 5, 14, 8, 42, 17, tzinfo=UTC)
NO_DEVICES: dict[str, str] = {}
CTX = DecodeContext(NOW, MacHasher(lambda at: bytes(32)), NO_DEVICES.get,
                    {"041876097283": "m"}.get)
VALID: dict[str, dict[str, Any]] = {
    "wifi/stats": {"ts": 1715676137.5, "clients": 12, "rx_bytes": 123, "tx_bytes": 4,
                   "radio": "up"},
    "wifi/sessions": {"ts": "2024-05-14T10:00:00+02:00", "client_mac": "02:00:5e:10:00:01",
                      "event": "disassociated", "rssi": -67, "session_s": 120},
    "parking/state": {"ts": 1715676137, "state": "occupied", "occupied": True, "battery": 0.87,
                      "rssi": -104, "snr": 7.5},
    "parking/transaction": {"transaction_id": "HZ12", "amount_cents": 250, "duration_s": 3600,
                            "payment_method": "card"},
    "parking/status": {"battery": 0.8, "paper": 0.4, "fault": "E1"},
    "grid/reading": {"energy_import_wh": 2738033, "energy_export_wh": 0, "power_w": 1840.5,
                     "voltage_l1_v": 231, "voltage_l2_v": 230.5, "voltage_l3_v": 229.9,
                     "current_l1_a": 8, "current_l2_a": 0.0, "current_l3_a": 1000,
                     "frequency_hz": 50.01},
}  # fmt: skip
ODD: list[object] = [None, True, 0, -1, 1.5, 2.0, 2**31, 2**63, 1e39, -1e39, "", "x" * 65,
                     "a\x00b", "up", "free", "card", "associated", [], {}, "2024-05-14T10:00:00"]


def kind_of(key: str) -> MessageKind:
    segment, name = key.split("/")
    return KIND_BY_TOPIC[segment, name]


def reference(key: str, payload: bytes) -> list[Reading] | str:
    """The reference path's answer: readings, or ``reason | detail``."""
    try:
        return decode_native("dev-1", kind_of(key), orjson.loads(payload), CTX)
    except DecodeError as exc:
        return f"{exc.reason} | {exc.detail}"


def fast(key: str, payload: bytes) -> list[Reading] | str | None:
    """The direct path's answer; None when it leaves the payload to the reference path."""
    try:
        return decode_native_json("dev-1", kind_of(key), payload, CTX)
    except DecodeError as exc:
        return f"{exc.reason} | {exc.detail}"


def corpus(key: str) -> list[bytes]:
    valid = VALID[key]
    out = [orjson.dumps(valid), orjson.dumps([valid, valid]), b"[]", b"{}", b"[{}]"]
    for field in valid:
        out.append(orjson.dumps({k: v for k, v in valid.items() if k != field}))
        for value in ODD:
            out.append(orjson.dumps({**valid, field: value}))
            out.append(orjson.dumps([valid, {**valid, field: value}]))
        out.append(orjson.dumps(valid)[:-1] + b',"' + field.encode() + b'":1e400}')
    return out


@pytest.mark.parametrize("key", sorted(MODELS))
def test_the_direct_path_gives_what_the_reference_path_gives(key: str) -> None:
    taken = 0
    for payload in corpus(key):
        direct = fast(key, payload)
        if direct is not None:
            taken += 1
            assert direct == reference(key, payload), payload
    assert taken > len(VALID[key])  # the valid messages and many refusals took it


@pytest.mark.parametrize(
    ("key", "message"),
    [("parking/transaction", {**VALID["parking/transaction"], "plate": "AB-123-CD"}),
     ("grid/reading", {"ADSC": "099999999999", "EAST": 5, "power_w": 1.0}),
     ("grid/reading", [{"n": "power", "v": 1.0}]),
     ("parking/status", [{"bn": "pm-1:", "n": "battery", "v": 0.5}])],
)  # fmt: skip
def test_unknown_fields_tic_frames_and_senml_packs_take_the_reference_path(
    key: str, message: Any
) -> None:
    payload = orjson.dumps(message)
    assert fast(key, payload) is None
    readings = decode_device_message("dev-1", kind_of(key), payload, CTX)
    if key == "grid/reading" and isinstance(message, dict):
        assert readings[0].energy_import_wh == 5  # type: ignore[union-attr]  # read as TIC


@pytest.mark.parametrize(
    ("key", "message", "reason", "detail"),
    [("wifi/stats", {"clients": 2.0, "rx_bytes": True, "radio": "x", "ts": True},
      "invalid_payload", "ts: Input should be a valid string; ts: Input should be a valid "
      "number; clients: Input should be a valid integer; rx_bytes: Input should be a valid "
      "integer"),
     ("parking/state", {"battery": 1.5, "snr": -31, "rssi": 5}, "out_of_range",
      "battery: Input should be less than or equal to 1; rssi: Input should be less than or "
      "equal to 0; snr: Input should be greater than or equal to -30"),
     ("parking/transaction", {"transaction_id": ""}, "invalid_payload",
      "transaction_id: String should have at least 1 character; amount_cents is required; "
      "duration_s is required; payment_method is required"),
     ("parking/status", {"fault": "x" * 33, "paper": 2, "battery": -1}, "out_of_range",
      "battery: Input should be greater than or equal to 0; paper: Input should be less than "
      "or equal to 1; fault: String should have at most 32 characters"),
     ("grid/reading", {"power_w": 1e39, "voltage_l1_v": -1}, "out_of_range",
      "power_w: Input should be less than or equal to 340282346638528860000000000000000000000; "
      "voltage_l1_v: Input should be greater than or equal to 0"),
     ("wifi/sessions", [{"client_mac": 5, "event": "x"}], "invalid_payload",
      "item 0: client_mac: Input should be a valid string; event: Input should be "
      "'associated' or 'disassociated'"),
     ("parking/state", {"state": "x", "occupied": 1}, "invalid_payload",
      "state: Input should be 'free', 'occupied' or 'unknown'; occupied: Input should be a "
      "valid boolean"),
     ("wifi/stats", {"clients": None}, "invalid_payload",
      "clients: Input should be a valid integer")],
)  # fmt: skip
def test_refusals_name_every_faulty_field_in_the_documented_words(
    key: str, message: Any, reason: str, detail: str
) -> None:
    with pytest.raises(DecodeError) as exc:
        decode_device_message("dev-1", kind_of(key), orjson.dumps(message), CTX)
    assert (exc.value.reason, exc.value.detail) == (reason, detail)


def _limits(key: str) -> list[tuple[str, float, float, type]]:
    """(field, ge, le, int or float) of every bounded number of a declaration."""
    out: list[tuple[str, float, float, type]] = []
    for field in msgspec.structs.fields(MODELS[key]):
        info = msgspec.inspect.type_info(field.type)
        for t in getattr(info, "types", (info,)):
            inner = getattr(t, "type", t)
            if isinstance(inner, msgspec.inspect.IntType | msgspec.inspect.FloatType):
                assert inner.ge is not None and inner.le is not None
                kind = int if isinstance(inner, msgspec.inspect.IntType) else float
                out.append((field.name, inner.ge, inner.le, kind))
    return out


@pytest.mark.parametrize("key", sorted(MODELS))
def test_declared_limits_are_those_check_reading_enforces(key: str) -> None:
    # A kind in _DECLARED_IN_FULL skips check_reading on the direct path: its declared limits
    # must never let through what the CHECK constraints refuse.
    limits = _limits(key)
    assert limits
    base = {**VALID[key], "state": "free", "occupied": False} if key == "parking/state" \
        else VALID[key]
    for field, lo, hi, kind in limits:
        for value in (lo, hi):
            payload = orjson.dumps({**base, field: kind(value)})
            (reading,) = decode_device_message("dev-1", kind_of(key), payload, CTX)
            assert check_reading(reading) is reading
        step = 1 if kind is int else max(abs(hi), 1.0) * 1e-6
        for value in (lo - step, hi + step):
            payload = orjson.dumps({**base, field: kind(value)})
            with pytest.raises(DecodeError) as exc:
                decode_device_message("dev-1", kind_of(key), payload, CTX)
            assert exc.value.reason == "out_of_range", (field, value)
    assert set(MODELS) >= _DECLARED_IN_FULL


def test_published_schema_files_equal_the_declarations() -> None:
    # After changing a declaration: python -m devices.decoders.schemas
    committed = {p.name: p.read_bytes() for p in DOCS_SCHEMAS.glob("*.schema.json")}
    assert committed == schema_files()
    assert len(committed) == len(MESSAGE_KINDS)


@pytest.mark.parametrize("key", sorted(MODELS))
def test_schemas_accept_their_examples_and_refuse_out_of_range_values(key: str) -> None:
    schema = json_schemas()[key]
    validator = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    for example in schema["examples"]:
        validator.validate(example)
    field, lo, _, kind = _limits(key)[0]
    assert not validator.is_valid({**VALID[key], field: kind(lo) - 1})
