"""The MQTT codec byte by byte, against the MQTT 5.0 specification's packet formats."""

from __future__ import annotations

from typing import Any

import pytest

from devices import mqttwire as w

# Section 1.5.5: the limits of one to four bytes, and the bytes that encode them.
VARINTS = [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"),
    (16_384, b"\x80\x80\x01"), (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"),
    (268_435_455, b"\xff\xff\xff\x7f"),
]


@pytest.mark.parametrize(("value", "encoded"), VARINTS)
def test_variable_byte_integers_at_their_limits(value: int, encoded: bytes) -> None:
    assert w.varint(value) == encoded
    assert w.read_varint(encoded + b"rest", 0) == (value, len(encoded))
    for cut in range(len(encoded)):  # every prefix: not complete yet
        assert w.read_varint(encoded[:cut], 0) is None


@pytest.mark.parametrize("value", [-1, 268_435_456, 2**32])
def test_variable_byte_integers_out_of_range_are_refused(value: int) -> None:
    with pytest.raises(ValueError):
        w.varint(value)


def test_a_fifth_length_byte_is_malformed() -> None:
    with pytest.raises(w.MalformedPacket) as err:
        w.read_varint(b"\xff\xff\xff\xff\x01", 0)
    assert err.value.reason == w.MALFORMED_PACKET


# -- encoders, exact bytes ------------------------------------------------------------------

def test_mqtt5_connect_bytes() -> None:
    got = w.connect_packet("w-0", "u", "p", version=w.MQTT_5, clean_start=False, keepalive=30,
                           properties={"session_expiry_interval": 604_800,
                                       "receive_maximum": 20_000,
                                       "maximum_packet_size": 1 << 20})
    want = (b"\x10\x23" + b"\x00\x04MQTT" + b"\x05" + b"\xc0" + b"\x00\x1e"
            + b"\x0d" + b"\x11\x00\x09\x3a\x80" + b"\x21\x4e\x20" + b"\x27\x00\x10\x00\x00"
            + b"\x00\x03w-0" + b"\x00\x01u" + b"\x00\x01p")
    assert got == want
    c = w.decode_connect(got[2:])
    assert c == w.Connect(5, False, 30, {"session_expiry_interval": 604_800,
                                         "receive_maximum": 20_000,
                                         "maximum_packet_size": 1 << 20}, "w-0", "u", b"p")


def test_mqtt311_connect_bytes_of_the_raw_publishers() -> None:
    got = w.connect_packet("pub", "user", "pw")
    assert got == (b"\x10\x19\x00\x04MQTT\x04\xc2\x00\x00"
                   b"\x00\x03pub\x00\x04user\x00\x02pw")
    with pytest.raises(ValueError):
        w.connect_packet("pub", "u", "p", properties={"receive_maximum": 1})


def test_subscribe_unsubscribe_puback_disconnect_bytes() -> None:
    assert w.subscribe_packet(1, ["a/#", "$share/g/b/#"]) == (
        b"\x82\x18\x00\x01\x00" + b"\x00\x03a/#\x01" + b"\x00\x0c$share/g/b/#\x01")
    assert w.decode_subscribe(w.subscribe_packet(9, ["x"])[2:]) == (9, [("x", 1)], {})
    assert w.unsubscribe_packet(2, ["a/#"]) == b"\xa2\x08\x00\x02\x00\x00\x03a/#"
    assert w.puback_packet(0x1234) == b"\x40\x02\x12\x34"
    assert w.puback_packet(7, 0x80) == b"\x40\x03\x00\x07\x80"
    assert w.disconnect_packet() == b"\xe0\x00"
    assert w.disconnect_packet(0x95) == b"\xe0\x02\x95\x00"
    assert w.decode_disconnect(b"") == (0, {})
    assert w.decode_disconnect(b"\x8e") == (0x8E, {})
    assert w.decode_disconnect(w.disconnect_packet(
        0x8B, {"reason_string": "bye"})[2:]) == (0x8B, {"reason_string": "bye"})


def test_publish_heads_match_whole_packets() -> None:
    for version in (w.MQTT_311, w.MQTT_5):
        whole = w.publish_packet("a/b", b"xyz", qos=1, packet_id=258, version=version)
        head = w.publish_head(b"a/b", 3, qos=1, version=version)
        props = b"\x00" if version == w.MQTT_5 else b""
        assert whole == head + b"\x01\x02" + props + b"xyz"
    assert w.publish_packet("t", b"", qos=0, version=w.MQTT_311) == b"\x30\x03\x00\x01t"
    with pytest.raises(ValueError):
        w.publish_packet("t", b"", qos=1)  # no packet id


def test_connack_and_suback_round_trip() -> None:
    raw = w.connack_packet(session_present=True, properties={"server_keep_alive": 60,
                                                              "receive_maximum": 100})
    assert raw == b"\x20\x09\x01\x00\x06\x13\x00\x3c\x21\x00\x64"
    assert w.decode_connack(raw[2:]) == (True, 0, {"server_keep_alive": 60,
                                                  "receive_maximum": 100})
    assert w.decode_connack(b"\x00\x05", version=w.MQTT_311) == (False, 5, {})
    assert w.decode_connack(b"\x00\x86") == (False, 0x86, {})  # no property length at all
    with pytest.raises(w.MalformedPacket):
        w.decode_connack(b"\x02\x00\x00")  # reserved acknowledge flag
    suback = w.suback_packet(5, [1, 0x87])
    assert suback == b"\x90\x05\x00\x05\x00\x01\x87"
    assert w.decode_suback(suback[2:]) == (5, [1, 0x87], {})
    assert w.suback_packet(5, [0x11], unsubscribe=True)[0] == 0xB0


def test_every_property_type_round_trips() -> None:
    props: dict[str, Any] = {
        "payload_format_indicator": 1, "message_expiry_interval": 3600,
        "content_type": "application/senml+json", "response_topic": "r/t",
        "correlation_data": b"\x00\xff", "subscription_identifier": [1, 268_435_455],
        "topic_alias": 3, "user_property": [("k", "v"), ("k", "w")],
    }
    raw = w.encode_properties(props)
    assert w.decode_properties(raw, 0, len(raw)) == (props, len(raw))


def test_split_pubacks() -> None:
    assert w.split_pubacks(b"\x40\x02\x00\x01\x40\x02\x00\x02\x40") == (2, b"\x40")
    with pytest.raises(w.MalformedPacket):
        w.split_pubacks(b"\x40\x02\x00\x01\x20\x02\x00\x00")  # a CONNACK among them


# -- the packet reader --------------------------------------------------------------------

Got = list[tuple[Any, ...]]


def reader(max_size: int = w.MAX_VARINT + 5) -> tuple[w.PacketReader, Got]:
    got: Got = []
    r = w.PacketReader(lambda *a: got.append(("publish", *a)),
                       lambda kind, flags, body: got.append((kind, flags, body)), max_size)
    return r, got


STREAM = [
    w.connack_packet(session_present=True),
    w.suback_packet(1, [1]),
    w.publish_packet("city/a/1/x", b"{}", packet_id=1),
    w.publish_packet("city/a/2/x", b"x" * 300, packet_id=65_535, dup=True),  # 2-byte length
    w.publish_packet("city/a/3/x", b"[]", packet_id=3,
                     properties={"content_type": "application/senml+json",
                                 "user_property": [("a", "b")]}),
    w.publish_packet("city/a/4/x", b"q0", qos=0),
    w.PINGRESP_PACKET,
    w.disconnect_packet(0x8B),
]
EXPECTED: Got = [
    (w.CONNACK, 0, b"\x01\x00\x00"),
    (w.SUBACK, 0, b"\x00\x01\x00\x01"),
    ("publish", "city/a/1/x", b"{}", 1, 1, False, {}),
    ("publish", "city/a/2/x", b"x" * 300, 1, 65_535, True, {}),
    ("publish", "city/a/3/x", b"[]", 1, 3, False,
     {"content_type": "application/senml+json", "user_property": [("a", "b")]}),
    ("publish", "city/a/4/x", b"q0", 0, 0, False, {}),
    (w.PINGRESP, 0, b""),
    (w.DISCONNECT, 0, b"\x8b\x00"),
]


def test_several_packets_in_one_read() -> None:
    r, got = reader()
    r.feed(b"".join(STREAM))
    assert got == EXPECTED and r.buffered == 0


def test_packets_split_across_reads_at_every_byte_boundary() -> None:
    data = b"".join(STREAM)
    for cut in range(len(data) + 1):
        r, got = reader()
        r.feed(data[:cut])
        whole = sum(1 for end in _ends() if end <= cut)
        assert got == EXPECTED[:whole], cut
        r.feed(data[cut:])
        assert got == EXPECTED and r.buffered == 0, cut


def test_a_stream_fed_one_byte_at_a_time() -> None:
    r, got = reader()
    for b in b"".join(STREAM):
        r.feed(bytes([b]))
    assert got == EXPECTED and r.buffered == 0


def _ends() -> list[int]:
    ends, pos = [], 0
    for p in STREAM:
        pos += len(p)
        ends.append(pos)
    return ends


@pytest.mark.parametrize(("value", "encoded"), VARINTS[:6])
def test_publish_with_remaining_lengths_at_the_limits(value: int, encoded: bytes) -> None:
    overhead = 2 + 1 + 2 + 1  # topic "t", packet id, empty properties
    if value < overhead:
        return
    packet = b"\x32" + encoded + b"\x00\x01t\x00\x07\x00" + b"p" * (value - overhead)
    r, got = reader()
    r.feed(packet[:-1])
    assert got == []
    r.feed(packet[-1:])
    assert got == [("publish", "t", b"p" * (value - overhead), 1, 7, False, {})]


def test_the_largest_remaining_length_waits_for_its_bytes_or_is_too_large() -> None:
    head = b"\x30\xff\xff\xff\x7f"  # 268,435,455 bytes announced
    r, got = reader()
    r.feed(head + b"\x00\x01t")
    assert got == [] and r.buffered == len(head) + 3  # waits (nothing allocated ahead)
    r, got = reader(max_size=1 << 20)
    with pytest.raises(w.MalformedPacket) as err:
        r.feed(head)  # refused from the header alone
    assert err.value.reason == w.PACKET_TOO_LARGE == 0x95
    r, _ = reader()
    with pytest.raises(w.MalformedPacket):
        r.feed(b"\x30\xff\xff\xff\xff\x01")  # a fifth length byte


def test_maximum_packet_size_counts_the_whole_packet() -> None:
    packet = w.publish_packet("t", b"x" * 100, packet_id=1)
    r, got = reader(max_size=len(packet))
    r.feed(packet)
    assert len(got) == 1
    r, got = reader(max_size=len(packet) - 1)
    with pytest.raises(w.MalformedPacket) as err:
        r.feed(packet[:2])  # as soon as the length is known
    assert err.value.reason == 0x95 and got == []


@pytest.mark.parametrize(("packet", "reason"), [
    (b"\x32\x01\x00", 0x81),                            # topic length cut short
    (b"\x32\x04\x00\x09ab", 0x81),                      # topic past the end
    (b"\x32\x06\x00\x01t\x00\x01", 0x81),               # no property length
    (b"\x32\x07\x00\x01t\x00\x01\x05", 0x81),           # properties past the end
    (b"\x32\x09\x00\x01t\x00\x01\x02\x7f\x00", 0x81),   # unknown property 0x7F
    (b"\x32\x0c\x00\x01t\x00\x01\x04\x01\x01\x01\x01", 0x82),  # a property twice
    (b"\x32\x0a\x00\x01t\x00\x01\x03\x03\x00\x01\xff", 0x81),  # content type not UTF-8
    (b"\x32\x06\x00\x01t\x00\x00\x00", 0x81),           # QoS 1 with packet id 0
    (b"\x36\x06\x00\x01t\x00\x01\x00", 0x81),           # QoS 3
    (b"\x34\x06\x00\x01t\x00\x01\x00", 0x82),           # QoS 2: never subscribed to
    (b"\x32\x05\x00\x00\x00\x01\x00", 0x82),            # empty topic (a topic alias)
])  # fmt: skip
def test_malformed_publish_packets(packet: bytes, reason: int) -> None:
    r, got = reader()
    with pytest.raises(w.MalformedPacket) as err:
        r.feed(packet + w.PINGRESP_PACKET)
    assert err.value.reason == reason and got == []


def test_a_topic_that_is_not_utf8_is_delivered_for_a_dead_letter() -> None:
    r, got = reader()
    r.feed(b"\x32\x07\x00\x02\xff\xfe\x00\x01\x00")
    assert got == [("publish", "\ufffd\ufffd", b"", 1, 1, False, {})]


@pytest.mark.parametrize("body", [b"\x00", b"\x00\x05\x05\x26"])
def test_malformed_subacks(body: bytes) -> None:
    with pytest.raises(w.MalformedPacket):
        w.decode_suback(body)


@pytest.mark.parametrize("body", [b"\x00\x05", b"\x00\x01\x01"])
def test_malformed_disconnects(body: bytes) -> None:
    with pytest.raises(w.MalformedPacket):
        w.decode_disconnect(body)
