"""Every declared metric: the routes and the rollup job read them from here."""

from __future__ import annotations

from api.metrics import wifi
from api.metrics.base import Metric, Rollup
from api.metrics.grid import GRID_METRICS
from api.metrics.parking import OCCUPANCY, REVENUE, TURNOVER

METRICS: tuple[Metric, ...] = (OCCUPANCY, TURNOVER, REVENUE, *GRID_METRICS, *wifi.METRICS)


def rollups_of(coverage: str) -> tuple[Rollup, ...]:
    """The rollup tables filled under rollup_state ``coverage`` (each once)."""
    out: dict[str, Rollup] = {}
    for m in METRICS:
        for r in m.rollups:
            if (r.coverage or m.coverage) == coverage:
                out.setdefault(r.table, r)
    return tuple(out.values())
