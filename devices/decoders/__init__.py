"""Payload decoders: MQTT payload bytes in, typed readings out. Pure functions, no I/O.

``decode_device_message`` decodes what a device publishes on its own topic
``{prefix}/{segment}/{device_id}/{message}``, choosing the format:

1. MQTT 5 content type ``application/senml+json`` -> SenML (RFC 8428);
2. a JSON array whose first element is an object with a SenML key -> SenML;
3. on ``grid/reading``, a JSON object with TIC labels (ADSC, EAST, BASE, ...) -> Linky TIC;
4. otherwise native JSON: an object is one reading, an array of objects a batch.

A native message of known fields only is first decoded straight from its bytes by msgspec
(``decode_native_json``); anything else, and every refusal, goes through the steps above on
the document parsed by orjson, which give the same readings and errors.

``decode_chirpstack_uplink`` and ``decode_teleinfo`` decode the topics of a LoRaWAN network
server and of Linky bridges, where the device is found through the registry. Every failure
is a ``DecodeError`` whose ``reason`` is a code of ``devices.errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from devices.decoders.chirpstack import decode_chirpstack_uplink
from devices.decoders.common import DecodeContext, loads
from devices.decoders.native import MODELS, decode_native, decode_native_json, json_schemas
from devices.decoders.senml import CONTENT_TYPE, decode_senml, looks_like_senml, resolve_pack
from devices.decoders.tic import decode_teleinfo, decode_tic_frame, frame_meter_id, is_tic_frame
from devices.errors import INVALID_PAYLOAD, SENML_INVALID, UNSUPPORTED_FORMAT, DecodeError
from devices.families import MessageKind
from devices.readings import Reading

if TYPE_CHECKING:
    JSON_SCHEMAS: dict[str, dict[str, Any]]

__all__ = [
    "JSON_SCHEMAS",
    "MODELS",
    "DecodeContext",
    "DecodeError",
    "decode_chirpstack_uplink",
    "decode_device_message",
    "decode_teleinfo",
    "json_schemas",
    "resolve_pack",
]

# Content types read as JSON; any other declared type (CBOR, EXI, XML, binary) is refused.
_JSON_CONTENT_TYPES: Final = frozenset({"application/json", "text/json", "text/plain"})


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_device_message(
    device_id: str,
    kind: MessageKind,
    payload: bytes,
    ctx: DecodeContext,
    *,
    content_type: str | None = None,
) -> list[Reading]:
    """Readings of one message a device published on its own topic (see the module doc).

    ``content_type`` is the MQTT 5 content type, if any. An empty list means the message
    held nothing Beffroi stores (a SenML pack of unknown names, an empty batch).
    """
    senml = False
    if content_type is not None:
        media = _media_type(content_type)
        if media == CONTENT_TYPE:
            senml = True
        elif media not in _JSON_CONTENT_TYPES and not media.endswith("+json"):
            raise DecodeError(UNSUPPORTED_FORMAT, f"content type {media[:64]!r} is not JSON")
    if not senml:
        readings = decode_native_json(device_id, kind, payload, ctx)
        if readings is not None:
            return readings
    data = loads(payload)
    if senml:
        if not isinstance(data, list):
            raise DecodeError(SENML_INVALID, "a SenML pack must be a JSON array")
        return decode_senml(device_id, kind, data, ctx)
    if isinstance(data, list):
        if looks_like_senml(data):
            return decode_senml(device_id, kind, data, ctx)
        return decode_native(device_id, kind, data, ctx)
    if isinstance(data, dict):
        if kind.segment == "grid" and kind.name == "reading" and is_tic_frame(data):
            return [_device_tic_frame(device_id, data, ctx)]
        return decode_native(device_id, kind, data, ctx)
    raise DecodeError(UNSUPPORTED_FORMAT, "payload must be a JSON object or array")


def _device_tic_frame(device_id: str, frame: dict[str, object], ctx: DecodeContext) -> Reading:
    """A TIC frame on a device topic: the topic names the device; a meter id must not
    belong to another device."""
    meter_id = frame_meter_id(frame)
    if meter_id is not None:
        owner = ctx.device_by_meter_id(meter_id)
        if owner is not None and owner != device_id:
            raise DecodeError(
                INVALID_PAYLOAD, "the frame's meter id is registered to another device"
            )
    return decode_tic_frame(device_id, frame, ctx)


def __getattr__(name: str) -> Any:
    # JSON_SCHEMAS is computed on first access, not at import.
    if name == "JSON_SCHEMAS":
        return json_schemas()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
