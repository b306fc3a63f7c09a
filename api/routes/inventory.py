"""Inventory and device health: sites, devices, latest readings, online/late/offline."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from psycopg import sql

from api.db import fetch_all, fetch_one, get_device, get_site, iso
from api.deps import ID_PATTERN, Conn, Page, Reader
from api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from api.output import CSV_CONTENT, json_only, rows_response
from devices.families import KINDS_OF_FAMILY, Family

router = APIRouter(responses=ERROR_RESPONSES)
JSON_ONLY = [Depends(json_only)]

#: Status thresholds, in multiples of the device's expected reporting interval: a device
#: may miss one heartbeat and still be online; after several it is offline.
LATE_AFTER = 2.0
OFFLINE_AFTER = 6.0

SiteKind = Literal["square", "parking_zone", "district"]
Status = Literal["online", "late", "offline"]
FamilyName = Literal["wifi_ap", "parking_spot", "parking_meter", "grid_meter"]
SiteId = Annotated[str, Path(pattern=ID_PATTERN, examples=["grand-place"])]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, examples=["spot-grand-place-001"])]

# Device health: last message time and the latest health values of each device, from
# device_last_seen (one row per device that ever reported, kept by the ingestor in each
# batch's transaction and reconciled with the raw rows by the maintenance job:
# sql/metrics/device_health.sql). Columns a family does not report are NULL.
HEALTH_COLUMNS: dict[str, str] = {  # name -> SQL type in the answer
    "battery": "float8", "rssi_dbm": "int", "snr_db": "float8", "radio_up": "boolean",
    "clients": "int", "paper": "float8", "fault_code": "text"}

_HEALTH_VALUES = ", ".join(f"l.{c}::{t} AS {c}" for c, t in HEALTH_COLUMNS.items())


def _health_sql(devices: str) -> str:
    """Health rows, with their status, of the devices that ``devices`` (a query on
    ``devices d``) selects."""
    return f"""
WITH b AS MATERIALIZED ({devices})
SELECT b.id, b.family, b.site_id, b.name, b.active, b.report_interval_s,
       l.last_seen, {_HEALTH_VALUES},
       CASE WHEN l.last_seen IS NULL
              OR now() - l.last_seen > make_interval(secs => b.report_interval_s * %(off)s)
            THEN 'offline'
            WHEN now() - l.last_seen > make_interval(secs => b.report_interval_s * %(late)s)
            THEN 'late' ELSE 'online' END AS status
FROM b LEFT JOIN device_last_seen l ON l.device_id = b.id"""


def _health_row(r: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"id": r["id"], "family": r["family"], "site_id": r["site_id"], "name": r["name"],
            "active": r["active"], "report_interval_s": r["report_interval_s"],
            "status": r["status"], "last_seen": iso(r["last_seen"]),
            "silent_s": round((now - r["last_seen"]).total_seconds())
            if r["last_seen"] else None,
            **{c: _round(r[c]) for c in HEALTH_COLUMNS}}


def _round(v: Any) -> Any:
    """Ratios and dB are stored as `real`: 0.87, not 0.8700000047683716."""
    return round(v, 4) if isinstance(v, float) else v


def _device_where(site: str | None, family: str | None, params: dict[str, Any], *,
                  active_only: bool = False) -> str:
    where = []
    if site is not None:
        where.append("d.site_id = %(site)s")
        params["site"] = site
    if family is not None:
        where.append("d.family = %(family)s")
        params["family"] = family
    if active_only:
        where.append("d.active")
    return " AND ".join(where) if where else "TRUE"


async def _page(conn: psycopg.AsyncConnection[Any], page: Page, *, site: str | None,
                family: str | None, statuses: Sequence[str] | None,
                active_only: bool = False) -> dict[str, Any]:
    """A page of health rows ordered by id. Without a status filter the page is cut from
    the registry first and only its devices are looked up; with one, every device of the
    filter is (its status is needed to count it)."""
    params = _thresholds()
    where = _device_where(site, family, params, active_only=active_only)
    params |= {"limit": page.limit, "offset": page.offset}
    devices = f"SELECT d.* FROM devices d WHERE {where}"
    if statuses is None:
        total = await fetch_one(conn, f"SELECT count(*) AS n FROM devices d WHERE {where}",
                                params)
        rows = await fetch_all(conn, _health_sql(
            f"{devices} ORDER BY d.id LIMIT %(limit)s OFFSET %(offset)s") + " ORDER BY id",
            params)
        count = total["n"] if total else 0
    else:
        rows = await fetch_all(conn, f"""
            WITH s AS ({_health_sql(devices)}),
            f AS (SELECT * FROM s WHERE status = ANY(%(statuses)s))
            SELECT c.n AS total, p.* FROM (SELECT count(*) AS n FROM f) c
            LEFT JOIN LATERAL (SELECT * FROM f ORDER BY id LIMIT %(limit)s OFFSET %(offset)s) p
              ON true ORDER BY p.id""", {**params, "statuses": list(statuses)})
        count = rows[0]["total"] if rows else 0
        rows = [r for r in rows if r["id"] is not None]
    return {"count": count, "limit": page.limit, "offset": page.offset,
            "data": [_health_row(r) for r in rows]}


HEALTH_ROW_COLUMNS = ("id", "family", "site_id", "name", "active", "report_interval_s",
                      "status", "last_seen", "silent_s", *HEALTH_COLUMNS)
SITE_COLUMNS = ("id", "kind", "name", "insee", "latitude", "longitude", "capacity", "devices")


def _rows(request: Request, body: dict[str, Any], columns: Sequence[str],
          filename: str) -> Response:
    """A list answer as JSON or CSV (nested values as JSON in their cells)."""
    meta = {k: v for k, v in body.items() if k != "data"}
    return rows_response(request, meta, body["data"], columns, filename=filename)


def _thresholds() -> dict[str, Any]:
    return {"late": LATE_AFTER, "off": OFFLINE_AFTER}


@router.get("/sites", tags=["inventory"], summary="Sites (squares, parking zones, districts)",
            responses={200: {"content": CSV_CONTENT}})
async def list_sites(request: Request, conn: Conn, _: Reader, page: Page,
                     kind: Annotated[SiteKind | None, Query()] = None) -> Response:
    """Sites with their device counts per family, filtered by kind, paginated; JSON or CSV
    (`devices` as JSON in its cell)."""
    params: dict[str, Any] = {"kind": kind, "limit": page.limit, "offset": page.offset}
    where = "(%(kind)s::text IS NULL OR s.kind = %(kind)s)"
    total = await fetch_one(conn, f"SELECT count(*) AS n FROM sites s WHERE {where}", params)
    rows = await fetch_all(conn, f"""
        SELECT s.id, s.kind, s.name, s.insee, s.latitude, s.longitude, s.capacity,
               coalesce((SELECT jsonb_object_agg(family, n) FROM (
                   SELECT family, count(*) AS n FROM devices WHERE site_id = s.id
                   GROUP BY family) f), '{{}}'::jsonb) AS devices
        FROM sites s WHERE {where} ORDER BY s.id LIMIT %(limit)s OFFSET %(offset)s""", params)
    return _rows(request, {"count": total["n"] if total else 0, "limit": page.limit,
                           "offset": page.offset, "data": rows}, SITE_COLUMNS, "sites")


@router.get("/sites/{site_id}", tags=["inventory"], summary="One site",
            dependencies=JSON_ONLY, responses=NOT_FOUND_RESPONSE)
async def one_site(conn: Conn, _: Reader, site_id: SiteId) -> dict[str, Any]:
    """A site with its metadata."""
    return await get_site(conn, site_id)


_HEALTH_EXAMPLE = {
    "count": 300, "limit": 100, "offset": 0,
    "data": [{"id": "spot-gare-001", "family": "parking_spot", "site_id": "parking-gare",
              "name": "Place Gare 1", "active": True, "report_interval_s": 600,
              "status": "online", "last_seen": "2025-11-18T09:41:07+00:00", "silent_s": 173,
              "battery": 0.87, "rssi_dbm": -104, "snr_db": 7.5, "radio_up": None,
              "clients": None, "paper": None, "fault_code": None}]}
_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"example": _HEALTH_EXAMPLE}, **CSV_CONTENT}}}
HEALTH_DOC = (
    "Status is `online` while the last message is younger than 2 expected reporting "
    "intervals of the device (`report_interval_s`), `late` up to 6, `offline` beyond (or "
    "never seen). Health values are those of the latest report and NULL where the family "
    "does not send them: parking sensors `battery`, `rssi_dbm`, `snr_db` (LoRaWAN uplink, "
    "best gateway); parking meters `battery`, `paper`, `fault_code` (status reports; a "
    "payment also counts as a message); wifi access points `radio_up`, `clients`; grid "
    "meters report no battery nor signal (mains-powered, wired TIC bridge).")


@router.get("/devices", tags=["inventory"], summary="Devices, filtered and paginated",
            description="Devices of the registry with their health, ordered by id. "
            + HEALTH_DOC, responses=_HEALTH_RESPONSES)
async def list_devices(
    request: Request, conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, examples=["parking-gare"])] = None,
    family: Annotated[FamilyName | None, Query(examples=["parking_spot"])] = None,
    status: Annotated[Status | None, Query(examples=["offline"])] = None,
) -> Response:
    """Devices with their status (online/late/offline), last message time and health."""
    return _rows(request, await _page(conn, page, site=site, family=family,
                                      statuses=None if status is None else (status,)),
                 HEALTH_ROW_COLUMNS, "devices")


@router.get("/devices/{device_id}", tags=["inventory"],
            summary="One device with its latest reading",
            description="The device's registry entry, its health (as in `/v1/devices`) and "
            "its latest reading of each kind (wifi sessions excepted). " + HEALTH_DOC,
            dependencies=JSON_ONLY, responses=NOT_FOUND_RESPONSE)
async def one_device(conn: Conn, _: Reader, device_id: DeviceId) -> dict[str, Any]:
    """The device's registry entry, its health and its latest reading of each kind."""
    dev = await get_device(conn, device_id)
    params = {**_thresholds(), "id": device_id}
    health = await fetch_one(conn, _health_sql("SELECT d.* FROM devices d WHERE d.id = %(id)s"),
                             params)
    latest: dict[str, Any] = {}
    since = health["last_seen"] if health else None
    for kind in KINDS_OF_FAMILY[Family(dev["family"])]:
        if kind.table == "wifi_sessions":
            continue  # pseudonymous personal data: never served per client
        row = await _latest(conn, kind.table, device_id, since)
        if row is not None:
            row.pop("device_id", None)
            latest[kind.name] = row
    out = {k: dev[k] for k in ("id", "family", "site_id", "name", "latitude", "longitude",
                               "dev_eui", "meter_id", "meter_serial", "report_interval_s",
                               "installed_at", "active", "metadata")}
    return {**out, "health": _health_row(health) if health else None, "latest": latest}


async def _latest(conn: Conn, table: str, device_id: str,
                  since: datetime | None) -> dict[str, Any] | None:
    """The device's newest row of ``table``. Looked for first from ``since`` (its newest
    message of any kind, which bounds the search to the last chunk: 0.5 ms of database
    time, where the hypertable's every chunk is opened otherwise, 2 to 14 ms over a year),
    then over the whole table (another kind was newer)."""
    query = sql.SQL("SELECT * FROM {} WHERE device_id = %s{} ORDER BY time DESC LIMIT 1")
    if since is not None:
        row = await fetch_one(conn, query.format(sql.Identifier(table),
                                                 sql.SQL(" AND time >= %s")),
                              (device_id, since), prepare=False)  # planned for ``since``
        if row is not None:
            return row
    return await fetch_one(conn, query.format(sql.Identifier(table), sql.SQL("")),
                           (device_id,))


@router.get("/health/devices", tags=["device health"],
            summary="Health of devices: status, last seen, battery, signal",
            description=HEALTH_DOC, responses=_HEALTH_RESPONSES)
async def devices_health(
    request: Request, conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, examples=["parking-gare"])] = None,
    family: Annotated[FamilyName | None, Query(examples=["parking_spot"])] = None,
    status: Annotated[Status | None, Query(examples=["late"])] = None,
) -> Response:
    """The health list, filtered by site, family and status, ordered by id."""
    return _rows(request, await _page(conn, page, site=site, family=family,
                                      statuses=None if status is None else (status,)),
                 HEALTH_ROW_COLUMNS, "devices-health")


@router.get("/health/sites/{site_id}", tags=["device health"],
            summary="Device status counts of one site", dependencies=JSON_ONLY,
            responses={**NOT_FOUND_RESPONSE, 200: {"content": {"application/json": {"example": {
                "site_id": "parking-gare", "families": {
                    "parking_meter": {"online": 3, "late": 0, "offline": 0,
                                      "min_battery": 0.62},
                    "parking_spot": {"online": 97, "late": 2, "offline": 1,
                                     "min_battery": 0.18}}}}}}})
async def site_health(conn: Conn, _: Reader, site_id: SiteId) -> dict[str, Any]:
    """How many devices of the site are online, late, offline, per family, and the lowest
    latest battery level among them (null for families without a battery)."""
    await get_site(conn, site_id)
    params = {**_thresholds(), "site": site_id}
    health = _health_sql("SELECT d.* FROM devices d WHERE d.site_id = %(site)s")
    rows = await fetch_all(conn, f"SELECT family, status, count(*) AS n, min(battery) AS "
                           f"min_battery FROM ({health}) q "
                           "GROUP BY family, status ORDER BY family, status", params)
    families: dict[str, dict[str, Any]] = {}
    for r in rows:
        f = families.setdefault(r["family"], {"online": 0, "late": 0, "offline": 0,
                                              "min_battery": None})
        f[r["status"]] = r["n"]
        if r["min_battery"] is not None:
            mb = f["min_battery"]
            low = _round(r["min_battery"])
            f["min_battery"] = low if mb is None else min(mb, low)
    return {"site_id": site_id, "families": families}


@router.get("/health/silent", tags=["device health"],
            summary="Silent devices: offline (or late) active devices",
            description="Active devices that stopped reporting (`offline`, and `late` with "
            "`include_late=true`) or never did (`last_seen` null), ordered by id for stable "
            "pagination (not by length of silence: see `silent_s`). " + HEALTH_DOC,
            responses=_HEALTH_RESPONSES)
async def silent(
    request: Request, conn: Conn, _: Reader, page: Page,
    site: Annotated[str | None, Query(pattern=ID_PATTERN, examples=["parking-gare"])] = None,
    family: Annotated[FamilyName | None, Query(examples=["parking_spot"])] = None,
    include_late: Annotated[bool, Query(description="also list late devices")] = False,
) -> Response:
    """Active devices that stopped reporting, ordered by id."""
    return _rows(request, await _page(conn, page, site=site, family=family, active_only=True,
                                      statuses=("offline", "late") if include_late
                                      else ("offline",)),
                 HEALTH_ROW_COLUMNS, "silent-devices")
