"""Wifi: connected clients, unique visitors (pseudonymous keys, per day), dwell times,
traffic volume from cumulative counters. Each route is made from its metric's declaration
(:mod:`api.metrics.wifi`)."""

from __future__ import annotations

from fastapi import APIRouter

from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.metrics import wifi
from api.metrics.routes import add_routes
from api.output import CSV_RESPONSE

router = APIRouter(prefix="/wifi", tags=["wifi"],
                   responses={**ERROR_RESPONSES, **NOT_FOUND_RESPONSE, **CSV_RESPONSE})

for _metric in wifi.METRICS:
    add_routes(router, _metric)
