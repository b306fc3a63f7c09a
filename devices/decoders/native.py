"""Beffroi's native JSON messages: one object per reading, or an array of them (a batch).

Every message may carry ``ts``: ISO 8601 with an offset or ``Z`` (``2024-05-14T10:42:17+02:00``)
or Unix seconds (``1715676137.5``); without it the reading is timed at reception. A date-time
without offset is refused (``bad_timestamp``): devices must not send local time. Unknown fields
are ignored (a licence plate sent by a parking meter is dropped, never stored). The msgspec
``Struct`` declarations below are the reference: they validate messages (in C) and
``json_schemas`` publishes them. Validation is strict JSON typing: ``"12"`` is not a number and
``1`` is not ``true``; the ranges are the CHECK constraints of ``devices.decoders.common``.

Two paths give the same readings and the same errors. ``decode_native_json`` decodes the
payload bytes straight into the declarations, with unknown fields refused; a message it cannot
take whole (an unknown field, a TIC frame, a SenML pack, any error) is left to the reference
path: ``orjson``, format detection (``devices.decoders``), then ``decode_native``, which
validates each parsed object with ``msgspec.convert`` and, on failure, names every faulty
field in the same words as before msgspec (pydantic's, which dead letters already hold).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from types import NoneType, UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    ClassVar,
    Final,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

import msgspec
from msgspec import Meta, Struct

from devices.decoders.common import (
    AMOUNT_CENTS,
    BYTES_COUNTER,
    CLIENTS,
    CURRENT_A,
    DURATION_S,
    ENERGY_WH,
    FAULT_CODE_LEN,
    FREQUENCY_HZ,
    PARKING_RSSI_DBM,
    POWER_W,
    RATIO,
    SESSION_S,
    SNR_DB,
    TRANSACTION_ID_LEN,
    VOLTAGE_V,
    WIFI_RSSI_DBM,
    DecodeContext,
    check_reading,
    parse_time,
)
from devices.errors import INVALID_PAYLOAD, OUT_OF_RANGE, DecodeError
from devices.families import MessageKind
from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    Reading,
    WifiApStats,
    WifiSession,
)

if TYPE_CHECKING:
    JSON_SCHEMAS: dict[str, dict[str, Any]]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

Timestamp = Annotated[
    Annotated[str, Meta(extra_json_schema={"format": "date-time"})] | float | None,
    Meta(
        description="When measured: ISO 8601 with offset or Z, or Unix seconds. "
        "Default: when Beffroi received the message."
    ),
]


def _range(lo: float, hi: float, description: str) -> Meta:
    return Meta(ge=lo, le=hi, description=description)


class _Message(Struct, frozen=True, kw_only=True):
    # Unknown fields are ignored; the decoder of decode_native_json refuses them instead, so
    # that a message with one takes the reference path (see the module doc).
    examples: ClassVar[tuple[dict[str, Any], ...]] = ()
    """Published in the JSON Schema; each must decode (tests)."""

    ts: Timestamp = None


class WifiStatsMessage(_Message, frozen=True, kw_only=True):
    """``wifi/stats``: counters of an access point, about once a minute."""

    examples = (
        {
            "ts": "2024-05-14T10:42:00+02:00",
            "clients": 12,
            "rx_bytes": 123456789,
            "tx_bytes": 987654321,
            "radio": "up",
        },
    )

    clients: Annotated[int, _range(*CLIENTS, "Clients associated now (count).")]
    rx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes received since boot.")] | None = None
    tx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes sent since boot.")] | None = None
    radio: Annotated[Literal["up", "down"] | None, Meta(description="Radio state.")] = None


class WifiSessionMessage(_Message, frozen=True, kw_only=True):
    """``wifi/sessions``: a client (dis)association. The MAC is hashed on receipt, never stored."""

    examples = (
        {
            "ts": 1715676137,
            "client_mac": "02:00:5e:10:00:01",
            "event": "disassociated",
            "rssi": -67,
            "session_s": 120,
        },
    )

    client_mac: Annotated[
        str,
        Meta(
            description="Client MAC: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or "
            "aabbccddeeff. Replaced by a keyed hash before anything is stored."
        ),
    ]
    event: Literal["associated", "disassociated"]
    rssi: Annotated[int, _range(*WIFI_RSSI_DBM, "Client signal (dBm).")] | None = None
    session_s: Annotated[int, _range(*SESSION_S, "On disassociation: time connected (s).")] | (
        None
    ) = None


class ParkingStateMessage(_Message, frozen=True, kw_only=True):
    """``parking/state``: occupancy of one spot, on change and as a heartbeat.

    Give ``state``, or ``occupied`` (``true`` = occupied, ``false`` = free), or both if they agree.
    """

    examples = (
        {
            "ts": "2024-05-14T08:42:17Z",
            "state": "occupied",
            "battery": 0.87,
            "rssi": -104,
            "snr": 7.5,
        },
        {"occupied": False},
    )

    state: Literal["free", "occupied", "unknown"] | None = None
    occupied: bool | None = None
    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    rssi: Annotated[int, _range(*PARKING_RSSI_DBM, "Uplink signal (dBm).")] | None = None
    snr: Annotated[float, _range(*SNR_DB, "Uplink signal-to-noise ratio (dB).")] | None = None


class ParkingTransactionMessage(_Message, frozen=True, kw_only=True):
    """``parking/transaction``: a payment at a parking meter. Never send a licence plate."""

    examples = (
        {
            "ts": "2024-05-14T10:05:00+02:00",
            "transaction_id": "HZ12-000457",
            "amount_cents": 250,
            "duration_s": 3600,
            "payment_method": "contactless",
        },
    )

    transaction_id: Annotated[
        str,
        Meta(
            min_length=TRANSACTION_ID_LEN[0],
            max_length=TRANSACTION_ID_LEN[1],
            description="Meter-assigned id, unique per meter.",
        ),
    ]
    amount_cents: Annotated[int, _range(*AMOUNT_CENTS, "Amount paid (euro cents).")]
    duration_s: Annotated[int, _range(*DURATION_S, "Parking time bought (s).")]
    payment_method: Literal["card", "contactless", "coins", "mobile"]


class ParkingStatusMessage(_Message, frozen=True, kw_only=True):
    """``parking/status``: health of a parking meter, every 15 minutes or so."""

    examples = (
        {"ts": "2024-05-14T10:00:00+02:00", "battery": 0.8, "paper": 0.4, "fault": None},
        {"battery": 0.79, "paper": 0.0, "fault": "E12"},
    )

    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    paper: Annotated[float, _range(*RATIO, "Receipt paper left, 0..1.")] | None = None
    fault: Annotated[
        Annotated[str, Meta(max_length=FAULT_CODE_LEN[1])] | None,
        Meta(description='Vendor fault code; null or "" when there is no fault.'),
    ] = None


class GridReadingMessage(_Message, frozen=True, kw_only=True):
    """``grid/reading``: an electricity meter reading; at least one value besides ``ts``."""

    examples = (
        {
            "ts": "2024-05-14T10:40:00+02:00",
            "energy_import_wh": 2738033,
            "energy_export_wh": 0,
            "power_w": 1840.0,
            "voltage_l1_v": 231.0,
            "current_l1_a": 8.0,
            "frequency_hz": 50.01,
        },
    )

    energy_import_wh: Annotated[int, _range(*ENERGY_WH, "Imported energy index (Wh).")] | (
        None
    ) = None
    energy_export_wh: Annotated[int, _range(*ENERGY_WH, "Exported energy index (Wh).")] | (
        None
    ) = None
    power_w: Annotated[float, _range(*POWER_W, "Active power, negative when exporting (W).")] | (
        None
    ) = None
    voltage_l1_v: Annotated[float, _range(*VOLTAGE_V, "Phase 1 RMS voltage (V).")] | None = None
    voltage_l2_v: Annotated[float, _range(*VOLTAGE_V, "Phase 2 RMS voltage (V).")] | None = None
    voltage_l3_v: Annotated[float, _range(*VOLTAGE_V, "Phase 3 RMS voltage (V).")] | None = None
    current_l1_a: Annotated[float, _range(*CURRENT_A, "Phase 1 RMS current (A).")] | None = None
    current_l2_a: Annotated[float, _range(*CURRENT_A, "Phase 2 RMS current (A).")] | None = None
    current_l3_a: Annotated[float, _range(*CURRENT_A, "Phase 3 RMS current (A).")] | None = None
    frequency_hz: Annotated[float, _range(*FREQUENCY_HZ, "Grid frequency (Hz).")] | None = None


MODELS: Final[dict[str, type[_Message]]] = {
    "wifi/stats": WifiStatsMessage,
    "wifi/sessions": WifiSessionMessage,
    "parking/state": ParkingStateMessage,
    "parking/transaction": ParkingTransactionMessage,
    "parking/status": ParkingStatusMessage,
    "grid/reading": GridReadingMessage,
}
"""Native message declaration of each kind, keyed ``segment/name``."""

# --- error details -------------------------------------------------------------------------
# msgspec stops at the first error and its messages may quote the value sent (a MAC, a plate).
# A refused message is rare, so its detail is worked out again here, field by field in
# declaration order, from the same declarations: every faulty field, in the wording dead
# letters have always used, never a value sent.

# Error kinds that mean "a value outside the allowed range"; all others (missing, wrong type,
# word outside a Literal) are structural.
_RANGE_ERRORS: Final = frozenset(
    {"greater_than_equal", "less_than_equal", "string_too_short", "string_too_long",
     "finite_number"}
)  # fmt: skip

_Error = tuple[str, str]  # (kind, message)


def _number_text(bound: float) -> str:
    """A limit as the detail texts write it: ``0``, ``0.5``, ``340282346638528860000...``."""
    if isinstance(bound, int):
        return str(bound)
    return format(Decimal(repr(bound)).normalize(), "f")


def _alternatives(values: tuple[object, ...]) -> str:
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _bounds(value: float, meta: list[Meta]) -> list[_Error]:
    for m in meta:
        if m.ge is not None and not value >= m.ge:
            return [("greater_than_equal",
                     f"Input should be greater than or equal to {_number_text(m.ge)}")]
        if m.le is not None and not value <= m.le:
            return [("less_than_equal",
                     f"Input should be less than or equal to {_number_text(m.le)}")]
    return []


def _length(text: str, meta: list[Meta]) -> list[_Error]:
    for m in meta:
        if m.min_length is not None and len(text) < m.min_length:
            n = m.min_length
            return [("string_too_short",
                     f"String should have at least {n} character{'s' if n != 1 else ''}")]
        if m.max_length is not None and len(text) > m.max_length:
            n = m.max_length
            return [("string_too_long",
                     f"String should have at most {n} character{'s' if n != 1 else ''}")]
    return []


def _errors(tp: Any, value: object) -> list[_Error]:
    """What is wrong with ``value`` for the declared type ``tp``: nothing when it fits."""
    meta: list[Meta] = []
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        meta.extend(m for m in extra if isinstance(m, Meta))
    origin = get_origin(tp)
    if origin is Union or origin is UnionType:
        members = get_args(tp)
        if value is None and NoneType in members:
            return []
        found = [_errors(m, value) for m in members if m is not NoneType]
        if any(not errs for errs in found):
            return []
        return [e for errs in found for e in errs]
    if origin is Literal:
        if isinstance(value, str) and value in get_args(tp):
            return []
        return [("literal_error", f"Input should be {_alternatives(get_args(tp))}")]
    if tp is bool:
        return [] if type(value) is bool else [("bool_type", "Input should be a valid boolean")]
    if tp is int:
        if type(value) is not int:
            return [("int_type", "Input should be a valid integer")]
        return _bounds(value, meta)
    if tp is float:
        if type(value) is not float and type(value) is not int:
            return [("float_type", "Input should be a valid number")]
        number = float(value)
        if not math.isfinite(number):
            return [("finite_number", "Input should be a finite number")]
        return _bounds(number, meta)
    if tp is str:
        if type(value) is not str:
            return [("string_type", "Input should be a valid string")]
        return _length(value, meta)
    raise TypeError(f"no error text for the declared type {tp!r}")


def _validation_error(model: type[_Message], obj: dict[str, object], where: str) -> DecodeError:
    """The DecodeError of an object ``model`` refused: its faulty fields, no value sent."""
    errors: list[_Error] = []
    for field in msgspec.structs.fields(model):
        if field.encode_name not in obj:
            if field.required:
                errors.append(("missing", f"{field.name} is required"))
            continue
        errors.extend((kind, f"{field.name}: {message}")
                      for kind, message in _errors(field.type, obj[field.encode_name]))
    if not errors:  # msgspec refused what the texts above accept: say so, not nothing
        errors.append(("invalid", "the message does not match its declaration"))
    reason = OUT_OF_RANGE if all(k in _RANGE_ERRORS for k, _ in errors) else INVALID_PAYLOAD
    parts: list[str] = []
    for _, part in errors:
        if part not in parts:
            parts.append(part)
    return DecodeError(reason, where + "; ".join(parts[:4]))


_M = TypeVar("_M", bound=_Message)


def _validate(model: type[_M], obj: object, where: str) -> _M:
    if not isinstance(obj, dict):
        raise DecodeError(INVALID_PAYLOAD, f"{where}a message must be a JSON object")
    try:
        return msgspec.convert(obj, model, strict=True)
    except msgspec.ValidationError:
        raise _validation_error(model, obj, where) from None


# --- readings --------------------------------------------------------------------------------


def _wifi_stats(device_id: str, m: WifiStatsMessage, ctx: DecodeContext, where: str) -> Reading:
    radio_up = None if m.radio is None else m.radio == "up"
    return WifiApStats(
        parse_time(m.ts, ctx.received_at), device_id, m.clients, m.rx_bytes, m.tx_bytes, radio_up
    )


def _wifi_session(device_id: str, m: WifiSessionMessage, ctx: DecodeContext, where: str) -> Reading:
    time = parse_time(m.ts, ctx.received_at)
    client_key = ctx.hasher.client_key(m.client_mac, time)
    return WifiSession(time, device_id, client_key, m.event, m.rssi, m.session_s)


def _parking_state(
    device_id: str, m: ParkingStateMessage, ctx: DecodeContext, where: str
) -> Reading:
    state: str | None = m.state
    if m.occupied is not None:
        from_flag = "occupied" if m.occupied else "free"
        if state is not None and state != from_flag:
            raise DecodeError(INVALID_PAYLOAD, f"{where}state and occupied disagree")
        state = from_flag
    if state is None:
        raise DecodeError(INVALID_PAYLOAD, f"{where}state or occupied is required")
    return ParkingSpotState(
        parse_time(m.ts, ctx.received_at), device_id, state, m.battery, m.rssi, m.snr
    )


def _parking_transaction(
    device_id: str, m: ParkingTransactionMessage, ctx: DecodeContext, where: str
) -> Reading:
    return ParkingTransaction(
        parse_time(m.ts, ctx.received_at),
        device_id,
        m.transaction_id,
        m.amount_cents,
        m.duration_s,
        m.payment_method,
    )


def _parking_status(
    device_id: str, m: ParkingStatusMessage, ctx: DecodeContext, where: str
) -> Reading:
    return ParkingMeterStatus(
        parse_time(m.ts, ctx.received_at), device_id, m.battery, m.paper, m.fault or None
    )


_NO_GRID_VALUES: Final = (None,) * 10


def _grid_reading(device_id: str, m: GridReadingMessage, ctx: DecodeContext, where: str) -> Reading:
    fields = msgspec.structs.astuple(m)  # ts, then the columns in the table's order
    values = fields[1:]
    if values == _NO_GRID_VALUES:
        raise DecodeError(INVALID_PAYLOAD, f"{where}a grid reading needs at least one value")
    ts = fields[0]
    time = ctx.received_at if ts is None else parse_time(ts, ctx.received_at)
    return GridReading._make((time, device_id, *values))


_Build = Callable[[str, Any, DecodeContext, str], Reading]
_BUILDERS: Final[dict[str, _Build]] = {
    "wifi/stats": _wifi_stats,
    "wifi/sessions": _wifi_session,
    "parking/state": _parking_state,
    "parking/transaction": _parking_transaction,
    "parking/status": _parking_status,
    "grid/reading": _grid_reading,
}
"""Reading of a validated message, keyed like MODELS; ``where`` prefixes its errors."""


def decode_native(
    device_id: str, kind: MessageKind, data: object, ctx: DecodeContext
) -> list[Reading]:
    """Readings of a parsed native message: an object (one reading) or an array (a batch).

    The reference path: each item is validated, then turned into a checked reading, in order.
    """
    key = f"{kind.segment}/{kind.name}"
    model, build = MODELS[key], _BUILDERS[key]

    def one(obj: object, where: str) -> Reading:
        return check_reading(build(device_id, _validate(model, obj, where), ctx, where))

    if isinstance(data, list):
        return [one(item, f"item {i}: ") for i, item in enumerate(data)]
    return [one(data, "")]


# Kinds whose every column comes from a declared field bounded by the limits check_reading
# enforces (the constants of devices.decoders.common), or from a word of a Literal: their
# readings from decode_native_json need no second check. Text columns (a NUL) and the client
# key of a session are still checked.
_DECLARED_IN_FULL: Final = frozenset({"wifi/stats", "parking/state", "grid/reading"})

_Fast = tuple[msgspec.json.Decoder[Any], _Build, bool]
_FAST: dict[str, _Fast] = {}  # by table name: one short string hashed, built on first use


def _fast_path(kind: MessageKind) -> _Fast:
    """The JSON decoder of one kind's messages (an object or an array of them) that refuses
    unknown fields; the kind's builder; whether its readings still need check_reading."""
    key = f"{kind.segment}/{kind.name}"
    model = MODELS[key]
    wire = msgspec.defstruct(model.__name__, [], bases=(model,), forbid_unknown_fields=True,
                             frozen=True, kw_only=True)
    decoder = msgspec.json.Decoder(wire | list[wire])  # type: ignore[valid-type]
    return decoder, _BUILDERS[key], key not in _DECLARED_IN_FULL


def decode_native_json(
    device_id: str, kind: MessageKind, payload: bytes, ctx: DecodeContext
) -> list[Reading] | None:
    """Readings of a native message decoded straight from its JSON bytes, or None when the
    payload is not one msgspec takes whole: then the reference path decides (module doc).

    Only a payload of known fields that all validate gets this far, and every such payload
    gives here exactly what the reference path would.
    """
    fast = _FAST.get(kind.table)
    if fast is None:
        fast = _FAST[kind.table] = _fast_path(kind)
    decoder, build, check = fast
    if type(device_id) is not str or not device_id:
        return None  # check_reading refuses it on the reference path
    try:
        decoded = decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    if type(decoded) is list:
        if check:  # item by item, as the reference path: the first faulty item is named
            return [check_reading(build(device_id, m, ctx, f"item {i}: "))
                    for i, m in enumerate(decoded)]
        return [build(device_id, m, ctx, f"item {i}: ") for i, m in enumerate(decoded)]
    reading = build(device_id, decoded, ctx, "")
    return [check_reading(reading) if check else reading]


@cache
def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (2020-12) of each native message, keyed ``segment/name``, from the
    declarations (``msgspec.json.schema``) with their examples.

    Built once, on first call, and shared: treat it as read-only.
    """
    _, components = msgspec.json.schema_components(MODELS.values())
    out: dict[str, dict[str, Any]] = {}
    for kind, model in MODELS.items():
        schema = components[model.__name__]
        out[kind] = {"$schema": JSON_SCHEMA_DIALECT, **schema,
                     "examples": [dict(e) for e in model.examples]}
    return out


def __getattr__(name: str) -> Any:
    # JSON_SCHEMAS is computed on first access, not at import.
    if name == "JSON_SCHEMAS":
        return json_schemas()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
