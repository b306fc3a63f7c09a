"""Linky (Enedis) TIC frames as community bridges publish them, one JSON object per frame.

Two shapes are read: teleinfo2mqtt's ``{"EAST": {"raw": "002738033", "value": 2738033}}``
and flat ``{"EAST": 2738033}`` (numbers or digit strings). Mapping to ``grid_readings``:

- standard mode: ``EAST`` -> energy_import_wh, ``EAIT`` -> energy_export_wh,
  ``SINSTS`` (minus ``SINSTI`` when injecting) -> power_w (apparent power in VA, stored as an
  approximation of W), ``URMS1..3`` -> voltage_l1..3_v, ``IRMS1..3`` -> current_l1..3_a,
  ``DATE`` -> time;
- historic mode: ``BASE``, or the sum of the period indices (``HCHC`` + ``HCHP``, EJP,
  Tempo) -> energy_import_wh, ``PAPP`` -> power_w, ``IINST`` (or ``IINST1..3``) -> current.

``DATE`` is a season flag and local time ``YYMMDDhhmmss``: ``E`` (summer) is +02:00, ``H``
(winter) +01:00, which settles the hour repeated in October. A lower-case flag means the
meter's clock lost synchronisation, and a missing flag or ``DATE`` leaves no reliable time:
the frame is then timed at reception, and so is a flag French legal time did not have on
that date. teleinfo2mqtt publishes ``DATE`` as ``{"raw": "", "value": "", "timestamp":
{"date": "2024-10-27T02:30:00.000Z", "dst": "summer"}}``: the local clock fields written as
if UTC, the season in ``dst``; they are read back as local time at the season's offset.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Final
from zoneinfo import ZoneInfo

from devices.decoders.common import DecodeContext, check_reading, loads, parse_iso
from devices.errors import BAD_TIMESTAMP, INVALID_PAYLOAD, UNKNOWN_DEVICE, DecodeError
from devices.readings import GridReading, Reading

TIC_LABELS: Final = frozenset(
    {
        # standard mode
        "ADSC", "VTIC", "DATE", "NGTF", "LTARF", "EAST", "EASF01", "EASF02", "EASF03",
        "EASF04", "EASF05", "EASF06", "EASD01", "EASD02", "EAIT", "ERQ1", "IRMS1", "IRMS2",
        "IRMS3", "URMS1", "URMS2", "URMS3", "PREF", "PCOUP", "SINSTS", "SINSTS1", "SINSTS2",
        "SINSTS3", "SMAXSN", "SINSTI", "STGE", "NTARF", "PRM", "RELAIS", "MSG1",
        # historic mode
        "ADCO", "OPTARIF", "ISOUSC", "BASE", "HCHC", "HCHP", "EJPHN", "EJPHPM", "BBRHCJB",
        "BBRHPJB", "BBRHCJW", "BBRHPJW", "BBRHCJR", "BBRHPJR", "PEJP", "PTEC", "DEMAIN",
        "IINST", "IINST1", "IINST2", "IINST3", "ADPS", "IMAX", "PAPP", "HHPHC", "MOTDETAT",
    }
)  # fmt: skip
"""Labels whose presence marks a JSON object as a TIC frame."""

_HISTORIC_INDICES: Final = (
    "HCHC", "HCHP", "EJPHN", "EJPHPM",
    "BBRHCJB", "BBRHPJB", "BBRHCJW", "BBRHPJW", "BBRHCJR", "BBRHPJR",
)  # fmt: skip
_DIGITS_RE: Final = re.compile(r"-?[0-9]+")
_SEASON_OFFSETS: Final = {
    "E": timezone(timedelta(hours=2)),  # été: CEST
    "H": timezone(timedelta(hours=1)),  # hiver: CET
}
_DST_OFFSETS: Final = {"summer": _SEASON_OFFSETS["E"], "winter": _SEASON_OFFSETS["H"]}


def is_tic_frame(data: object) -> bool:
    """True for a JSON object with at least one TIC label as a key."""
    return isinstance(data, dict) and not TIC_LABELS.isdisjoint(data)


def _text(entry: object) -> str | None:
    """The text of a label: teleinfo2mqtt's ``raw`` (else ``value``), or the flat value."""
    if isinstance(entry, dict):
        raw = entry.get("raw")
        entry = raw if isinstance(raw, str) and raw.strip() else entry.get("value")
    if isinstance(entry, str):
        return entry.strip()
    if isinstance(entry, int) and not isinstance(entry, bool):
        return str(entry)
    return None


def _number(frame: dict[str, object], label: str) -> int | float | None:
    """The numeric value of ``label``, None when absent."""
    entry = frame.get(label)
    if isinstance(entry, dict):
        entry = entry.get("value", entry.get("raw"))
    if entry is None:
        return None
    if isinstance(entry, bool):
        pass
    elif isinstance(entry, int | float):
        return entry
    elif isinstance(entry, str) and _DIGITS_RE.fullmatch(entry.strip()):
        return int(entry)
    raise DecodeError(INVALID_PAYLOAD, f"TIC {label} is not a number")


def _energy(frame: dict[str, object], label: str) -> int | None:
    value = _number(frame, label)
    if value is None or isinstance(value, int):
        return value
    if not value.is_integer():
        raise DecodeError(INVALID_PAYLOAD, f"TIC {label} must be a whole number of Wh")
    return int(value)


def _real(frame: dict[str, object], label: str) -> float | None:
    value = _number(frame, label)
    return None if value is None else float(value)


def _digits(frame: dict[str, object], label: str, length: int) -> str | None:
    """The ``length``-digit number of ``label``, None when absent.

    Leading zeros lost by bridges that turn numbers into JSON numbers are restored.
    """
    if label not in frame:
        return None
    text = _text(frame[label])
    if text is not None and _DIGITS_RE.fullmatch(text) and len(text) < length:
        text = text.zfill(length)
    if text is None or not text.isascii() or not text.isdigit() or len(text) != length:
        raise DecodeError(INVALID_PAYLOAD, f"TIC {label} must be {length} digits")
    return text


def frame_meter_id(frame: dict[str, object]) -> str | None:
    """The meter's serial in a frame (``ADSC``, else ``ADCO``: 12 digits), None without."""
    serial = _digits(frame, "ADSC", 12)
    return serial if serial is not None else _digits(frame, "ADCO", 12)


@cache
def _french_time() -> ZoneInfo:
    """France's legal time, which a Linky's clock keeps (loaded on first use)."""
    return ZoneInfo("Europe/Paris")


def _local_to_utc(local: datetime, offset: timezone, received_at: datetime) -> datetime:
    """UTC of the meter's wall-clock ``local`` at the season's ``offset``.

    A season that French legal time did not have at that instant (``E`` on a January date)
    means the meter's clock or its flag cannot be trusted: the frame is timed at reception,
    as with a desynchronised clock.
    """
    try:
        utc = local.replace(tzinfo=offset).astimezone(UTC)
        legal = utc.astimezone(_french_time()).utcoffset()
    except (OverflowError, ValueError):
        out_of_range = True  # raised outside the except clause: the context quotes the date
    else:
        out_of_range = False
    if out_of_range:
        raise DecodeError(BAD_TIMESTAMP, "TIC DATE is out of range")
    return received_at if legal != offset.utcoffset(None) else utc


def _wall_clock(d: str) -> datetime:
    """The naive wall-clock time of ``YYMMDDhhmmss``."""
    try:
        return datetime(
            2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]), int(d[10:12])
        )
    except ValueError:
        pass  # raised below, without the context (which quotes the date)
    raise DecodeError(BAD_TIMESTAMP, "TIC DATE is not a valid date")


def _teleinfo2mqtt_time(parsed: dict[str, object], received_at: datetime) -> datetime:
    """The time of teleinfo2mqtt's ``{"date": ..., "dst": "summer"|"winter"}``.

    teleinfo2mqtt writes the meter's local clock fields as if they were UTC (``Date.UTC``,
    then ``toISOString``) and the season apart in ``dst``: the wall clock is read back from
    ``date`` and placed at the season's offset. A ``date`` that carries a real, non-zero
    offset is taken as it is.
    """
    text = str(parsed["date"])
    date = parse_iso(text, "TIC DATE timestamp.date")
    if datetime.fromisoformat(text).utcoffset() != timedelta(0):
        return date
    dst = parsed.get("dst")
    offset = _DST_OFFSETS.get(dst) if isinstance(dst, str) else None
    if offset is None:
        raise DecodeError(BAD_TIMESTAMP, "TIC DATE timestamp.dst must be 'summer' or 'winter'")
    return _local_to_utc(date.replace(tzinfo=None), offset, received_at)


def _frame_time(frame: dict[str, object], received_at: datetime) -> datetime:
    entry = frame.get("DATE")
    if entry is None:
        return received_at
    if isinstance(entry, dict):
        parsed = entry.get("timestamp")
        if isinstance(parsed, dict) and isinstance(parsed.get("date"), str):
            return _teleinfo2mqtt_time(parsed, received_at)
    text = _text(entry)
    if text is None:
        raise DecodeError(BAD_TIMESTAMP, "TIC DATE must be a season flag and YYMMDDhhmmss")
    if len(text) == 12 and text.isdigit():
        return received_at  # no season flag: local time of unknown offset
    if len(text) != 13 or not text[1:].isdigit() or text[0] not in "EHeh":
        raise DecodeError(BAD_TIMESTAMP, "TIC DATE must be a season flag and YYMMDDhhmmss")
    local = _wall_clock(text[1:])
    offset = _SEASON_OFFSETS.get(text[0])
    if offset is None:
        return received_at  # lower-case flag: the meter's clock is not synchronised
    return _local_to_utc(local, offset, received_at)


def decode_tic_frame(device_id: str, frame: dict[str, object], ctx: DecodeContext) -> GridReading:
    """The grid reading of one parsed TIC frame."""
    energy_import = _energy(frame, "EAST")
    if energy_import is None:
        energy_import = _energy(frame, "BASE")
    if energy_import is None:
        indices = [
            i for i in (_energy(frame, label) for label in _HISTORIC_INDICES) if i is not None
        ]
        energy_import = sum(indices) if indices else None
    power = _real(frame, "SINSTS")
    if power is not None:
        injected = _real(frame, "SINSTI")
        if injected:
            power -= injected
    else:
        power = _real(frame, "PAPP")
    current_l1 = _real(frame, "IRMS1")
    if current_l1 is None:
        current_l1 = _real(frame, "IINST")
    if current_l1 is None:
        current_l1 = _real(frame, "IINST1")
    reading = GridReading(
        _frame_time(frame, ctx.received_at),
        device_id,
        energy_import,
        _energy(frame, "EAIT"),
        power,
        _real(frame, "URMS1"),
        _real(frame, "URMS2"),
        _real(frame, "URMS3"),
        current_l1,
        _real(frame, "IRMS2") if "IRMS2" in frame else _real(frame, "IINST2"),
        _real(frame, "IRMS3") if "IRMS3" in frame else _real(frame, "IINST3"),
        None,
    )
    if all(v is None for v in reading[2:]):
        raise DecodeError(
            INVALID_PAYLOAD, "TIC frame has no value Beffroi stores (EAST, BASE, SINSTS, ...)"
        )
    return check_reading(reading)


def decode_teleinfo(
    meter_id: str | None, payload: bytes, ctx: DecodeContext
) -> tuple[str, list[Reading]]:
    """Device id and readings of a TIC frame published on ``teleinfo/<meter id>``.

    Frames are matched on the meter's serial: the frame's ``ADSC``/``ADCO``, else the
    topic's id. A PRM (the frame's ``PRM`` label, or a 14-digit topic id) is tried next; the
    registry lookup answers it only for a delivery point whose serial is not registered
    (``ingest.registry_cache.meter_index``), so a frame from another meter is refused.
    Errors raised once the device is known carry its id in ``DecodeError.device_id``.
    """
    frame = loads(payload)
    if not isinstance(frame, dict):
        raise DecodeError(INVALID_PAYLOAD, "a TIC frame must be a JSON object")
    serial = frame_meter_id(frame)
    topic_id = meter_id or None
    prms = [p for p in (_digits(frame, "PRM", 14), topic_id) if p and len(p) == 14]
    candidates = [c for c in (serial or topic_id, *prms) if c]
    if not candidates:
        raise DecodeError(INVALID_PAYLOAD, "no ADSC/ADCO in the frame and no meter id in the topic")
    device_id = None
    for candidate in candidates:
        device_id = ctx.device_by_meter_id(candidate)
        if device_id is not None:
            break
    if device_id is None:
        raise DecodeError(UNKNOWN_DEVICE, f"Linky meter {candidates[0]} is not in the registry")
    try:
        return device_id, [decode_tic_frame(device_id, frame, ctx)]
    except DecodeError as exc:
        exc.device_id = device_id
        raise
