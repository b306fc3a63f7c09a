"""SenML (RFC 8428) packs in JSON: resolution of base fields, then mapping to readings.

``resolve_pack`` applies RFC 8428 section 4.6: name = bn + n, unit = u else bu, value = bv + v,
sum = bs + s, time = bt + t (missing parts 0; below 2**28 relative to reception). It rejects
labels ending in ``_``, ``bver`` above 10, names outside ``[A-Za-z0-9][A-Za-z0-9:./_-]*`` and
records with no value or more than one (``senml_invalid``). A record holding only base fields
just sets them.

``decode_senml`` then takes each record's *measurement*: the record's own name (``n``, the
device base ``bn`` stripped; the resolved name when ``n`` is empty), cut after its last ``:``
or ``/``. Measurements listed in ``MEASUREMENTS`` for the message kind become columns (units
checked and converted); others are ignored. Records are grouped by resolved time: one reading
per distinct time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, NamedTuple

from devices.decoders.common import DecodeContext, check_reading, senml_time
from devices.errors import (
    INVALID_PAYLOAD,
    OUT_OF_RANGE,
    SENML_INVALID,
    UNIT_MISMATCH,
    UNSUPPORTED_FORMAT,
    DecodeError,
)
from devices.families import MessageKind
from devices.readings import (
    GridReading,
    ParkingMeterStatus,
    ParkingSpotState,
    ParkingTransaction,
    Reading,
    WifiApStats,
)

CONTENT_TYPE: Final = "application/senml+json"
MAX_BVER: Final = 10  # the SenML version this decoder understands (RFC 8428)
SENML_KEYS: Final = frozenset({"bn", "n", "bt", "bver", "bu", "v", "vb", "vs"})
"""Keys whose presence in the first element of a JSON array marks it as a SenML pack."""

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9:./_-]*")
_BASE_KEYS: Final = frozenset({"bn", "bt", "bu", "bv", "bs", "bver"})
_REGULAR_KEYS: Final = frozenset({"n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"})
_LABELS: Final = _BASE_KEYS | _REGULAR_KEYS  # none ends with "_"

# (base name, record name) -> (resolved name, measurement), or None for an invalid name. A
# device sends the same few names again and again: the check and the cut are done once.
_NAMES: dict[tuple[str, str], tuple[str, str] | None] = {}
_NAMES_MAX: Final = 4096  # emptied when full: names sent by many devices cannot grow it
_NAME_CACHED_LEN: Final = 128


def _name(bn: str, n: str) -> tuple[str, str] | None:
    """Resolved name and measurement of a record (bn + n; the measurement is the record's
    own name, the resolved one when n is empty, cut after its last ':' or '/'), or None
    when the resolved name is not a valid SenML name."""
    key = (bn, n)
    if key in _NAMES:
        return _NAMES[key]
    name = bn + n
    out: tuple[str, str] | None = None
    if _NAME_RE.fullmatch(name) is not None:
        tail = n or name
        out = (name, tail[max(tail.rfind(":"), tail.rfind("/")) + 1 :])
    if len(name) <= _NAME_CACHED_LEN:  # a long name is checked each time, never kept
        if len(_NAMES) >= _NAMES_MAX:
            _NAMES.clear()
        _NAMES[key] = out
    return out


class SenMLRecord(NamedTuple):
    """A resolved SenML record, plus the measurement name Beffroi maps to a column."""

    name: str
    measurement: str
    unit: str | None
    value: float | None
    string_value: str | None
    bool_value: bool | None
    data_value: str | None
    sum: float | None
    time: datetime
    update_time: float | None


def _invalid(i: int, what: str) -> DecodeError:
    return DecodeError(SENML_INVALID, f"record {i}: {what}")


def _number(value: object, key: str, i: int) -> float | None:
    if value is None or type(value) is float or type(value) is int:  # not bool
        return value
    raise _invalid(i, f"{key} must be a number")


def _string(value: object, key: str, i: int) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _invalid(i, f"{key} must be a string")


def _field_types_error(rec: dict[str, object], i: int) -> DecodeError:
    for key in ("n", "u", "vs", "vd"):
        _string(rec.get(key), key, i)
    for key in ("v", "s", "t", "ut"):
        _number(rec.get(key), key, i)
    return _invalid(i, "vb must be a boolean")


def looks_like_senml(data: object) -> bool:
    """True for a JSON array whose first element is an object with a SenML key."""
    return (
        isinstance(data, list)
        and bool(data)
        and isinstance(data[0], dict)
        and not SENML_KEYS.isdisjoint(data[0])
    )


class _Base:
    """Base fields in force while walking a pack."""

    __slots__ = ("bn", "bs", "bt", "bu", "bv")

    def __init__(self) -> None:
        self.bn = ""
        self.bt: float = 0.0
        self.bu: str | None = None
        self.bv: float | None = None
        self.bs: float | None = None

    def update(self, rec: dict[str, object], i: int) -> None:
        get = rec.get
        if "bver" in rec:
            bver = rec["bver"]
            if type(bver) is not int or bver < 1:
                raise _invalid(i, "bver must be a positive integer")
            if bver > MAX_BVER:
                raise _invalid(i, f"bver {bver} is newer than the supported {MAX_BVER}")
        if "bn" in rec:
            self.bn = _string(get("bn"), "bn", i) or ""
        if "bt" in rec:
            self.bt = _number(get("bt"), "bt", i) or 0.0
        if "bu" in rec:
            self.bu = _string(get("bu"), "bu", i)
        if "bv" in rec:
            self.bv = _number(get("bv"), "bv", i)
        if "bs" in rec:
            self.bs = _number(get("bs"), "bs", i)


def resolve_pack(pack: object, received_at: datetime) -> list[SenMLRecord]:
    """The resolved records of a parsed SenML JSON pack (RFC 8428 section 4.6)."""
    if not isinstance(pack, list):
        raise DecodeError(SENML_INVALID, "a SenML pack must be a JSON array")
    base = _Base()
    times: dict[float, datetime] = {}
    out: list[SenMLRecord] = []
    for i, rec in enumerate(pack):
        if type(rec) is not dict:
            raise _invalid(i, "not a JSON object")
        keys = rec.keys()
        if not keys <= _LABELS:  # an unknown label: ignored, unless it must be understood
            for key in keys:
                if key[-1:] == "_":
                    raise _invalid(i, f"label {key[:32]!r} ends with '_' and is not understood")
        if not keys.isdisjoint(_BASE_KEYS):
            base.update(rec, i)
        if keys.isdisjoint(_REGULAR_KEYS):
            continue  # only base fields: they apply to the records that follow

        get = rec.get
        n, u, v, vs, vb, vd, s, t, ut = (
            get("n"), get("u"), get("v"), get("vs"), get("vb"), get("vd"),
            get("s"), get("t"), get("ut"),
        )  # fmt: skip
        # One cheap test for the usual case; _field_types_error says what is wrong otherwise.
        if not (
            (n is None or type(n) is str)
            and (u is None or type(u) is str)
            and (v is None or type(v) is float or type(v) is int)
            and (vs is None or type(vs) is str)
            and (vb is None or type(vb) is bool)
            and (vd is None or type(vd) is str)
            and (s is None or type(s) is float or type(s) is int)
            and (t is None or type(t) is float or type(t) is int)
            and (ut is None or type(ut) is float or type(ut) is int)
        ):
            raise _field_types_error(rec, i)
        names = _name(base.bn, n or "")
        if names is None:
            raise _invalid(i, "name is empty or not of [A-Za-z0-9][A-Za-z0-9:./_-]*")
        present = (v is not None) + (vs is not None) + (vb is not None) + (vd is not None)
        if present > 1:
            raise _invalid(i, "more than one value field (v, vs, vb, vd)")
        if not present and s is None:
            raise _invalid(i, "no value field (v, vs, vb, vd or s)")
        unit = u if "u" in rec else base.bu
        at = base.bt + (t or 0.0)
        time = times.get(at)
        if time is None:
            if not math.isfinite(at):
                raise _invalid(i, "time is not finite")
            time = times[at] = senml_time(at, received_at)
        if v is not None and base.bv is not None:
            v += base.bv
        if s is not None and base.bs is not None:
            s += base.bs
        out.append(
            SenMLRecord(
                names[0],
                names[1],
                unit,
                v,
                vs,
                vb,
                vd,
                s,
                time,
                ut,
            )
        )
    return out


# --- mapping of measurements to columns ----------------------------------------------------

_Kind = Literal["number", "bool", "string", "occupancy"]
_Cast = Literal["int", "round", "float", "str", "str_or_none"]
# unit -> (scale, offset): column value = value * scale + offset. Not Final: compiled by
# mypyc, a Final tuple used in the module's other constants is left unset at import.
_PLAIN = (1.0, 0.0)


@dataclass(frozen=True, slots=True)
class Measurement:
    """How one SenML measurement fills one column.

    ``units`` maps each accepted unit (``""`` = no unit given) to (scale, offset) into the
    column's unit; ``cast``: ``int`` needs a whole number, ``round`` rounds to the nearest
    integer, ``float`` keeps a real. ``cumulative`` measurements also accept a sum (``s``).
    """

    column: str
    kind: _Kind
    units: dict[str, tuple[float, float]]
    cast: _Cast = "float"
    cumulative: bool = False


def _m(
    column: str,
    kind: _Kind,
    units: dict[str, tuple[float, float]] | None = None,
    cast: _Cast = "float",
    *,
    cumulative: bool = False,
) -> Measurement:
    return Measurement(column, kind, units or {}, cast, cumulative)


_COUNT: Final = {"": _PLAIN, "count": _PLAIN}
_RATIO: Final = {"": _PLAIN, "/": _PLAIN, "%": _PLAIN}  # '%' is a legacy alias of the 0..1 ratio
# RFC 8428's registered unit for a battery: remaining energy level, in percent.
_BATTERY: Final = {**_RATIO, "%EL": (0.01, 0.0)}
_RSSI: Final = {"": _PLAIN, "dBm": _PLAIN, "dBW": (1.0, 30.0)}
_ENERGY: Final = {"": _PLAIN, "Wh": _PLAIN, "kWh": (1000.0, 0.0), "J": (1.0 / 3600.0, 0.0)}


def _phases(column: str, measurement: str, unit: str) -> dict[str, Measurement]:
    units = {"": _PLAIN, unit: _PLAIN}
    return {
        f"{measurement}_l{p}": _m(f"{column}_l{p}_{unit.lower()}", "number", units)
        for p in (1, 2, 3)
    }


MEASUREMENTS: Final[dict[str, dict[str, Measurement]]] = {
    "wifi/stats": {
        "clients": _m("clients", "number", _COUNT, "int"),
        "rx": _m("rx_bytes", "number", {"": _PLAIN, "B": _PLAIN}, "int", cumulative=True),
        "tx": _m("tx_bytes", "number", {"": _PLAIN, "B": _PLAIN}, "int", cumulative=True),
        "radio": _m("radio_up", "bool"),
    },
    "parking/state": {
        "occupied": _m("state", "occupancy", {"": _PLAIN, "/": _PLAIN}),
        "state": _m("state", "string", cast="str"),
        "battery": _m("battery", "number", _BATTERY),
        "rssi": _m("rssi_dbm", "number", _RSSI, "round"),
        "snr": _m("snr_db", "number", {"": _PLAIN, "dB": _PLAIN}),
    },
    "parking/status": {
        "battery": _m("battery", "number", _BATTERY),
        "paper": _m("paper", "number", _RATIO),
        "fault": _m("fault_code", "string", cast="str_or_none"),
    },
    "parking/transaction": {
        "transaction_id": _m("transaction_id", "string", cast="str"),
        "amount": _m("amount_cents", "number", {"": (100.0, 0.0), "EUR": (100.0, 0.0)}, "round"),
        "amount_cents": _m("amount_cents", "number", _COUNT, "int"),
        "duration": _m("duration_s", "number", {"": _PLAIN, "s": _PLAIN}, "round"),
        "payment_method": _m("payment_method", "string", cast="str"),
    },
    "grid/reading": {
        "energy_import": _m("energy_import_wh", "number", _ENERGY, "round", cumulative=True),
        "energy_export": _m("energy_export_wh", "number", _ENERGY, "round", cumulative=True),
        "power": _m("power_w", "number", {"": _PLAIN, "W": _PLAIN}),
        **_phases("voltage", "voltage", "V"),
        **_phases("current", "current", "A"),
        "frequency": _m("frequency_hz", "number", {"": _PLAIN, "Hz": _PLAIN}),
    },
}
"""Per message kind (``segment/name``): SenML measurement name -> column. ``wifi/sessions``
is absent: a MAC must not travel in SenML names."""

_READING_TYPES: Final[dict[str, type[Reading]]] = {
    "wifi/stats": WifiApStats,
    "parking/state": ParkingSpotState,
    "parking/status": ParkingMeterStatus,
    "parking/transaction": ParkingTransaction,
    "grid/reading": GridReading,
}
_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    "wifi/stats": ("clients",),
    "parking/state": ("state",),
    "parking/status": (),
    "parking/transaction": ("transaction_id", "amount_cents", "duration_s", "payment_method"),
    "grid/reading": (),
}


def _column_value(
    m: Measurement,
    name: str,
    unit: str | None,
    number: float | None,
    string_value: str | None,
    bool_value: bool | None,
    sum_: float | None,
) -> object:
    """The column value for measurement ``m`` of a resolved record's measurement ``name``,
    ``unit`` and values (``v``, ``vs``, ``vb``, ``s``)."""
    if m.kind == "bool":
        if bool_value is None:
            raise DecodeError(INVALID_PAYLOAD, f"SenML {name} needs a boolean value (vb)")
        return bool_value
    if m.kind == "string":
        if string_value is None:
            raise DecodeError(INVALID_PAYLOAD, f"SenML {name} needs a string value (vs)")
        if m.cast == "str_or_none":
            return string_value or None  # "" means no fault
        return string_value
    if m.kind == "occupancy" and bool_value is not None:
        return "occupied" if bool_value else "free"

    raw = number if number is not None else (sum_ if m.cumulative else None)
    if raw is None:
        raise DecodeError(INVALID_PAYLOAD, f"SenML {name} needs a numeric value (v)")
    unit = unit or ""
    conversion = m.units.get(unit)
    if conversion is None:
        accepted = ", ".join(repr(u) for u in m.units if u)
        raise DecodeError(
            UNIT_MISMATCH, f"SenML {name} has unit {unit[:16]!r}; accepted: {accepted}"
        )
    scale, offset = conversion
    value = raw if conversion == _PLAIN else raw * scale + offset
    if not math.isfinite(value):
        raise DecodeError(OUT_OF_RANGE, f"SenML {name} is not finite")
    if m.kind == "occupancy":
        if value not in (0, 1):
            raise DecodeError(INVALID_PAYLOAD, f"SenML {name} must be 0 or 1 (or vb)")
        return "occupied" if value == 1 else "free"
    if m.cast == "int":
        if isinstance(value, float) and not value.is_integer():
            raise DecodeError(INVALID_PAYLOAD, f"SenML {name} must be a whole number")
        return int(value)
    if m.cast == "round":
        return round(value)
    return float(value)


def decode_senml(
    device_id: str, kind: MessageKind, pack: object, ctx: DecodeContext
) -> list[Reading]:
    """Readings of a parsed SenML pack for ``kind``: one per distinct resolved time.

    A pack of the usual shape is read in one pass (``_plain_pack``); any other, and every
    refused pack, is resolved first (``resolve_pack``), which gives the same readings and
    names the error.
    """
    key = f"{kind.segment}/{kind.name}"
    measurements = MEASUREMENTS.get(key)
    if measurements is None:
        raise DecodeError(UNSUPPORTED_FORMAT, f"SenML is not accepted for {key} messages")
    readings = _plain_pack(device_id, key, measurements, pack, ctx.received_at)
    if readings is not None:
        return readings
    return _resolved_pack(device_id, key, measurements, pack, ctx.received_at)


def _resolved_pack(
    device_id: str,
    key: str,
    measurements: dict[str, Measurement],
    pack: object,
    received_at: datetime,
) -> list[Reading]:
    """The reference path: the pack's resolved records mapped to columns."""
    groups: dict[datetime, dict[str, object]] = {}
    for r in resolve_pack(pack, received_at):
        m = measurements.get(r.measurement)
        if m is None:
            continue  # unknown names are ignored
        columns = groups.setdefault(r.time, {})
        if m.column in columns:
            raise DecodeError(
                INVALID_PAYLOAD, f"SenML pack gives {m.column} twice for the same time"
            )
        columns[m.column] = _column_value(
            m, r.measurement, r.unit, r.value, r.string_value, r.bool_value, r.sum
        )
    return _readings(device_id, key, groups)


def _readings(
    device_id: str, key: str, groups: dict[datetime, dict[str, object]]
) -> list[Reading]:
    """One checked reading per time group, in time order."""
    reading_type = _READING_TYPES[key]
    required = _REQUIRED[key]
    fields = reading_type._fields[2:]
    readings: list[Reading] = []
    for time in sorted(groups):
        columns = groups[time]
        for field in required:
            if field not in columns:
                raise DecodeError(INVALID_PAYLOAD, f"SenML pack for {key} lacks {field}")
        reading = reading_type._make([time, device_id, *map(columns.get, fields)])
        readings.append(check_reading(reading))
    return readings


# Labels of the usual packs (a base name and time, names, units, numbers, booleans, strings,
# relative times): ``_plain_pack`` reads those; a pack with any other label (bver, bv, bs, s,
# ut, vd, an unknown one) takes the reference path.
_PLAIN_LABELS: Final = frozenset({"bn", "bt", "bu", "n", "u", "v", "vb", "vs", "t"})
_PLAIN_BASE: Final = frozenset({"bn", "bt", "bu"})


def _plain_pack(
    device_id: str,
    key: str,
    measurements: dict[str, Measurement],
    pack: object,
    received_at: datetime,
) -> list[Reading] | None:
    """The readings of a pack of the usual shape in one pass, without resolved records; None
    when the pack is of another shape or refused: then ``resolve_pack`` decides.

    It reads exactly what ``resolve_pack`` then ``decode_senml`` would (the same resolution,
    the same column values through ``_column_value``, the same readings), and gives up on
    anything they would refuse, so that their errors name it.
    """
    if type(pack) is not list:
        return None
    bn = ""
    bt: float = 0.0
    bu: str | None = None
    times: dict[float, datetime] = {}
    groups: dict[datetime, dict[str, object]] = {}
    try:
        for rec in pack:
            if type(rec) is not dict:
                return None
            keys = rec.keys()
            if not keys <= _PLAIN_LABELS:
                return None
            get = rec.get
            if not keys.isdisjoint(_PLAIN_BASE):
                b = get("bn")
                t = get("bt")
                u = get("bu")
                if not (
                    (b is None or type(b) is str)
                    and (t is None or type(t) is float or type(t) is int)
                    and (u is None or type(u) is str)
                ):
                    return None
                if "bn" in rec:
                    bn = b or ""
                if "bt" in rec:
                    bt = t or 0.0
                if "bu" in rec:
                    bu = u
                if len(keys & _PLAIN_BASE) == len(keys):
                    continue  # only base fields
            n, u, v, vs, vb, t = get("n"), get("u"), get("v"), get("vs"), get("vb"), get("t")
            if not (
                (n is None or type(n) is str)
                and (u is None or type(u) is str)
                and (v is None or type(v) is float or type(v) is int)
                and (vs is None or type(vs) is str)
                and (vb is None or type(vb) is bool)
                and (t is None or type(t) is float or type(t) is int)
            ):
                return None
            if (v is not None) + (vs is not None) + (vb is not None) != 1:
                return None
            names = _name(bn, n or "")
            if names is None:
                return None
            at = bt + (t or 0.0)
            time = times.get(at)
            if time is None:
                if not math.isfinite(at):
                    return None
                time = times[at] = senml_time(at, received_at)
            m = measurements.get(names[1])
            if m is None:
                continue  # unknown names are ignored (once their record is valid)
            columns = groups.get(time)
            if columns is None:
                columns = groups[time] = {}
            elif m.column in columns:
                return None
            columns[m.column] = _column_value(
                m, names[1], u if "u" in rec else bu, v, vs, vb, None
            )
        return _readings(device_id, key, groups)
    except DecodeError:
        return None
