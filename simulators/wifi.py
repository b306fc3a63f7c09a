"""Wifi access points on pedestrian squares.

Visitors arrive at a rate that follows the square's daily and weekly rhythm (times market
and concert factors), associate with an AP of the square, stay a log-normal dwell time
(some roam to another AP midway), then disassociate. A share of phones use randomised,
locally administered MACs; "regulars" come back with the same MAC. Every AP reports its
client count and cumulative rx/tx byte counters each report interval; radio outages drop
every client (disassociation events), report ``radio: down``, and end with a reboot that
resets the counters.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.base import GenContext
from simulators.model import Emission, SimDevice
from simulators.rhythms import SQUARE

_OUIS = (0x3C22FB, 0xF0D1A9, 0xA45E60, 0x8C8590, 0xDC2B2A, 0x60F81D, 0xB827EB, 0x28CFE9)


def _mac(value: int) -> str:
    return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))


@dataclass
class _Ap:
    dev: SimDevice
    clients: dict[str, tuple[int, int]] = field(default_factory=dict)  # mac -> (since, rssi)
    rx: int = 0
    tx: int = 0
    last_stats: int = 0
    down: bool = False


class WifiGenerator:
    """All squares of a run."""

    def __init__(self, ctx: GenContext, aps: list[SimDevice]) -> None:
        self.ctx = ctx
        self.spec = ctx.scenario.wifi
        self.sites: dict[str, list[_Ap]] = {}
        for dev in aps:
            self.sites.setdefault(dev.site_id, []).append(_Ap(dev))
        self.profile = ctx.clock.profile(SQUARE)
        self._rng: dict[str, np.random.Generator] = {}
        self._heap: dict[str, list[tuple[int, int, str, tuple[Any, ...]]]] = {}
        self._seq = 0
        self._regulars: dict[str, list[str]] = {}
        self._here: dict[str, set[str]] = {}
        self._rate: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        days = ctx.window.duration_s / 86400
        for site, site_aps in self.sites.items():
            rng = self._rng[site] = ctx.rng("wifi", site)
            self._heap[site] = []
            self._here[site] = set()
            self._regulars[site] = [
                _mac((int(_OUIS[int(rng.integers(len(_OUIS)))]) << 24)
                     | int(rng.integers(1 << 24)))
                for _ in range(self.spec.regulars)]
            peak = self.spec.visitors_per_hour.get(
                site, self.spec.peak_visitors_per_ap_hour * len(site_aps))
            self._rate[site] = peak * self.profile * ctx.footfall_factor(site)
            for i, ap in enumerate(site_aps):
                interval = ap.dev.report_interval_s
                phase = int(rng.integers(0, max(1, min(interval, 60))))
                ap.last_stats = phase - interval
                self._push(site, phase, "stats", (i,))
                for _ in range(int(rng.poisson(self.spec.outage_per_ap_day * days))):
                    start = int(rng.integers(0, ctx.window.duration_s))
                    lo, hi = self.spec.outage_minutes
                    length = int(rng.uniform(lo, hi) * 60)
                    self._push(site, start, "down", (i,))
                    self._push(site, start + length, "up", (i,))

    def _push(self, site: str, t: int, what: str, args: tuple[Any, ...]) -> None:
        self._seq += 1
        heapq.heappush(self._heap[site], (t, self._seq, what, args))

    def step(self, t0: int, t1: int) -> list[Emission]:
        """Readings of ``[t0, t1)``."""
        out: list[Emission] = []
        for site, aps in self.sites.items():
            rng = self._rng[site]
            rate = self._rate[site]
            for minute in range(t0 // 60, (t1 + 59) // 60):
                if minute >= len(rate) or minute * 60 >= self.ctx.window.duration_s:
                    break
                n = int(rng.poisson(rate[minute] / 60.0))
                for s in np.sort(rng.integers(0, 60, n)):
                    self._push(site, minute * 60 + int(s), "arrive", ())
            heap = self._heap[site]
            while heap and heap[0][0] < t1:
                t, _, what, args = heapq.heappop(heap)
                self._handle(site, aps, rng, t, what, args, out)
        return out

    def _emit(self, out: list[Emission], ap: _Ap, t: int, kind: str,
              values: dict[str, Any]) -> None:
        out.append(Emission(t, float(t), ap.dev, kind, values))

    def _session(self, out: list[Emission], ap: _Ap, t: int, mac: str, event: str,
                 rssi: int, session_s: int | None = None) -> None:
        self._emit(out, ap, t, "wifi/sessions", {"client_mac": mac, "event": event,
                                                 "rssi": rssi, "session_s": session_s})

    def _new_mac(self, site: str, rng: np.random.Generator) -> str:
        here = self._here[site]
        if self._regulars[site] and rng.random() < self.spec.regular_share:
            mac = self._regulars[site][int(rng.integers(len(self._regulars[site])))]
            if mac not in here:
                return mac
        if rng.random() < self.spec.randomized_mac_share:
            # Locally administered, unicast: second bit of the first octet set, first clear.
            value = int(rng.integers(1 << 48))
            value = (value & ~(0x03 << 40)) | (0x02 << 40)
        else:
            value = (int(_OUIS[int(rng.integers(len(_OUIS)))]) << 24) | int(rng.integers(1 << 24))
        return _mac(value)

    def _handle(self, site: str, aps: list[_Ap], rng: np.random.Generator, t: int, what: str,
                args: tuple[Any, ...], out: list[Emission]) -> None:
        spec = self.spec
        if what == "stats":
            ap = aps[args[0]]
            dt = t - ap.last_stats
            n = len(ap.clients)
            if not ap.down and n:
                volume = n * spec.bytes_per_client_s * dt * float(rng.uniform(0.5, 1.5))
                ap.rx += int(volume * 0.25)
                ap.tx += int(volume)
            ap.last_stats = t
            if t < self.ctx.window.duration_s:
                self._emit(out, ap, t, "wifi/stats", {
                    "clients": n, "rx_bytes": ap.rx, "tx_bytes": ap.tx,
                    "radio": "down" if ap.down else "up"})
            self._push(site, t + ap.dev.report_interval_s, "stats", args)
        elif what == "arrive":
            up = [i for i, ap in enumerate(aps) if not ap.down]
            if not up:
                return
            i = up[int(rng.integers(len(up)))]
            mac = self._new_mac(site, rng)
            if mac in self._here[site]:
                return  # this phone is already on the square
            dwell = math.exp(math.log(spec.dwell_median_s) + spec.dwell_sigma * rng.normal())
            dwell = int(min(4 * 3600, max(60, dwell)))
            self._associate(site, aps[i], rng, t, mac, out)
            if len(aps) > 1 and rng.random() < spec.roam_share:
                at = t + max(30, int(dwell * rng.uniform(0.3, 0.7)))
                j = (i + 1 + int(rng.integers(len(aps) - 1))) % len(aps)
                self._push(site, at, "roam", (i, j, mac, t + dwell))
            else:
                self._push(site, t + dwell, "leave", (i, mac))
        elif what == "roam":
            i, j, mac, end = args
            if self._leave(site, aps[i], t, mac, out):
                if aps[j].down:
                    return
                self._associate(site, aps[j], rng, t + 1, mac, out)
                self._push(site, max(end, t + 60), "leave", (j, mac))
        elif what == "leave":
            self._leave(site, aps[args[0]], t, args[1], out)
        elif what == "down":
            ap = aps[args[0]]
            for mac in sorted(ap.clients):
                self._leave(site, ap, t, mac, out)
            ap.down = True
        elif what == "up":
            ap = aps[args[0]]
            ap.down = False
            ap.rx = ap.tx = 0  # the AP rebooted

    def _associate(self, site: str, ap: _Ap, rng: np.random.Generator, t: int, mac: str,
                   out: list[Emission]) -> None:
        rssi = int(np.clip(rng.normal(-64, 8), -92, -35))
        ap.clients[mac] = (t, rssi)
        self._here[site].add(mac)
        if t < self.ctx.window.duration_s:
            self._session(out, ap, t, mac, "associated", rssi)

    def _leave(self, site: str, ap: _Ap, t: int, mac: str, out: list[Emission]) -> bool:
        got = ap.clients.pop(mac, None)
        if got is None:
            return False  # already dropped by an outage
        self._here[site].discard(mac)
        since, rssi = got
        if t < self.ctx.window.duration_s:
            self._session(out, ap, t, mac, "disassociated", rssi, t - since)
        return True


__all__ = ["WifiGenerator"]
