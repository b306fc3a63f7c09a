"""What a dead letter keeps (devices.redact): no MAC nor plate, in any form, under any key."""

from __future__ import annotations

import json
import re

import orjson
import pytest

from devices.decoders import MODELS
from devices.families import Family
from devices.redact import (
    PERSONAL_FAMILIES,
    PERSONAL_KINDS,
    Rule,
    char_class,
    dead_letter_parts,
    placeholder,
    redact_detail,
    rules,
    source,
)

# A MAC in its four spellings, both cases; French plates, SIV and FNI, with and without dashes.
MACS = [
    "a4:c3:f0:85:1b:2e", "a4-c3-f0-85-1b-2e", "a4c3.f085.1b2e", "a4c3f0851b2e",
    "A4:C3:F0:85:1B:2E", "A4-C3-F0-85-1B-2E", "A4C3.F085.1B2E", "A4C3F0851B2E",
]  # fmt: skip
PLATES = ["AB-123-CD", "AB123CD", "AB 123 CD", "ab-123-cd", "1234 AB 62", "1234-AB-62",
          "1234AB62", "123 ABC 2A"]  # fmt: skip
SECRETS = MACS + PLATES
PERSONAL_TOPICS = {
    "wifi/sessions": "city/wifi/ap-1/sessions",
    "wifi/stats": "city/wifi/ap-1/stats",
    "parking/transaction": "city/parking/pm-1/transaction",
}
LIMIT, MAX_PARSE = 4096, 65536


def _squeeze(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def assert_nothing_kept(kept: bytes | str, secret: str) -> None:
    """Neither ``secret`` nor its letters and digits in a row (any separators, any case)."""
    text = kept.decode("utf-8", "replace") if isinstance(kept, bytes) else kept
    assert secret.lower() not in text.lower()
    assert _squeeze(secret) not in _squeeze(text), text


def parts(topic: str, payload: bytes, detail: str = "refused", device_id: str | None = "ap-1",
          family: Family | None = None) -> tuple[str, str | None, str, bytes]:
    src = source(topic, "city", "", family)
    return dead_letter_parts(src, topic, device_id, detail, payload, limit=LIMIT,
                             max_parse_bytes=MAX_PARSE)


def shapes(secret: str) -> dict[str, bytes]:
    """``secret`` under documented and undocumented keys, as a key, nested, in SenML,
    in truncated JSON and next to bytes that are not UTF-8."""
    s = json.dumps(secret)
    doc = {
        "client_mac": f'{{"client_mac": {s}, "event": "associated"}}',
        "transaction_id": f'{{"transaction_id": {s}, "amount_cents": -1, "duration_s": 60, '
                          '"payment_method": "card"}',
        "enum_field": f'{{"event": {s}, "payment_method": {s}, "radio": {s}}}',
        "time_field": f'{{"ts": {s}, "clients": 1}}',
        "unknown_key": f'{{"clients": 1, "plate": {s}, "sta": {s}, "x": {s}}}',
        "as_key": f'{{{s}: 1, "clients": {{{s}: {s}}}}}',
        "nested_arrays": f'{{"list": [[{{"deep": [{s}, {{"deeper": {s}}}]}}]]}}',
        "batch": f'[{{"clients": 1}}, {{"clients": 2, "client": {s}}}, {s}]',
        "senml": f'[{{"bn": {s}, "n": {s}, "u": {s}, "vs": {s}, "v": 1}}]',
        "truncated_after": f'{{"client_mac": {s}, "event": "assoc',
        "truncated_inside": f'{{"note": {s[:-1]}',
        "escaped": json.dumps({"client_mac": secret}, ensure_ascii=True).replace("-", "\\u002d"),
    }
    out = {name: text.encode() for name, text in doc.items()}
    out["not_utf8"] = f'{{"client_mac": {s}, "x": "'.encode() + b"\xff\xfe" + b'"}'
    out["not_utf8_bare"] = secret.encode() + b"\xc3"
    out["not_json"] = f"mac={secret} plate {secret}".encode()
    return out


def assert_no_shape_kept(topic: str, secret: str) -> None:
    """Whatever shape of payload carries ``secret`` on ``topic``, neither the kept payload
    nor the detail holds it, and the payload stays under the limit."""
    for name, payload in shapes(secret).items():
        _, _, detail, kept = parts(topic, payload, detail=f"value {secret!r} is wrong")
        assert_nothing_kept(kept, secret)
        assert_nothing_kept(detail, secret)
        assert len(kept) <= LIMIT, name


@pytest.mark.parametrize("kind", sorted(PERSONAL_KINDS))
@pytest.mark.parametrize("secret", SECRETS)
def test_personal_dead_letters_keep_no_mac_nor_plate(kind: str, secret: str) -> None:
    assert_no_shape_kept(PERSONAL_TOPICS[kind], secret)


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize(
    "topic",
    ["city/grid/linky-1/reading", "city/parking/spot-1/state", "city/parking/pm-1/status",
     "application/1/device/0101010101010101/event/up", "teleinfo/041876097283"],
)  # fmt: skip
def test_other_topics_keep_bytes_but_no_mac_nor_plate(topic: str, secret: str) -> None:
    assert_no_shape_kept(topic, secret)


@pytest.mark.parametrize("secret", SECRETS)
def test_a_device_that_may_send_personal_data_is_redacted_on_any_topic(secret: str) -> None:
    payload = f'{{"energy_import_wh": 1, "note": {json.dumps(secret)}}}'.encode()
    for family in PERSONAL_FAMILIES:
        _, _, _, kept = parts("city/grid/ap-1/reading", payload, family=family)
        assert_nothing_kept(kept, secret)
        assert orjson.loads(kept)["energy_import_wh"] == 1


def test_secret_in_the_topic_and_device_id_is_not_kept() -> None:
    for secret in ["AB-123-CD", "1234AB62", "a4c3f0851b2e", "A4C3F0851B2E", "a4c3.f085.1b2e"]:
        topic = f"city/parking/{secret}/transaction"
        kept_topic, dev, _, _ = parts(topic, b"{}", device_id=secret)
        assert_nothing_kept(kept_topic, secret)
        assert dev is not None
        assert_nothing_kept(dev, secret)


def test_documented_values_are_kept() -> None:
    payload = orjson.dumps({
        "ts": "2024-05-14T10:05:00+02:00", "transaction_id": "HZ12-000457", "amount_cents": -5,
        "duration_s": 3600, "payment_method": "contactless", "flag": True, "none": None,
    })  # fmt: skip
    _, _, _, kept = parts("city/parking/pm-1/transaction", payload, device_id="pm-1")
    assert orjson.loads(kept) == {
        "ts": "2024-05-14T10:05:00+02:00", "transaction_id": "<str len=11 class=alnum->",
        "amount_cents": -5, "duration_s": 3600, "payment_method": "contactless",
        "<key len=4 class=alpha>": True, "<key len=4 class=alpha> #2": None,
    }  # fmt: skip


def test_senml_keeps_known_names_units_and_the_device_base_name() -> None:
    pack = [{"bn": "pm-1:", "bt": 1.7e9, "n": "amount", "u": "EUR", "v": 2.5},
            {"n": "payment_method", "vs": "card"}, {"n": "transaction_id", "vs": "T-1"},
            {"bn": "urn:dev:mac:a4c3f0851b2e:", "n": "plate", "vs": "AB123CD"}]
    _, _, _, kept = parts("city/parking/pm-1/transaction", orjson.dumps(pack), device_id="pm-1")
    assert orjson.loads(kept) == [
        {"bn": "pm-1:", "bt": 1.7e9, "n": "amount", "u": "EUR", "v": 2.5},
        {"n": "payment_method", "vs": "card"},
        {"n": "transaction_id", "vs": "<str len=3 class=alnum->"},
        {"bn": "<str len=25 class=alnum:>", "n": "<str len=5 class=alpha>",
         "vs": "<str len=7 class=hex>"},
    ]


def test_a_time_is_kept_only_when_it_is_an_iso_time_with_offset() -> None:
    payload = b'[{"ts": "2024-05-14T10:05:00Z"}, {"ts": "2024-05-14T10:05:00"}, {"ts": 1.5}]'
    _, _, _, kept = parts("city/wifi/ap-1/stats", payload)
    assert orjson.loads(kept) == [{"ts": "2024-05-14T10:05:00Z"},
                                  {"ts": "<str len=19 class=alnum-:>"}, {"ts": 1.5}]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"client_mac": "a4:c3', "<payload not kept: 21 bytes of UTF-8, not JSON>"),
        (b'{"x": "\xff"}', "<payload not kept: 10 bytes, not UTF-8>"),
        (b"[" * 70_000, "<payload not kept: 70000 bytes, over 65536>"),
    ],
)
def test_invalid_json_of_a_personal_topic_keeps_only_a_description(payload: bytes,
                                                                   expected: str) -> None:
    _, _, _, kept = parts("city/wifi/ap-1/sessions", payload)
    assert orjson.loads(kept) == expected


def test_deep_json_is_summarised() -> None:
    payload = b"[" * 200 + b"]" * 200
    _, _, _, kept = parts("city/wifi/ap-1/sessions", payload)
    assert b"<nested deeper than 32 levels>" in kept


def test_redacted_payload_is_cut_at_the_limit() -> None:
    payload = orjson.dumps({"x": ["a4c3f0851b2e"] * 2000})
    _, _, _, kept = parts("city/wifi/ap-1/sessions", payload)
    assert len(kept) == LIMIT


def test_other_topics_keep_meter_ids_and_times() -> None:
    frame = b'{"ADSC": "041876097283", "DATE": "E240514104200", "ts": "2024-05-14T10:42:00Z"}'
    _, _, _, kept = parts("teleinfo/041876097283", frame)
    assert kept == frame


def test_detail_keeps_documented_words_only() -> None:
    detail = "payment_method: Input should be 'card', 'coins'; got 'AB-123-CD' and \"x_\""
    assert redact_detail(detail) == (
        "payment_method: Input should be 'card', 'coins'; got <str len=9 class=hex-> "
        "and <str len=2 class=alpha_>"
    )


def test_detail_keeps_database_names() -> None:
    detail = ('new row for relation "parking_transactions" violates check constraint '
              '"parking_transactions_amount_cents_check"')
    assert redact_detail(detail) == detail
    assert redact_detail("device 'ab 123 cd' and 'john_smith_'") == (
        "device <str len=9 class=hex+space> and <str len=11 class=alpha_>")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a4:c3:f0:85:1b:2e", "hex:"), ("AB-123-CD", "hex-"), ("1234 AB 62", "hex+space"),
     ("ZZ-999-ZZ", "alnum-"), ("041876097283", "digits"), ("card", "alpha"), ("", "empty"),
     ("é\x01", "+non-ascii+control")],
)  # fmt: skip
def test_char_class(text: str, expected: str) -> None:
    assert char_class(text) == expected
    assert placeholder(text) == f"<str len={len(text)} class={expected}>"


def test_every_field_of_a_personal_kind_has_the_documented_rule() -> None:
    # The table of docs/ingest.md: a new model field gets a rule from its schema, and this
    # test says whether its values are kept.
    number, time, nothing = Rule(numbers=True), Rule(numbers=True, time=True), Rule()
    native = {kind: {k: rules(kind)[k] for k in MODELS[kind].__struct_fields__}
              for kind in PERSONAL_KINDS}
    assert native == {
        "wifi/stats": {"ts": time, "clients": number, "rx_bytes": number, "tx_bytes": number,
                       "radio": Rule(words=frozenset({"up", "down"}))},
        "wifi/sessions": {"ts": time, "client_mac": nothing, "rssi": number,
                          "session_s": number,
                          "event": Rule(words=frozenset({"associated", "disassociated"}))},
        "parking/transaction": {
            "ts": time, "transaction_id": nothing, "amount_cents": number, "duration_s": number,
            "payment_method": Rule(words=frozenset({"card", "contactless", "coins", "mobile"})),
        },
    }
    senml = rules("wifi/sessions")
    assert {k for k, r in senml.items() if r == number} - set(native["wifi/sessions"]) == {
        "v", "s", "t", "bt", "ut", "bv", "bs", "bver"}
    assert senml["bn"] == Rule(base_name=True)
    assert senml["vd"] == senml["vb"] == senml["n"] == senml["u"] == nothing
    assert rules("wifi/stats")["n"].words == {"clients", "rx", "tx", "radio"}


def test_which_sources_are_personal() -> None:
    assert source("city/wifi/ap-1/stats", "city", "", None).personal
    assert source("city/wifi/ap-1/sessions", "city", "", Family.WIFI_AP).personal
    assert source("city/parking/pm-1/transaction", "city", "", None).personal
    assert source("city/parking/pm-1/status", "city", "", Family.PARKING_METER).personal
    assert source("city/wifi/ap-1/bogus", "city", "", None).personal  # unknown: personal
    assert source("city/x", "city", "", None).personal
    assert not source("city/parking/pm-1/status", "city", "", None).personal
    assert not source("city/parking/s-1/state", "city", "", Family.PARKING_SPOT).personal
    assert not source("city/grid/l-1/reading", "city", "", Family.GRID_METER).personal
    assert not source("br/application/1/device/01/event/up", "city", "br", None).personal
    assert not source("teleinfo/041876097283", "city", "", None).personal
    assert source("teleinfo/x", "city", "br", None).personal  # not the bridge's topic
