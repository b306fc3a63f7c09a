"""ChirpStack v4 uplink events (``application/<app>/device/<deveui>/event/up``).

The device is found by its DevEUI in the registry: the topic's, which must equal
``deviceInfo.devEui`` when the event has one (an event naming another device than its topic
is refused, whichever of the two the registry knows); without a topic DevEUI, the event's. The
reading comes from ``object``, the payload decoded by the codec of the ChirpStack device
profile; radio quality from the best gateway of ``rxInfo``. The only LoRaWAN family so far is
``parking_spot``, so every uplink is a ``parking/state`` reading:

- state: ``object.occupied`` (``true``/``false``, or 1/0), else ``object.status``
  (``free``/``occupied``/``unknown``);
- battery: ``object.battery`` as a 0..1 ratio, or a percentage when above 1;
- rssi/snr: those of the ``rxInfo`` entry with the strongest RSSI;
- time: ``time`` (gateway time), else reception time.
"""

from __future__ import annotations

import re
from typing import Final

from devices.decoders.common import DecodeContext, check_reading, loads, parse_time
from devices.errors import INVALID_PAYLOAD, UNKNOWN_DEVICE, DecodeError
from devices.families import KIND_BY_TOPIC, MessageKind
from devices.readings import ParkingSpotState, Reading

PARKING_STATE: Final = KIND_BY_TOPIC[("parking", "state")]
_DEV_EUI_RE: Final = re.compile(r"[0-9a-f]{16}")
_STATES: Final = frozenset({"free", "occupied", "unknown"})


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _state(obj: dict[str, object]) -> str:
    occupied = obj.get("occupied")
    if occupied is not None:
        if occupied is True or occupied == 1:
            return "occupied"
        if occupied is False or occupied == 0:
            return "free"
        raise DecodeError(INVALID_PAYLOAD, "object.occupied must be true/false or 1/0")
    status = obj.get("status")
    if status is None:
        raise DecodeError(INVALID_PAYLOAD, "decoded object has neither occupied nor status")
    if status not in _STATES:
        raise DecodeError(INVALID_PAYLOAD, "object.status must be free, occupied or unknown")
    return str(status)


def _battery(value: object) -> float | None:
    if value is None:
        return None
    level = _number(value)
    if level is None:
        raise DecodeError(INVALID_PAYLOAD, "object.battery must be a number")
    return float(level / 100 if level > 1 else level)


def _best_radio(rx_info: object) -> tuple[int | None, float | None]:
    """RSSI and SNR of the gateway that heard the device best."""
    best: tuple[int | None, float | None] = (None, None)
    if not isinstance(rx_info, list):
        return best
    for rx in rx_info:
        if not isinstance(rx, dict):
            continue
        rssi = _number(rx.get("rssi"))
        if rssi is None or (best[0] is not None and rssi <= best[0]):
            continue
        snr = _number(rx.get("snr"))
        best = (round(rssi), None if snr is None else float(snr))
    return best


def decode_chirpstack_uplink(
    payload: bytes, ctx: DecodeContext, *, topic_dev_eui: str | None = None
) -> tuple[str, MessageKind, list[Reading]]:
    """Device id, message kind and readings of a ChirpStack v4 ``event/up`` payload.

    ``topic_dev_eui`` is the DevEUI of the topic; it is used when the payload has none and
    must agree with the payload's otherwise. Errors raised once the device is known carry
    its id in ``DecodeError.device_id``.
    """
    data = loads(payload)
    if not isinstance(data, dict):
        raise DecodeError(INVALID_PAYLOAD, "a ChirpStack uplink must be a JSON object")
    info = data.get("deviceInfo")
    dev_eui = info.get("devEui") if isinstance(info, dict) else None
    if dev_eui is None:
        dev_eui = topic_dev_eui
    if not isinstance(dev_eui, str):
        raise DecodeError(INVALID_PAYLOAD, "uplink has no deviceInfo.devEui")
    dev_eui = dev_eui.lower()
    if _DEV_EUI_RE.fullmatch(dev_eui) is None:
        raise DecodeError(INVALID_PAYLOAD, "devEui must be 16 hexadecimal digits")
    if topic_dev_eui is not None and topic_dev_eui.lower() != dev_eui:
        raise DecodeError(INVALID_PAYLOAD, "deviceInfo.devEui differs from the topic's DevEUI")
    device_id = ctx.device_by_dev_eui(dev_eui)
    if device_id is None:
        raise DecodeError(UNKNOWN_DEVICE, f"DevEUI {dev_eui} is not in the registry")

    try:
        obj = data.get("object")
        if obj is None:
            raise DecodeError(
                INVALID_PAYLOAD,
                "uplink has no decoded 'object': no payload codec is configured on the "
                "device profile in ChirpStack",
            )
        if not isinstance(obj, dict):
            raise DecodeError(INVALID_PAYLOAD, "uplink 'object' must be a JSON object")
        time = parse_time(data.get("time"), ctx.received_at, "time")
        rssi, snr = _best_radio(data.get("rxInfo"))
        reading = ParkingSpotState(
            time, device_id, _state(obj), _battery(obj.get("battery")), rssi, snr
        )
        return device_id, PARKING_STATE, [check_reading(reading)]
    except DecodeError as exc:
        exc.device_id = device_id
        raise
