"""Inventory and device health: sites, devices, latest readings, online/late/offline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Path, Query
from psycopg import sql

from api.db import fetch_all, fetch_one, get_device, get_site, iso
from api.deps import ID_PATTERN, Conn, Page, Reader
from api.errors import ERROR_RESPONSES
from devices.families import KINDS_OF_FAMILY, Family

router = APIRouter(responses=ERROR_RESPONSES)

#: Status thresholds, in multiples of the device's expected reporting interval: a device
#: may miss one heartbeat and still be online; after several it is offline.
LATE_AFTER = 2.0
OFFLINE_AFTER = 6.0

SiteKind = Literal["square", "parking_zone", "district"]
Status = Literal["online", "late", "offline"]
FamilyName = Literal["wifi_ap", "parking_spot", "parking_meter", "grid_meter"]
SiteId = Annotated[str, Path(pattern=ID_PATTERN, examples=["grand-place"])]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, examples=["spot-grand-place-001"])]

# Last message time, latest battery and signal per device, each read from the family's
# table through its (device_id, time) index.
_HEALTH_SQL = """
SELECT d.id, d.family, d.site_id, d.name, d.active, d.report_interval_s,
       h.last_seen, h.battery, h.rssi_dbm,
       CASE WHEN h.last_seen IS NULL
              OR now() - h.last_seen > make_interval(secs => d.report_interval_s * %(off)s)
            THEN 'offline'
            WHEN now() - h.last_seen > make_interval(secs => d.report_interval_s * %(late)s)
            THEN 'late' ELSE 'online' END AS status
FROM devices d
LEFT JOIN LATERAL (
    SELECT * FROM (
        SELECT time AS last_seen, battery::float8 AS battery, rssi_dbm::int AS rssi_dbm
          FROM parking_spot_state WHERE d.family = 'parking_spot' AND device_id = d.id
        UNION ALL
        SELECT time, battery::float8, NULL FROM parking_meter_status
          WHERE d.family = 'parking_meter' AND device_id = d.id
        UNION ALL
        SELECT time, NULL, NULL FROM parking_transactions
          WHERE d.family = 'parking_meter' AND device_id = d.id
        UNION ALL
        SELECT time, NULL, NULL FROM wifi_ap_stats WHERE d.family = 'wifi_ap' AND device_id = d.id
        UNION ALL
        SELECT time, NULL, NULL FROM grid_readings
          WHERE d.family = 'grid_meter' AND device_id = d.id
    ) x ORDER BY last_seen DESC LIMIT 1
) h ON true
"""


def _health_query(where: list[str]) -> str:
    cond = " AND ".join(where) if where else "TRUE"
    return f"SELECT * FROM ({_HEALTH_SQL}) q WHERE {cond}"


def _health_row(r: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": r["id"], "family": r["family"], "site_id": r["site_id"], "name": r["name"],
            "active": r["active"], "report_interval_s": r["report_interval_s"],
            "status": r["status"], "last_seen": iso(r["last_seen"]),
            "silent_s": round((now - r["last_seen"]).total_seconds())
            if r["last_seen"] else None,
            "battery": r["battery"], "rssi_dbm": r["rssi_dbm"]}


def _filters(site: str | None, family: str | None, status: str | None,
             params: dict[str, Any]) -> list[str]:
    where = []
    if site is not None:
        where.append("site_id = %(site)s")
        params["site"] = site
    if family is not None:
        where.append("family = %(family)s")
        params["family"] = family
    if status is not None:
        where.append("status = %(status)s")
        params["status"] = status
    return where


async def _page(conn: psycopg.AsyncConnection[Any], where: list[str], params: dict[str, Any],
                page: Page) -> dict[str, Any]:
    q = _health_query(where)
    total = await fetch_one(conn, f"SELECT count(*) AS n FROM ({q}) c", params)
    rows = await fetch_all(conn, q + " ORDER BY id LIMIT %(limit)s OFFSET %(offset)s",
                           {**params, "limit": page.limit, "offset": page.offset})
    return {"count": total["n"] if total else 0, "limit": page.limit, "offset": page.offset,
            "data": [_health_row(r) for r in rows]}


def _thresholds() -> dict[str, Any]:
    return {"late": LATE_AFTER, "off": OFFLINE_AFTER}


@router.get("/sites", tags=["inventory"], summary="Sites (squares, parking zones, districts)")
async def list_sites(conn: Conn, _: Reader, page: Page,
                     kind: Annotated[SiteKind | None, Query()] = None) -> dict[str, Any]:
    """Sites with their device counts per family, filtered by kind, paginated."""
    params: dict[str, Any] = {"kind": kind, "limit": page.limit, "offset": page.offset}
    where = "(%(kind)s::text IS NULL OR s.kind = %(kind)s)"
    total = await fetch_one(conn, f"SELECT count(*) AS n FROM sites s WHERE {where}", params)
    rows = await fetch_all(conn, f"""
        SELECT s.id, s.kind, s.name, s.insee, s.latitude, s.longitude, s.capacity,
               coalesce((SELECT jsonb_object_agg(family, n) FROM (
                   SELECT family, count(*) AS n FROM devices WHERE site_id = s.id
                   GROUP BY family) f), '{{}}'::jsonb) AS devices
        FROM sites s WHERE {where} ORDER BY s.id LIMIT %(limit)s OFFSET %(offset)s""", params)
    return {"count": total["n"] if total else 0, "limit": page.limit, "offset": page.offset,
            "data": rows}


@router.get("/sites/{site_id}", tags=["inventory"], summary="One site")
async def one_site(conn: Conn, _: Reader, site_id: SiteId) -> dict[str, Any]:
    """A site with its metadata."""
    return await get_site(conn, site_id)


@router.get("/devices", tags=["inventory"], summary="Devices, filtered and paginated")
async def list_devices(
    conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    family: Annotated[FamilyName | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
) -> dict[str, Any]:
    """Devices with their status (online/late/offline), last message time and battery."""
    params = _thresholds()
    return await _page(conn, _filters(site, family, status, params), params, page)


@router.get("/devices/{device_id}", tags=["inventory"],
            summary="One device with its latest reading")
async def one_device(conn: Conn, _: Reader, device_id: DeviceId) -> dict[str, Any]:
    """The device's registry entry, its health and its latest reading of each kind."""
    dev = await get_device(conn, device_id)
    params = {**_thresholds(), "id": device_id}
    health = await fetch_one(conn, _health_query(["id = %(id)s"]), params)
    latest: dict[str, Any] = {}
    for kind in KINDS_OF_FAMILY[Family(dev["family"])]:
        if kind.table == "wifi_sessions":
            continue  # pseudonymous personal data: never served per client
        row = await fetch_one(conn, sql.SQL(
            "SELECT * FROM {} WHERE device_id = %s ORDER BY time DESC LIMIT 1").format(
                sql.Identifier(kind.table)), (device_id,))
        if row is not None:
            row.pop("device_id", None)
            latest[kind.name] = row
    out = {k: dev[k] for k in ("id", "family", "site_id", "name", "latitude", "longitude",
                               "dev_eui", "meter_id", "report_interval_s", "installed_at",
                               "active", "metadata")}
    return {**out, "health": _health_row(health) if health else None, "latest": latest}


@router.get("/health/devices", tags=["device health"],
            summary="Health of devices: status, last seen, battery, signal")
async def devices_health(
    conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    family: Annotated[FamilyName | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
) -> dict[str, Any]:
    """Status is `online` while the last message is younger than 2 expected reporting
    intervals of the device, `late` up to 6, `offline` beyond (or never seen)."""
    params = _thresholds()
    return await _page(conn, _filters(site, family, status, params), params, page)


@router.get("/health/sites/{site_id}", tags=["device health"],
            summary="Device status counts of one site")
async def site_health(conn: Conn, _: Reader, site_id: SiteId) -> dict[str, Any]:
    """How many devices of the site are online, late, offline, per family."""
    await get_site(conn, site_id)
    params = {**_thresholds(), "site": site_id}
    rows = await fetch_all(conn, f"SELECT family, status, count(*) AS n, min(battery) AS "
                           f"min_battery FROM ({_health_query(['site_id = %(site)s'])}) q "
                           "GROUP BY family, status ORDER BY family, status", params)
    families: dict[str, dict[str, Any]] = {}
    for r in rows:
        f = families.setdefault(r["family"], {"online": 0, "late": 0, "offline": 0,
                                              "min_battery": None})
        f[r["status"]] = r["n"]
        if r["min_battery"] is not None:
            mb = f["min_battery"]
            f["min_battery"] = r["min_battery"] if mb is None else min(mb, r["min_battery"])
    return {"site_id": site_id, "families": families}


@router.get("/health/silent", tags=["device health"],
            summary="Silent devices: offline (or late) active devices")
async def silent(
    conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    family: Annotated[FamilyName | None, Query()] = None,
    include_late: Annotated[bool, Query(description="also list late devices")] = False,
) -> dict[str, Any]:
    """Active devices that stopped reporting, longest silence first is not guaranteed:
    ordered by id for stable pagination."""
    params = _thresholds()
    where = _filters(site, family, None, params)
    where.append("active")
    where.append("status IN ('offline', 'late')" if include_late else "status = 'offline'")
    return await _page(conn, where, params, page)
