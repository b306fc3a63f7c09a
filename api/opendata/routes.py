"""Open data over HTTP, without a token: the published package under ``/opendata`` and the
real-time NGSI-LD entities under ``/ngsi-ld/v1/entities``.

The files are the ones ``beffroi opendata publish`` wrote (same bytes streamed from the
disk, ETag = their SHA-256 as the package lists it; the package is written last, so for
the moment a new publication takes, a new file may still carry its former ETag). The
entities are computed from the database for the current minute and kept for that
minute, so a public page polling them costs one computation a minute. Every route is
rate-limited per client address and can be switched off (``BEFFROI_OPENDATA_ENABLED``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path as FsPath
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from api.deps import Conn, SettingsDep
from api.errors import PUBLIC_ERROR_RESPONSES, ApiError, not_found
from api.opendata import collect
from api.opendata.publish import (
    GZIP_SUFFIX,
    PACKAGE_FILE,
    origin,
    parking_state,
    thresholds,
    wifi_state,
)
from api.timeq import Buckets
from beffroi.settings import Settings
from devices.opendata import ngsild

FILE_MAX_AGE_S = 3600
FEED_MAX_AGE_S = 60
_MEDIA = {".csv": "text/csv; charset=utf-8", ".json": "application/json",
          ".geojson": "application/geo+json"}
_FILE_RE = r"^[a-z0-9][a-z0-9-]{0,80}\.(csv|json|geojson)$"


class RateLimiter:
    """At most ``per_minute`` requests per client address in each clock minute."""

    def __init__(self) -> None:
        self._minute = -1
        self._counts: dict[str, int] = {}

    def allow(self, client: str, per_minute: int, now: float | None = None) -> bool:
        """Count one request; False when the address is over its budget this minute."""
        minute = int((now if now is not None else time.time()) // 60)
        if minute != self._minute:
            self._minute, self._counts = minute, {}
        n = self._counts.get(client, 0) + 1
        self._counts[client] = n
        return n <= per_minute


def _limiter(request: Request) -> RateLimiter:
    lim: RateLimiter | None = getattr(request.app.state, "opendata_limiter", None)
    if lim is None:
        lim = request.app.state.opendata_limiter = RateLimiter()
    return lim


async def open_access(request: Request, settings: SettingsDep) -> Settings:
    """No token; 404 when open data is off, 429 over the per-address rate."""
    if not settings.opendata_enabled:
        raise ApiError(404, "not_found", "open data is switched off on this server")
    client = request.client.host if request.client else "unknown"
    if not _limiter(request).allow(client, settings.opendata_rate_per_minute):
        raise ApiError(429, "too_many_requests",
                       f"at most {settings.opendata_rate_per_minute} open-data requests per "
                       "minute per address", {"Retry-After": str(60 - int(time.time()) % 60)})
    return settings


Open = Annotated[Settings, Depends(open_access)]
router = APIRouter(tags=["open data"], responses=PUBLIC_ERROR_RESPONSES)


# -- files ----------------------------------------------------------------------------------

def _read(settings: Settings, name: str) -> bytes:
    path: FsPath = settings.opendata_path() / name
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise not_found("open-data file", name) from None


def _existing(settings: Settings, name: str) -> FsPath:
    path: FsPath = settings.opendata_path() / name
    if not path.is_file():
        raise not_found("open-data file", name)
    return path


def _file_headers(etag: str) -> dict[str, str]:
    return {"Cache-Control": f"public, max-age={FILE_MAX_AGE_S}", "ETag": etag,
            "Access-Control-Allow-Origin": "*"}


class _DataFile(FileResponse):
    """A published file sent in pieces of 1 MiB: each piece is read in a worker thread, and
    at Starlette's 64 KiB a year of hours (4 MB) took 64 thread hops and 12 ms of CPU per
    download (5 ms in 1 MiB pieces). A gzip copy of one piece or less (the year of hours:
    500 kB) is read at once and sent without a thread: 1 ms (bench/results/api.md)."""

    chunk_size = 1024 * 1024


def _file_response(request: Request, name: str, data: bytes) -> Response:
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    headers = _file_headers(etag)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_MEDIA[FsPath(name).suffix], headers=headers)


@router.get("/opendata", summary="The open-data package: its files and where to get them")
async def opendata_index(request: Request, settings: Open) -> dict[str, Any]:
    """The package's title, licence, coverage and one URL per file (no token needed)."""
    doc = json.loads(_read(settings, PACKAGE_FILE))
    base = str(request.base_url).rstrip("/")
    return {"title": doc.get("title"), "licenses": doc.get("licenses"),
            "temporal": doc.get("temporal"), "spatial": doc.get("spatial"),
            "datapackage": f"{base}/opendata/{PACKAGE_FILE}",
            "ngsi_ld": f"{base}/ngsi-ld/v1/entities?type=OnStreetParking",
            "files": [{"name": r["name"], "title": r.get("title"),
                       "url": f"{base}/opendata/{r['path']}", "format": r.get("format")}
                      for r in doc.get("resources", [])]}


@router.get("/opendata/{name}", summary="One file of the open-data package",
            description="`datapackage.json` or a file it lists, byte for byte as published; "
            "`ETag` and `Cache-Control: public, max-age=3600`.",
            responses={200: {"content": {"text/csv": {}, "application/geo+json": {}}}})
async def opendata_file(request: Request, settings: Open,
                        name: Annotated[str, Path(pattern=_FILE_RE,
                                                  examples=["lieux-stationnement.csv"])]
                        ) -> Response:
    """A published file. A data file (a year of hours can be megabytes) is streamed from
    the disk, its ETag the SHA-256 the package lists for it: neither read whole nor hashed
    per request."""
    package = _read(settings, PACKAGE_FILE)
    if name == PACKAGE_FILE:
        return _file_response(request, name, package)
    listed = {r["path"]: r for r in json.loads(package).get("resources", [])}
    if name not in listed:
        raise not_found("open-data file", name)
    digest = str(listed[name].get("hash", ""))
    if not digest.startswith("sha256:"):  # a package without hashes: read and hash
        return _file_response(request, name, _read(settings, name))
    path = _existing(settings, name)
    # Its gzip copy to a client that accepts gzip (not for a byte range of the file).
    packed = path.with_name(path.name + GZIP_SUFFIX)
    coded = ("range" not in request.headers and accepts_gzip(request.headers)
             and packed.is_file())
    sha = digest.removeprefix("sha256:")
    headers = {**_file_headers(f'"{sha}-gzip"' if coded else f'"{sha}"'),
               "Vary": "Accept-Encoding"}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if coded:
        headers["Content-Encoding"] = "gzip"
        if packed.stat().st_size <= _DataFile.chunk_size:  # one piece: no worker thread
            return Response(packed.read_bytes(), media_type=_MEDIA[path.suffix],
                            headers=headers)
    return _DataFile(packed if coded else path, media_type=_MEDIA[path.suffix],
                     headers=headers)


def accepts_gzip(headers: Mapping[str, str]) -> bool:
    """Whether ``Accept-Encoding`` allows gzip (listed, or ``*``, with a q-value above 0)."""
    for part in headers.get("accept-encoding", "").split(","):
        coding, *params = (p.strip() for p in part.split(";"))
        if coding.lower() not in ("gzip", "x-gzip", "*"):
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


# -- real-time NGSI-LD --------------------------------------------------------------------

class _Feed:
    """The entities of one minute, computed once."""

    def __init__(self) -> None:
        self.minute: datetime | None = None
        self.entities: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()


async def _entities(request: Request, conn: Conn, settings: Settings) -> list[dict[str, Any]]:
    feed: _Feed | None = getattr(request.app.state, "opendata_feed", None)
    if feed is None:
        feed = request.app.state.opendata_feed = _Feed()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    async with feed.lock:
        if feed.minute != now:
            feed.entities = await _compute(conn, settings, now)
            feed.minute = now
        return feed.entities


async def _compute(conn: Conn, settings: Settings, now: datetime) -> list[dict[str, Any]]:
    """Parking and wifi at ``now``; electricity of the last whole local day."""
    sites = await collect.sites(conn)
    org = origin(settings)
    th = thresholds(settings)
    tz = ZoneInfo(settings.timezone)
    today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tzinfo=tz)
    start, end = (today - timedelta(days=1)).astimezone(UTC), today.astimezone(UTC)
    counts = await collect.family_counts(conn, "grid_meter")
    districts = []
    for d in sites:
        if d.kind.value != "district":
            continue
        (r,) = await collect.district_energy(conn, d.id, counts.get(d.id, 0),
                                             # one local day: its daily rollup
                                             Buckets("1d", tz, [start, end]), settings)
        districts.append(ngsild.DistrictEnergy(
            d.id, d.name, d.insee, d.latitude, d.longitude, r["meters"],
            None if r["import_wh"] is None else round(r["import_wh"] / 1000, 3),
            None if r["export_wh"] is None else round(r["export_wh"] / 1000, 3)))
    return [*ngsild.parking(await parking_state(conn, sites, now), now, org),
            *ngsild.wifi(await wifi_state(conn, sites, now), now, org, th.wifi),
            *ngsild.energy(districts, start, end, org, th.energy_points)]


_Q_TERM = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(==|!=|>=|<=|>|<)(.+)$")


def _q_value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_q(q: str) -> Callable[[Mapping[str, Any]], bool]:
    """The NGSI-LD query language's common subset: terms ``attr op value`` joined by ``;``
    (and), ``op`` among == != > >= < <=; values are numbers, true/false or strings
    (quoted or not). Applied to the simplified form of an entity."""
    terms: list[tuple[str, str, Any]] = []
    for part in q.split(";"):
        m = _Q_TERM.match(part.strip())
        if not m:
            raise _bad_request(f"cannot read the query term {part.strip()[:60]!r} "
                               "(expected attr==value, attr>=number, ... joined by ;)")
        terms.append((m.group(1), m.group(2), _q_value(m.group(3))))

    def test(kv: Mapping[str, Any]) -> bool:
        for attr, op, value in terms:
            if attr not in kv:
                return False
            have = kv[attr]
            try:
                ok = {"==": have == value, "!=": have != value}.get(op)
                if ok is None:
                    ok = {">": have > value, ">=": have >= value, "<": have < value,
                          "<=": have <= value}[op]
            except TypeError:
                ok = False
            if not ok:
                return False
        return True

    return test


def _bad_request(detail: str) -> ApiError:
    return ApiError(400, "BadRequestData", detail)


def _feed_headers() -> dict[str, str]:
    return {"Link": ngsild.LINK_HEADER, "Cache-Control": f"public, max-age={FEED_MAX_AGE_S}",
            "Access-Control-Allow-Origin": "*"}


def _render(request: Request, entities: Sequence[dict[str, Any]], key_values: bool) -> Any:
    ld = "application/ld+json" in request.headers.get("accept", "")
    out = []
    for e in entities:
        body = ngsild.key_values(e) if key_values else dict(e)
        if ld:
            body["@context"] = ngsild.CONTEXT
        out.append(body)
    return out, ("application/ld+json" if ld else "application/json")


@router.get("/ngsi-ld/v1/entities", summary="Real-time NGSI-LD entities (no token)",
            description="FIWARE Smart Data Models entities, refreshed every minute: "
            "`OnStreetParking` and `ParkingSpot` (free / occupied spots now), "
            "`WifiPointOfInterest` and `AccessPoint` (no MAC address), "
            "`ThreePhaseAcMeasurement` (per district, the last whole local day). Query as "
            "an NGSI-LD context broker: `type` and/or `id` (comma-separated) or `q`, "
            "`limit` (default 20, at most 1000), `offset`, `count=true` "
            "(`NGSILD-Results-Count` header), `options=keyValues` for the simplified form. "
            "The `@context` is in the `Link` header, or in each entity with "
            "`Accept: application/ld+json`.")
async def ngsi_entities(
    request: Request, conn: Conn, settings: Open,
    type: Annotated[str | None, Query(max_length=200,
                                      examples=["OnStreetParking"])] = None,
    id: Annotated[str | None, Query(max_length=2000)] = None,
    q: Annotated[str | None, Query(max_length=500,
                                   examples=["availableSpotNumber>10"])] = None,
    limit: Annotated[int, Query(ge=0, le=1000)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    count: bool = False,
    options: Annotated[str | None, Query(max_length=50)] = None,
) -> Response:
    """Entities matching the query."""
    if not (type or id or q):
        raise _bad_request("give at least one of type, id or q")
    test = parse_q(q) if q else None
    types = set(type.split(",")) if type else None
    ids = set(id.split(",")) if id else None
    found = [e for e in await _entities(request, conn, settings)
             if (types is None or e["type"] in types) and (ids is None or e["id"] in ids)
             and (test is None or test(ngsild.key_values(e)))]
    key_values = options is not None and "keyValues" in options.split(",")
    body, media = _render(request, found[offset:offset + limit], key_values)
    headers = _feed_headers()
    if count:
        headers["NGSILD-Results-Count"] = str(len(found))
    return JSONResponse(body, media_type=media, headers=headers)


@router.get("/ngsi-ld/v1/entities/{entity_id}", summary="One real-time NGSI-LD entity")
async def ngsi_entity(request: Request, conn: Conn, settings: Open,
                      entity_id: Annotated[str, Path(max_length=300)],
                      options: Annotated[str | None, Query(max_length=50)] = None
                      ) -> Response:
    """One entity by its URN."""
    for e in await _entities(request, conn, settings):
        if e["id"] == entity_id:
            key_values = options is not None and "keyValues" in options.split(",")
            body, media = _render(request, [e], key_values)
            return JSONResponse(body[0], media_type=media, headers=_feed_headers())
    raise ApiError(404, "ResourceNotFound", f"no entity {entity_id[:300]!r}")
