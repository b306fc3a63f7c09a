"""MAC normalisation, keyed hashing and scrubbing (devices.privacy) and DecodeError scrubbing."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from datetime import UTC, datetime, timedelta

import pytest

from devices.errors import (
    DECODER_REASONS,
    INGEST_REASONS,
    INVALID_PAYLOAD,
    DecodeError,
)
from devices.privacy import (
    MacHasher,
    normalize_mac,
    scrub_macs,
    scrub_macs_bytes,
    scrub_personal,
    scrub_personal_bytes,
)

MAC_BYTES = bytes.fromhex("a4c3f0851b2e")
DAY1 = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
KEYS = {DAY1.date(): b"k" * 32, DAY2.date(): b"K" * 32}


def daily_key(at: datetime) -> bytes:
    return KEYS[at.date()]


@pytest.mark.parametrize(
    "text",
    ["a4:c3:f0:85:1b:2e", "A4:C3:F0:85:1B:2E", "a4-c3-f0-85-1b-2e", "a4c3.f085.1b2e",
     "A4C3F0851B2E", "a4c3f0851b2e"],
)  # fmt: skip
def test_normalize_mac_accepts_the_usual_forms(text: str) -> None:
    assert normalize_mac(text) == MAC_BYTES


@pytest.mark.parametrize(
    "text",
    ["", "a4:c3:f0:85:1b", "a4:c3:f0:85:1b:2e:00", "a4:c3-f0:85:1b:2e", "g4:c3:f0:85:1b:2e",
     "a4c3f0851b2", "a4c3f0851b2e0", " a4:c3:f0:85:1b:2e", "a4c3:f085:1b2e", "a4:c3:f0:85:1b:2e\n"],
)  # fmt: skip
def test_normalize_mac_rejects_other_text_without_repeating_it(text: str) -> None:
    with pytest.raises(DecodeError) as exc:
        normalize_mac(text)
    assert exc.value.reason == INVALID_PAYLOAD
    if text.strip():
        assert text.strip() not in exc.value.detail


@pytest.mark.parametrize("value", [None, 0xA4C3F0851B2E, b"a4c3f0851b2e"])
def test_normalize_mac_rejects_non_strings(value: object) -> None:
    with pytest.raises(DecodeError):
        normalize_mac(value)


def test_client_key_is_truncated_hmac_sha256_of_the_six_bytes() -> None:
    hasher = MacHasher(daily_key)
    expected = hmac.new(b"k" * 32, MAC_BYTES, hashlib.sha256).digest()[:16]
    assert hasher.client_key("a4:c3:f0:85:1b:2e", DAY1) == expected
    assert len(expected) == 16


def test_client_key_is_the_same_for_every_spelling_of_a_mac() -> None:
    hasher = MacHasher(daily_key)
    keys = {hasher.client_key(m, DAY1) for m in ("a4:c3:f0:85:1b:2e", "A4-C3-F0-85-1B-2E",
                                                   "a4c3.f085.1b2e", "a4c3f0851b2e")}  # fmt: skip
    assert len(keys) == 1


def test_client_key_follows_the_key_in_force() -> None:
    hasher = MacHasher(daily_key)
    first = hasher.client_key("a4:c3:f0:85:1b:2e", DAY1)
    second = hasher.client_key("a4:c3:f0:85:1b:2e", DAY2)
    again = hasher.client_key("a4:c3:f0:85:1b:2e", DAY1)
    assert first != second
    assert first == again
    assert hasher.client_key("a4:c3:f0:85:1b:2f", DAY1) != first


def test_forget_drops_the_cached_key() -> None:
    hasher = MacHasher(daily_key)
    before = hasher.client_key(MAC_BYTES.hex(), DAY1)
    hasher.forget()
    assert hasher._key is None
    assert hasher.client_key(MAC_BYTES.hex(), DAY1) == before


def test_key_provider_errors_propagate() -> None:
    def destroyed(at: datetime) -> bytes:
        raise DecodeError("too_old", "key destroyed")

    with pytest.raises(DecodeError) as exc:
        MacHasher(destroyed).client_key("a4:c3:f0:85:1b:2e", DAY1)
    assert exc.value.reason == "too_old"


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        MacHasher(lambda at: b"short").client_key("a4:c3:f0:85:1b:2e", DAY1)


def test_invalid_mac_is_refused_before_the_key_provider_is_asked() -> None:
    calls: list[datetime] = []

    def provider(at: datetime) -> bytes:
        calls.append(at)
        return b"k" * 32

    with pytest.raises(DecodeError):
        MacHasher(provider).client_key("nope", DAY1)
    assert calls == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("client a4:c3:f0:85:1b:2e left", "client <mac> left"),
        ("A4-C3-F0-85-1B-2E", "<mac>"),
        ("cisco a4c3.f085.1b2e.", "cisco <mac>."),
        ('{"client_mac": "a4c3f0851b2e", "rssi": -60}', '{"client_mac": "<mac>", "rssi": -60}'),
        ('{"MAC":"A4C3F0851B2E"}', '{"MAC":"<mac>"}'),
        ("{'sta_mac': 'a4c3f0851b2e'}", "{'sta_mac': '<mac>'}"),
        ("mac=a4c3f0851b2e", "mac=<mac>"),
        ('{\\"client_mac\\": \\"a4c3f0851b2e\\"}', '{\\"client_mac\\": \\"<mac>\\"}'),
        ("two a4:c3:f0:85:1b:2e and 02:00:5e:10:00:01", "two <mac> and <mac>"),
    ],
)
def test_scrub_macs(text: str, expected: str) -> None:
    assert scrub_macs(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"ADSC": "041876097283"}',  # a Linky meter id is twelve digits, not a MAC
        '{"devEui": "0101010101010101"}',
        "deduplicationId 3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "2001:db8::2/temperature",
        "time 10:42:17",
        "id 0a4c3f0851b2e9",
    ],
)
def test_scrub_macs_leaves_other_identifiers_alone(text: str) -> None:
    assert scrub_macs(text) == text


def test_scrub_macs_bytes() -> None:
    payload = b'{"client_mac":"a4c3f0851b2e","ap":"a4:c3:f0:85:1b:2f","x":"\xff"}'
    assert scrub_macs_bytes(payload) == b'{"client_mac":"<mac>","ap":"<mac>","x":"\xff"}'


def test_decode_error_scrubs_its_detail() -> None:
    err = DecodeError(INVALID_PAYLOAD, "bad client a4:c3:f0:85:1b:2e and client_mac=a4c3f0851b2e")
    assert "a4:c3" not in err.detail
    assert "a4c3f0851b2e" not in err.detail
    assert "a4:c3" not in str(err)
    assert str(err).startswith("invalid_payload: ")
    assert all("a4c3" not in str(a) and "a4:c3" not in str(a) for a in err.args)


def test_decode_error_survives_pickling() -> None:
    err = DecodeError(INVALID_PAYLOAD, "detail", device_id="spot-1")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.reason, copy.detail, copy.device_id) == ("invalid_payload", "detail", "spot-1")


def test_reason_codes() -> None:
    assert {
        "not_utf8", "invalid_json", "invalid_payload", "out_of_range", "bad_timestamp",
        "unsupported_format", "senml_invalid", "unit_mismatch", "unknown_device",
    } == DECODER_REASONS  # fmt: skip
    assert not DECODER_REASONS & INGEST_REASONS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"sta": "a4c3f0851b2e"}', '{"sta": "<mac>"}'),  # bare MAC under any key
        ("client A4C3F0851B2E left", "client <mac> left"),
        ("plate AB-123-CD, ab-123-cd, AB123CD, AB 123 CD",
         "plate <plate>, <plate>, <plate>, <plate>"),
        ("FNI 1234 AB 62 / 1234-AB-62 / 1234AB62 / 123 ABC 2A",
         "FNI <plate> / <plate> / <plate> / <plate>"),
        ("device_id 'ab123cd' unknown", "device_id '<plate>' unknown"),
    ],
)
def test_scrub_personal(text: str, expected: str) -> None:
    assert scrub_personal(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"ADSC": "041876097283", "PRM": "30001234567890"}',  # Linky serial and PRM
        "deduplicationId 3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
        "at 2024-05-14T10:42:00+02:00, E240514104200",
        "took 100 ms for 1 of 20 batches in 12 s",
        "spot-GA-001 linky-NO-0001 t1a2b3c4d-ap",
        "id 0a4c3f0851b2e9",
    ],
)
def test_scrub_personal_leaves_other_text_alone(text: str) -> None:
    assert scrub_personal(text) == text


def test_scrub_personal_bytes() -> None:
    payload = b'{"x":"a4c3f0851b2e","plate":"AB-123-CD","y":"\xff"}'
    assert scrub_personal_bytes(payload) == b'{"x":"<mac>","plate":"<plate>","y":"\xff"}'
