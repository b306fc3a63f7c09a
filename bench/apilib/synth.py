"""A plausible year of the demo city's readings, generated with numpy as binary COPY blocks.

Not the simulator (which makes MQTT messages one by one, far too slow for a year): the same
rhythms, simplified and vectorised.

- Grid (500 Linky, every 10 minutes on the 10-minute marks): load by profile (residential
  morning and evening peaks, professional office hours on weekdays), electric heating
  driven by a seasonal temperature, solar production for meters with PV (daylight length by
  season, a cloudiness per day); cumulative import/export indices that only grow, power,
  per-phase voltages around 230 V, currents, frequency.
- Parking sensors (300): arrivals per spot from an hourly rate (weekday/hour profile,
  quieter on Sundays), log-normal stays (long in the evening and at night), a state change
  at each arrival and departure plus a heartbeat every 10 minutes; 1 % of sensors silent.
- Parking meters (12): payments during paid hours (Mon-Sat 9-12, 14-19) by zone tariff and
  payment method; a status every 15 minutes with battery, paper and rare faults.
- Wifi APs (8): a report a minute with clients (day/week/season rhythm by square) and
  cumulative byte counters with a reboot (counter back to 0) about once a month.

Wifi client sessions are not generated: they are personal data kept 24 hours (CNIL), so a
year of them never exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from bench.apilib.pgcopy import Col, encode, pg_time
from devices.registry import Device, RegistryFile

Arr = npt.NDArray[Any]
WEEK_S = 7 * 86400


@dataclass(frozen=True)
class Block:
    """Binary COPY tuples for one table."""

    table: str
    columns: tuple[str, ...]
    data: bytes
    rows: int


@dataclass(frozen=True)
class Year:
    """The simulated period: ``days`` local days from local midnight of ``first``."""

    first: date
    days: int
    tz: ZoneInfo

    @property
    def start(self) -> int:
        """Unix seconds of the first local midnight."""
        return int(datetime.combine(self.first, time(0), tzinfo=self.tz).timestamp())

    @property
    def end(self) -> int:
        """Unix seconds of the local midnight after the last day."""
        last = self.first + timedelta(days=self.days)
        return int(datetime.combine(last, time(0), tzinfo=self.tz).timestamp())

    def offsets(self) -> Arr:
        """UTC offset (s) of each hour from ``start`` (one more hour than the range)."""
        hours = (self.end - self.start) // 3600 + 2
        return np.array([int(datetime.fromtimestamp(self.start + 3600 * h, self.tz)
                             .utcoffset().total_seconds())  # type: ignore[union-attr]
                         for h in range(hours)], dtype=np.int64)


class Clock:
    """Local hour of day, weekday and day of year of Unix times (vectorised)."""

    def __init__(self, year: Year) -> None:
        self.start = year.start
        self.off = year.offsets()

    def local(self, t: Arr) -> Arr:
        """Local Unix seconds (wall clock as if UTC)."""
        idx = np.clip((np.asarray(t) - self.start) // 3600, 0, len(self.off) - 1).astype(int)
        out: Arr = np.asarray(t) + self.off[idx]
        return out

    def hour(self, t: Arr) -> Arr:
        """Local hour of day, fractional."""
        return (self.local(t) % 86400) / 3600.0

    def weekday(self, t: Arr) -> Arr:
        """0 = Monday."""
        return (self.local(t) // 86400 + 3) % 7

    def doy(self, t: Arr) -> Arr:
        """Day of year, approximately (seasonal curves only)."""
        return ((self.local(t) // 86400) - 10957) % 365.25  # days since 2000-01-01


def _ids(devs: list[Device]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, d in enumerate(devs):
        groups.setdefault(len(d.id), []).append(i)
    return groups


def _temperature(doy: Arr) -> Arr:
    return 9.0 - 6.0 * np.cos(2 * np.pi * (doy - 20) / 365.25)


# -- grid --------------------------------------------------------------------------------------

GRID_COLS = ("time", "device_id", "energy_import_wh", "energy_export_wh", "power_w",
             "voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "current_l1_a", "current_l2_a",
             "current_l3_a", "frequency_hz")


class Grid:
    """Linky meters; state carried from one week to the next (indices, cloudiness)."""

    def __init__(self, devs: list[Device], rng: np.random.Generator, clock: Clock) -> None:
        self.devs = devs
        self.rng = rng
        self.clock = clock
        n = len(devs)
        meta = [d.metadata for d in devs]
        self.pro = np.array([m.get("profile") == "professional" for m in meta])
        kva = np.array([float(m.get("pref_kva", 6)) for m in meta])
        self.base_w = kva * np.where(self.pro, 90.0, 55.0) * rng.uniform(0.6, 1.4, n)
        self.heating_w = np.where(rng.random(n) < 0.3, kva * 180.0, 0.0)
        self.kwc = np.where([bool(m.get("solar")) for m in meta], rng.uniform(2, 6, n), 0.0)
        self.phases = np.array([int(m.get("phases", 1)) for m in meta])
        self.v_mean = rng.normal(231.0, 1.5, n)
        self.imp = rng.uniform(1e6, 4e7, n)  # cumulative Wh, float; stored floored
        self.exp = np.where(self.kwc > 0, rng.uniform(1e5, 5e6, n), 0.0)

    def week(self, t0: int, t1: int) -> Iterator[Block]:
        """Readings on the 10-minute marks of [t0, t1)."""
        t = np.arange(t0 - t0 % 600 + (600 if t0 % 600 else 0), t1, 600, dtype=np.int64)
        if not len(t):
            return
        rng, c = self.rng, self.clock
        n, m = len(self.devs), len(t)
        h, wd, doy = c.hour(t), c.weekday(t), c.doy(t)
        res_shape = (0.45 + 0.6 * np.exp(-((h - 7.5) / 1.2) ** 2)
                     + 1.1 * np.exp(-((h - 19.5) / 2.0) ** 2)
                     + 0.25 * np.exp(-((h - 12.5) / 1.5) ** 2))
        office = (h >= 8) & (h < 19) & (wd < 5)
        pro_shape = np.where(office, 1.6, 0.35) + 0.2 * (wd == 5)
        shape = np.where(self.pro[:, None], pro_shape[None, :], res_shape[None, :])
        cold = np.clip((15.0 - _temperature(doy)) / 15.0, 0, None)
        heat = self.heating_w[:, None] * cold[None, :] * (0.7 + 0.3 * (h < 7) + 0.3 * (h > 17))
        load = (self.base_w[:, None] * shape + heat) * rng.lognormal(0.0, 0.25, (n, m))
        daylen = 12.0 + 4.0 * np.sin(2 * np.pi * (doy - 80) / 365.25)
        sun = np.clip(np.sin(np.pi * (h - (13.5 - daylen / 2)) / daylen), 0, None)
        days = (c.local(t) // 86400)
        uniq, inv = np.unique(days, return_inverse=True)
        cloud = rng.uniform(0.15, 1.0, len(uniq))[inv]
        pv = self.kwc[:, None] * 1000.0 * 0.8 * (sun * cloud)[None, :]
        net = load - pv
        imp_wh = np.cumsum(np.clip(net, 0, None) / 6.0, axis=1) + self.imp[:, None]
        exp_wh = np.cumsum(np.clip(-net, 0, None) / 6.0, axis=1) + self.exp[:, None]
        self.imp, self.exp = imp_wh[:, -1].copy(), exp_wh[:, -1].copy()
        volts = (self.v_mean[:, None] - load / 4000.0 + rng.normal(0, 1.2, (n, m)))
        freq = 50.0 + rng.normal(0, 0.015, m)
        ts = pg_time(t)
        for width, idx_all in _ids(self.devs).items():
            for ph in (1, 3):
                idx = [i for i in idx_all if self.phases[i] == ph]
                if not idx:
                    continue
                k = len(idx)
                ids = np.repeat(np.array([self.devs[i].id.encode() for i in idx],
                                         dtype=f"S{width}"), m)
                v = volts[idx]
                amps = np.abs(net[idx]) / (v * ph)
                three = ph == 3
                v2 = (v + rng.normal(0, 0.8, v.shape)).ravel() if three else None
                v3 = (v + rng.normal(0, 0.8, v.shape)).ravel() if three else None
                a = amps.ravel()
                cols = [Col("timestamptz", np.tile(ts, k)), Col("text", ids),
                        Col("bigint", np.floor(imp_wh[idx]).astype(np.int64).ravel()),
                        Col("bigint", np.floor(exp_wh[idx]).astype(np.int64).ravel()),
                        Col("real", net[idx].ravel()), Col("real", v.ravel()),
                        Col("real", v2), Col("real", v3), Col("real", a),
                        Col("real", a if three else None), Col("real", a if three else None),
                        Col("real", np.tile(freq, k))]
                yield Block("grid_readings", GRID_COLS, encode(cols, k * m), k * m)


# -- wifi --------------------------------------------------------------------------------------

WIFI_COLS = ("time", "device_id", "clients", "rx_bytes", "tx_bytes", "radio_up")


class Wifi:
    """Access points reporting every minute."""

    def __init__(self, devs: list[Device], rng: np.random.Generator, clock: Clock) -> None:
        self.devs = devs
        self.rng = rng
        self.clock = clock
        n = len(devs)
        busy = {"grand-place": 1.0}
        self.scale = np.array([busy.get(d.site_id, 0.6) for d in devs]) * rng.uniform(0.7, 1.3, n)
        self.rx = np.zeros(n)
        self.tx = np.zeros(n)
        self.phase = rng.integers(0, 60, n)

    def week(self, t0: int, t1: int) -> Iterator[Block]:
        """Reports of every AP in [t0, t1)."""
        rng, c = self.rng, self.clock
        for i in range(len(self.devs)):
            t = np.arange(t0 + int(self.phase[i]), t1, 60, dtype=np.int64)
            m = len(t)
            if not m:
                continue
            h, wd, doy = c.hour(t), c.weekday(t), c.doy(t)
            day = (np.exp(-((h - 12.5) / 2.5) ** 2) + 0.8 * np.exp(-((h - 18) / 2.0) ** 2)
                   + 0.05)
            week = np.where(wd >= 5, 1.4, 1.0)
            season = 1.0 + 0.4 * np.sin(2 * np.pi * (doy - 100) / 365.25)
            clients = rng.poisson(45.0 * self.scale[i] * day * week * season)
            rx = np.cumsum(clients * rng.uniform(2e4, 8e4, m)) + self.rx[i]
            tx = np.cumsum(clients * rng.uniform(5e3, 2e4, m)) + self.tx[i]
            if rng.random() < 7 / 30:  # a reboot: the counters start again from 0
                at = int(rng.integers(0, m))
                rx[at:] -= rx[at]
                tx[at:] -= tx[at]
            self.rx[i], self.tx[i] = rx[-1], tx[-1]
            cols = [Col("timestamptz", pg_time(t)), Col("text", self.devs[i].id.encode()),
                    Col("integer", clients), Col("bigint", rx.astype(np.int64)),
                    Col("bigint", tx.astype(np.int64)), Col("boolean", True)]
            yield Block("wifi_ap_stats", WIFI_COLS, encode(cols, m), m)


# -- parking meters ------------------------------------------------------------------------------

TX_COLS = ("time", "device_id", "transaction_id", "amount_cents", "duration_s",
           "payment_method")
STATUS_COLS = ("time", "device_id", "battery", "paper", "fault_code")
METHODS = (b"card", b"contactless", b"coins", b"mobile")
TARIFF = {"rouge": 200, "verte": 120}
PAID = ((9.0, 12.0), (14.0, 19.0))


class Meters:
    """Parking meters: payments and status reports."""

    def __init__(self, devs: list[Device], tariffs: dict[str, str], rng: np.random.Generator,
                 clock: Clock) -> None:
        self.devs = devs
        self.rng = rng
        self.clock = clock
        self.tariff = [TARIFF.get(tariffs.get(d.site_id, ""), 150) for d in devs]
        self.rate = rng.uniform(5.0, 10.0, len(devs))  # payments per paid hour
        self.seq = [0] * len(devs)
        self.paper = np.ones(len(devs))

    def week(self, t0: int, t1: int) -> Iterator[Block]:
        """Payments and statuses in [t0, t1)."""
        rng, c = self.rng, self.clock
        for i, d in enumerate(self.devs):
            hours = np.arange(t0, t1, 3600, dtype=np.int64)
            h, wd = c.hour(hours), c.weekday(hours)
            paid = (wd < 6) & (((h >= PAID[0][0]) & (h < PAID[0][1]))
                               | ((h >= PAID[1][0]) & (h < PAID[1][1])))
            lam = np.where(paid, self.rate[i] * (1.0 + 0.5 * (wd == 5)), 0.0)
            counts = rng.poisson(lam)
            t = np.repeat(hours, counts) + rng.uniform(0, 3600, counts.sum())
            t = np.unique(np.round(t, 3))
            n = len(t)
            if n:
                minutes = rng.choice([15, 30, 60, 90, 120], n, p=[.15, .25, .3, .15, .15])
                method = rng.choice(4, n, p=[.35, .3, .2, .15])
                seq = np.arange(self.seq[i], self.seq[i] + n)
                self.seq[i] += n
                txid = np.char.zfill(seq.astype("U10"), 10).astype("S10")
                for k, name in enumerate(METHODS):
                    sel = method == k
                    if not sel.any():
                        continue
                    cols = [Col("timestamptz", pg_time(t[sel])), Col("text", d.id.encode()),
                            Col("text", txid[sel]),
                            Col("integer", self.tariff[i] * minutes[sel] // 60),
                            Col("integer", minutes[sel] * 60), Col("text", name)]
                    yield Block("parking_transactions", TX_COLS, encode(cols, int(sel.sum())),
                                int(sel.sum()))
            st = np.arange(t0, t1, 900, dtype=np.int64)
            m = len(st)
            paper = self.paper[i] - np.cumsum(rng.uniform(0, 0.004, m))
            paper = np.where(paper < 0.05, 1.0, paper)  # refilled
            self.paper[i] = paper[-1]
            days = (st - c.start) / 86400.0
            battery = np.clip(0.95 - days * 0.0006, 0.2, 1.0)
            fault = rng.random(m) < 0.004
            for has_fault in (False, True):
                sel = fault == has_fault
                if not sel.any():
                    continue
                cols = [Col("timestamptz", pg_time(st[sel])), Col("text", d.id.encode()),
                        Col("real", battery[sel]), Col("real", paper[sel]),
                        Col("text", b"E07" if has_fault else None)]
                yield Block("parking_meter_status", STATUS_COLS, encode(cols, int(sel.sum())),
                            int(sel.sum()))


# -- parking sensors -----------------------------------------------------------------------------

SPOT_COLS = ("time", "device_id", "state", "battery", "rssi_dbm", "snr_db")


def arrival_rates(clock: Clock, year: Year) -> Arr:
    """Arrivals per spot per hour, for each hour of the year (zone factor apart)."""
    hours = np.arange(year.start, year.end + 3600, 3600, dtype=np.int64)
    h, wd = clock.hour(hours), clock.weekday(hours)
    day = (0.05 + 0.55 * np.exp(-((h - 10.5) / 2.0) ** 2) + 0.5 * np.exp(-((h - 16) / 2.5) ** 2)
           + 0.3 * np.exp(-((h - 20) / 1.5) ** 2))
    return np.asarray(day * np.where(wd == 6, 0.45, np.where(wd == 5, 1.2, 1.0)))


def spot_changes(rate: Arr, start: int, end: int, factor: float, rng: np.random.Generator,
                 clock: Clock) -> Arr:
    """Times of the state changes of one spot: occupied at even indices, free at odd ones
    (the spot is free before the first)."""
    out: list[float] = []
    n_draw = 20000
    expo = rng.exponential(1.0, n_draw)
    z = rng.normal(0.0, 0.9, n_draw)
    k = 0
    t = float(start)
    while t < end:
        if k >= n_draw - 2:
            expo = rng.exponential(1.0, n_draw)
            z = rng.normal(0.0, 0.9, n_draw)
            k = 0
        hi = int((t - start) // 3600)
        lam = rate[min(hi, len(rate) - 1)] * factor / 3600.0
        gap = expo[k] / lam if lam > 0 else 1e9
        k += 1
        boundary = start + (hi + 1) * 3600.0
        if t + gap >= boundary:  # memoryless: draw again at the next hour's rate
            t = boundary
            continue
        t += gap
        if t >= end:
            break
        out.append(t)
        local_h = float(clock.hour(np.array([int(t)]))[0])
        median = 36000.0 if (local_h >= 18.5 or local_h < 6) else 3000.0
        t += median * float(np.exp(z[k]))
        k += 1
        out.append(t)
    arr = np.array(out, dtype=np.float64)
    return arr[arr < end]


def spots(devs: list[Device], year: Year, rng: np.random.Generator, clock: Clock,
          group: int = 20) -> Iterator[Block]:
    """State changes and heartbeats of every sensor over the whole period."""
    rate = arrival_rates(clock, year)
    zone_factor = {"parking-grand-place": 1.1, "parking-gare": 0.9}
    silent = set(rng.choice(len(devs), max(1, len(devs) // 100), replace=False).tolist())
    by_width = _ids(devs)
    for width, idx_all in by_width.items():
        for g in range(0, len(idx_all), group):
            parts: dict[bool, list[tuple[Arr, Arr, Arr, Arr, Arr]]] = {False: [], True: []}
            for i in idx_all[g:g + group]:
                if i in silent:
                    continue
                d = devs[i]
                ch = spot_changes(rate, year.start, year.end,
                                  zone_factor.get(d.site_id, 1.0) * rng.uniform(0.7, 1.3),
                                  rng, clock)
                hb = np.arange(year.start + float(rng.integers(0, 600)), year.end, 600.0)
                pos = np.searchsorted(ch, hb, side="right") - 1
                hb_occ = (pos >= 0) & (pos % 2 == 0)
                t = np.concatenate([ch, hb])
                occ = np.concatenate([np.arange(len(ch)) % 2 == 0, hb_occ])
                ts = pg_time(t)
                ts, first = np.unique(ts, return_index=True)
                occ = occ[first]
                n = len(ts)
                battery = np.clip(1.0 - (ts - ts[0]) / 3.15e13 * 0.25, 0, 1).astype(np.float32)
                rssi = np.clip(rng.normal(-98, 6, n), -140, -40).astype(np.int16)
                snr = np.clip(rng.normal(4, 3, n), -20, 20)
                ids = np.repeat(np.array([d.id.encode()], dtype=f"S{width}"), n)
                for state in (False, True):
                    sel = occ == state
                    parts[state].append((ts[sel], ids[sel], battery[sel], rssi[sel], snr[sel]))
            for state, chunks in parts.items():
                if not chunks:
                    continue
                cat = [np.concatenate([c[j] for c in chunks]) for j in range(5)]
                n = len(cat[0])
                cols = [Col("timestamptz", cat[0]), Col("text", cat[1]),
                        Col("text", b"occupied" if state else b"free"), Col("real", cat[2]),
                        Col("smallint", cat[3]), Col("real", cat[4])]
                yield Block("parking_spot_state", SPOT_COLS, encode(cols, n), n)


# -- dead letters --------------------------------------------------------------------------------

DEAD_COLS = ("received_at", "topic", "device_id", "reason", "detail", "payload", "payload_size")
# (reason, detail, payload): what a faulty device sends again and again.
FAULTS = (
    (b"out_of_range", b"battery: must be <= 100", b'{"battery": 131, "paper": "ok"}'),
    (b"invalid_json", b"unexpected end of data: line 1 column 18", b'{"state": "occupi'),
    (b"invalid_payload", b"state: expected 'free' or 'occupied'", b'{"state": "busy"}'),
    (b"future_timestamp", b"ts is 3 h ahead of reception", b'{"ts": "2031-01-01T00:00Z"}'),
)


DEAD_LETTER_DAYS = 30  # the default retention of dead letters (BEFFROI_RETENTION_DEAD_LETTERS_DAYS)


def dead_letters(devs: list[Device], year: Year, rng: np.random.Generator) -> Iterator[Block]:
    """Rejected messages: each week a few dozen devices misbehave, each sending one kind of
    bad message a few dozen times, kept for the last 30 days as retention keeps them (about
    9,000 rows), so that the operators' dead-letter routes are measured on a table of
    realistic size. Every week is drawn, so the rows kept do not depend on the cut."""
    cut = year.end - DEAD_LETTER_DAYS * 86_400
    t = year.start
    while t < year.end:
        t1 = min(t + WEEK_S, year.end)
        for i in rng.choice(len(devs), size=min(40, len(devs)), replace=False):
            n = int(rng.poisson(50))
            if not n:
                continue
            dev = devs[int(i)]
            reason, detail, payload = FAULTS[int(rng.integers(len(FAULTS)))]
            at = np.sort(rng.integers(t, t1, n))
            at = at[at >= cut]
            n = len(at)
            if not n:
                continue
            topic = f"city/{dev.family.value}/{dev.id}/state".encode()
            cols = [Col("timestamptz", pg_time(at)), Col("text", topic),
                    Col("text", dev.id.encode()), Col("text", reason), Col("text", detail),
                    Col("text", payload), Col("integer", len(payload))]
            yield Block("dead_letters", DEAD_COLS, encode(cols, n), n)
        t = t1


# -- the whole city ------------------------------------------------------------------------------

def city_blocks(reg: RegistryFile, year: Year, seed: int = 2025) -> Iterator[Block]:
    """Every block of the period: week by week for the periodic families, then the parking
    sensors spot group by spot group."""
    rng = np.random.default_rng(seed)
    clock = Clock(year)
    fam: dict[str, list[Device]] = {}
    for d in reg.devices:
        if d.active:
            fam.setdefault(d.family.value, []).append(d)
    tariffs = {s.id: str(s.metadata.get("tariff_zone", "")) for s in reg.sites}
    grid = Grid(fam.get("grid_meter", []), rng, clock)
    wifi = Wifi(fam.get("wifi_ap", []), rng, clock)
    meters = Meters(fam.get("parking_meter", []), tariffs, rng, clock)
    t = year.start
    while t < year.end:
        t1 = min(t + WEEK_S, year.end)
        yield from grid.week(t, t1)
        yield from wifi.week(t, t1)
        yield from meters.week(t, t1)
        t = t1
    yield from spots(fam.get("parking_spot", []), year, rng, clock)
    # A generator of its own: the other families' data stays as it was.
    yield from dead_letters([d for d in reg.devices if d.active], year,
                            np.random.default_rng(seed + 1))
