"""Beffroi's native JSON messages: one object per reading, or an array of them (a batch).

Every message may carry ``ts``: ISO 8601 with an offset or ``Z`` (``2024-05-14T10:42:17+02:00``)
or Unix seconds (``1715676137.5``); without it the reading is timed at reception. A date-time
without offset is refused (``bad_timestamp``): devices must not send local time. Unknown fields
are ignored (a licence plate sent by a parking meter is dropped, never stored). The pydantic
models below are the reference; ``JSON_SCHEMAS`` publishes them. Validation is strict JSON
typing: ``"12"`` is not a number and ``1`` is not ``true``.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema

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
    from collections.abc import Callable

    JSON_SCHEMAS: dict[str, dict[str, Any]]

Timestamp = Annotated[
    Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})] | float | None,
    Field(
        description="When measured: ISO 8601 with offset or Z, or Unix seconds. "
        "Default: when Beffroi received the message."
    ),
]


def _range(lo: float, hi: float, description: str) -> Any:
    return Field(ge=lo, le=hi, allow_inf_nan=False, description=description)


class _Message(BaseModel):
    # strict: JSON types as sent; defer_build: validators are built on first use, not import.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, defer_build=True)

    ts: Timestamp = None


class WifiStatsMessage(_Message):
    """``wifi/stats``: counters of an access point, about once a minute."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": "2024-05-14T10:42:00+02:00",
                    "clients": 12,
                    "rx_bytes": 123456789,
                    "tx_bytes": 987654321,
                    "radio": "up",
                }
            ]
        }
    )

    clients: Annotated[int, _range(*CLIENTS, "Clients associated now (count).")]
    rx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes received since boot.")] | None = None
    tx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes sent since boot.")] | None = None
    radio: Literal["up", "down"] | None = Field(None, description="Radio state.")


class WifiSessionMessage(_Message):
    """``wifi/sessions``: a client (dis)association. The MAC is hashed on receipt, never stored."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": 1715676137,
                    "client_mac": "02:00:5e:10:00:01",
                    "event": "disassociated",
                    "rssi": -67,
                    "session_s": 120,
                }
            ]
        }
    )

    client_mac: str = Field(
        description="Client MAC: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or "
        "aabbccddeeff. Replaced by a keyed hash before anything is stored."
    )
    event: Literal["associated", "disassociated"]
    rssi: Annotated[int, _range(*WIFI_RSSI_DBM, "Client signal (dBm).")] | None = None
    session_s: Annotated[int, _range(*SESSION_S, "On disassociation: time connected (s).")] | (
        None
    ) = None


class ParkingStateMessage(_Message):
    """``parking/state``: occupancy of one spot, on change and as a heartbeat.

    Give ``state``, or ``occupied`` (``true`` = occupied, ``false`` = free), or both if they agree.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": "2024-05-14T08:42:17Z",
                    "state": "occupied",
                    "battery": 0.87,
                    "rssi": -104,
                    "snr": 7.5,
                },
                {"occupied": False},
            ]
        }
    )

    state: Literal["free", "occupied", "unknown"] | None = None
    occupied: bool | None = None
    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    rssi: Annotated[int, _range(*PARKING_RSSI_DBM, "Uplink signal (dBm).")] | None = None
    snr: Annotated[float, _range(*SNR_DB, "Uplink signal-to-noise ratio (dB).")] | None = None


class ParkingTransactionMessage(_Message):
    """``parking/transaction``: a payment at a parking meter. Never send a licence plate."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": "2024-05-14T10:05:00+02:00",
                    "transaction_id": "HZ12-000457",
                    "amount_cents": 250,
                    "duration_s": 3600,
                    "payment_method": "contactless",
                }
            ]
        }
    )

    transaction_id: str = Field(
        min_length=TRANSACTION_ID_LEN[0],
        max_length=TRANSACTION_ID_LEN[1],
        description="Meter-assigned id, unique per meter.",
    )
    amount_cents: Annotated[int, _range(*AMOUNT_CENTS, "Amount paid (euro cents).")]
    duration_s: Annotated[int, _range(*DURATION_S, "Parking time bought (s).")]
    payment_method: Literal["card", "contactless", "coins", "mobile"]


class ParkingStatusMessage(_Message):
    """``parking/status``: health of a parking meter, every 15 minutes or so."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ts": "2024-05-14T10:00:00+02:00", "battery": 0.8, "paper": 0.4, "fault": None},
                {"battery": 0.79, "paper": 0.0, "fault": "E12"},
            ]
        }
    )

    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    paper: Annotated[float, _range(*RATIO, "Receipt paper left, 0..1.")] | None = None
    fault: str | None = Field(
        None,
        max_length=FAULT_CODE_LEN[1],
        description='Vendor fault code; null or "" when there is no fault.',
    )


class GridReadingMessage(_Message):
    """``grid/reading``: an electricity meter reading; at least one value besides ``ts``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ts": "2024-05-14T10:40:00+02:00",
                    "energy_import_wh": 2738033,
                    "energy_export_wh": 0,
                    "power_w": 1840.0,
                    "voltage_l1_v": 231.0,
                    "current_l1_a": 8.0,
                    "frequency_hz": 50.01,
                }
            ]
        }
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
"""Native message model of each kind, keyed ``segment/name``."""

# pydantic error types that mean "a value outside the allowed range"; all others (missing,
# wrong type, word outside a Literal) are structural.
_RANGE_ERRORS: Final = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "string_too_short",
        "string_too_long",
        "finite_number",
    }
)


def _validation_error(exc: ValidationError, where: str) -> DecodeError:
    """A DecodeError from pydantic's errors, without the input values they hold."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    reason = OUT_OF_RANGE if all(e["type"] in _RANGE_ERRORS for e in errors) else INVALID_PAYLOAD
    parts: list[str] = []
    for e in errors:
        field = str(e["loc"][0]) if e["loc"] else "message"
        part = f"{field}: {e['msg']}" if e["type"] != "missing" else f"{field} is required"
        if part not in parts:
            parts.append(part)
    return DecodeError(reason, where + "; ".join(parts[:4]))


_M = TypeVar("_M", bound=_Message)


def _validate(model: type[_M], obj: object, where: str) -> _M:
    if not isinstance(obj, dict):
        raise DecodeError(INVALID_PAYLOAD, f"{where}a message must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise _validation_error(exc, where) from None


def _wifi_stats(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(WifiStatsMessage, obj, where)
    radio_up = None if m.radio is None else m.radio == "up"
    return WifiApStats(
        parse_time(m.ts, ctx.received_at), device_id, m.clients, m.rx_bytes, m.tx_bytes, radio_up
    )


def _wifi_session(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(WifiSessionMessage, obj, where)
    time = parse_time(m.ts, ctx.received_at)
    client_key = ctx.hasher.client_key(m.client_mac, time)
    return WifiSession(time, device_id, client_key, m.event, m.rssi, m.session_s)


def _parking_state(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(ParkingStateMessage, obj, where)
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


def _parking_transaction(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(ParkingTransactionMessage, obj, where)
    return ParkingTransaction(
        parse_time(m.ts, ctx.received_at),
        device_id,
        m.transaction_id,
        m.amount_cents,
        m.duration_s,
        m.payment_method,
    )


def _parking_status(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(ParkingStatusMessage, obj, where)
    return ParkingMeterStatus(
        parse_time(m.ts, ctx.received_at), device_id, m.battery, m.paper, m.fault or None
    )


def _grid_reading(device_id: str, obj: object, ctx: DecodeContext, where: str) -> Reading:
    m = _validate(GridReadingMessage, obj, where)
    values = (
        m.energy_import_wh,
        m.energy_export_wh,
        m.power_w,
        m.voltage_l1_v,
        m.voltage_l2_v,
        m.voltage_l3_v,
        m.current_l1_a,
        m.current_l2_a,
        m.current_l3_a,
        m.frequency_hz,
    )
    if all(v is None for v in values):
        raise DecodeError(INVALID_PAYLOAD, f"{where}a grid reading needs at least one value")
    return GridReading(parse_time(m.ts, ctx.received_at), device_id, *values)


_DECODERS: Final[dict[str, Callable[[str, object, DecodeContext, str], Reading]]] = {
    "wifi/stats": _wifi_stats,
    "wifi/sessions": _wifi_session,
    "parking/state": _parking_state,
    "parking/transaction": _parking_transaction,
    "parking/status": _parking_status,
    "grid/reading": _grid_reading,
}


def decode_native(
    device_id: str, kind: MessageKind, data: object, ctx: DecodeContext
) -> list[Reading]:
    """Readings of a parsed native message: an object (one reading) or an array (a batch)."""
    decode = _DECODERS[f"{kind.segment}/{kind.name}"]
    if isinstance(data, list):
        return [
            check_reading(decode(device_id, item, ctx, f"item {i}: "))
            for i, item in enumerate(data)
        ]
    return [check_reading(decode(device_id, data, ctx, ""))]


@cache
def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of each native message, keyed ``segment/name``.

    Built once, on first call, and shared: treat it as read-only.
    """
    return {kind: model.model_json_schema() for kind, model in MODELS.items()}


def __getattr__(name: str) -> Any:
    # JSON_SCHEMAS is computed on first access, not at import.
    if name == "JSON_SCHEMAS":
        return json_schemas()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
