"""MQTT packets on the wire: the one encoder and decoder of the project.

Written against the MQTT 5.0 specification (OASIS, 2019), section 2 (packet format) and
section 3 (each packet). The ingestor's subscriber (``ingest.mqtt``) speaks MQTT 5 with it;
the raw publishers of the tests and the benchmark speak MQTT 3.1.1 (``version=4``) with the
same functions, because MQTT 3.1.1 packets cost the broker and the publisher least.

It lives in ``devices`` (no I/O, no dependency) so that the ingestor, the simulators, the
tests and the benchmark can all import it without any of them importing another.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

MQTT_311 = 4
MQTT_5 = 5
MAX_VARINT = 268_435_455  # four bytes of seven bits (section 1.5.5)

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

PINGREQ_PACKET = b"\xc0\x00"
PINGRESP_PACKET = b"\xd0\x00"

# Reason codes (section 2.4) the ingestor meets or sends.
SUCCESS = 0x00
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
PACKET_TOO_LARGE = 0x95
REASONS = {
    0x00: "success", 0x01: "granted QoS 1", 0x02: "granted QoS 2", 0x04: "disconnect with will",
    0x10: "no matching subscribers", 0x11: "no subscription existed",
    0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
    0x83: "implementation specific error", 0x84: "unsupported protocol version",
    0x85: "client identifier not valid", 0x86: "bad user name or password",
    0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
    0x8B: "server shutting down", 0x8C: "bad authentication method",
    0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
    0x90: "topic name invalid", 0x91: "packet identifier in use",
    0x92: "packet identifier not found", 0x93: "receive maximum exceeded",
    0x94: "topic alias invalid", 0x95: "packet too large", 0x96: "message rate too high",
    0x97: "quota exceeded", 0x98: "administrative action", 0x99: "payload format invalid",
    0x9A: "retain not supported", 0x9B: "QoS not supported", 0x9C: "use another server",
    0x9D: "server moved", 0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded", 0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}
# MQTT 3.1.1 CONNACK return codes (its section 3.2.2.3).
CONNACK_311 = {0: "accepted", 1: "unacceptable protocol version", 2: "identifier rejected",
               3: "server unavailable", 4: "bad user name or password", 5: "not authorized"}


def reason_text(code: int) -> str:
    """``135 (not authorized)``: a reason code as a person reads it. In decimal, as paho and
    Mosquitto's logs print them (and because the log filter takes ``0x87`` for a plate)."""
    return f"{code} ({REASONS.get(code, 'unknown reason code')})"


class MalformedPacket(ValueError):
    """Bytes that are not a valid MQTT packet; ``reason`` is the code to disconnect with."""

    def __init__(self, message: str, reason: int = MALFORMED_PACKET) -> None:
        super().__init__(message)
        self.reason = reason


# -- primitives (section 1.5) ---------------------------------------------------------------

def varint(n: int) -> bytes:
    """A Variable Byte Integer: 7 bits a byte, least significant first, high bit = more."""
    if not 0 <= n <= MAX_VARINT:
        raise ValueError(f"{n} does not fit a variable byte integer (0 to {MAX_VARINT})")
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, end: int | None = None) -> tuple[int, int] | None:
    """The Variable Byte Integer at ``pos``: (value, position after it), or None when the
    bytes stop before its last byte. More than four bytes is a malformed packet."""
    end = len(data) if end is None else end
    value = shift = 0
    while pos < end:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise MalformedPacket("variable byte integer longer than 4 bytes")
    return None


def field(b: bytes) -> bytes:
    """A UTF-8 string or binary data field: a two-byte length, then the bytes."""
    if len(b) > 0xFFFF:
        raise ValueError("a string or binary field holds at most 65,535 bytes")
    return struct.pack("!H", len(b)) + b


# -- properties (section 2.2.2) ---------------------------------------------------------------

_BYTE, _TWO, _FOUR, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTIES: dict[int, tuple[str, int]] = {
    0x01: ("payload_format_indicator", _BYTE), 0x02: ("message_expiry_interval", _FOUR),
    0x03: ("content_type", _STR), 0x08: ("response_topic", _STR),
    0x09: ("correlation_data", _BIN), 0x0B: ("subscription_identifier", _VARINT),
    0x11: ("session_expiry_interval", _FOUR), 0x12: ("assigned_client_identifier", _STR),
    0x13: ("server_keep_alive", _TWO), 0x15: ("authentication_method", _STR),
    0x16: ("authentication_data", _BIN), 0x17: ("request_problem_information", _BYTE),
    0x18: ("will_delay_interval", _FOUR), 0x19: ("request_response_information", _BYTE),
    0x1A: ("response_information", _STR), 0x1C: ("server_reference", _STR),
    0x1F: ("reason_string", _STR), 0x21: ("receive_maximum", _TWO),
    0x22: ("topic_alias_maximum", _TWO), 0x23: ("topic_alias", _TWO),
    0x24: ("maximum_qos", _BYTE), 0x25: ("retain_available", _BYTE),
    0x26: ("user_property", _PAIR), 0x27: ("maximum_packet_size", _FOUR),
    0x28: ("wildcard_subscription_available", _BYTE),
    0x29: ("subscription_identifier_available", _BYTE),
    0x2A: ("shared_subscription_available", _BYTE),
}
_IDS = {name: (pid, kind) for pid, (name, kind) in PROPERTIES.items()}
_REPEATABLE = {"user_property", "subscription_identifier"}  # these come as lists
NO_PROPERTIES: dict[str, Any] = {}  # shared by every message without properties: read only


def encode_properties(props: Mapping[str, Any] | None = None) -> bytes:
    """A property block (its length first) from names of ``PROPERTIES`` to values; the
    repeatable ones (``user_property``: (name, value) pairs) take a list."""
    out = bytearray()
    for name, value in (props or {}).items():
        pid, kind = _IDS[name]
        for v in (value if name in _REPEATABLE else [value]):
            out += varint(pid)
            if kind == _BYTE:
                out.append(v)
            elif kind == _TWO:
                out += struct.pack("!H", v)
            elif kind == _FOUR:
                out += struct.pack("!I", v)
            elif kind == _VARINT:
                out += varint(v)
            elif kind == _STR:
                out += field(v.encode())
            elif kind == _BIN:
                out += field(bytes(v))
            else:
                out += field(v[0].encode()) + field(v[1].encode())
    return varint(len(out)) + bytes(out)


def _string(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("string length past the end of the packet")
    stop = pos + 2 + ((data[pos] << 8) | data[pos + 1])
    if stop > end:
        raise MalformedPacket("string past the end of the packet")
    return data[pos + 2:stop], stop


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacket("a UTF-8 string field is not UTF-8") from exc


def decode_properties(data: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:
    """The property block at ``pos`` (length first), within ``end``: (properties, position
    after it). An unknown identifier, a value cut short or a property given twice (other
    than the repeatable ones) is a malformed packet (section 2.2.2.2)."""
    got = read_varint(data, pos, end)
    if got is None:
        raise MalformedPacket("property length past the end of the packet")
    length, pos = got
    stop = pos + length
    if stop > end:
        raise MalformedPacket("properties past the end of the packet")
    props: dict[str, Any] = {}
    while pos < stop:
        got = read_varint(data, pos, stop)
        if got is None:
            raise MalformedPacket("property identifier cut short")
        pid, pos = got
        spec = PROPERTIES.get(pid)
        if spec is None:
            raise MalformedPacket(f"unknown property identifier 0x{pid:02X}")
        name, kind = spec
        value: Any
        if kind == _BYTE:
            if pos + 1 > stop:
                raise MalformedPacket(f"property {name} cut short")
            value, pos = data[pos], pos + 1
        elif kind in (_TWO, _FOUR):
            size = 2 if kind == _TWO else 4
            if pos + size > stop:
                raise MalformedPacket(f"property {name} cut short")
            value, pos = int.from_bytes(data[pos:pos + size], "big"), pos + size
        elif kind == _VARINT:
            got = read_varint(data, pos, stop)
            if got is None:
                raise MalformedPacket(f"property {name} cut short")
            value, pos = got
        elif kind == _STR:
            raw, pos = _string(data, pos, stop)
            value = _text(raw)
        elif kind == _BIN:
            value, pos = _string(data, pos, stop)
        else:
            key, pos = _string(data, pos, stop)
            val, pos = _string(data, pos, stop)
            value = (_text(key), _text(val))
        if name in _REPEATABLE:
            props.setdefault(name, []).append(value)
        elif name in props:
            raise MalformedPacket(f"property {name} given twice", PROTOCOL_ERROR)
        else:
            props[name] = value
    return props, stop


# -- encoders --------------------------------------------------------------------------------

def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id: str, user: str, password: str, *, version: int = MQTT_311,
                   clean_start: bool = True, keepalive: int = 0,
                   properties: Mapping[str, Any] | None = None) -> bytes:
    """CONNECT with a user name and password (section 3.1). MQTT 3.1.1 by default (the raw
    publishers: clean session, keepalive off); ``version=MQTT_5`` adds ``properties``
    (session expiry interval, receive maximum, maximum packet size, ...)."""
    if version not in (MQTT_311, MQTT_5):
        raise ValueError("version is 4 (MQTT 3.1.1) or 5 (MQTT 5.0)")
    flags = 0xC0 | (0x02 if clean_start else 0)
    vh = field(b"MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == MQTT_5:
        vh += encode_properties(properties)
    elif properties:
        raise ValueError("MQTT 3.1.1 has no properties")
    payload = field(client_id.encode()) + field(user.encode()) + field(password.encode())
    return _packet(0x10, vh + payload)


def publish_head(topic: bytes, payload_size: int, *, qos: int = 1,
                 version: int = MQTT_311) -> bytes:
    """The fixed header and topic name of a PUBLISH whose packet identifier (QoS > 0), empty
    property block (MQTT 5) and ``payload_size`` bytes of payload follow: pre-encoded heads
    for publishers that send the same topics again and again."""
    size = 2 + len(topic) + (2 if qos else 0) + (1 if version == MQTT_5 else 0) + payload_size
    return bytes([0x30 | (qos << 1)]) + varint(size) + field(topic)


def publish_packet(topic: str, payload: bytes, *, qos: int = 1, packet_id: int = 0,
                   dup: bool = False, retain: bool = False, version: int = MQTT_5,
                   properties: Mapping[str, Any] | None = None) -> bytes:
    """PUBLISH (section 3.3)."""
    if not 0 <= qos <= 2 or bool(qos) != bool(packet_id):
        raise ValueError("QoS 1 and 2 need a packet identifier, QoS 0 none")
    body = field(topic.encode()) + (struct.pack("!H", packet_id) if qos else b"")
    if version == MQTT_5:
        body += encode_properties(properties)
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return _packet(first, body + payload)


_ACK = struct.Struct("!BBH")


def puback_packet(packet_id: int, reason: int = SUCCESS) -> bytes:
    """PUBACK (section 3.4): 4 bytes for success (the reason code may then be omitted)."""
    if reason == SUCCESS:
        return _ACK.pack(0x40, 2, packet_id)
    return _packet(0x40, struct.pack("!HB", packet_id, reason))


def subscribe_packet(packet_id: int, filters: Sequence[str], *, qos: int = 1) -> bytes:
    """MQTT 5 SUBSCRIBE (section 3.8): each filter at ``qos``, No Local off (a shared
    subscription must not set it), retained messages sent at subscribe time."""
    body = struct.pack("!H", packet_id) + encode_properties()
    for f in filters:
        body += field(f.encode()) + bytes([qos])
    return _packet(0x82, body)


def unsubscribe_packet(packet_id: int, filters: Sequence[str]) -> bytes:
    """MQTT 5 UNSUBSCRIBE (section 3.10)."""
    body = struct.pack("!H", packet_id) + encode_properties()
    return _packet(0xA2, body + b"".join(field(f.encode()) for f in filters))


def disconnect_packet(reason: int = SUCCESS, properties: Mapping[str, Any] | None = None
                      ) -> bytes:
    """MQTT 5 DISCONNECT (section 3.14); ``reason`` 0 keeps the session (and no will)."""
    if reason == SUCCESS and not properties:
        return b"\xe0\x00"
    return _packet(0xE0, bytes([reason]) + encode_properties(properties))


def connack_packet(reason: int = SUCCESS, *, session_present: bool = False,
                   properties: Mapping[str, Any] | None = None) -> bytes:
    """MQTT 5 CONNACK (section 3.2): what a broker answers (tests play the broker)."""
    return _packet(0x20, bytes([1 if session_present else 0, reason])
                   + encode_properties(properties))


def suback_packet(packet_id: int, reasons: Sequence[int], *, unsubscribe: bool = False,
                  properties: Mapping[str, Any] | None = None) -> bytes:
    """MQTT 5 SUBACK (section 3.9), or UNSUBACK (section 3.11) with ``unsubscribe``."""
    body = struct.pack("!H", packet_id) + encode_properties(properties) + bytes(reasons)
    return _packet(0xB0 if unsubscribe else 0x90, body)


# -- decoders --------------------------------------------------------------------------------

class Connack(NamedTuple):
    """A decoded CONNACK."""

    session_present: bool
    reason: int
    properties: dict[str, Any]


def decode_connack(body: bytes, version: int = MQTT_5) -> Connack:
    """CONNACK's variable header. For MQTT 3.1.1 ``reason`` is its return code (0-5)."""
    if len(body) < 2 or body[0] & 0xFE:
        raise MalformedPacket("CONNACK too short or with reserved flags set")
    if version == MQTT_311:
        return Connack(bool(body[0] & 1), body[1], {})
    props, end = decode_properties(body, 2, len(body)) if len(body) > 2 else ({}, 2)
    if end != len(body):
        raise MalformedPacket("bytes after CONNACK's properties")
    return Connack(bool(body[0] & 1), body[1], props)


class Ack(NamedTuple):
    """A decoded SUBACK or UNSUBACK: one reason code per topic filter."""

    packet_id: int
    reasons: list[int]
    properties: dict[str, Any]


def decode_suback(body: bytes) -> Ack:
    """MQTT 5 SUBACK or UNSUBACK."""
    if len(body) < 3:
        raise MalformedPacket("SUBACK too short")
    props, pos = decode_properties(body, 2, len(body))
    return Ack((body[0] << 8) | body[1], list(body[pos:]), props)


def decode_disconnect(body: bytes) -> tuple[int, dict[str, Any]]:
    """MQTT 5 DISCONNECT: (reason code, properties); an empty body means success."""
    if not body:
        return SUCCESS, {}
    if len(body) == 1:
        return body[0], {}
    props, end = decode_properties(body, 1, len(body))
    if end != len(body):
        raise MalformedPacket("bytes after DISCONNECT's properties")
    return body[0], props


def decode_puback(body: bytes) -> tuple[int, int]:
    """PUBACK: (packet identifier, reason code)."""
    if len(body) < 2:
        raise MalformedPacket("PUBACK too short")
    return (body[0] << 8) | body[1], body[2] if len(body) > 2 else SUCCESS


# topic, payload, qos, packet id (0 for QoS 0), dup, properties
PublishHandler = Callable[[str, bytes, int, int, bool, dict[str, Any]], None]
# packet type, flags (low nibble of the first byte), body
PacketHandler = Callable[[int, int, bytes], None]


class PacketReader:
    """Splits the bytes of an MQTT 5 connection into packets, across reads of any size.

    A PUBLISH goes to ``on_publish`` decoded (a QoS 1 message without properties, what
    devices send, takes the shortest path: no object, no property parsing); every other
    packet to ``on_packet``. A packet larger than ``max_size`` (the Maximum Packet Size
    announced in CONNECT, counted whole as in section 3.1.2.11.4) raises ``MalformedPacket``
    with reason 0x95 as soon as its length is read, before its bytes are buffered. A topic
    that is not UTF-8 is decoded with replacement characters rather than refused: the
    ingestor then dead-letters the message instead of reconnecting forever over it.
    """

    __slots__ = ("_rest", "max_size", "on_packet", "on_publish")

    def __init__(self, on_publish: PublishHandler, on_packet: PacketHandler,
                 max_size: int = MAX_VARINT + 5) -> None:
        self.on_publish = on_publish
        self.on_packet = on_packet
        self.max_size = max_size
        self._rest = b""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet waiting for the next read."""
        return len(self._rest)

    def feed(self, data: bytes) -> None:
        """Handle every whole packet in the buffered bytes and ``data``; keep the rest."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        n = len(data)
        pos = 0
        max_size = self.max_size
        on_publish = self.on_publish
        try:
            while n - pos >= 2:
                i = pos + 1
                size = shift = 0
                while True:  # remaining length, inlined: this loop runs per message
                    if i >= n:
                        return
                    b = data[i]
                    i += 1
                    size |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                end = i + size
                if end - pos > max_size:
                    raise MalformedPacket(
                        f"a packet of {end - pos} bytes, over the maximum packet size "
                        f"{max_size}", PACKET_TOO_LARGE)
                if end > n:
                    return
                cmd = data[pos]
                if cmd & 0xF0 == 0x30:
                    qos = (cmd >> 1) & 3
                    if i + 2 > end:
                        raise MalformedPacket("PUBLISH without a topic name")
                    t1 = i + 2 + ((data[i] << 8) | data[i + 1])
                    p = t1 + 2 if qos else t1
                    if p >= end:
                        raise MalformedPacket("PUBLISH cut short before its properties")
                    if qos == 1:
                        mid = (data[t1] << 8) | data[t1 + 1]
                        if not mid:
                            raise MalformedPacket("QoS 1 PUBLISH with packet identifier 0")
                    elif qos == 3:
                        raise MalformedPacket("PUBLISH with both QoS bits set")
                    elif qos:
                        raise MalformedPacket("PUBLISH at QoS 2: the subscription is at "
                                              "QoS 1", PROTOCOL_ERROR)
                    else:
                        mid = 0
                    if data[p] == 0:
                        props, start = NO_PROPERTIES, p + 1
                    else:
                        props, start = decode_properties(data, p, end)
                    if t1 == i + 2:
                        raise MalformedPacket("PUBLISH with an empty topic name (topic "
                                              "aliases are not allowed)", PROTOCOL_ERROR)
                    topic = data[i + 2:t1].decode("utf-8", "replace")
                    on_publish(topic, data[start:end], qos, mid, bool(cmd & 8), props)
                else:
                    self.on_packet(cmd >> 4, cmd & 0x0F, data[i:end])
                pos = end
        finally:
            if pos < n:
                self._rest = data[pos:]


def split_pubacks(data: bytes) -> tuple[int, bytes]:
    """Count the 4-byte PUBACKs (success, as MQTT 3.1.1 sends them) at the head of
    ``data``: (how many, the incomplete rest). Anything else raises ``MalformedPacket``.
    For the raw publishers, whose only packets back are PUBACKs."""
    k = len(data) // 4
    if data[0:4 * k:4] != b"\x40" * k or data[1:4 * k:4] != b"\x02" * k:
        raise MalformedPacket("unexpected packet from the broker (not a PUBACK)")
    return k, data[4 * k:]


class Connect(NamedTuple):
    """A decoded CONNECT (what the tests' scripted broker checks)."""

    version: int
    clean_start: bool
    keepalive: int
    properties: dict[str, Any]
    client_id: str
    username: str | None
    password: bytes | None


def decode_connect(body: bytes) -> Connect:
    """CONNECT of MQTT 3.1.1 or 5 without a will message."""
    name, pos = _string(body, 0, len(body))
    if name != b"MQTT" or pos + 4 > len(body):
        raise MalformedPacket("not an MQTT CONNECT", 0x84)
    version, flags = body[pos], body[pos + 1]
    if flags & 0x05:
        raise MalformedPacket("CONNECT with a will message or the reserved flag")
    keepalive = (body[pos + 2] << 8) | body[pos + 3]
    pos += 4
    props: dict[str, Any] = {}
    if version == MQTT_5:
        props, pos = decode_properties(body, pos, len(body))
    raw_id, pos = _string(body, pos, len(body))
    user = password = None
    if flags & 0x80:
        raw_user, pos = _string(body, pos, len(body))
        user = _text(raw_user)
    if flags & 0x40:
        password, pos = _string(body, pos, len(body))
    return Connect(version, bool(flags & 0x02), keepalive, props, _text(raw_id), user, password)


def decode_subscribe(body: bytes) -> tuple[int, list[tuple[str, int]], dict[str, Any]]:
    """MQTT 5 SUBSCRIBE: (packet id, [(topic filter, options byte)], properties)."""
    if len(body) < 3:
        raise MalformedPacket("SUBSCRIBE too short")
    props, pos = decode_properties(body, 2, len(body))
    filters = []
    while pos < len(body):
        raw, pos = _string(body, pos, len(body))
        if pos >= len(body):
            raise MalformedPacket("topic filter without its options")
        filters.append((_text(raw), body[pos]))
        pos += 1
    return (body[0] << 8) | body[1], filters, props
