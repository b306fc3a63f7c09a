"""Ground truth of a run: the aggregates a correct ingestor + API must give back.

Computed from what the generators know, never by decoding their own messages:

- ``parking_occupancy``: per zone and 15-minute period, time-weighted over the spot states
  the sensors *reported* (clean messages, device clocks included: a stuck sensor counts as
  it reports). ``occupied_spot_s`` / ``known_spot_s`` are spot-seconds occupied / with a
  known state; ``occupancy`` = occupied spot-seconds / (capacity x period length);
  ``free_spots_mean`` = (known - occupied) spot-seconds / period length.
- ``parking_revenue``: per meter and local day (of the reported time), transactions and
  revenue in cents.
- ``wifi_presence``: per square and hour, ``clients_mean`` (sum over the square's APs of
  the mean client count they reported in the hour), ``associations`` and
  ``unique_visitors`` (distinct client MACs with a session event in the hour).
- ``grid_energy`` / ``grid_energy_district``: per meter (district) and 30-minute period,
  the physical energy imported/exported (Wh, difference of the floored cumulative energy;
  a meter replacement does not lose or invent energy). ``complete`` says whether the API
  can know it: readings were sent at both ends of the period and no meter swap falls
  between two of the meter's readings that overlap the period (the energy between the old
  meter's last reading and the swap is lost).
- ``messages``: counts per kind and fault, and ``expected_rows`` per table: the distinct
  unique keys of the clean messages (a table's key, e.g. device and time, is stored once;
  faults make no row).

Periods are labelled by their start in local ISO 8601 (with offset); 15 and 30 minute and
hourly periods are the same in UTC and in Europe/Paris time. Every instant is Unix seconds
(elapsed time), so a DST change shortens or repeats no period.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from simulators.grid import TRUTH_STEP_S, EnergyTruth
from simulators.model import TABLE_OF_KIND, Emission, SimDevice

OCCUPANCY_STEP_S = 900
HOUR_S = 3600


class Truth:
    """Accumulates the truth while a stream is generated; ``result()`` at the end."""

    def __init__(self, *, start_unix: int, duration_s: int, tz: ZoneInfo,
                 capacity: dict[str, int]) -> None:
        self.start_unix = start_unix
        self.end_unix = start_unix + duration_s
        self.tz = tz
        self.capacity = capacity
        self.kind_counts: dict[str, int] = defaultdict(int)
        self.fault_counts: dict[str, int] = defaultdict(int)
        self.spot_states: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.spot_zone: dict[str, str] = {}
        self.revenue: dict[tuple[str, str, str], list[int]] = {}
        self.ap_clients: dict[tuple[str, str, int], list[int]] = {}
        self.assoc: dict[tuple[str, int], int] = defaultdict(int)
        self.visitors: dict[tuple[str, int], set[str]] = defaultdict(set)
        self.grid_sent: set[tuple[str, int]] = set()
        self.grid_meters: list[SimDevice] = []
        self.energy: EnergyTruth | None = None
        self.parking_rejected: dict[str, int] = {}
        self.row_keys: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
        self.same_key: dict[str, int] = defaultdict(int)

    def _label(self, unix: int) -> str:
        return datetime.fromtimestamp(unix, UTC).astimezone(self.tz).isoformat()

    def observe(self, e: Emission, ts_unix: int) -> None:
        """A clean reading went out with payload time ``ts_unix``.

        A reading whose table key was already seen makes no row: it counts as a message but
        not in ``expected_rows`` nor in the aggregates.
        """
        self.kind_counts[e.kind] += 1
        dev = e.device
        table = TABLE_OF_KIND[e.kind]
        key = _row_key(e, ts_unix)
        keys = self.row_keys[table]
        if key in keys:
            self.same_key[table] += 1
            return
        keys.add(key)
        if e.kind == "parking/state":
            self.spot_states[dev.id].append((ts_unix, e.values["state"]))
            self.spot_zone[dev.id] = dev.site_id
        elif e.kind == "parking/transaction":
            day = datetime.fromtimestamp(ts_unix, UTC).astimezone(self.tz).date().isoformat()
            acc = self.revenue.setdefault((dev.id, dev.site_id, day), [0, 0])
            acc[0] += 1
            acc[1] += int(e.values["amount_cents"])
        elif e.kind == "wifi/stats":
            hour = ts_unix - ts_unix % HOUR_S
            self.ap_clients.setdefault((dev.site_id, dev.id, hour), []).append(
                int(e.values["clients"]))
        elif e.kind == "wifi/sessions":
            hour = ts_unix - ts_unix % HOUR_S
            if e.values["event"] == "associated":
                self.assoc[(dev.site_id, hour)] += 1
            self.visitors[(dev.site_id, hour)].add(e.values["client_mac"])
        elif e.kind == "grid/reading":
            self.grid_sent.add((dev.id, ts_unix))

    def fault(self, label: str) -> None:
        """A faulty message went out."""
        self.fault_counts[label] += 1

    # -- results --------------------------------------------------------------------------
    def _occupancy(self) -> list[dict[str, Any]]:
        occ: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
        first = self.start_unix - self.start_unix % OCCUPANCY_STEP_S
        for dev_id, states in self.spot_states.items():
            zone = self.spot_zone[dev_id]
            ordered = sorted(states)
            for j, (t, state) in enumerate(ordered):
                a = max(t, self.start_unix)
                b = ordered[j + 1][0] if j + 1 < len(ordered) else self.end_unix
                b = min(b, self.end_unix)
                while a < b:
                    bucket = a - a % OCCUPANCY_STEP_S
                    cut = min(b, bucket + OCCUPANCY_STEP_S)
                    acc = occ[(zone, bucket)]
                    acc[1] += cut - a
                    if state == "occupied":
                        acc[0] += cut - a
                    a = cut
        rows = []
        for zone in sorted(self.capacity):
            bucket = first
            while bucket < self.end_unix:
                lo, hi = max(bucket, self.start_unix), min(bucket + OCCUPANCY_STEP_S,
                                                            self.end_unix)
                seconds = hi - lo
                o, k = occ.get((zone, bucket), [0.0, 0.0])
                cap = self.capacity[zone]
                rows.append({
                    "zone": zone, "period_start": self._label(bucket), "seconds": seconds,
                    "capacity": cap, "occupied_spot_s": int(o), "known_spot_s": int(k),
                    "occupancy": round(o / (cap * seconds), 4) if cap and seconds else None,
                    "free_spots_mean": round((k - o) / seconds, 2) if seconds else None,
                })
                bucket += OCCUPANCY_STEP_S
        return rows

    def _wifi(self) -> list[dict[str, Any]]:
        sums: dict[tuple[str, int], float] = defaultdict(float)
        for (site, _ap, hour), values in self.ap_clients.items():
            sums[(site, hour)] += sum(values) / len(values)
        keys = sorted(set(sums) | set(self.assoc) | set(self.visitors))
        return [{"square": site, "hour_start": self._label(hour),
                 "clients_mean": round(sums.get((site, hour), 0.0), 2),
                 "associations": self.assoc.get((site, hour), 0),
                 "unique_visitors": len(self.visitors.get((site, hour), ()))}
                for site, hour in keys]

    def _grid(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        per_meter: list[dict[str, Any]] = []
        per_district: dict[tuple[str, int], list[int]] = {}
        e = self.energy
        if e is None or len(e.marks) < 2:
            return per_meter, []
        unknown = self._swap_intervals(e)
        for j in range(len(e.marks) - 1):
            t0, t1 = e.marks[j], e.marks[j + 1]
            u0, u1 = self.start_unix + t0, self.start_unix + t1
            imp = (e.imports[j + 1] - e.imports[j]).astype(np.int64)
            exp = (e.exports[j + 1] - e.exports[j]).astype(np.int64)
            for i, dev in enumerate(self.grid_meters):
                complete = ((dev.id, u0) in self.grid_sent and (dev.id, u1) in self.grid_sent
                            and not any(a < u1 and b > u0 for a, b in unknown.get(i, ())))
                per_meter.append({"meter": dev.id, "district": dev.site_id,
                                  "period_start": self._label(u0), "import_wh": int(imp[i]),
                                  "export_wh": int(exp[i]), "complete": complete})
                acc = per_district.setdefault((dev.site_id, u0), [0, 0, 0, 0])
                acc[0] += int(imp[i])
                acc[1] += int(exp[i])
                acc[2] += 1
                acc[3] += complete
        districts = [{"district": d, "period_start": self._label(u), "import_wh": a[0],
                      "export_wh": a[1], "meters": a[2], "complete_meters": a[3]}
                     for (d, u), a in sorted(per_district.items())]
        _ = TRUTH_STEP_S
        return per_meter, districts

    def _swap_intervals(self, e: EnergyTruth) -> dict[int, list[tuple[float, float]]]:
        """Per replaced meter, the time between the readings around its swap (Unix s).

        The old meter's last reading is at or before the swap, the new meter's first after
        it; the energy in between is partly lost, and the API flags it ``reset``.
        """
        out: dict[int, list[tuple[float, float]]] = {}
        for i, swap_s in e.swaps.items():
            dev_id = self.grid_meters[i].id
            swap = self.start_unix + swap_s
            sent = sorted(t for d, t in self.grid_sent if d == dev_id)
            before = [t for t in sent if t <= swap]
            after = [t for t in sent if t > swap]
            out[i] = [(before[-1] if before else -math.inf, after[0] if after else math.inf)]
        return out

    def result(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The whole truth as a JSON-ready document."""
        expected: dict[str, int] = dict.fromkeys(TABLE_OF_KIND.values(), 0)
        for table, keys in self.row_keys.items():
            expected[table] = len(keys)
        grid, districts = self._grid()
        revenue = [{"meter": m, "zone": z, "local_date": d, "transactions": a[0],
                    "revenue_cents": a[1]} for (m, z, d), a in sorted(self.revenue.items())]
        return {
            **meta,
            "messages": {
                "clean": sum(self.kind_counts.values()),
                "by_kind": dict(sorted(self.kind_counts.items())),
                "faults": dict(sorted(self.fault_counts.items())),
                "expected_rows": expected,
            },
            "parking_rejected_arrivals": dict(sorted(self.parking_rejected.items())),
            "parking_occupancy": self._occupancy(),
            "parking_revenue": revenue,
            "wifi_presence": self._wifi(),
            "grid_energy": grid,
            "grid_energy_district": districts,
        }


def _row_key(e: Emission, ts_unix: int) -> tuple[Any, ...]:
    """The reading's unique key in its table (``sql/002_readings.sql``)."""
    v = e.values
    if e.kind == "wifi/sessions":
        return (e.device.id, v["client_mac"], v["event"], ts_unix)
    if e.kind == "parking/transaction":
        return (e.device.id, v["transaction_id"], ts_unix)
    return (e.device.id, ts_unix)


def write_truth(doc: dict[str, Any], path: Path) -> None:
    """Write the truth as JSON (one key per line at the top level, compact rows)."""
    parts = []
    for key, value in doc.items():
        if isinstance(value, list):
            rows = ",\n    ".join(json.dumps(r, ensure_ascii=False) for r in value)
            parts.append(f'  "{key}": [\n    {rows}\n  ]' if value else f'  "{key}": []')
        else:
            parts.append(f'  "{key}": {json.dumps(value, ensure_ascii=False)}')
    path.write_text("{\n" + ",\n".join(parts) + "\n}\n", encoding="utf-8")


__all__ = ["Truth", "write_truth"]
