"""Grid: energy from cumulative indices, load curve, daily peaks, voltage quality, solar
export; each a declared metric (``api.metrics.grid``, SQL in ``sql/metrics/grid_*.sql``)."""

from __future__ import annotations

from fastapi import APIRouter

from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.metrics.grid import GRID_METRICS
from api.metrics.routes import add_routes
from api.output import CSV_RESPONSE

router = APIRouter(prefix="/grid", tags=["grid"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})
for _metric in GRID_METRICS:
    add_routes(router, _metric)
