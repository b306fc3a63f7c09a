"""Shared pieces of the decoders: the decode context, JSON loading, times, range checks.

``check_reading`` is the last step of every decoder: it enforces on a finished reading the
CHECK constraints of ``sql/002_readings.sql`` and the limits of the column
types, so that a reading that passes can never make a COPY batch fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import orjson

from devices.errors import (
    BAD_TIMESTAMP,
    INVALID_JSON,
    INVALID_PAYLOAD,
    NOT_UTF8,
    OUT_OF_RANGE,
    DecodeError,
)
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

# Limits of the PostgreSQL column types.
INT4_MAX: Final = 2**31 - 1
INT8_MAX: Final = 2**63 - 1
FLOAT4_MAX: Final = 3.4028234663852886e38  # largest finite real

# CHECK constraints of sql/002_readings.sql, as (min, max), both inclusive.
CLIENTS: Final = (0, INT4_MAX)
BYTES_COUNTER: Final = (0, INT8_MAX)
WIFI_RSSI_DBM: Final = (-120, 0)
SESSION_S: Final = (0, INT4_MAX)
RATIO: Final = (0.0, 1.0)
PARKING_RSSI_DBM: Final = (-150, 0)
SNR_DB: Final = (-30.0, 30.0)
TRANSACTION_ID_LEN: Final = (1, 64)
AMOUNT_CENTS: Final = (0, 100_000)
DURATION_S: Final = (0, 604_800)
FAULT_CODE_LEN: Final = (0, 32)
ENERGY_WH: Final = (0, INT8_MAX)
POWER_W: Final = (-FLOAT4_MAX, FLOAT4_MAX)  # no CHECK; the limits of real
VOLTAGE_V: Final = (0.0, 500.0)
CURRENT_A: Final = (0.0, 1000.0)
FREQUENCY_HZ: Final = (40.0, 70.0)

SESSION_EVENTS: Final = frozenset({"associated", "disassociated"})
SPOT_STATES: Final = frozenset({"free", "occupied", "unknown"})
PAYMENT_METHODS: Final = frozenset({"card", "contactless", "coins", "mobile"})

SENML_RELATIVE_LIMIT: Final = 2**28  # RFC 8428: a resolved time below this is relative to now
_ZERO: Final = timedelta(0)


@dataclass(slots=True)
class DecodeContext:
    """What a decoder needs beyond the payload.

    ``received_at`` (aware, UTC) stands in for a missing time and anchors SenML relative
    times; the two lookups map a LoRaWAN DevEUI (16 lower-case hex digits) or a Linky meter
    serial (ADSC/ADCO, 12 digits; or the PRM of a meter whose serial is not registered) to a
    device id, None when unknown.
    """

    received_at: datetime
    hasher: MacHasher
    device_by_dev_eui: Callable[[str], str | None]
    device_by_meter_id: Callable[[str], str | None]

    def __post_init__(self) -> None:
        if self.received_at.utcoffset() != _ZERO:
            raise ValueError("DecodeContext.received_at must be an aware UTC datetime")


def loads(payload: bytes) -> Any:
    """Parse JSON, telling apart ``not_utf8`` and ``invalid_json``."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        where = f"{exc.msg} at {exc.pos}"
    # Raised outside the except clause: orjson's error holds the whole document (.doc), which
    # must not travel with ours into logs as its context (and compiled by mypyc, ``from None``
    # does not hide the context).
    if not _is_utf8(payload):
        raise DecodeError(NOT_UTF8, "payload is not valid UTF-8")
    raise DecodeError(INVALID_JSON, f"payload is not JSON: {where}")


def _is_utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def from_unix(seconds: float, what: str = "ts") -> datetime:
    """An aware UTC datetime from Unix seconds, rounded half to even to the microsecond.

    ``datetime.fromtimestamp`` gives the same instant as ``epoch + timedelta(seconds=...)``
    in less than half the time.
    """
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        pass  # raised below, without the context (which may quote the value)
    raise DecodeError(BAD_TIMESTAMP, f"{what} is out of range (Unix seconds)")


def parse_iso(text: str, what: str = "ts") -> datetime:
    """An aware UTC datetime from ISO 8601 text with an offset or ``Z``."""
    # Errors are raised outside the except clauses: the context quotes the text sent.
    parsed: datetime | None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None:
        raise DecodeError(BAD_TIMESTAMP, f"{what} is not an ISO 8601 date-time")
    if parsed.tzinfo is None:
        raise DecodeError(BAD_TIMESTAMP, f"{what} has no UTC offset (add Z or +01:00)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        pass
    raise DecodeError(BAD_TIMESTAMP, f"{what} is out of range")


def parse_time(value: object, received_at: datetime, what: str = "ts") -> datetime:
    """A message time: ISO 8601 text with offset, Unix seconds, or None for ``received_at``."""
    if value is None:
        return received_at
    if isinstance(value, str):
        return parse_iso(value, what)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise DecodeError(BAD_TIMESTAMP, f"{what} is not finite")
        return from_unix(value, what)
    raise DecodeError(BAD_TIMESTAMP, f"{what} must be an ISO 8601 string or Unix seconds")


def senml_time(seconds: float, received_at: datetime) -> datetime:
    """A resolved SenML time: relative to ``received_at`` below 2**28, else Unix seconds."""
    if seconds < SENML_RELATIVE_LIMIT:
        try:
            return received_at + timedelta(seconds=seconds)
        except (OverflowError, ValueError):
            pass  # raised below, without the context
        raise DecodeError(BAD_TIMESTAMP, "relative SenML time is out of range")
    return from_unix(seconds, "SenML time")


# --- range checks --------------------------------------------------------------------------


def _bad_type(field: str, expected: str) -> DecodeError:
    return DecodeError(INVALID_PAYLOAD, f"{field} must be {expected}")


def _int(field: str, value: object, limits: tuple[int, int], *, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise DecodeError(INVALID_PAYLOAD, f"{field} is required")
    if type(value) is not int:
        raise _bad_type(field, "an integer")
    lo, hi = limits
    if not lo <= value <= hi:
        raise DecodeError(OUT_OF_RANGE, f"{field}={value} is outside [{lo}, {hi}]")


def _float(field: str, value: object, limits: tuple[float, float]) -> None:
    if value is None:
        return
    if type(value) is not float:
        raise _bad_type(field, "a number")
    lo, hi = limits
    if not lo <= value <= hi:  # also rejects NaN
        raise DecodeError(OUT_OF_RANGE, f"{field}={value!r} is outside [{lo:g}, {hi:g}]")


def _text(field: str, value: object, limits: tuple[int, int], *, optional: bool) -> None:
    if value is None:
        if optional:
            return
        raise DecodeError(INVALID_PAYLOAD, f"{field} is required")
    if type(value) is not str:
        raise _bad_type(field, "a string")
    lo, hi = limits
    if not lo <= len(value) <= hi:
        raise DecodeError(
            OUT_OF_RANGE, f"{field} is {len(value)} characters long, outside [{lo}, {hi}]"
        )
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise DecodeError(INVALID_PAYLOAD, f"{field} contains a NUL character")


def _word(field: str, value: object, words: frozenset[str]) -> None:
    if value not in words:
        raise DecodeError(INVALID_PAYLOAD, f"{field} must be one of {', '.join(sorted(words))}")


# The checks read a reading as ``Any`` on purpose: each field as it was built, whatever its
# declared type. Compiled by mypyc, a typed read would refuse or convert a wrong type (a bool
# read as an int) before the check could name it.


def _head(r: Any) -> None:
    t = r.time
    if type(t) is not datetime or t.tzinfo is None:
        raise DecodeError(BAD_TIMESTAMP, "reading time must be an aware datetime")
    if type(r.device_id) is not str or not r.device_id:
        raise DecodeError(INVALID_PAYLOAD, "device_id must be a non-empty string")


def _check_wifi_ap_stats(r: Any) -> None:
    _int("clients", r.clients, CLIENTS, optional=False)
    _int("rx_bytes", r.rx_bytes, BYTES_COUNTER, optional=True)
    _int("tx_bytes", r.tx_bytes, BYTES_COUNTER, optional=True)
    if r.radio_up is not None and type(r.radio_up) is not bool:
        raise _bad_type("radio_up", "a boolean")


def _check_wifi_session(r: Any) -> None:
    if type(r.client_key) is not bytes or len(r.client_key) != 16:
        raise _bad_type("client_key", "16 bytes")
    _word("event", r.event, SESSION_EVENTS)
    _int("rssi_dbm", r.rssi_dbm, WIFI_RSSI_DBM, optional=True)
    _int("session_s", r.session_s, SESSION_S, optional=True)


def _check_parking_spot_state(r: Any) -> None:
    _word("state", r.state, SPOT_STATES)
    _float("battery", r.battery, RATIO)
    _int("rssi_dbm", r.rssi_dbm, PARKING_RSSI_DBM, optional=True)
    _float("snr_db", r.snr_db, SNR_DB)


def _check_parking_transaction(r: Any) -> None:
    _text("transaction_id", r.transaction_id, TRANSACTION_ID_LEN, optional=False)
    _int("amount_cents", r.amount_cents, AMOUNT_CENTS, optional=False)
    _int("duration_s", r.duration_s, DURATION_S, optional=False)
    _word("payment_method", r.payment_method, PAYMENT_METHODS)


def _check_parking_meter_status(r: Any) -> None:
    _float("battery", r.battery, RATIO)
    _float("paper", r.paper, RATIO)
    _text("fault_code", r.fault_code, FAULT_CODE_LEN, optional=True)


def _check_grid_reading(r: Any) -> None:
    _int("energy_import_wh", r.energy_import_wh, ENERGY_WH, optional=True)
    _int("energy_export_wh", r.energy_export_wh, ENERGY_WH, optional=True)
    _float("power_w", r.power_w, POWER_W)
    _float("voltage_l1_v", r.voltage_l1_v, VOLTAGE_V)
    _float("voltage_l2_v", r.voltage_l2_v, VOLTAGE_V)
    _float("voltage_l3_v", r.voltage_l3_v, VOLTAGE_V)
    _float("current_l1_a", r.current_l1_a, CURRENT_A)
    _float("current_l2_a", r.current_l2_a, CURRENT_A)
    _float("current_l3_a", r.current_l3_a, CURRENT_A)
    _float("frequency_hz", r.frequency_hz, FREQUENCY_HZ)


_CHECKS: Final[dict[type, Callable[[Any], None]]] = {
    WifiApStats: _check_wifi_ap_stats,
    WifiSession: _check_wifi_session,
    ParkingSpotState: _check_parking_spot_state,
    ParkingTransaction: _check_parking_transaction,
    ParkingMeterStatus: _check_parking_meter_status,
    GridReading: _check_grid_reading,
}


_R = TypeVar("_R", bound=Reading)


def check_reading(reading: _R) -> _R:
    """``reading`` unchanged if every field fits its column, else ``DecodeError``.

    Numbers outside a CHECK range (or the column type) give ``out_of_range``; a wrong Python
    type, a missing required value or a word outside a vocabulary give ``invalid_payload``.
    Integer columns take ``int`` (never ``bool``), real columns ``float``.
    """
    _head(reading)
    _CHECKS[type(reading)](reading)
    return reading
