"""Pseudonymisation of wifi client MAC addresses, and scrubbing of MACs from text.

CNIL guidance for audience measurement in public space: never store a raw MAC; key its hash
with a secret that rotates at least daily and is destroyed afterwards. ``MacHasher`` does the
hashing with the key the caller's provider says is in force; storing, rotating and destroying
keys is the ingestor's job. ``scrub_macs`` removes MACs from anything about to be logged or
stored (error details, dead-letter payloads).
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
_SEPARATED_RE: Final = re.compile(_SEPARATED)
_KEYED_RE: Final = re.compile(_KEYED)
_SEPARATED_BYTES_RE: Final = re.compile(_SEPARATED.encode())
_KEYED_BYTES_RE: Final = re.compile(_KEYED.encode())


def normalize_mac(s: str) -> bytes:
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

    Replaces ``aa:bb:cc:dd:ee:ff``, ``aa-bb-..``, ``aabb.ccdd.eeff`` anywhere, and twelve
    bare hex digits where they are the value of a key containing ``mac`` (any case), as in
    ``{"client_mac": "aabbccddeeff"}``, ``'sta_mac': 'aabb…'`` or ``mac=aabb…``.
    """
    text = _SEPARATED_RE.sub(MAC_PLACEHOLDER, text)
    return _KEYED_RE.sub(r"\1" + MAC_PLACEHOLDER, text)


def scrub_macs_bytes(b: bytes) -> bytes:
    """``scrub_macs`` for raw payload bytes (any encoding that is ASCII-compatible)."""
    b = _SEPARATED_BYTES_RE.sub(MAC_PLACEHOLDER.encode(), b)
    return _KEYED_BYTES_RE.sub(rb"\1" + MAC_PLACEHOLDER.encode(), b)
