"""Pseudonymisation of wifi client MAC addresses, and scrubbing of MACs from text.

CNIL guidance for audience measurement in public space: never store a raw MAC; key its hash
with a secret that rotates at least daily and is destroyed afterwards. ``MacHasher`` does the
hashing with the key the caller's provider says is in force; storing, rotating and destroying
keys is the ingestor's job. ``scrub_personal`` removes MACs and licence plates from free
text about to be logged or stored (log records, error details, topics, dead letters of
topics that carry no personal data). It is a deny-list and can miss a form: dead letters of
topics that may carry personal data are redacted by allow-list instead (``devices.redact``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime
from typing import Final

from devices.errors import INVALID_PAYLOAD, DecodeError

MAC_PLACEHOLDER: Final = "<mac>"
CLIENT_KEY_BYTES: Final = 16  # wifi_sessions.client_key CHECK (octet_length = 16)
MIN_KEY_BYTES: Final = 16  # below this an HMAC key is guessable; 32 bytes is the advice

_MAC_FORMS: Final = re.compile(
    r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}"  # aa:bb:.. or aa-bb-..
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"  # Cisco aabb.ccdd.eeff
    r"|[0-9A-Fa-f]{12}"  # bare aabbccddeeff
)
_MAC_SEPARATORS: Final = str.maketrans("", "", ":-.")

# Anything that looks like a MAC: six hex pairs separated by ':' or '-', or Cisco's three
# dotted quads, bounded by non-hex characters so that longer hex runs are left alone.
_SEPARATED = (
    r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}(?![0-9A-Fa-f])"
    r"|(?<![0-9A-Fa-f])[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(?![0-9A-Fa-f])"
)
# Twelve bare hex digits are too common (a Linky ADSC is twelve digits) to scrub everywhere:
# only as the value of a key containing "mac", in JSON (escaped or not), a Python repr or
# key=value text. Group 1 (the key and separator) is kept.
_KEYED = r"""(?i)(mac[\w-]*(?:\\?["'])?\s*[:=]\s*(?:\\?["'])?)[0-9a-f]{12}(?![0-9a-f])"""
# Twelve bare hex digits with at least one letter cannot be a meter id: scrubbed under any key,
# when they stand alone (not inside a longer token, nor the last group of a UUID).
_BARE = (
    r"(?<![0-9A-Za-z])(?<![0-9A-Fa-f]{4}-)(?=[0-9]*[A-Fa-f])[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
)
_SEPARATED_RE: Final = re.compile(f"{_SEPARATED}|{_BARE}")
_KEYED_RE: Final = re.compile(_KEYED)
_SEPARATED_BYTES_RE: Final = re.compile(f"{_SEPARATED}|{_BARE}".encode())
_KEYED_BYTES_RE: Final = re.compile(_KEYED.encode())

PLATE_PLACEHOLDER: Final = "<plate>"
# French licence plates as written on the plate: SIV ``AB-123-CD`` (since 2009) and FNI
# ``1234 AB 62`` (before), with dashes, spaces or nothing between the groups. Capitals with
# any separator; lower case only with dashes or nothing, so that English text such as
# "in 100 ms" or "1 of 20" is left alone. Never inside a longer token, nor part of a time
# or a date (``05-14T10:42``).
_PLATE_LEFT = r"(?<![0-9A-Za-z])(?<!\d[-:./])"
_PLATE_RIGHT = r"(?![0-9A-Za-z])(?![-:./]\d)"
_FNI_DEPT = r"(?:\d{2}|2[AB]|97\d)"
_PLATE = (
    _PLATE_LEFT + "(?:"
    r"[A-Z]{2}[- ]?\d{3}[- ]?[A-Z]{2}"
    r"|\d{1,4}[- ]?[A-Z]{1,3}[- ]?" + _FNI_DEPT + "|"
    r"(?i:[a-z]{2}(?P<s>-?)\d{3}(?P=s)[a-z]{2})"
    r"|(?i:\d{1,4}(?P<f>-?)[a-z]{1,3}(?P=f)" + _FNI_DEPT + ")"
    ")" + _PLATE_RIGHT
)
_PLATE_RE: Final = re.compile(_PLATE)
_PLATE_BYTES_RE: Final = re.compile(_PLATE.encode())


def normalize_mac(s: object) -> bytes:
    """The 6 bytes of a MAC written ``aa:bb:cc:dd:ee:ff``, ``AA-BB-..``, ``aabb.ccdd.eeff``
    or ``aabbccddeeff``.

    Raises ``DecodeError(invalid_payload)`` otherwise; the detail never repeats the input.
    """
    if isinstance(s, str) and len(s) <= 17:
        m = _MAC_FORMS.fullmatch(s)
        if m is not None:
            return bytes.fromhex(s.translate(_MAC_SEPARATORS))
    raise DecodeError(
        INVALID_PAYLOAD,
        "client_mac is not a MAC address (expected aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, "
        "aabb.ccdd.eeff or aabbccddeeff)",
    )


class MacHasher:
    """Keyed pseudonyms of client MACs: HMAC-SHA256(key in force at ``at``, 6 MAC bytes)[:16].

    ``key_provider(at)`` returns the secret key in force at ``at``. It is called on every
    ``client_key`` call, so it must be cheap (keys held in memory); it may raise (for example
    ``DecodeError("too_old", ...)`` once the key of that day is destroyed) and the exception
    propagates unchanged. The HMAC state prepared for the last key is cached until a new key
    comes or ``forget`` is called.
    """

    __slots__ = ("_hmac", "_key", "_key_provider")

    def __init__(self, key_provider: Callable[[datetime], bytes]) -> None:
        self._key_provider = key_provider
        self._key: bytes | None = None
        self._hmac: hmac.HMAC | None = None

    def client_key(self, mac: str, at: datetime) -> bytes:
        """The 16-byte pseudonym of ``mac`` under the key in force at ``at``."""
        raw = normalize_mac(mac)
        key = self._key_provider(at)
        state = self._hmac
        if state is None or key != self._key:
            if not isinstance(key, bytes) or len(key) < MIN_KEY_BYTES:
                raise ValueError(f"MAC hashing key must be at least {MIN_KEY_BYTES} bytes")
            state = hmac.new(key, digestmod=hashlib.sha256)
            self._key, self._hmac = key, state
        h = state.copy()
        h.update(raw)
        return h.digest()[:CLIENT_KEY_BYTES]

    def forget(self) -> None:
        """Drop the cached key, e.g. when the ingestor destroys it at rotation."""
        self._key = self._hmac = None


def scrub_macs(text: str) -> str:
    """``text`` with every MAC-looking substring replaced by ``<mac>``.

    Replaces ``aa:bb:cc:dd:ee:ff``, ``aa-bb-..``, ``aabb.ccdd.eeff`` and twelve bare hex
    digits holding a letter anywhere, and twelve bare digits where they are the value of a key
    containing ``mac`` (any case), as in ``{"client_mac": "001122334455"}``, ``'sta_mac': '…'``
    or ``mac=…``. Twelve bare digits elsewhere are kept: a Linky serial (ADSC) looks the same.
    """
    text = _SEPARATED_RE.sub(MAC_PLACEHOLDER, text)
    return _KEYED_RE.sub(r"\1" + MAC_PLACEHOLDER, text)


def scrub_macs_bytes(b: bytes) -> bytes:
    """``scrub_macs`` for raw payload bytes (any encoding that is ASCII-compatible)."""
    b = _SEPARATED_BYTES_RE.sub(MAC_PLACEHOLDER.encode(), b)
    return _KEYED_BYTES_RE.sub(rb"\1" + MAC_PLACEHOLDER.encode(), b)


def scrub_plates(text: str) -> str:
    """``text`` with every French licence plate (SIV or FNI form) replaced by ``<plate>``."""
    return _PLATE_RE.sub(PLATE_PLACEHOLDER, text)


def scrub_personal(text: str) -> str:
    """``text`` without MACs nor licence plates: for logs, error details and topics."""
    return scrub_plates(scrub_macs(text))


def scrub_personal_bytes(b: bytes) -> bytes:
    """``scrub_personal`` for raw payload bytes (any encoding that is ASCII-compatible)."""
    return _PLATE_BYTES_RE.sub(PLATE_PLACEHOLDER.encode(), scrub_macs_bytes(b))
