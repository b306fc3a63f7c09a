"""Decoder micro-benchmark: messages decoded per second by payload kind, one process, one core.

``python -m bench.decode [--seconds S]`` times the decoders alone (no broker, no database, no
router): ``decode_device_message`` for what devices send on their own topics, and the
ChirpStack and Linky TIC decoders for what bridges send, on payloads shaped like those of the
ingest benchmark's stream (``bench.ingestlib.stream``). Each kind is timed in rounds of at
least ``S / 10`` seconds of this process's CPU time (``time.process_time``: time spent waiting
for a core shared with other processes is not counted); the best round is kept, since cache
and frequency effects of other processes only ever slow a round down. The last line weighs
the single-message kinds by their share of the stream (``KINDS``) into a mean decode time
per message.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from bench.ingestlib.stream import KINDS
from devices.decoders import (
    DecodeContext,
    decode_chirpstack_uplink,
    decode_device_message,
    decode_teleinfo,
)
from devices.families import KIND_BY_TOPIC
from devices.privacy import MacHasher
from devices.readings import Reading

NOW: Final = datetime.fromtimestamp(1_732_571_234, UTC)
TS: Final = 1732571234.123456
KEY: Final = bytes(32)
DEV_EUI: Final = "beef000000000007"
METER: Final = "990000000042"

GRID: Final = {"energy_import_wh": 12345678, "energy_export_wh": 0, "power_w": 1840.5,
               "voltage_l1_v": 231.2, "current_l1_a": 7.96, "frequency_hz": 50.01}
SPOT: Final = {"state": "occupied", "battery": 0.87, "rssi": -104, "snr": 7.5}
TIC_FLAT: Final = {"ADSC": METER, "VTIC": "02", "DATE": "H241125224714", "NGTF": "BASE",
                   "EAST": 12345678, "EASF01": 12345678, "IRMS1": 8, "URMS1": 231, "PREF": 9,
                   "SINSTS": 1840, "SMAXSN": 2576, "NTARF": 1}


def _native(obj: dict[str, Any], ts: object = TS) -> bytes:
    return orjson.dumps({"ts": ts, **obj})


def _senml_grid(times: int) -> bytes:
    pack: list[dict[str, Any]] = []
    for t in range(times):
        recs: list[dict[str, Any]] = [
            {"n": "energy_import", "u": "kWh", "v": 12345.678 + t},
            {"n": "power", "u": "W", "v": 1840.5}, {"n": "voltage_l1", "u": "V", "v": 231.2},
            {"n": "current_l1", "u": "A", "v": 7.96}]  # fmt: skip
        if t:
            for rec in recs:
                rec["t"] = 7 * t
        pack.extend(recs)
    pack[0] = {"bn": "urn:dev:bench:linky-1:", "bt": 1732571234, **pack[0]}
    return orjson.dumps(pack)


def _chirpstack() -> bytes:
    return orjson.dumps({
        "deduplicationId": "5f1e2d3c4b5a6978-bench", "time": "2024-11-25T21:47:14+00:00",
        "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242", "tenantName": "Arras",
                       "applicationId": "bench-parking", "applicationName": "parking",
                       "deviceProfileName": "parking-sensor", "deviceName": "spot-7",
                       "devEui": DEV_EUI, "tags": {}},
        "devAddr": "01a2b3c4", "adr": True, "dr": 5, "fCnt": 17, "fPort": 1, "confirmed": False,
        "data": "AVo=", "object": {"occupied": True, "battery": 87, "temperature": 18.5},
        "rxInfo": [{"gatewayId": "0016c001ff10a200", "rssi": -104, "snr": 7.5,
                    "location": {"latitude": 50.29, "longitude": 2.78}},
                   {"gatewayId": "0016c001ff10a201", "rssi": -112, "snr": -3.0,
                    "location": {"latitude": 50.29, "longitude": 2.78}}],
        "txInfo": {"frequency": 868100000, "modulation": {"lora": {
            "bandwidth": 125000, "spreadingFactor": 7, "codeRate": "CR_4_5"}}},
    })  # fmt: skip


def _teleinfo2mqtt() -> bytes:
    nested: dict[str, Any] = {}
    for label, value in TIC_FLAT.items():
        raw = "" if label == "DATE" else str(value).zfill(9 if label.startswith("E") else 3)
        nested[label] = {"raw": raw, "value": value}
    return orjson.dumps(nested)


@dataclass(frozen=True)
class Case:
    """One payload kind: its name, readings per message, share of the stream, the call."""

    name: str
    readings: int
    share: float
    call: Callable[[], list[Reading]]


def cases() -> list[Case]:
    """The payload kinds timed, with the stream's share of each single-message kind."""
    ctx = DecodeContext(NOW, MacHasher(lambda at: KEY), {DEV_EUI: "spot-7"}.get,
                        {METER: "linky-1"}.get)
    share = {name: s for name, _, _, s in KINDS}

    def device(segment: str, name: str, payload: bytes, *,
               content_type: str | None = None) -> Callable[[], list[Reading]]:
        kind = KIND_BY_TOPIC[segment, name]
        return lambda: decode_device_message("dev-1", kind, payload, ctx,
                                             content_type=content_type)

    chirpstack = _chirpstack()
    flat, nested = orjson.dumps(TIC_FLAT), _teleinfo2mqtt()
    session = {"client_mac": "02:00:5e:10:00:01", "event": "disassociated", "rssi": -67,
               "session_s": 120}
    transaction = {"transaction_id": "pm-3-0000457", "amount_cents": 250, "duration_s": 3600,
                   "payment_method": "contactless"}
    wifi = {"clients": 12, "rx_bytes": 123456789, "tx_bytes": 370370367, "radio": "up"}
    status = {"battery": 0.8, "paper": 0.4, "fault": None}
    return [
        Case("native grid/reading", 1, share["native grid/reading"],
             device("grid", "reading", _native(GRID))),
        Case("native grid/reading, ISO 8601 ts", 1, 0.0,
             device("grid", "reading", _native(GRID, "2024-11-25T22:47:14.123456+01:00"))),
        Case("native parking/state", 1, share["native parking/state"],
             device("parking", "state", _native(SPOT))),
        Case("native wifi/stats", 1, share["native wifi/stats"],
             device("wifi", "stats", _native(wifi))),
        Case("native wifi/sessions", 1, share["native wifi/sessions"],
             device("wifi", "sessions", _native(session))),
        Case("native parking/transaction", 1, share["native parking/transaction"],
             device("parking", "transaction", _native(transaction))),
        Case("native parking/status", 1, share["native parking/status"],
             device("parking", "status", _native(status))),
        Case("native grid/reading, array of 10", 10, 0.0,
             device("grid", "reading", orjson.dumps([{"ts": TS + i, **GRID} for i in range(10)]))),
        Case("senml grid/reading", 1, share["senml grid/reading"],
             device("grid", "reading", _senml_grid(1))),
        Case("senml parking/state", 1, share["senml parking/state"],
             device("parking", "state", orjson.dumps(
                 [{"bn": "urn:dev:bench:spot-7:", "bt": 1732571234, "n": "occupied", "vb": True},
                  {"n": "battery", "u": "/", "v": 0.87}, {"n": "rssi", "u": "dBW", "v": -134},
                  {"n": "snr", "u": "dB", "v": 7.5}]))),
        Case("senml wifi/stats", 1, share["senml wifi/stats"],
             device("wifi", "stats", orjson.dumps(
                 [{"bn": "urn:dev:bench:ap-1:", "bt": 1732571234, "n": "clients", "u": "count",
                   "v": 12}, {"n": "rx", "u": "B", "v": 123456789},
                  {"n": "tx", "u": "B", "v": 370370367}]))),
        Case("senml parking/status", 1, share["senml parking/status"],
             device("parking", "status", orjson.dumps(
                 [{"bn": "urn:dev:bench:pm-3:", "bt": 1732571234, "n": "battery", "u": "%",
                   "v": 0.8}, {"n": "paper", "u": "/", "v": 0.4}, {"n": "fault", "vs": ""}]))),
        Case("senml grid/reading, 10 times", 10, 0.0,
             device("grid", "reading", _senml_grid(10))),
        Case("chirpstack uplink", 1, share["chirpstack uplink"],
             lambda: decode_chirpstack_uplink(chirpstack, ctx, topic_dev_eui=DEV_EUI)[2]),
        Case("tic standard (teleinfo2mqtt)", 1, share["tic standard (teleinfo2mqtt)"],
             lambda: decode_teleinfo(METER, nested, ctx)[1]),
        Case("tic standard (flat)", 1, share["tic standard (flat)"],
             lambda: decode_teleinfo(METER, flat, ctx)[1]),
    ]


def best_rate(call: Callable[[], object], seconds: float, rounds: int = 10) -> float:
    """Calls per second of the fastest of ``rounds`` rounds of about ``seconds / rounds``."""
    n = 1
    while True:  # calibrate: calls per round
        t0 = time.process_time()
        for _ in range(n):
            call()
        spent = time.process_time() - t0
        if spent >= 0.02:
            break
        n *= 4
    n = max(1, int(n * (seconds / rounds) / spent))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        for _ in range(n):
            call()
        best = min(best, (time.process_time() - t0) / n)
    return 1.0 / best


def machine() -> str:
    """The CPU model (``lscpu``), else what Python knows."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> None:
    """Time every case and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per kind (default 2)")
    args = parser.parse_args(argv)
    print(f"{machine()}, Python {platform.python_version()}, one process")
    print("| payload kind | messages/s | µs/message | readings/s |")
    print("|---|---:|---:|---:|")
    weighted = total = 0.0
    for case in cases():
        assert len(case.call()) == case.readings, case.name
        rate = best_rate(case.call, args.seconds)
        print(f"| {case.name} | {rate:,.0f} | {1e6 / rate:.2f} | "
              f"{rate * case.readings:,.0f} |")
        weighted += case.share * 1e6 / rate
        total += case.share
    print(f"\nmean over the stream's single-message mix: {weighted / total:.2f} µs/message")


if __name__ == "__main__":
    main()
