"""Beffroi's native JSON messages: one object per reading, or an array of them (a batch).

Every message may carry ``ts``: ISO 8601 with an offset or ``Z`` (``2024-05-14T10:42:17+02:00``)
or Unix seconds (``1715676137.5``); without it the reading is timed at reception. A date-time
without offset is refused (``bad_timestamp``): devices must not send local time. Unknown fields
are ignored (a licence plate sent by a parking meter is dropped, never stored). The msgspec
``Struct`` declarations of ``devices.decoders.declarations`` are the reference: they validate
messages (in C) and ``json_schemas`` publishes them. Validation is strict JSON typing:
``"12"`` is not a number and ``1`` is not ``true``; the ranges are the CHECK constraints of
``devices.decoders.common``.

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
from types import NoneType, UnionType
from typing import Annotated, Any, Final, Literal, TypeVar, Union, get_args, get_origin

import msgspec
from msgspec import Meta

from devices.decoders.common import DecodeContext, check_reading, parse_time
from devices.decoders.declarations import (
    MODELS,
    GridReadingMessage,
    Message,
    ParkingStateMessage,
    ParkingStatusMessage,
    ParkingTransactionMessage,
    WifiSessionMessage,
    WifiStatsMessage,
    json_schemas,
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

__all__ = ["MODELS", "decode_native", "decode_native_json", "json_schemas"]

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


def _validation_error(model: type[Message], obj: dict[str, object], where: str) -> DecodeError:
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


_M = TypeVar("_M", bound=Message)


def _validate(model: type[_M], obj: object, where: str) -> _M:
    if not isinstance(obj, dict):
        raise DecodeError(INVALID_PAYLOAD, f"{where}a message must be a JSON object")
    try:
        return msgspec.convert(obj, model, strict=True)
    except msgspec.ValidationError:
        pass  # msgspec's error may quote the value sent (a plate): not kept as our context
    raise _validation_error(model, obj, where)


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
