"""The one error type of the payload decoders, and the stable reason codes it carries.

Reason codes are stored in ``dead_letters.reason`` and used as metric labels, so they never
change meaning. Decoders raise only the codes of ``DECODER_REASONS``; the ingestor adds the
codes of ``INGEST_REASONS`` for what it checks itself (listed here so every code has one home).
"""

from __future__ import annotations

from typing import Final

# Raised by the decoders (devices.decoders, devices.privacy).
NOT_UTF8: Final = "not_utf8"
"""The payload is not valid UTF-8."""
INVALID_JSON: Final = "invalid_json"
"""The payload is UTF-8 but not JSON."""
INVALID_PAYLOAD: Final = "invalid_payload"
"""Valid JSON of the wrong shape: a missing field, a wrong type, a word outside a vocabulary."""
OUT_OF_RANGE: Final = "out_of_range"
"""A number or a text length outside what the table's CHECK constraint (or column type) allows."""
BAD_TIMESTAMP: Final = "bad_timestamp"
"""A time that cannot be read: unparseable, local time without an offset, out of range."""
UNSUPPORTED_FORMAT: Final = "unsupported_format"
"""A format Beffroi does not decode (CBOR, a JSON scalar, SenML for a kind it cannot carry)."""
SENML_INVALID: Final = "senml_invalid"
"""A SenML pack that breaks RFC 8428: label ending in ``_``, ``bver`` > 10, bad name, no value."""
UNIT_MISMATCH: Final = "unit_mismatch"
"""A SenML record whose unit does not fit the measurement its name maps to."""
UNKNOWN_DEVICE: Final = "unknown_device"
"""A ChirpStack DevEUI or a Linky meter serial (or PRM) that the registry does not know."""

DECODER_REASONS: Final = frozenset(
    {
        NOT_UTF8,
        INVALID_JSON,
        INVALID_PAYLOAD,
        OUT_OF_RANGE,
        BAD_TIMESTAMP,
        UNSUPPORTED_FORMAT,
        SENML_INVALID,
        UNIT_MISMATCH,
        UNKNOWN_DEVICE,
    }
)

# Raised by the ingestor, never by the decoders.
UNKNOWN_TOPIC: Final = "unknown_topic"
FAMILY_MISMATCH: Final = "family_mismatch"
INACTIVE_DEVICE: Final = "inactive_device"
FUTURE_TIMESTAMP: Final = "future_timestamp"
TOO_OLD: Final = "too_old"
OVERSIZED: Final = "oversized"
DB_REJECTED: Final = "db_rejected"
"""The database refused the row for a reason the ingestor does not check itself."""
CONFLICT: Final = "conflict"
"""A reading whose key is already stored (or earlier in the batch) with other values."""

INGEST_REASONS: Final = frozenset(
    {UNKNOWN_TOPIC, FAMILY_MISMATCH, INACTIVE_DEVICE, FUTURE_TIMESTAMP, TOO_OLD, OVERSIZED,
     DB_REJECTED, CONFLICT}
)


class DecodeError(Exception):
    """A message that cannot become readings.

    ``reason`` is a stable code (see the module constants); ``detail`` explains it to a human.
    The detail is scrubbed of anything that looks like a MAC address or a licence plate when
    the error is built, so it is safe to log; the ingestor also replaces any quoted text of a
    personal topic's detail that is not a documented word (``devices.redact``). ``device_id``
    is set when the decoder had already resolved the device (ChirpStack DevEUI, Linky meter
    id) before failing.
    """

    reason: str
    detail: str
    device_id: str | None

    def __init__(self, reason: str, detail: str, *, device_id: str | None = None) -> None:
        # Imported here: devices.privacy raises DecodeError, so a top-level import would cycle.
        from devices.privacy import scrub_personal

        detail = scrub_personal(detail)
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.device_id = device_id

    def __reduce__(self) -> tuple[type[DecodeError], tuple[str, str], dict[str, str | None]]:
        return type(self), (self.reason, self.detail), {"device_id": self.device_id}

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"
