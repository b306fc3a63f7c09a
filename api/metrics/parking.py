"""The parking metrics (SQL in ``sql/metrics/parking_*.sql``)."""

from __future__ import annotations

from typing import Any

from api.metrics.base import Context, Metric, Rollup, Target, by_bucket
from api.timeq import Buckets

METERS = Target(family="parking_meter", site_kind="parking_zone", site="zone",
                device="meter", site_example="parking-grand-place",
                device_example="pm-grand-place-01")

METHODS = ("card", "contactless", "coins", "mobile")
REVENUE_COLUMNS = ("start", "end", "transactions", "revenue_cents",
                   *(f"transactions_{m}" for m in METHODS),
                   *(f"revenue_cents_{m}" for m in METHODS), "meter_faults")


def _revenue_rows(b: Buckets, rows: list[dict[str, Any]], _: Context) -> list[dict[str, Any]]:
    faults: dict[int, int] = {}
    by: dict[int, dict[str, tuple[int, int]]] = {}
    for r in rows:
        if r["method"] is None:
            faults[r["i"] - 1] = int(r["meter_faults"])
        else:
            by.setdefault(r["i"] - 1, {})[r["method"]] = (int(r["transactions"]),
                                                          int(r["revenue_cents"]))

    def row(_r: dict[str, Any] | None, k: int) -> dict[str, Any]:
        methods = by.get(k, {})
        out: dict[str, Any] = {"transactions": sum(n for n, _ in methods.values()),
                               "revenue_cents": sum(c for _, c in methods.values())}
        for m in METHODS:
            out[f"transactions_{m}"] = methods.get(m, (0, 0))[0]
            out[f"revenue_cents_{m}"] = methods.get(m, (0, 0))[1]
        out["meter_faults"] = faults.get(k, 0)
        return out

    return by_bucket(b, [], row)


REVENUE = Metric(
    name="revenue", target=METERS, raw="parking_revenue", rolled="parking_revenue_rollup",
    coverage="parking_meter", columns=REVENUE_COLUMNS, shape=_revenue_rows,
    summary=("Parking meter revenue of a zone", "Revenue of one parking meter"),
    description="Per bucket: transactions, revenue (euro cents), split by payment method, "
    "and `meter_faults` (distinct fault codes reported per meter).",
    rollups=(Rollup("rollup_parking_tx_1h", "hour", "parking_tx_fill",
                    ("hour", "device_id", "payment_method", "transactions",
                     "revenue_cents")),
             Rollup("rollup_parking_faults_1h", "hour", "parking_faults_fill",
                    ("hour", "device_id", "fault_code"))))
