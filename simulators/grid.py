"""Electricity (Linky) meters of districts.

Power is simulated per minute for every meter at once: a residential or professional daily
load shape (weekday/weekend), scaled by the subscribed power, with correlated noise,
appliance spikes and temperature sensitivity (electric heating below 15 °C, air conditioning
above 24 °C; a heat wave raises the temperature). Solar meters subtract their PV output and
export when it exceeds the load. Cumulative import/export indices (Wh) integrate the minute
powers and only grow, except when a meter is replaced (the new one starts at 0). Readings
are timed on the report-interval marks (10 minutes by default) and published a little later,
like a load curve forwarded by a concentrator; voltage wanders around 230 V with sags and
swells per district, frequency around 50 Hz.

The physical energy of each 30-minute period is kept for the ground truth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from simulators.base import GenContext
from simulators.model import Emission, SimDevice
from simulators.rhythms import PROFESSIONAL, RESIDENTIAL, daylight_factor

F = npt.NDArray[np.float64]
TRUTH_STEP_S = 1800  # ground truth of energy per 30 minutes


@dataclass
class EnergyTruth:
    """Floors of every meter's physical cumulative energy at each 30-minute mark."""

    marks: list[int]  # seconds after the start
    imports: list[F]  # per mark, one value per meter (Wh, continuous counter, floored)
    exports: list[F]
    swaps: dict[int, int] = field(default_factory=dict)  # meter index -> swap, s after start


class GridGenerator:
    """All grid meters of a run, simulated minute by minute as arrays."""

    def __init__(self, ctx: GenContext, meters: list[SimDevice]) -> None:
        self.ctx = ctx
        self.spec = spec = ctx.scenario.grid
        self.meters = meters
        n = len(meters)
        rng = self.rng = ctx.rng("grid")
        clock = ctx.clock
        self.interval = np.array([max(60, round(m.report_interval_s / 60) * 60)
                                  for m in meters], np.int64)
        pro = np.array([m.metadata.get("profile") == "professional" for m in meters])
        pref = np.array([float(m.metadata.get("pref_kva", 9)) for m in meters])
        self.phases = np.array([int(m.metadata.get("phases", 1)) for m in meters], np.int64)
        self.scale = pref * np.where(pro, 60.0, 70.0) * rng.uniform(0.6, 1.4, n)
        heating = rng.random(n) < spec.electric_heating_share
        self.heat = pref * np.where(heating, 28.0, 3.0) * rng.uniform(0.7, 1.3, n)
        self.cool = pref * rng.uniform(5.0, 25.0, n)
        solar = np.array([bool(m.metadata.get("solar")) for m in meters])
        self.kwc = np.where(solar, rng.uniform(*spec.solar_kwc, n), 0.0) * 1000.0
        self.v_offset = rng.normal(0.0, 1.5, n)
        districts = sorted({m.site_id for m in meters})
        self.district_index = np.array([districts.index(m.site_id) for m in meters], np.int64)
        self.districts = districts
        # Per-minute calendars shared by every meter.
        res, prof = clock.profile(RESIDENTIAL), clock.profile(PROFESSIONAL)
        self.shape = np.where(pro[:, None], prof[None, :], res[None, :])
        minutes = len(clock.sod)
        day_offset = rng.normal(0.0, 1.5, int(clock.day.max()) + 2)
        temp = (spec.temperature_mean_c + day_offset[clock.day]
                + spec.temperature_amplitude_c
                * np.sin(2 * math.pi * (clock.sod / 3600.0 - 9.0) / 24.0))
        for ev in ctx.scenario.events:
            if ev.type == "heat_wave":
                temp = temp + np.where(clock.active(ev), ev.delta_c, 0.0)
        self.temperature = temp
        cloud = rng.uniform(0.2, 1.0, (len(districts), int(clock.day.max()) + 2))
        self.pv = daylight_factor(clock)[None, :] * cloud[self.district_index][:, clock.day]
        self.frequency = 50.0 + rng.normal(0.0, 0.02, minutes)
        # Sags and swells: per district, a voltage offset per minute.
        self.v_event = np.zeros((len(districts), minutes))
        hours = ctx.window.duration_s / 3600
        for d in range(len(districts)):
            for _ in range(int(rng.poisson(spec.sag_swell_per_district_hour * hours))):
                at = int(rng.integers(0, minutes))
                length = int(rng.integers(1, 6))
                delta = -float(rng.uniform(15, 35)) if rng.random() < 0.7 else float(
                    rng.uniform(12, 22))
                self.v_event[d, at:at + length] = delta
        # Meter replacements: (minute, meter).
        self.replace_at = np.full(n, -1, np.int64)
        for i in rng.choice(n, min(n, spec.replacements), replace=False) if n else []:
            self.replace_at[int(i)] = int(rng.integers(1, max(2, minutes - 1)))
        self.noise = np.zeros(n)
        self.imp = rng.uniform(2e6, 4e7, n)  # physical cumulative energy, Wh (continuous)
        self.exp = np.where(solar, rng.uniform(1e5, 5e6, n), 0.0)
        self.base_imp = np.zeros(n)  # index restart of replaced meters
        self.base_exp = np.zeros(n)
        self.acc_power = np.zeros(n)  # sum of minute powers since the last reading
        self.acc_minutes = np.zeros(n)
        self.delay = np.zeros(n)
        self.minute = 0
        # A swap at the start of minute k: a reading timed at 60 k is the old meter's last.
        # A swap at the start of minute k (a reading timed at 60 k is the old meter's last);
        # one drawn at the window's end never happens.
        self.truth = EnergyTruth([], [], [], {
            i: int(k) * 60 for i, k in enumerate(self.replace_at)
            if k >= 0 and k * 60 < ctx.window.duration_s})

    def step(self, t0: int, t1: int) -> list[Emission]:
        """Readings timed in ``[t0, t1)`` (and the closing one at the window's end)."""
        out: list[Emission] = []
        end = self.ctx.window.duration_s
        start_unix = self.ctx.window.start_unix
        rng = self.rng
        spec = self.spec
        n = len(self.meters)
        while self.minute * 60 < min(t1, end + 1):
            k = self.minute
            t = k * 60
            # Marks first: indices *at* t, before minute k is consumed.
            if (start_unix + t) % TRUTH_STEP_S == 0:
                self.truth.marks.append(t)
                self.truth.imports.append(np.floor(self.imp))
                self.truth.exports.append(np.floor(self.exp))
            due = np.nonzero((start_unix + t) % self.interval == 0)[0]
            if len(due) and t <= end:
                self._readings(out, due, k, t)
            if t >= end:
                break
            # Replacements happen at the start of a minute.
            swap = np.nonzero(self.replace_at == k)[0]
            self.base_imp[swap] = np.floor(self.imp[swap])
            self.base_exp[swap] = np.floor(self.exp[swap])
            self.noise = 0.9 * self.noise + rng.normal(0.0, 0.08, n)
            temp = self.temperature[k]
            p = self.scale * self.shape[:, k] * np.exp(self.noise)
            p += np.where(rng.random(n) < 0.01, rng.uniform(1000, 2500, n), 0.0)
            p += self.heat * max(0.0, 15.0 - temp) + self.cool * max(0.0, temp - 24.0)
            p -= self.kwc * self.pv[:, k]
            self.imp += np.maximum(p, 0.0) / 60.0
            self.exp += np.maximum(-p, 0.0) / 60.0
            self.acc_power += p
            self.acc_minutes += 1
            self.minute += 1
        _ = spec
        return out

    def _readings(self, out: list[Emission], due: npt.NDArray[np.int64], k: int, t: int) -> None:
        rng = self.rng
        lo, hi = self.spec.publish_delay_s
        delays = rng.integers(lo, hi + 1, len(due))
        volts = (230.5 + self.v_offset[due][:, None] + rng.normal(0.0, 0.7, (len(due), 3))
                 - 3.0 * (self.shape[due, k] - 1.0)[:, None]
                 + self.v_event[self.district_index[due], k][:, None])
        volts = np.clip(volts, 150.0, 280.0)
        freq = round(float(self.frequency[k]), 3)
        for j, i in enumerate(due):
            i = int(i)
            minutes = self.acc_minutes[i]
            power = float(self.acc_power[i] / minutes) if minutes else 0.0
            self.acc_power[i] = 0.0
            self.acc_minutes[i] = 0
            phases = int(self.phases[i])
            values: dict[str, Any] = {
                "energy_import_wh": int(math.floor(self.imp[i]) - self.base_imp[i]),
                "energy_export_wh": int(math.floor(self.exp[i]) - self.base_exp[i]),
                "power_w": round(power, 1),
            }
            for p in range(3):
                if p < phases:
                    v = round(float(volts[j, p]), 1)
                    values[f"voltage_l{p + 1}_v"] = v
                    values[f"current_l{p + 1}_a"] = round(
                        min(999.0, abs(power) / phases / v * float(rng.uniform(0.95, 1.05))), 2)
            values["frequency_hz"] = freq
            ordered = {key: values.get(key) for key in (
                "energy_import_wh", "energy_export_wh", "power_w", "voltage_l1_v",
                "voltage_l2_v", "voltage_l3_v", "current_l1_a", "current_l2_a",
                "current_l3_a", "frequency_hz")}
            out.append(Emission(t, float(t + int(delays[j])), self.meters[i], "grid/reading",
                                ordered))


__all__ = ["TRUTH_STEP_S", "EnergyTruth", "GridGenerator"]
