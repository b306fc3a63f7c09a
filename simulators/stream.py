"""A scenario run as one sorted stream of MQTT messages, with its ground truth.

``Simulation(scenario, registry).messages()`` yields :class:`SimMessage` in publish order
(offset seconds after the start, then generation order). Generators advance one simulated
hour at a time; a heap re-sorts what they emit (meters publish after the time they stamp,
faults delay or add messages). Everything random comes from numpy generators seeded by the
scenario seed and stable keys (family, site, device id), so the same scenario, seed and start
give the same bytes.

Faults (``faults:`` in the scenario) are drawn per clean message: ``out_of_order`` delays it
(its payload time is unchanged, so it still makes its row); ``duplicates``, ``malformed``,
``unknown_devices`` and ``oversized`` *add* a message that must not make a row, so the ground
truth stays that of the clean messages. ``clock_skew`` gives a share of devices (wifi APs,
parking meters, non-LoRaWAN spot sensors) a clock that is off by a few minutes at most: the
truth follows their clocks, as the database will.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from devices.families import Family
from devices.registry import Device, RegistryFile, Site
from simulators.base import CHUNK_S, GenContext, Generator
from simulators.encoding import Encoder
from simulators.grid import GridGenerator
from simulators.model import (
    DUPLICATE,
    MALFORMED,
    OUT_OF_ORDER,
    OVERSIZED,
    UNKNOWN_DEVICE,
    Emission,
    SimDevice,
    SimMessage,
)
from simulators.parking import ParkingGenerator
from simulators.rhythms import LocalClock
from simulators.scenario import ResolvedWindow, Scenario, ScenarioError
from simulators.truth import Truth
from simulators.wifi import WifiGenerator

log = logging.getLogger(__name__)

_SKEWABLE = {Family.WIFI_AP, Family.PARKING_METER, Family.PARKING_SPOT}


@dataclass(frozen=True)
class City:
    """The sites and active devices a scenario drives."""

    sites: dict[str, Site]
    devices: list[Device]

    @classmethod
    def from_registry(cls, reg: RegistryFile, scenario: Scenario) -> City:
        """Keep the scenario's families, active devices, at most ``max_per_site`` each."""
        spec = scenario.city
        kept: list[Device] = []
        per_site: dict[tuple[str, Family], int] = {}
        for d in sorted(reg.devices, key=lambda d: d.id):
            if not d.active or d.family not in spec.families:
                continue
            n = per_site.get((d.site_id, d.family), 0)
            limit = spec.max_per_site.get(d.family)
            if limit is not None and n >= limit:
                continue
            per_site[(d.site_id, d.family)] = n + 1
            kept.append(d)
        return cls({s.id: s for s in reg.sites}, kept)


def _resolve_window(scenario: Scenario, now: datetime | None, start: str | None
                    ) -> ResolvedWindow:
    w = scenario.resolve(now=now, start=start)
    begin = w.start.replace(second=0, microsecond=0)  # minute-aligned: the grid runs per minute
    return ResolvedWindow(begin, w.duration_s, w.tz)


class Simulation:
    """One run of a scenario over a city."""

    def __init__(self, scenario: Scenario, registry: RegistryFile, *, prefix: str = "city",
                 now: datetime | None = None, start: str | None = None) -> None:
        self.scenario = scenario
        self.prefix = prefix
        self.window = _resolve_window(scenario, now, start)
        self.city = City.from_registry(registry, scenario)
        if not self.city.devices:
            raise ScenarioError(f"scenario {scenario.name}: the city has no device to simulate")
        clock = LocalClock.build(self.window)
        self.ctx = GenContext(scenario, self.window, clock)
        self.devices = [self._sim_device(d, i) for i, d in enumerate(self.city.devices)]
        self.silences = self._silences()
        app = self.ctx.rng("chirpstack-app").bytes(16)
        self.encoder = Encoder(prefix=prefix, start_unix=self.window.start_unix,
                               tz=self.window.tz, app_id=_uuid(app))
        by_family: dict[Family, list[SimDevice]] = {f: [] for f in Family}
        for d in self.devices:
            by_family[d.family].append(d)
        capacity = {s.id: sum(1 for d in by_family[Family.PARKING_SPOT] if d.site_id == s.id)
                    for s in self.city.sites.values() if s.kind.value == "parking_zone"}
        capacity = {z: c for z, c in capacity.items() if c}
        self.truth = Truth(start_unix=self.window.start_unix, duration_s=self.window.duration_s,
                           tz=self.window.tz, capacity=capacity)
        self.generators: list[Generator] = []
        self._parking: ParkingGenerator | None = None
        self._grid: GridGenerator | None = None
        if by_family[Family.WIFI_AP]:
            self.generators.append(WifiGenerator(self.ctx, by_family[Family.WIFI_AP]))
        if by_family[Family.PARKING_SPOT] or by_family[Family.PARKING_METER]:
            tariffs = {s.id: str(s.metadata.get("tariff_zone", ""))
                       for s in self.city.sites.values()}
            self._parking = ParkingGenerator(self.ctx, by_family[Family.PARKING_SPOT],
                                             by_family[Family.PARKING_METER], tariffs)
            self.generators.append(self._parking)
        if by_family[Family.GRID_METER]:
            self._grid = GridGenerator(self.ctx, by_family[Family.GRID_METER])
            self.generators.append(self._grid)
            self.truth.grid_meters = by_family[Family.GRID_METER]
        self._fault_rng = self.ctx.rng("faults")
        self._ghosts: dict[Family, list[SimDevice]] = {}
        self._outages = [w for ev in scenario.events if ev.type == "broker_outage"
                         for w in clock.event_windows(ev)]
        self.clean = 0
        self.finished = False

    # -- setup ----------------------------------------------------------------------------
    def _sim_device(self, d: Device, index: int) -> SimDevice:
        s = self.scenario
        rng = self.ctx.rng("device", d.id)
        u = rng.random(4)
        weights = s.formats.get(d.family) or {"native": 1.0}
        fmt = _pick(weights, float(u[0]))
        if fmt == "chirpstack" and not d.dev_eui:
            fmt = "native"
        if fmt == "tic" and not d.meter_serial:
            fmt = "native"
        ts_style = _pick(dict(s.timestamps) or {"iso_utc": 1.0}, float(u[1]))
        skew = 0
        if (d.family in _SKEWABLE and fmt != "chirpstack"
                and float(u[2]) < s.faults.clock_skew):
            lo, hi = s.faults.clock_skew_s
            skew = int(rng.integers(lo, hi + 1)) * (1 if u[3] < 0.5 else -1)
        return SimDevice(d.id, d.family, d.site_id, index, d.report_interval_s, fmt, ts_style,
                         skew, d.dev_eui, d.meter_id, d.meter_serial, dict(d.metadata))

    def _silences(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        clock = self.ctx.clock
        for n, ev in enumerate(self.scenario.events):
            if ev.type != "silent_fleet":
                continue
            rng = self.ctx.rng("silent", n)
            windows = clock.event_windows(ev)
            for d in self.devices:
                if ev.site is not None and d.site_id != ev.site:
                    continue
                if ev.family is not None and d.family is not ev.family:
                    continue
                if rng.random() < ev.share:
                    out.setdefault(d.id, []).extend(windows)
        g = self.scenario.grid
        rng = self.ctx.rng("grid-gaps")
        for d in self.devices:
            if d.family is Family.GRID_METER and rng.random() < g.gap_share:
                length = int(rng.uniform(*g.gap_minutes) * 60)
                at = int(rng.integers(0, max(1, self.window.duration_s - length)))
                out.setdefault(d.id, []).append((at, at + length))
        return out

    @property
    def device_ids(self) -> list[str]:
        """Ids of the simulated devices."""
        return [d.id for d in self.devices]

    @property
    def sim_devices(self) -> list[SimDevice]:
        """The simulated devices, with their formats and clocks."""
        return list(self.devices)

    # -- the stream -----------------------------------------------------------------------
    def messages(self) -> Iterator[SimMessage]:
        """The whole stream, in publish order. Fills ``truth`` as it goes."""
        heap: list[tuple[float, int, SimMessage]] = []
        seq = 0

        def push(m: SimMessage) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (m.offset, seq, m))

        duration = self.window.duration_s
        t0 = 0
        while t0 <= duration:
            t1 = t0 + CHUNK_S
            emissions: list[Emission] = []
            for gen in self.generators:
                emissions.extend(gen.step(t0, t1))
            emissions.sort(key=lambda e: e.time_s)  # stable: generation order breaks ties
            for e in emissions:
                if self._silenced(e):
                    continue
                for m in self._messages_of(e):
                    push(m)
            while heap and heap[0][0] < t1:
                yield self._outage(heapq.heappop(heap)[2])
            t0 = t1
        while heap:
            yield self._outage(heapq.heappop(heap)[2])
        if self._parking is not None:
            self.truth.parking_rejected = dict(self._parking.rejected)
        if self._grid is not None:
            self.truth.energy = self._grid.truth
        self.finished = True

    def _silenced(self, e: Emission) -> bool:
        windows = self.silences.get(e.device.id)
        return bool(windows) and any(a <= e.time_s < b for a, b in windows or ())

    def _outage(self, m: SimMessage) -> SimMessage:
        for a, b in self._outages:
            if a <= m.offset < b:
                return SimMessage(float(b), m.topic, m.qos, m.payload, m.content_type, m.kind,
                                  m.device_id, m.fault)
        return m

    def _messages_of(self, e: Emission) -> list[SimMessage]:
        f = self.scenario.faults
        qos = self.scenario.qos
        topic, payload, ctype = self.encoder.encode(e)
        self.clean += 1
        self.truth.observe(e, self.encoder.ts_unix(e))
        u = self._fault_rng.random(5)
        offset = e.publish_s
        fault: str | None = None
        if u[0] < f.out_of_order:
            lo, hi = f.out_of_order_delay_s
            offset += int(self._fault_rng.integers(lo, hi + 1))
            fault = OUT_OF_ORDER
            self.truth.fault(OUT_OF_ORDER)
        out = [SimMessage(offset, topic, qos, payload, ctype, e.kind, e.device.id, fault)]
        if u[1] < f.duplicates:
            out.append(SimMessage(offset + int(self._fault_rng.integers(0, 6)), topic, qos,
                                  payload, ctype, e.kind, e.device.id, DUPLICATE))
        if u[2] < f.malformed:
            bad = self._malformed(payload)
            out.append(SimMessage(offset + int(self._fault_rng.integers(0, 31)), topic, qos,
                                  bad, ctype, e.kind, e.device.id, MALFORMED))
        if u[3] < f.unknown_devices:
            ghost = self._ghost(e.device)
            g_topic, g_payload, g_ctype = self.encoder.encode(e, ghost)
            out.append(SimMessage(offset, g_topic, qos, g_payload, g_ctype, e.kind, ghost.id,
                                  UNKNOWN_DEVICE))
        if u[4] < f.oversized:
            pad = max(0, f.oversized_bytes - 16)
            big = b'{"padding":"' + b"x" * pad + b'"}'
            out.append(SimMessage(offset, topic, qos, big, None, e.kind, e.device.id,
                                  OVERSIZED))
        for m in out[1:]:
            self.truth.fault(m.fault or "")
        return out

    def _malformed(self, payload: bytes) -> bytes:
        variant = int(self._fault_rng.integers(0, 4))
        if variant == 0:
            return payload[: max(1, len(payload) // 2)]  # truncated JSON
        if variant == 1:
            return b"\xff\xfe\x00" + payload[:24]  # not UTF-8
        if variant == 2:
            return b'{"ts": "not-a-time", "value": "?"}'  # wrong fields and types
        return b"null"

    def _ghost(self, dev: SimDevice) -> SimDevice:
        pool = self._ghosts.setdefault(dev.family, [])
        rng = self._fault_rng
        if len(pool) < 16 or rng.random() < 0.05:
            n = len(pool) + 1
            eui = "ffff" + "".join(f"{int(b):02x}" for b in rng.integers(0, 256, 6))
            meter = f"{int(rng.integers(10**13, 10**14 - 1)):014d}"
            pool.append(SimDevice(f"ghost-{dev.family.value.replace('_', '-')}-{n:04d}",
                                  dev.family, dev.site_id, -n, dev.report_interval_s,
                                  dev.format, dev.ts_style, 0, eui, meter, meter[1:13]))
            return pool[-1]
        return pool[int(rng.integers(len(pool)))]

    # -- truth ----------------------------------------------------------------------------
    def truth_document(self) -> dict[str, Any]:
        """The ground truth; the stream must have been consumed to its end."""
        if not self.finished:
            for _ in self.messages():
                pass
        meta = {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(),
            "timezone": str(self.window.tz),
            "devices": len(self.devices),
        }
        return self.truth.result(meta)

    def describe(self) -> str:
        """One line about the run."""
        counts: dict[str, int] = {}
        for d in self.devices:
            counts[d.family.value] = counts.get(d.family.value, 0) + 1
        fams = ", ".join(f"{n} {f}" for f, n in sorted(counts.items()))
        end = self.window.end
        return (f"scenario {self.scenario.name} (seed {self.scenario.seed}): "
                f"{self.window.start.isoformat()} -> {end.isoformat()}, {fams}")


def _pick(weights: dict[Any, float], u: float) -> str:
    total = sum(weights.values())
    acc = 0.0
    last = ""
    for key, w in weights.items():
        last = str(key)
        acc += w / total
        if u < acc:
            return last
    return last


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def utc(unix: float) -> datetime:
    """An aware UTC datetime of Unix seconds."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=unix)


__all__ = ["City", "Simulation", "utc"]

_ = np  # numpy generators come through GenContext
