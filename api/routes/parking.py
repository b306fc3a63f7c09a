"""Parking: time-weighted occupancy, current counts, turnover, meter revenue.

The bucketed metrics are declared in :mod:`api.metrics.parking` (SQL in
``sql/metrics/parking_*.sql``); their routes are made from the declarations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from api.db import get_site
from api.deps import ID_PATTERN, Conn, Reader
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.metrics import parking as metrics
from api.metrics.routes import add_routes
from api.output import CSV_RESPONSE, json_only

router = APIRouter(prefix="/parking", tags=["parking"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})

ZoneId = Annotated[str, Path(pattern=ID_PATTERN, examples=["parking-grand-place"])]

add_routes(router, metrics.OCCUPANCY)


@router.get("/zones/{zone_id}/current", summary="Free / occupied / unknown spots now",
            dependencies=[Depends(json_only)],
            responses={200: {"content": {"application/json": {}}}})
async def zone_current(conn: Conn, _: Reader, zone_id: ZoneId) -> dict[str, Any]:
    """Each sensor's latest state if younger than 3 heartbeats; otherwise unknown. Spots of
    the capacity without a sensor count as unknown."""
    site = await get_site(conn, zone_id, "parking_zone")
    counts = await metrics.zone_current(conn, zone_id)
    sensors = sum(counts.values())
    capacity = site["capacity"] if site["capacity"] is not None else sensors
    counts["unknown"] += max(0, capacity - sensors)
    return {"zone": zone_id, "capacity": capacity, "sensors": sensors, **counts}


add_routes(router, metrics.TURNOVER)
add_routes(router, metrics.REVENUE)
