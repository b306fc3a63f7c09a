"""Parking zones: spot sensors and parking meters (horodateurs).

Cars arrive at a time-varying rate (the zone's daily rhythm, times market/concert factors
of a square with the same id), take a random free spot, stay a log-normal duration (long
for evening arrivals: residents), and leave. A full zone turns arrivals away. Each spot
sensor reports its state on every change (after a detection delay) and as a heartbeat one
report interval after its last uplink (one uplink when both fall on the same second);
batteries decay; a few sensors are stuck on one state or silent. During paid hours
(configurable days, periods and tariffs) most drivers pay at one of the zone's meters a few
minutes after parking; meters report battery, paper and faults.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulators.base import GenContext
from simulators.model import Emission, SimDevice
from simulators.rhythms import PARKING
from simulators.scenario import paid_periods, paid_weekdays

_METHOD_WEIGHTS = {"card": 0.4, "contactless": 0.35, "coins": 0.25}
_STEP_S = 900  # parking time is sold by quarter hours


@dataclass
class _Spot:
    dev: SimDevice
    occupied: bool = False
    busy_until: int = -1  # last uplink scheduled: the spot is not reassigned before
    next_hb: int = 0
    last_uplink: int = -1  # a sensor sends at most one uplink per second
    battery: float = 1.0
    rssi: float = -100.0
    snr: float = 5.0
    stuck: str | None = None
    silent: bool = False


@dataclass
class _Meter:
    dev: SimDevice
    seq: int = 0
    battery: float = 1.0
    paper: float = 1.0
    paper_out_since: int | None = None
    jam_until: int = -1
    methods: tuple[str, ...] = ("card", "contactless", "coins")


class ParkingGenerator:
    """All parking zones of a run."""

    def __init__(self, ctx: GenContext, spots: list[SimDevice], meters: list[SimDevice],
                 tariff_zone: dict[str, str]) -> None:
        self.ctx = ctx
        self.spec = spec = ctx.scenario.parking
        self.periods = paid_periods(spec)
        self.paid_days = paid_weekdays(spec)
        self.profile = ctx.clock.profile(PARKING)
        zones = sorted({d.site_id for d in spots} | {d.site_id for d in meters})
        self.spots: dict[str, list[_Spot]] = {z: [] for z in zones}
        self.meters: dict[str, list[_Meter]] = {z: [] for z in zones}
        self.rejected: dict[str, int] = dict.fromkeys(zones, 0)
        self.tariff: dict[str, int] = {}
        self._heap: dict[str, list[tuple[int, int, str, tuple[Any, ...]]]] = {}
        self._rng: dict[str, np.random.Generator] = {}
        self._rate: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self._seq = 0
        for d in spots:
            self.spots[d.site_id].append(_Spot(d))
        for d in meters:
            allowed = tuple(m for m in d.metadata.get("payment", _METHOD_WEIGHTS)
                            if m in _METHOD_WEIGHTS) or tuple(_METHOD_WEIGHTS)
            self.meters[d.site_id].append(_Meter(d, methods=allowed))
        start_sod = int(ctx.clock.sod[0])
        night = start_sod < 7 * 3600 or start_sod >= 20 * 3600
        for z in zones:
            rng = self._rng[z] = ctx.rng("parking", z)
            self._heap[z] = []
            tz_name = tariff_zone.get(z, "")
            self.tariff[z] = spec.tariff_cents_per_hour.get(
                tz_name, spec.tariff_cents_per_hour.get("", 150))
            n = len(self.spots[z])
            self._rate[z] = (n * spec.arrivals_per_spot_hour * self.profile
                             * ctx.footfall_factor(z))
            occ0 = spec.night_occupancy if night else min(0.95, spec.night_occupancy + 0.3)
            for s in self.spots[z]:
                s.battery = float(rng.uniform(0.5, 1.0))
                s.rssi = float(rng.uniform(-120, -85))
                s.snr = float(rng.uniform(-8, 10))
                r = rng.random()
                if r < spec.silent_share:
                    s.silent = True
                elif r < spec.silent_share + spec.stuck_share:
                    s.stuck = "occupied" if rng.random() < 0.5 else "free"
                if rng.random() < occ0:
                    s.occupied = True
                    stay = self._duration(rng, evening=True) * float(rng.uniform(0.05, 1.0))
                    self._push(z, int(stay), "depart", (s,))
                first = int(rng.integers(0, 60))
                s.next_hb = first
                s.busy_until = first
                self._push(z, first, "hb", (s, first))
            for m in self.meters[z]:
                m.battery = float(rng.uniform(0.6, 1.0))
                m.paper = float(rng.uniform(0.2, 1.0))
                interval = m.dev.report_interval_s
                self._push(z, int(rng.integers(0, max(1, min(interval, 300)))), "status", (m,))
                faults = int(rng.poisson(spec.fault_per_meter_day * ctx.window.duration_s
                                         / 86400))
                for _ in range(faults):
                    at = int(rng.integers(0, ctx.window.duration_s))
                    self._push(z, at, "jam", (m, at + int(rng.uniform(1, 4) * 3600)))

    def _push(self, zone: str, t: int, what: str, args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap[zone], (t, self._seq, what, args))

    def _duration(self, rng: np.random.Generator, *, evening: bool) -> float:
        spec = self.spec
        median = spec.evening_duration_median_s if evening else spec.duration_median_s
        d = math.exp(math.log(median) + spec.duration_sigma * rng.normal())
        return min(16 * 3600.0, max(300.0, d))

    def paid_at(self, t: int) -> bool:
        """True when parking is paid at ``t`` seconds after the start."""
        k = min(t // 60, len(self.ctx.clock.sod) - 1)
        if int(self.ctx.clock.weekday[k]) not in self.paid_days:
            return False
        sod = int(self.ctx.clock.sod[k]) + t % 60
        return any(a <= sod < b for a, b in self.periods)

    def step(self, t0: int, t1: int) -> list[Emission]:
        """Readings of ``[t0, t1)``."""
        out: list[Emission] = []
        end = self.ctx.window.duration_s
        for z, heap in self._heap.items():
            rng = self._rng[z]
            rate = self._rate[z]
            for minute in range(t0 // 60, (t1 + 59) // 60):
                if minute >= len(rate) or minute * 60 >= end:
                    break
                n = int(rng.poisson(rate[minute] / 60.0))
                for s in np.sort(rng.integers(0, 60, n)):
                    self._push(z, minute * 60 + int(s), "arrive", ())
            while heap and heap[0][0] < t1:
                t, _, what, args = heapq.heappop(heap)
                if t < end:
                    self._handle(z, rng, t, what, args, out)
        return out

    # -- events -------------------------------------------------------------------------
    def _handle(self, z: str, rng: np.random.Generator, t: int, what: str,
                args: tuple[Any, ...], out: list[Emission]) -> None:
        spec = self.spec
        if what == "arrive":
            free = [s for s in self.spots[z] if not s.occupied and s.busy_until < t]
            if not free:
                self.rejected[z] += 1
                return
            spot = free[int(rng.integers(len(free)))]
            spot.occupied = True
            k = min(t // 60, len(self.ctx.clock.sod) - 1)
            sod = int(self.ctx.clock.sod[k])
            stay = int(self._duration(rng, evening=sod >= 18 * 3600 or sod < 6 * 3600))
            self._change(z, rng, spot, t)
            self._push(z, t + stay, "depart", (spot,))
            if self.meters[z] and self.paid_at(t) and rng.random() < spec.pay_share:
                meter = self.meters[z][int(rng.integers(len(self.meters[z])))]
                self._push(z, t + int(rng.integers(60, 240)), "pay", (meter, stay))
        elif what == "depart":
            spot = args[0]
            spot.occupied = False
            self._change(z, rng, spot, t)
        elif what in ("hb", "uplink"):
            spot, scheduled = args
            if what == "hb" and scheduled != spot.next_hb:
                return  # rescheduled by a state change
            if t == spot.last_uplink:
                # A change uplink due when a heartbeat was: one uplink, already sent (its
                # time is the reading's key; a second one would be a conflicting duplicate).
                return
            spot.last_uplink = t
            self._uplink(rng, spot, t, out)
            if spot.busy_until <= t:  # else the pending change uplink reschedules it
                spot.next_hb = t + spot.dev.report_interval_s
                self._push(z, spot.next_hb, "hb", (spot, spot.next_hb))
        elif what == "pay":
            self._pay(rng, args[0], args[1], t, out)
        elif what == "status":
            self._status(z, rng, args[0], t, out)
        elif what == "jam":
            args[0].jam_until = args[1]

    def _change(self, z: str, rng: np.random.Generator, spot: _Spot, t: int) -> None:
        if spot.silent or spot.stuck is not None:
            spot.busy_until = t
            return
        lo, hi = self.spec.detection_delay_s
        at = max(t + int(rng.integers(lo, hi + 1)), spot.busy_until + 1)
        spot.busy_until = at
        spot.next_hb = at  # the change uplink replaces the pending heartbeat
        self._push(z, at, "uplink", (spot, at))

    def _uplink(self, rng: np.random.Generator, spot: _Spot, t: int,
                out: list[Emission]) -> None:
        spot.battery = max(0.0, spot.battery - 0.00004)
        if spot.silent:
            return
        state = spot.stuck or ("occupied" if spot.occupied else "free")
        rssi = int(np.clip(round(spot.rssi + rng.normal(0, 3)), -140, -40))
        snr = round(float(np.clip(spot.snr + rng.normal(0, 1.5), -20.0, 15.0)), 1)
        out.append(Emission(t, float(t), spot.dev, "parking/state", {
            "state": state, "battery": round(spot.battery, 3), "rssi": rssi, "snr": snr}))

    def _pay(self, rng: np.random.Generator, meter: _Meter, stay: int, t: int,
             out: list[Emission]) -> None:
        spec = self.spec
        if rng.random() < spec.mobile_share:
            method = "mobile"
        else:
            methods = [m for m in meter.methods if not (m == "coins" and t < meter.jam_until)]
            weights = np.array([_METHOD_WEIGHTS[m] for m in methods])
            method = methods[int(rng.choice(len(methods), p=weights / weights.sum()))]
        bought = min(stay, int(spec.max_paid_hours * 3600))
        bought = max(_STEP_S, math.ceil(bought / _STEP_S) * _STEP_S)
        amount = round(self.tariff[meter.dev.site_id] * bought / 3600)
        meter.seq += 1
        if meter.paper > 0 and rng.random() < 0.6:
            meter.paper = max(0.0, meter.paper - 0.004)
            if meter.paper == 0.0 and meter.paper_out_since is None:
                meter.paper_out_since = t
        out.append(Emission(t, float(t), meter.dev, "parking/transaction", {
            "transaction_id": f"{meter.dev.id}-{meter.seq:06d}", "amount_cents": amount,
            "duration_s": bought, "payment_method": method}))

    def _status(self, z: str, rng: np.random.Generator, meter: _Meter, t: int,
                out: list[Emission]) -> None:
        k = min(t // 60, len(self.ctx.clock.sod) - 1)
        sod = int(self.ctx.clock.sod[k])
        meter.battery = max(0.0, meter.battery - 0.0004)
        if 10 * 3600 <= sod < 16 * 3600:  # the solar panel recharges it
            meter.battery = min(1.0, meter.battery + 0.0012)
        if (meter.paper_out_since is not None and 9 * 3600 <= sod < 17 * 3600
                and t - meter.paper_out_since > 2 * 3600):
            meter.paper, meter.paper_out_since = 1.0, None  # a technician came by
        fault = "E12" if meter.paper <= 0 else "E07" if t < meter.jam_until else None
        out.append(Emission(t, float(t), meter.dev, "parking/status", {
            "battery": round(meter.battery, 3), "paper": round(meter.paper, 3),
            "fault": fault}))
        self._push(z, t + meter.dev.report_interval_s, "status", (meter,))


__all__ = ["ParkingGenerator"]
