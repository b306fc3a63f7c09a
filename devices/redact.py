"""What a dead letter keeps of a refused message.

A deny-list of patterns (``devices.privacy.scrub_personal``) always misses some spelling of
a MAC or a plate, so a dead letter of a topic that may carry personal data is redacted by
allow-list instead: of valid JSON, only the documented fields' non-identifying values are
kept (numbers, booleans, words of a vocabulary, ISO 8601 times, the device's own SenML base
name); every other string, every unknown key and every number under an unknown key becomes a
placeholder giving its length and character class, such as ``<str len=17 class=hex:>``,
recursively through objects and arrays. Of a payload that is not valid JSON no byte is kept,
only a description. Topics that carry no personal data (parking spot sensors, grid meters,
their bridges) keep the raw bytes, scrubbed of MACs and plates.

The message kinds that may carry personal data are ``PERSONAL_KINDS``; a message from a device
of a family that sends one of them (``PERSONAL_FAMILIES``), or on a topic whose kind is unknown,
is treated the same way whatever its topic.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Final

import orjson

from devices.decoders import json_schemas
from devices.decoders.senml import MEASUREMENTS
from devices.families import (
    KIND_BY_TOPIC,
    MESSAGE_KINDS,
    Family,
    MessageKind,
    bridge_topics,
    parse_device_topic,
)
from devices.privacy import scrub_personal, scrub_personal_bytes

PERSONAL_KINDS: Final = frozenset({"wifi/stats", "wifi/sessions", "parking/transaction"})
"""Kinds whose messages concern people: wifi clients (MACs) and parking payments (plates)."""
PERSONAL_FAMILIES: Final = frozenset(
    k.family for k in MESSAGE_KINDS if f"{k.segment}/{k.name}" in PERSONAL_KINDS
)
MAX_DEPTH: Final = 32  # deeper JSON is summarised, so that redaction cannot recurse without end

_NUMBER_KEYS: Final = frozenset({"v", "s", "t", "bt", "ut", "bv", "bs", "bver"})  # SenML
_QUOTED: Final = re.compile(r"'(?:[^'\\]|\\.)*'" r'|"(?:[^"\\]|\\.)*"')
_SQL_NAME: Final = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
_HEX: Final = frozenset(string.hexdigits)
_DIGITS: Final = frozenset(string.digits)
_PUNCTUATION: Final = frozenset(string.punctuation)


@dataclass(frozen=True, slots=True)
class Rule:
    """Which values of one key are kept: numbers, ISO 8601 times, words of a vocabulary,
    the device's SenML base name. Booleans and null are always kept; anything else under a
    documented key is replaced by a placeholder (``Rule()`` keeps nothing but the key)."""

    numbers: bool = False
    time: bool = False
    words: frozenset[str] = frozenset()
    base_name: bool = False


_NOTHING: Final = Rule()
_NUMBER: Final = Rule(numbers=True)


def _rule_of(schema: dict[str, Any]) -> Rule:
    """The rule of a native field, read from its JSON schema (from the declarations, MODELS)."""
    numbers = time = False
    words: set[str] = set()
    for alt in schema.get("anyOf", [schema]):
        if "enum" in alt:
            words.update(str(w) for w in alt["enum"])
        elif alt.get("type") in ("integer", "number"):
            numbers = True
        elif alt.get("format") == "date-time":
            time = True
    return Rule(numbers, time, frozenset(words))


@cache
def rules(kind: str | None) -> dict[str, Rule]:
    """Key -> rule for the messages of ``kind`` (``segment/name``): its native fields and
    the SenML labels. ``None`` (a kind that cannot be told) keeps no key. Built on first use."""
    if kind is None:
        return {}
    table = {name: _rule_of(prop) for name, prop in json_schemas()[kind]["properties"].items()}
    measurements = MEASUREMENTS.get(kind, {})
    names = frozenset(measurements)
    units = frozenset(u for m in measurements.values() for u in m.units if u)
    enums = frozenset(w for r in table.values() for w in r.words)
    senml = {
        "bn": Rule(base_name=True), "n": Rule(words=names), "u": Rule(words=units),
        "bu": Rule(words=units), "vs": Rule(words=enums), "vb": _NOTHING, "vd": _NOTHING,
        **dict.fromkeys(_NUMBER_KEYS, _NUMBER),
    }  # fmt: skip
    return {**senml, **table}


@cache
def vocabulary() -> frozenset[str]:
    """Every documented key and word: the quoted text a detail may keep on any topic."""
    out: set[str] = set()
    for k in MESSAGE_KINDS:
        for key, rule in rules(f"{k.segment}/{k.name}").items():
            out.add(key)
            out.update(rule.words)
    return frozenset(out)


def char_class(text: str) -> str:
    """A short description of the characters of ``text``: ``digits``, ``hex``, ``alpha`` or
    ``alnum`` for its ASCII letters and digits, then the punctuation it holds (each mark once,
    sorted), then ``+space``, ``+non-ascii``, ``+control`` when present."""
    if not text:
        return "empty"
    chars = set(text)
    alnum = {c for c in chars if c.isascii() and c.isalnum()}
    if not alnum:
        base = ""
    elif alnum <= _DIGITS:
        base = "digits"
    elif alnum <= _HEX:
        base = "hex"
    elif not alnum & _DIGITS:
        base = "alpha"
    else:
        base = "alnum"
    out = base + "".join(sorted(chars & _PUNCTUATION))
    if any(c.isspace() for c in chars):
        out += "+space"
    if any(not c.isascii() for c in chars):
        out += "+non-ascii"
    if any(c.isascii() and not c.isprintable() and not c.isspace() for c in chars):
        out += "+control"
    return out


def placeholder(text: str, what: str = "str") -> str:
    """``<str len=17 class=hex:>``: what a redacted string says of itself."""
    return f"<{what} len={len(text)} class={char_class(text)}>"


def _is_time(text: str) -> bool:
    if not text.isascii():
        return False
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None


class _Redactor:
    """Applies one kind's rules to a parsed JSON document."""

    def __init__(self, table: dict[str, Rule], device_id: str | None) -> None:
        self.table = table
        base = device_id or ""
        self.base_names = {base, f"{base}:", f"{base}/"} if base else set()

    def value(self, v: object, rule: Rule, depth: int) -> object:
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, int | float):
            return v if rule.numbers else f"<num len={len(orjson.dumps(v))}>"
        if isinstance(v, str):
            keep = (v in rule.words or (rule.time and _is_time(v))
                    or (rule.base_name and v in self.base_names))  # fmt: skip
            return v if keep else placeholder(v)
        if depth >= MAX_DEPTH:
            return "<nested deeper than 32 levels>"
        if isinstance(v, list):
            return [self.value(item, rule, depth + 1) for item in v]
        if isinstance(v, dict):
            return self.object(v, depth + 1)
        return "<value>"  # orjson yields nothing else; kept out whatever it is

    def object(self, obj: dict[str, object], depth: int) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, v in obj.items():
            rule = self.table.get(key)
            if rule is None:
                name = placeholder(key, "key")
                n = 1
                while name in out or name in self.table:
                    n += 1
                    name = f"{placeholder(key, 'key')} #{n}"
                out[name] = self.value(v, _NOTHING, depth)
            else:
                out[key] = self.value(v, rule, depth)
        return out


def redact_payload(payload: bytes, kind: str | None, device_id: str | None, *,
                   max_parse_bytes: int) -> bytes:
    """The redacted form of a payload of a personal topic, as a JSON document.

    Valid JSON gives the same structure with the rules of ``kind`` applied; anything else
    (too large to parse, not UTF-8, not JSON, truncated) a JSON string that describes it
    without keeping any of its bytes.
    """
    size = len(payload)
    if size > max_parse_bytes:
        return orjson.dumps(f"<payload not kept: {size} bytes, over {max_parse_bytes}>")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return orjson.dumps(f"<payload not kept: {size} bytes, not UTF-8>")
        return orjson.dumps(f"<payload not kept: {size} bytes of UTF-8, not JSON>")
    return orjson.dumps(_Redactor(rules(kind), device_id).value(data, _NOTHING, 0))


def redact_detail(detail: str) -> str:
    """A detail of a personal topic: every quoted text that is not a documented key or word
    nor a database name (``parking_transactions_amount_cents_check``: lower case, with an
    underscore, as the database quotes its tables and constraints) becomes a placeholder,
    then MACs and plates are scrubbed from what is left."""
    vocab = vocabulary()

    def quoted(m: re.Match[str]) -> str:
        inner = m.group()[1:-1]
        keep = inner in vocab or _SQL_NAME.fullmatch(inner) is not None
        return m.group() if keep else placeholder(inner)

    return scrub_personal(_QUOTED.sub(quoted, detail))


@dataclass(frozen=True, slots=True)
class Source:
    """What a dead letter's topic says of its payload: the message kind (``segment/name``)
    when it can be told, and whether the payload may carry personal data."""

    kind: str | None
    personal: bool


def source(topic: str, prefix: str, bridge_prefix: str, family: Family | None) -> Source:
    """The kind and personal flag of a message on ``topic`` from a device of ``family``
    (None when unknown). Unknown topics and devices of ``PERSONAL_FAMILIES`` are personal."""
    kind: MessageKind | None = None
    known = False
    if topic.startswith(prefix + "/"):
        try:
            parsed = parse_device_topic(topic, prefix)
        except ValueError:
            parsed = None
        if parsed is not None:
            kind, known = parsed.kind, True
    else:
        uplinks, frames = (t.split("/") for t in bridge_topics(bridge_prefix))
        parts = topic.split("/")
        if _matches(parts, uplinks):
            kind, known = KIND_BY_TOPIC[("parking", "state")], True
        elif _matches(parts, frames):
            kind, known = KIND_BY_TOPIC[("grid", "reading")], True
    key = None if kind is None else f"{kind.segment}/{kind.name}"
    personal = not known or key in PERSONAL_KINDS or family in PERSONAL_FAMILIES
    return Source(key, personal)


def _matches(parts: list[str], pattern: list[str]) -> bool:
    """MQTT topic filter match (``+`` one level, trailing ``#`` any levels)."""
    if pattern and pattern[-1] == "#":
        head = pattern[:-1]
        return len(parts) >= len(head) and _matches(parts[: len(head)], head)
    return len(parts) == len(pattern) and all(
        p == "+" or p == t for p, t in zip(pattern, parts, strict=True)
    )


DeadLetterParts = tuple[str, str | None, str, bytes]
"""Topic, device id, detail and payload bytes as a dead letter keeps them."""


def dead_letter_parts(src: Source, topic: str, device_id: str | None, detail: str,
                      payload: bytes, *, limit: int, max_parse_bytes: int) -> DeadLetterParts:
    """What a dead letter keeps (see the module doc), payload cut at ``limit`` bytes."""
    dev = None if device_id is None else scrub_personal(device_id)
    if src.personal:
        kept = redact_payload(payload, src.kind, device_id, max_parse_bytes=max_parse_bytes)
        return scrub_personal(topic), dev, redact_detail(detail), kept[:limit]
    # Scrub before truncating so a MAC cut in half cannot survive; bound the work first.
    kept = scrub_personal_bytes(payload[: limit + 64])[:limit]
    return scrub_personal(topic), dev, scrub_personal(detail), kept

