"""The benchmark stream: a fixed, deterministic mix of every family and payload format.

Generated once from a seed (numpy) into ``bench/work/stream-<key>/`` and reused. Each device
belongs to one publisher process (``device index % publishers``) so that its readings' times
only ever increase; one file per publisher, messages in stream order.

Native JSON messages (about 85 %) carry ``ts`` = the publisher's wall clock at publish time,
with microseconds: their payload is a template with a ``\\x00`` placeholder per ``ts``, filled
in by the publisher. That is what publish-to-commit latency is measured on. Every other
format carries a fixed time of its own (a per-device slot, 7 s apart, starting three days
before generation), so it can never collide with a native reading.

SenML packs, ChirpStack uplinks and Linky TIC frames address devices through the bench
database's registry, whose DevEUIs and meter serials are rewritten (see ``bench_ids``) so that
another ingestor on the shared broker never takes them for its own demo-city devices.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import orjson

log = logging.getLogger(__name__)

STREAM_VERSION: Final = 5
PREFIX: Final = "bench"
#: The bridges' topics (ChirpStack, Linky TIC) are under their own level, so that no
#: other ingestor on the shared broker (``make demo``'s) subscribes to them.
BRIDGE_PREFIX: Final = "bench-lns"
SLOT_S: Final = 7
TS_LEN: Final = 17  # b"1732571234.123456"
PLACEHOLDER: Final = b"\x00"
MAGIC: Final = b"BEFFROI-BENCH-STREAM\n"
_REC: Final = struct.Struct("<BBBHI")  # kind, ts slots, readings, topic length, payload length
PARIS: Final = ZoneInfo("Europe/Paris")
DEMO_CITY: Final = Path(__file__).resolve().parents[2] / "devices" / "data" / "demo-city.json"

# (name, format, family, share of messages)
KINDS: Final[tuple[tuple[str, str, str, float], ...]] = (
    ("native grid/reading", "native", "grid_meter", 0.45),
    ("native parking/state", "native", "parking_spot", 0.24),
    ("native wifi/stats", "native", "wifi_ap", 0.03),
    ("native wifi/sessions", "native", "wifi_ap", 0.09),
    ("native parking/transaction", "native", "parking_meter", 0.02),
    ("native parking/status", "native", "parking_meter", 0.02),
    ("senml grid/reading", "senml", "grid_meter", 0.03),
    ("senml parking/state", "senml", "parking_spot", 0.015),
    ("senml wifi/stats", "senml", "wifi_ap", 0.01),
    ("senml parking/status", "senml", "parking_meter", 0.005),
    ("chirpstack uplink", "chirpstack", "parking_spot", 0.05),
    ("tic standard (teleinfo2mqtt)", "tic", "grid_meter", 0.02),
    ("tic standard (flat)", "tic", "grid_meter", 0.015),
    ("tic historic", "tic", "grid_meter", 0.005),
)
NATIVE_BATCH_SHARE: Final = 0.03  # native grid/state messages sent as an array of 2-4 readings
SENML_TWO_TIMES_SHARE: Final = 0.2  # SenML packs holding two time groups (two readings)


@dataclass(frozen=True)
class Device:
    """A demo-city device as the bench sees it."""

    index: int
    id: str
    family: str
    dev_eui: str | None
    meter_serial: str | None


def bench_ids(index: int, family: str) -> tuple[str | None, str | None]:
    """DevEUI and meter serial of the ``index``-th demo-city device in the bench database."""
    if family == "parking_spot":
        return f"beef{index:012x}", None
    if family == "grid_meter":
        return None, f"99{index:010d}"
    return None, None


def demo_devices(path: Path = DEMO_CITY) -> list[Device]:
    """The demo city's devices in file order, with the bench's DevEUIs and meter serials."""
    raw = json.loads(path.read_text())
    out = []
    for i, d in enumerate(raw["devices"]):
        dev_eui, meter_serial = bench_ids(i, d["family"])
        out.append(Device(i, d["id"], d["family"], dev_eui, meter_serial))
    return out


@dataclass
class Manifest:
    """What was generated: counts by kind and table, per publisher; the fixed time base."""

    version: int
    seed: int
    messages: int
    publishers: int
    base_time: float
    generated_at: float
    readings: int = 0
    native_messages: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_format: dict[str, int] = field(default_factory=dict)
    readings_by_format: dict[str, int] = field(default_factory=dict)
    per_publisher: list[int] = field(default_factory=list)
    bytes_payload: int = 0

    def to_json(self) -> dict[str, Any]:
        """As a JSON object."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Record:
    """One message: ``parts`` joined by ``ts`` strings (``len(parts) - 1`` of them)."""

    kind: int
    readings: int
    topic: bytes
    parts: tuple[bytes, ...]

    @property
    def slots(self) -> int:
        """Number of ``ts`` placeholders."""
        return len(self.parts) - 1


def ts_bytes(t_us: int) -> bytes:
    """Unix seconds with microseconds, always 17 bytes for the next few centuries."""
    s, us = divmod(t_us, 1_000_000)
    return b"%d.%06d" % (s, us)


def fill(rec: Record, t_us: int) -> bytes:
    """The payload with its ``ts`` slots set to ``t_us - (k-1) ... t_us`` microseconds."""
    parts = rec.parts
    k = len(parts) - 1
    if k == 0:
        return parts[0]
    if k == 1:
        return parts[0] + ts_bytes(t_us) + parts[1]
    out = [parts[0]]
    for j in range(k):
        out.append(ts_bytes(t_us - (k - 1 - j)))
        out.append(parts[j + 1])
    return b"".join(out)


# -- generation ---------------------------------------------------------------------------


def stream_dir(work: Path, messages: int, seed: int, publishers: int) -> Path:
    """Where a stream with these parameters lives."""
    city = hashlib.sha256(DEMO_CITY.read_bytes()).hexdigest()
    key = hashlib.sha256(f"{STREAM_VERSION}:{city}".encode()).hexdigest()[:10]
    return work / f"stream-{messages}-{seed}-{publishers}p-{key}"


def ensure_stream(work: Path, *, messages: int, seed: int,
                  publishers: int) -> tuple[Path, Manifest]:
    """Generate the stream unless it exists and is recent enough; return its dir and manifest."""
    d = stream_dir(work, messages, seed, publishers)
    mf = d / "manifest.json"
    if mf.exists():
        manifest = Manifest(**json.loads(mf.read_text()))
        age_days = (time.time() - manifest.base_time) / 86400
        if age_days < 300:  # the ingestor rejects readings older than its 400-day window
            log.info("stream: reusing %s (%d messages, %d readings)", d.name,
                     manifest.messages, manifest.readings)
            return d, manifest
        log.info("stream: %s is %.0f days old; regenerating", d.name, age_days)
    d.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = _generate(d, messages=messages, seed=seed, publishers=publishers)
    mf.write_text(json.dumps(manifest.to_json(), indent=2))
    log.info("stream: generated %d messages / %d readings in %.1fs into %s", manifest.messages,
             manifest.readings, time.perf_counter() - t0, d)
    return d, manifest


def _native_template(obj: dict[str, Any]) -> bytes:
    rest = orjson.dumps(obj)
    return b'{"ts":' + PLACEHOLDER + (b"," + rest[1:] if len(rest) > 2 else b"}")


def _mac(rng: np.random.Generator) -> str:
    b = rng.integers(0, 256, 6)
    b[0] = (int(b[0]) & 0xFC) | 0x02  # locally administered, unicast: never a real vendor's
    return ":".join(f"{int(x):02x}" for x in b)


class _Gen:
    """Stateful payload builders (counters per device)."""

    def __init__(self, rng: np.random.Generator, devices: list[Device], base_us: int) -> None:
        self.rng = rng
        self.base_us = base_us
        self.slot = [0] * len(devices)
        self.energy = [int(x) for x in rng.integers(1_000_000, 40_000_000, len(devices))]
        self.tx_seq = [0] * len(devices)
        self.rx = [int(x) for x in rng.integers(10**8, 10**10, len(devices))]

    def next_time(self, d: Device, n: int = 1) -> list[datetime]:
        """``n`` fixed, per-device unique times (non-native formats)."""
        out = []
        for _ in range(n):
            s = self.slot[d.index]
            self.slot[d.index] = s + 1
            out.append(datetime.fromtimestamp((self.base_us // 1_000_000) + s * SLOT_S, UTC))
        return out

    def grid_values(self, d: Device) -> dict[str, Any]:
        r = self.rng
        self.energy[d.index] += int(r.integers(0, 400))
        p = round(float(r.uniform(80, 6000)), 1)
        v = round(float(r.normal(231, 2.5)), 1)
        return {"energy_import_wh": self.energy[d.index], "energy_export_wh": 0,
                "power_w": p, "voltage_l1_v": v, "current_l1_a": round(p / v, 2),
                "frequency_hz": round(float(r.normal(50, 0.02)), 2)}

    def spot_values(self) -> dict[str, Any]:
        r = self.rng
        return {"state": "occupied" if r.random() < 0.6 else "free",
                "battery": round(float(r.uniform(0.2, 1.0)), 2),
                "rssi": int(r.integers(-125, -70)), "snr": round(float(r.uniform(-10, 12)), 1)}

    def native(self, kind: str, d: Device) -> tuple[bytes, int]:
        r = self.rng
        if kind in ("native grid/reading", "native parking/state"):
            n = int(r.integers(2, 5)) if r.random() < NATIVE_BATCH_SHARE else 1
            items = [self.grid_values(d) if d.family == "grid_meter" else self.spot_values()
                     for _ in range(n)]
            if n == 1:
                return _native_template(items[0]), 1
            return b"[" + b",".join(_native_template(i) for i in items) + b"]", n
        if kind == "native wifi/stats":
            self.rx[d.index] += int(r.integers(10_000, 5_000_000))
            obj: dict[str, Any] = {"clients": int(r.integers(0, 120)),
                                   "rx_bytes": self.rx[d.index],
                                   "tx_bytes": self.rx[d.index] * 3, "radio": "up"}
        elif kind == "native wifi/sessions":
            ev = "associated" if r.random() < 0.5 else "disassociated"
            obj = {"client_mac": _mac(r), "event": ev, "rssi": int(r.integers(-90, -30))}
            if ev == "disassociated":
                obj["session_s"] = int(r.integers(5, 7200))
        elif kind == "native parking/transaction":
            self.tx_seq[d.index] += 1
            obj = {"transaction_id": f"{d.id}-{self.tx_seq[d.index]:07d}",
                   "amount_cents": int(r.integers(50, 1200)),
                   "duration_s": int(r.integers(600, 14400)),
                   "payment_method": ("card", "contactless", "coins", "mobile")[
                       int(r.integers(0, 4))]}
        elif kind == "native parking/status":
            obj = {"battery": round(float(r.uniform(0.3, 1)), 2),
                   "paper": round(float(r.uniform(0, 1)), 2), "fault": None}
        else:
            raise ValueError(kind)
        return _native_template(obj), 1

    def senml(self, kind: str, d: Device) -> tuple[bytes, int]:
        r = self.rng
        groups = 2 if r.random() < SENML_TWO_TIMES_SHARE else 1
        times = self.next_time(d, groups)
        bt = int(times[0].timestamp())
        pack: list[dict[str, Any]] = []
        for g in range(groups):
            recs: list[dict[str, Any]]
            if kind == "senml grid/reading":
                v = self.grid_values(d)
                recs = [{"n": "energy_import", "u": "kWh", "v": v["energy_import_wh"] / 1000},
                        {"n": "power", "u": "W", "v": v["power_w"]},
                        {"n": "voltage_l1", "u": "V", "v": v["voltage_l1_v"]},
                        {"n": "current_l1", "u": "A", "v": v["current_l1_a"]}]
            elif kind == "senml parking/state":
                s = self.spot_values()
                recs = [{"n": "occupied", "vb": s["state"] == "occupied"},
                        {"n": "battery", "u": "/", "v": s["battery"]},
                        {"n": "rssi", "u": "dBW", "v": s["rssi"] - 30},
                        {"n": "snr", "u": "dB", "v": s["snr"]}]
            elif kind == "senml wifi/stats":
                self.rx[d.index] += int(r.integers(10_000, 5_000_000))
                recs = [{"n": "clients", "u": "count", "v": int(r.integers(0, 120))},
                        {"n": "rx", "u": "B", "v": self.rx[d.index]},
                        {"n": "tx", "u": "B", "v": self.rx[d.index] * 3}]
            elif kind == "senml parking/status":
                recs = [{"n": "battery", "u": "%", "v": round(float(r.uniform(0.3, 1)), 2)},
                        {"n": "paper", "u": "/", "v": round(float(r.uniform(0, 1)), 2)},
                        {"n": "fault", "vs": ""}]
            else:
                raise ValueError(kind)
            if g > 0:
                for rec in recs:
                    rec["t"] = int(times[g].timestamp()) - bt
            pack.extend(recs)
        pack[0] = {"bn": f"urn:dev:bench:{d.id}:", "bt": bt, **pack[0]}
        return orjson.dumps(pack), groups

    def chirpstack(self, d: Device) -> bytes:
        r = self.rng
        (t,) = self.next_time(d)
        s = self.spot_values()
        obj: dict[str, Any] = ({"occupied": s["state"] == "occupied"} if r.random() < 0.8
                               else {"status": s["state"]})
        obj["battery"] = round(s["battery"] * 100) if r.random() < 0.3 else s["battery"]
        obj["temperature"] = round(float(r.uniform(-5, 35)), 1)
        rx = [{"gatewayId": f"0016c001ff10a2{g:02x}", "rssi": int(r.integers(-125, -70)),
               "snr": round(float(r.uniform(-10, 12)), 1),
               "location": {"latitude": 50.29, "longitude": 2.78}}
              for g in range(int(r.integers(1, 4)))]
        uplink = {
            "deduplicationId": f"{int(r.integers(0, 2**63)):016x}-bench",
            "time": t.isoformat(),
            "deviceInfo": {"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
                           "tenantName": "Arras", "applicationId": "bench-parking",
                           "applicationName": "parking", "deviceProfileName": "parking-sensor",
                           "deviceName": d.id, "devEui": d.dev_eui, "tags": {}},
            "devAddr": f"{int(r.integers(0, 2**31)):08x}", "adr": True, "dr": 5,
            "fCnt": self.slot[d.index], "fPort": 1, "confirmed": False,
            "data": "AVo=", "object": obj, "rxInfo": rx,
            "txInfo": {"frequency": 868100000,
                       "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 7,
                                               "codeRate": "CR_4_5"}}},
        }
        return orjson.dumps(uplink)

    def tic(self, kind: str, d: Device) -> bytes:
        v = self.grid_values(d)
        assert d.meter_serial is not None
        if kind == "tic historic":
            frame: dict[str, Any] = {"ADCO": d.meter_serial, "OPTARIF": "BASE", "ISOUSC": 45,
                                     "BASE": v["energy_import_wh"], "PTEC": "TH..",
                                     "IINST": round(v["current_l1_a"]), "IMAX": 90,
                                     "PAPP": round(v["power_w"]), "MOTDETAT": "000000"}
            return orjson.dumps(frame)
        (t,) = self.next_time(d)
        local = t.astimezone(PARIS)
        off = local.utcoffset()
        flag = "E" if off == timedelta(hours=2) else "H"
        date = flag + local.strftime("%y%m%d%H%M%S")
        values: dict[str, Any] = {
            "ADSC": d.meter_serial, "VTIC": "02", "DATE": date, "NGTF": "BASE",
            "EAST": v["energy_import_wh"], "EASF01": v["energy_import_wh"],
            "IRMS1": round(v["current_l1_a"]), "URMS1": round(v["voltage_l1_v"]),
            "PREF": 9, "SINSTS": round(v["power_w"]), "SMAXSN": round(v["power_w"] * 1.4),
            "NTARF": 1}
        if kind == "tic standard (flat)":
            return orjson.dumps(values)
        nested: dict[str, Any] = {}
        for label, value in values.items():
            if label == "DATE":
                nested[label] = {"raw": "", "value": value}
            else:
                raw = str(value).zfill(9 if label.startswith("E") else 3)
                nested[label] = {"raw": raw, "value": value}
        return orjson.dumps(nested)


def _generate(d: Path, *, messages: int, seed: int, publishers: int) -> Manifest:
    rng = np.random.default_rng(seed)
    devices = demo_devices()
    by_family: dict[str, list[Device]] = {}
    for dev in devices:
        by_family.setdefault(dev.family, []).append(dev)
    shares = np.array([k[3] for k in KINDS])
    kinds = rng.choice(len(KINDS), size=messages, p=shares / shares.sum())
    picks = rng.random(messages)
    now = time.time()
    base = int(now // 86400 * 86400 - 3 * 86400)
    gen = _Gen(rng, devices, base * 1_000_000)
    manifest = Manifest(version=STREAM_VERSION, seed=seed, messages=messages,
                        publishers=publishers, base_time=base, generated_at=now,
                        per_publisher=[0] * publishers)
    files = [(d / f"pub-{i}.bin").open("wb") for i in range(publishers)]
    try:
        for f in files:
            f.write(MAGIC)
        for i in range(messages):
            k = int(kinds[i])
            name, fmt, family, _ = KINDS[k]
            fam = by_family[family]
            dev = fam[int(picks[i] * len(fam))]
            if fmt == "native":
                payload, n = gen.native(name, dev)
                topic = f"{PREFIX}/{_segment(name)}/{dev.id}/{name.split('/')[-1]}"
            elif fmt == "senml":
                payload, n = gen.senml(name, dev)
                topic = f"{PREFIX}/{_segment(name)}/{dev.id}/{name.split('/')[-1]}"
            elif fmt == "chirpstack":
                payload, n = gen.chirpstack(dev), 1
                topic = f"{BRIDGE_PREFIX}/application/bench-parking/device/{dev.dev_eui}/event/up"
            else:
                payload, n = gen.tic(name, dev), 1
                topic = f"{BRIDGE_PREFIX}/teleinfo/{dev.meter_serial}"
            slots = payload.count(PLACEHOLDER)
            tb = topic.encode()
            p = dev.index % publishers
            files[p].write(_REC.pack(k, slots, n, len(tb), len(payload)) + tb + payload)
            manifest.per_publisher[p] += 1
            manifest.readings += n
            manifest.by_kind[name] = manifest.by_kind.get(name, 0) + 1
            manifest.by_format[fmt] = manifest.by_format.get(fmt, 0) + 1
            manifest.readings_by_format[fmt] = manifest.readings_by_format.get(fmt, 0) + n
            manifest.bytes_payload += len(payload) + slots * (TS_LEN - 1)
            if fmt == "native":
                manifest.native_messages += 1
    finally:
        for f in files:
            f.close()
    return manifest


def _segment(kind_name: str) -> str:
    return kind_name.split()[1].split("/")[0]


# -- reading ------------------------------------------------------------------------------


def read_records(path: Path, limit: int | None = None, *, skip: int = 0) -> list[Record]:
    """The records of one publisher file (the first ``limit`` of them after ``skip``)."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a bench stream file")
    out: list[Record] = []
    pos = len(MAGIC)
    size = _REC.size
    unpack = _REC.unpack_from
    end = len(data)
    while pos < end and skip > 0:
        _kind, _slots, _n, tl, pl = unpack(data, pos)
        pos += size + tl + pl
        skip -= 1
    while pos < end and (limit is None or len(out) < limit):
        kind, _slots, n, tl, pl = unpack(data, pos)
        pos += size
        topic = data[pos:pos + tl]
        pos += tl
        payload = data[pos:pos + pl]
        pos += pl
        out.append(Record(kind, n, topic, tuple(payload.split(PLACEHOLDER))))
    return out


def publisher_files(d: Path, publishers: int) -> list[Path]:
    """The stream's per-publisher files."""
    return [d / f"pub-{i}.bin" for i in range(publishers)]


def iter_filled(records: list[Record], start_us: int) -> Iterator[tuple[bytes, bytes]]:
    """(topic, payload) with synthetic, strictly increasing ``ts`` values (decoding offline)."""
    last = start_us
    for rec in records:
        k = rec.slots
        last += max(k, 1) * 1000
        yield rec.topic, fill(rec, last)
