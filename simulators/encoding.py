"""From a clean reading to MQTT topic and payload bytes, in each format the ingestor reads.

- ``native``: Beffroi's JSON on ``{prefix}/{segment}/{id}/{message}``;
- ``senml``: an RFC 8428 pack (content type ``application/senml+json``) on the same topic;
  wifi sessions stay native (a MAC must not travel in SenML names);
- ``chirpstack``: a ChirpStack v4 uplink event on ``application/<app>/device/<deveui>/event/up``
  (parking spot sensors only);
- ``tic``: a teleinfo2mqtt Linky frame on ``teleinfo/<meter id>`` (grid meters only).

Output is a pure function of the inputs and the encoder's counters, so streams are
byte-for-byte reproducible (orjson keeps key order; floats are rounded first).
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from simulators.model import Emission, SimDevice

SENML_CONTENT_TYPE = "application/senml+json"
_SEASON = {3600: "H", 7200: "E"}  # TIC DATE flag from the UTC offset (hiver / été)


class Encoder:
    """Encodes emissions of one run; holds the per-device LoRaWAN frame counters."""

    def __init__(self, *, prefix: str, start_unix: int, tz: ZoneInfo, app_id: str) -> None:
        self.prefix = prefix
        self.start_unix = start_unix
        self.tz = tz
        self.app_id = app_id
        self._fcnt: dict[str, int] = {}

    def ts_unix(self, e: Emission) -> int:
        """The time the device writes in its payload (its clock skew included)."""
        return self.start_unix + e.time_s + e.device.skew_s

    def encode(self, e: Emission, device: SimDevice | None = None) -> tuple[str, bytes, str | None]:
        """Topic, payload and content type of ``e`` (as sent by ``device``, default its own)."""
        dev = device or e.device
        fmt = dev.format
        if e.kind == "wifi/sessions" and fmt == "senml":
            fmt = "native"
        if fmt == "chirpstack" and e.kind == "parking/state":
            return self._chirpstack(e, dev)
        if fmt == "tic" and e.kind == "grid/reading":
            return self._tic(e, dev)
        segment, name = e.kind.split("/")
        topic = f"{self.prefix}/{segment}/{dev.id}/{name}"
        if fmt == "senml":
            return topic, self._senml(e, dev), SENML_CONTENT_TYPE
        return topic, self._native(e, dev), None

    # -- formats --------------------------------------------------------------------------
    def _ts(self, e: Emission, style: str) -> str | int:
        t = self.ts_unix(e)
        if style == "unix":
            return t
        when = datetime.fromtimestamp(t, UTC)
        if style == "iso_local":
            return when.astimezone(self.tz).isoformat()
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _native(self, e: Emission, dev: SimDevice) -> bytes:
        body: dict[str, Any] = {"ts": self._ts(e, dev.ts_style)}
        for key, value in e.values.items():
            if value is not None or key == "fault":
                body[key] = value
        return orjson.dumps(body)

    def _senml(self, e: Emission, dev: SimDevice) -> bytes:
        v = e.values
        recs: list[dict[str, Any]] = []
        if e.kind == "wifi/stats":
            recs = [{"n": "clients", "u": "count", "v": v["clients"]},
                    {"n": "rx", "u": "B", "v": v["rx_bytes"]},
                    {"n": "tx", "u": "B", "v": v["tx_bytes"]},
                    {"n": "radio", "vb": v["radio"] == "up"}]
        elif e.kind == "parking/state":
            recs = [{"n": "occupied", "vb": v["state"] == "occupied"},
                    {"n": "battery", "u": "/", "v": v["battery"]},
                    {"n": "rssi", "u": "dBm", "v": v["rssi"]},
                    {"n": "snr", "u": "dB", "v": v["snr"]}]
        elif e.kind == "parking/transaction":
            recs = [{"n": "transaction_id", "vs": v["transaction_id"]},
                    {"n": "amount", "u": "EUR", "v": v["amount_cents"] / 100},
                    {"n": "duration", "u": "s", "v": v["duration_s"]},
                    {"n": "payment_method", "vs": v["payment_method"]}]
        elif e.kind == "parking/status":
            recs = [{"n": "battery", "u": "/", "v": v["battery"]},
                    {"n": "paper", "u": "/", "v": v["paper"]},
                    {"n": "fault", "vs": v["fault"] or ""}]
        elif e.kind == "grid/reading":
            units = {"energy_import_wh": ("energy_import", "Wh"),
                     "energy_export_wh": ("energy_export", "Wh"),
                     "power_w": ("power", "W"), "frequency_hz": ("frequency", "Hz")}
            for p in (1, 2, 3):
                units[f"voltage_l{p}_v"] = (f"voltage_l{p}", "V")
                units[f"current_l{p}_a"] = (f"current_l{p}", "A")
            recs = [{"n": units[k][0], "u": units[k][1], "v": val}
                    for k, val in v.items() if val is not None]
        else:  # pragma: no cover - sessions are re-routed to native above
            raise ValueError(f"no SenML form for {e.kind}")
        recs[0] = {"bn": f"urn:dev:id:{dev.id}:", "bt": self.ts_unix(e), **recs[0]}
        return orjson.dumps(recs)

    def _chirpstack(self, e: Emission, dev: SimDevice) -> tuple[str, bytes, str | None]:
        dev_eui = dev.dev_eui or hashlib.sha256(dev.id.encode()).hexdigest()[:16]
        fcnt = self._fcnt.get(dev.id, 0)
        self._fcnt[dev.id] = fcnt + 1
        v = e.values
        occupied = v["state"] == "occupied"
        battery_pct = round(v["battery"] * 100) if v["battery"] is not None else 0
        raw = bytes((1 if occupied else 0, battery_pct & 0xFF))
        seed = f"{self.app_id}/{dev_eui}/{fcnt}".encode()
        dedup = uuid.UUID(bytes=hashlib.sha256(seed).digest()[:16], version=4)
        gateway = "a84041ffff1" + hashlib.sha256(dev.site_id.encode()).hexdigest()[:5]
        when = datetime.fromtimestamp(self.ts_unix(e), UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        body = {
            "deduplicationId": str(dedup),
            "time": when,
            "deviceInfo": {
                "tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                "tenantName": "Ville",
                "applicationId": self.app_id,
                "applicationName": "stationnement",
                "deviceProfileId": "3d2b6a52-6d0f-4b6c-9d1e-0c6b1e5a0c11",
                "deviceProfileName": "capteur-place",
                "deviceName": dev.id,
                "devEui": dev_eui,
                "tags": {"site": dev.site_id},
            },
            "devAddr": dev_eui[-8:],
            "adr": True,
            "dr": 5,
            "fCnt": fcnt,
            "fPort": 2,
            "confirmed": False,
            "data": base64.b64encode(raw).decode(),
            "object": {"occupied": occupied, "battery": v["battery"]},
            "rxInfo": [{"gatewayId": gateway, "uplinkId": fcnt % 65536, "rssi": v["rssi"],
                        "snr": v["snr"], "channel": fcnt % 8, "context": "AAAAAA=="}],
            "txInfo": {"frequency": 868100000 + 200000 * (fcnt % 3),
                       "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9,
                                               "codeRate": "CR_4_5"}}},
        }
        topic = f"application/{self.app_id}/device/{dev_eui}/event/up"
        return topic, orjson.dumps(body), None

    def _tic(self, e: Emission, dev: SimDevice) -> tuple[str, bytes, str | None]:
        meter = dev.meter_serial or "0" * 12
        v = e.values
        local = datetime.fromtimestamp(self.ts_unix(e), UTC).astimezone(self.tz)
        offset = local.utcoffset()
        flag = _SEASON.get(int(offset.total_seconds()) if offset else 0, "h")
        # teleinfo2mqtt writes the meter's local clock fields as if they were UTC and the
        # season apart; a flag it cannot parse (lower case) stays as raw text here.
        date: dict[str, Any] = {"raw": flag + local.strftime("%y%m%d%H%M%S"), "value": ""}
        if flag in "EH":
            date = {"raw": "", "value": "", "timestamp": {
                "date": local.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "dst": "summer" if flag == "E" else "winter"}}
        frame: dict[str, Any] = {
            "ADSC": {"raw": meter, "value": int(meter)},
            "VTIC": {"raw": "02", "value": 2},
            "DATE": date,
            "NGTF": {"raw": "     BASE     ", "value": "BASE"},
        }
        if dev.meter_id:
            frame["PRM"] = {"raw": dev.meter_id, "value": int(dev.meter_id)}

        def put(label: str, value: int, width: int) -> None:
            frame[label] = {"raw": f"{value:0{width}d}", "value": value}

        if v.get("energy_import_wh") is not None:
            put("EAST", v["energy_import_wh"], 9)
        if v.get("energy_export_wh") is not None:
            put("EAIT", v["energy_export_wh"], 9)
        for p in (1, 2, 3):
            if v.get(f"current_l{p}_a") is not None:
                put(f"IRMS{p}", round(v[f"current_l{p}_a"]), 3)
            if v.get(f"voltage_l{p}_v") is not None:
                put(f"URMS{p}", round(v[f"voltage_l{p}_v"]), 3)
        power = v.get("power_w")
        if power is not None:
            put("SINSTS", max(0, round(power)), 5)
            if power < 0:
                put("SINSTI", round(-power), 5)
        return f"teleinfo/{meter}", orjson.dumps(frame), None


__all__ = ["SENML_CONTENT_TYPE", "Encoder"]
