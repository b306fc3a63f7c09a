"""The declarations of Beffroi's native JSON messages: msgspec ``Struct``s, one per kind.

They are the reference for native messages (docs/payloads.md): ``devices.decoders.native``
validates messages with them (in C) and ``json_schemas`` publishes them as JSON Schema. They
live apart from the decoding functions because those are compiled by mypyc
(``ingest.hotpath``), and a ``Struct`` class must be made by msgspec itself, as plain Python.
The ranges are the CHECK constraints of ``devices.decoders.common``.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from msgspec import Meta, Struct

from devices.decoders.common import (
    AMOUNT_CENTS,
    BYTES_COUNTER,
    CLIENTS,
    CURRENT_A,
    DURATION_S,
    ENERGY_WH,
    FAULT_CODE_LEN,
    FREQUENCY_HZ,
    PARKING_RSSI_DBM,
    POWER_W,
    RATIO,
    SESSION_S,
    SNR_DB,
    TRANSACTION_ID_LEN,
    VOLTAGE_V,
    WIFI_RSSI_DBM,
)

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

Timestamp = Annotated[
    Annotated[str, Meta(extra_json_schema={"format": "date-time"})] | float | None,
    Meta(
        description="When measured: ISO 8601 with offset or Z, or Unix seconds. "
        "Default: when Beffroi received the message."
    ),
]


def _range(lo: float, hi: float, description: str) -> Meta:
    return Meta(ge=lo, le=hi, description=description)


class Message(Struct, frozen=True, kw_only=True):
    """What every native message may carry: its time."""

    # Unknown fields are ignored; the decoder of decode_native_json refuses them instead, so
    # that a message with one takes the reference path (see the module doc).
    examples: ClassVar[tuple[dict[str, Any], ...]] = ()
    """Published in the JSON Schema; each must decode (tests)."""

    ts: Timestamp = None


class WifiStatsMessage(Message, frozen=True, kw_only=True):
    """``wifi/stats``: counters of an access point, about once a minute."""

    examples = (
        {
            "ts": "2024-05-14T10:42:00+02:00",
            "clients": 12,
            "rx_bytes": 123456789,
            "tx_bytes": 987654321,
            "radio": "up",
        },
    )

    clients: Annotated[int, _range(*CLIENTS, "Clients associated now (count).")]
    rx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes received since boot.")] | None = None
    tx_bytes: Annotated[int, _range(*BYTES_COUNTER, "Bytes sent since boot.")] | None = None
    radio: Annotated[Literal["up", "down"] | None, Meta(description="Radio state.")] = None


class WifiSessionMessage(Message, frozen=True, kw_only=True):
    """``wifi/sessions``: a client (dis)association. The MAC is hashed on receipt, never stored."""

    examples = (
        {
            "ts": 1715676137,
            "client_mac": "02:00:5e:10:00:01",
            "event": "disassociated",
            "rssi": -67,
            "session_s": 120,
        },
    )

    client_mac: Annotated[
        str,
        Meta(
            description="Client MAC: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or "
            "aabbccddeeff. Replaced by a keyed hash before anything is stored."
        ),
    ]
    event: Literal["associated", "disassociated"]
    rssi: Annotated[int, _range(*WIFI_RSSI_DBM, "Client signal (dBm).")] | None = None
    session_s: Annotated[int, _range(*SESSION_S, "On disassociation: time connected (s).")] | (
        None
    ) = None


class ParkingStateMessage(Message, frozen=True, kw_only=True):
    """``parking/state``: occupancy of one spot, on change and as a heartbeat.

    Give ``state``, or ``occupied`` (``true`` = occupied, ``false`` = free), or both if they agree.
    """

    examples = (
        {
            "ts": "2024-05-14T08:42:17Z",
            "state": "occupied",
            "battery": 0.87,
            "rssi": -104,
            "snr": 7.5,
        },
        {"occupied": False},
    )

    state: Literal["free", "occupied", "unknown"] | None = None
    occupied: bool | None = None
    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    rssi: Annotated[int, _range(*PARKING_RSSI_DBM, "Uplink signal (dBm).")] | None = None
    snr: Annotated[float, _range(*SNR_DB, "Uplink signal-to-noise ratio (dB).")] | None = None


class ParkingTransactionMessage(Message, frozen=True, kw_only=True):
    """``parking/transaction``: a payment at a parking meter. Never send a licence plate."""

    examples = (
        {
            "ts": "2024-05-14T10:05:00+02:00",
            "transaction_id": "HZ12-000457",
            "amount_cents": 250,
            "duration_s": 3600,
            "payment_method": "contactless",
        },
    )

    transaction_id: Annotated[
        str,
        Meta(
            min_length=TRANSACTION_ID_LEN[0],
            max_length=TRANSACTION_ID_LEN[1],
            description="Meter-assigned id, unique per meter.",
        ),
    ]
    amount_cents: Annotated[int, _range(*AMOUNT_CENTS, "Amount paid (euro cents).")]
    duration_s: Annotated[int, _range(*DURATION_S, "Parking time bought (s).")]
    payment_method: Literal["card", "contactless", "coins", "mobile"]


class ParkingStatusMessage(Message, frozen=True, kw_only=True):
    """``parking/status``: health of a parking meter, every 15 minutes or so."""

    examples = (
        {"ts": "2024-05-14T10:00:00+02:00", "battery": 0.8, "paper": 0.4, "fault": None},
        {"battery": 0.79, "paper": 0.0, "fault": "E12"},
    )

    battery: Annotated[float, _range(*RATIO, "Battery level, 0..1.")] | None = None
    paper: Annotated[float, _range(*RATIO, "Receipt paper left, 0..1.")] | None = None
    fault: Annotated[
        Annotated[str, Meta(max_length=FAULT_CODE_LEN[1])] | None,
        Meta(description='Vendor fault code; null or "" when there is no fault.'),
    ] = None


class GridReadingMessage(Message, frozen=True, kw_only=True):
    """``grid/reading``: an electricity meter reading; at least one value besides ``ts``."""

    examples = (
        {
            "ts": "2024-05-14T10:40:00+02:00",
            "energy_import_wh": 2738033,
            "energy_export_wh": 0,
            "power_w": 1840.0,
            "voltage_l1_v": 231.0,
            "current_l1_a": 8.0,
            "frequency_hz": 50.01,
        },
    )

    energy_import_wh: Annotated[int, _range(*ENERGY_WH, "Imported energy index (Wh).")] | (
        None
    ) = None
    energy_export_wh: Annotated[int, _range(*ENERGY_WH, "Exported energy index (Wh).")] | (
        None
    ) = None
    power_w: Annotated[float, _range(*POWER_W, "Active power, negative when exporting (W).")] | (
        None
    ) = None
    voltage_l1_v: Annotated[float, _range(*VOLTAGE_V, "Phase 1 RMS voltage (V).")] | None = None
    voltage_l2_v: Annotated[float, _range(*VOLTAGE_V, "Phase 2 RMS voltage (V).")] | None = None
    voltage_l3_v: Annotated[float, _range(*VOLTAGE_V, "Phase 3 RMS voltage (V).")] | None = None
    current_l1_a: Annotated[float, _range(*CURRENT_A, "Phase 1 RMS current (A).")] | None = None
    current_l2_a: Annotated[float, _range(*CURRENT_A, "Phase 2 RMS current (A).")] | None = None
    current_l3_a: Annotated[float, _range(*CURRENT_A, "Phase 3 RMS current (A).")] | None = None
    frequency_hz: Annotated[float, _range(*FREQUENCY_HZ, "Grid frequency (Hz).")] | None = None


MODELS: Final[dict[str, type[Message]]] = {
    "wifi/stats": WifiStatsMessage,
    "wifi/sessions": WifiSessionMessage,
    "parking/state": ParkingStateMessage,
    "parking/transaction": ParkingTransactionMessage,
    "parking/status": ParkingStatusMessage,
    "grid/reading": GridReadingMessage,
}
"""Native message declaration of each kind, keyed ``segment/name``."""


@cache
def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema (2020-12) of each native message, keyed ``segment/name``, from the
    declarations (``msgspec.json.schema``) with their examples.

    Built once, on first call, and shared: treat it as read-only.
    """
    _, components = msgspec.json.schema_components(MODELS.values())
    out: dict[str, dict[str, Any]] = {}
    for kind, model in MODELS.items():
        schema = components[model.__name__]
        out[kind] = {"$schema": JSON_SCHEMA_DIALECT, **schema,
                     "examples": [dict(e) for e in model.examples]}
    return out
