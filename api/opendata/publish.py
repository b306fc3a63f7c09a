"""Build and write the open-data package of a period (``beffroi opendata publish``).

The same period and the same data give byte-identical files (rows sorted, fixed number
formats, no time of writing anywhere), and only changed files are rewritten. The NGSI-LD
snapshot observes the state at the end of the period (or now, if that is earlier).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.opendata import collect
from api.opendata.collect import Conn, Period, Row
from api.timeq import Buckets
from beffroi.settings import Settings
from devices.opendata import ngsild, stationnement
from devices.opendata.package import Coverage, FileEntry, descriptor, dumps
from devices.opendata.secrecy import Thresholds, recoverable, too_small
from devices.opendata.tables import (
    ENERGY_DAILY,
    ENERGY_MONTHLY,
    PARKING_DAILY,
    PARKING_HOURLY,
    WIFI_DAILY,
    WIFI_MONTHLY,
    Table,
)
from devices.registry import Site, SiteKind

log = logging.getLogger(__name__)

PACKAGE_FILE = "datapackage.json"
NGSI_FILES = {"parking": "ngsi-ld-stationnement.json", "wifi": "ngsi-ld-wifi.json",
              "energy": "ngsi-ld-energie.json"}
Progress = Callable[[str], None]


def thresholds(settings: Settings) -> Thresholds:
    """The secrecy thresholds of the settings."""
    return Thresholds(settings.opendata_wifi_min_count, settings.opendata_energy_min_points)


def origin(settings: Settings) -> ngsild.Origin:
    """The producer stamped on entities."""
    return ngsild.Origin(settings.opendata_producer, settings.opendata_producer_url)


def observation_time(period: Period, now: datetime | None = None) -> datetime:
    """The end of the period, or the current minute if the period ends later."""
    t = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    return min(period.end, t)


def _of(sites: Sequence[Site], kind: SiteKind) -> list[Site]:
    return [s for s in sites if s.kind is kind]


def _located(sites: Sequence[Site], kind: SiteKind) -> list[tuple[Site, float, float]]:
    """The sites of ``kind`` with their latitude and longitude; a site without them cannot
    be an entity and is left out."""
    return [(s, s.latitude, s.longitude) for s in _of(sites, kind)
            if s.latitude is not None and s.longitude is not None]


def _site_cols(prefix: str, s: Site) -> Row:
    return {f"id_{prefix}": s.id, f"nom_{prefix}": s.name, "insee": s.insee}


def _bucket_of(edges: Sequence[datetime], t: datetime) -> int:
    """Index of the bucket holding ``t`` (edges sorted)."""
    for i in range(len(edges) - 1):
        if edges[i] <= t < edges[i + 1]:
            return i
    raise ValueError(f"{t} is outside the buckets")


# -- parking --------------------------------------------------------------------------------

def _parking_row(zone: Site, capacity: int, r: Row) -> Row:
    known = r["occupied_spot_s"] + r["free_spot_s"] > 0
    arrivals = r["arrivals"]
    return {
        **_site_cols("zone", zone),
        "id_lieu": zone.parking.national_id if zone.parking else None,
        "debut": r["start"], "fin": r["end"], "capacite": capacity,
        # Without any known spot-time the occupancy cannot be computed: empty, not zero.
        "taux_occupation": r["occupancy"] if known else None,
        "taux_occupation_connu": r["occupancy_of_known"],
        "part_inconnue": r["unknown_share"],
        "places_libres_moyenne": r["free_spots_mean"] if known else None,
        "arrivees": arrivals if known or arrivals else None,
        "rotation": (round(arrivals / capacity, 3) if capacity and (known or arrivals)
                     else None),
        "duree_moyenne_stationnement_s": round(r["stay_s"] / r["stays"]) if r["stays"] else None,
    }


async def _parking(conn: Conn, zones: Sequence[Site], period: Period,
                   progress: Progress) -> tuple[list[Row], list[Row]]:
    counts = await collect.family_counts(conn, "parking_spot")
    hourly: list[Row] = []
    daily: list[Row] = []
    for k, z in enumerate(zones, start=1):
        capacity = z.capacity if z.capacity is not None else counts.get(z.id, 0)
        progress(f"parking occupancy: zone {z.id} ({k}/{len(zones)})")
        series = await collect.parking_series(conn, z, capacity,
                                              collect.hours(period.start, period.end,
                                                            period.tz))
        hourly.extend(_parking_row(z, capacity, r) for r in series)
        for part in collect.days(period.start, period.end, period.tz):
            series = await collect.parking_series(conn, z, capacity, part)
            daily.extend(_parking_row(z, capacity, r) for r in series)
    return hourly, daily


# -- wifi -----------------------------------------------------------------------------------

_WIFI_MEASURES = ("visitors", "associations", "sessions")


def _wifi_row(sq: Site, start: str, end: str, aps: int, m: dict[str, int | None],
              mean_dwell_s: int | None, secret: bool, *, monthly: bool) -> Row:
    shown = aps > 0 and not secret
    visitors_col = "visiteurs_jours" if monthly else "visiteurs_uniques"
    sessions = m["sessions"]
    return {**_site_cols("place", sq), "debut": start, "fin": end, "bornes_actives": aps,
            visitors_col: m["visitors"] if shown else None,
            "associations": m["associations"] if shown else None,
            "sessions_terminees": sessions if shown else None,
            "duree_moyenne_s": mean_dwell_s if shown and sessions else None,
            "secret_statistique": aps > 0 and secret}


async def _wifi(conn: Conn, squares: Sequence[Site], period: Period, settings: Settings,
                th: Thresholds, progress: Progress) -> tuple[list[Row], list[Row]]:
    month_b = collect.months(period.start, period.end, period.tz)
    # A cut day is counted from the raw sessions, which live a few hours only: past that,
    # its visitors are unknown (empty), not zero.
    sessions_since = datetime.now(UTC) - timedelta(hours=settings.retention_wifi_sessions_hours)
    daily: list[Row] = []
    monthly: list[Row] = []
    for k, sq in enumerate(squares, start=1):
        progress(f"wifi use: square {sq.id} ({k}/{len(squares)})")
        # Per month: the totals of its days (None once a day is unknown), and what the
        # unpublished days hold.
        totals: list[dict[str, int | None]] = [dict.fromkeys(_WIFI_MEASURES, 0)
                                               for _ in month_b.edges[1:]]
        hidden: list[dict[str, list[int]]] = [{m: [] for m in _WIFI_MEASURES}
                                              for _ in month_b.edges[1:]]
        for part in collect.days(period.start, period.end, period.tz):
            aps = await collect.wifi_aps(conn, sq.id, part)
            visits = await collect.wifi_visitors(conn, sq.id, part, settings)
            dwell = await collect.wifi_dwell(conn, sq.id, part)
            lost = part.bucket != "1d" and part.start < sessions_since
            for i in range(len(part)):
                m: dict[str, int | None] = {
                    "visitors": None if lost else visits[i]["visitors"],
                    "associations": None if lost else visits[i]["associations"],
                    "sessions": dwell[i][0]}
                secret = any(too_small(m[x], th.wifi) for x in _WIFI_MEASURES)
                start, end = part.label(i)
                daily.append(_wifi_row(sq, start, end, aps[i], m, dwell[i][1], secret,
                                       monthly=False))
                j = _bucket_of(month_b.edges, part.edges[i])
                for x in _WIFI_MEASURES:
                    value, total = m[x], totals[j][x]
                    totals[j][x] = None if value is None or total is None else total + value
                    if (secret or aps[i] == 0) and value:
                        hidden[j][x].append(value)
        aps_m = await collect.wifi_aps(conn, sq.id, month_b)
        dwell_m = await collect.wifi_dwell(conn, sq.id, month_b)
        for j in range(len(month_b)):
            m = {**totals[j], "sessions": dwell_m[j][0]}
            secret = any(too_small(m[x], th.wifi)
                         or recoverable(hidden[j][x], th.wifi, same_units=False)
                         for x in _WIFI_MEASURES)
            start, end = month_b.label(j)
            monthly.append(_wifi_row(sq, start, end, aps_m[j], m, dwell_m[j][1], secret,
                                     monthly=True))
    return daily, monthly


# -- energy ---------------------------------------------------------------------------------

def _kwh(wh: float | None) -> float | None:
    return None if wh is None else round(wh / 1000, 3)


def _energy_row(d: Site, r: Row, secret: bool) -> Row:
    shown = r["meters"] > 0 and not secret
    return {**_site_cols("quartier", d), "debut": r["start"], "fin": r["end"],
            "nb_points_livraison": r["meters"],
            "energie_soutiree_kwh": _kwh(r["import_wh"]) if shown else None,
            "energie_injectee_kwh": _kwh(r["export_wh"]) if shown else None,
            "complet": bool(r["complete"]), "estime": bool(r["estimated"] or r["reset"]),
            "secret_statistique": r["meters"] > 0 and secret}


async def _energy(conn: Conn, districts: Sequence[Site], period: Period, settings: Settings,
                  th: Thresholds, progress: Progress
                  ) -> tuple[list[Row], list[Row], list[ngsild.DistrictEnergy]]:
    counts = await collect.family_counts(conn, "grid_meter")
    month_b = collect.months(period.start, period.end, period.tz)
    whole = Buckets("period", period.tz, [period.start, period.end])
    daily: list[Row] = []
    monthly: list[Row] = []
    entities: list[ngsild.DistrictEnergy] = []
    for k, d in enumerate(districts, start=1):
        progress(f"electricity: district {d.id} ({k}/{len(districts)})")
        n = counts.get(d.id, 0)
        hidden: list[list[int]] = [[] for _ in month_b.edges[1:]]
        for part in collect.days(period.start, period.end, period.tz):
            for i, r in enumerate(await collect.district_energy(conn, d.id, n, part,
                                                                settings)):
                secret = too_small(r["meters"], th.energy_points)
                daily.append(_energy_row(d, r, secret))
                if secret:
                    hidden[_bucket_of(month_b.edges, part.edges[i])].append(r["meters"])
        for j, r in enumerate(await collect.district_energy(conn, d.id, n, month_b,
                                                            settings)):
            secret = (too_small(r["meters"], th.energy_points)
                      or recoverable(hidden[j], th.energy_points, same_units=True))
            monthly.append(_energy_row(d, r, secret))
        (r,) = await collect.district_energy(conn, d.id, n, whole, settings)
        entities.append(ngsild.DistrictEnergy(
            d.id, d.name, d.insee, d.latitude, d.longitude, r["meters"],
            _kwh(r["import_wh"]), _kwh(r["export_wh"])))
    return daily, monthly, entities


# -- real-time state ----------------------------------------------------------------------

async def parking_state(conn: Conn, sites: Sequence[Site], t: datetime
                        ) -> list[ngsild.ZoneState]:
    """Every parking zone's counts and spots at ``t``."""
    spots = await collect.spots_at(conn, t)
    out = []
    for z, lat, lon in _located(sites, SiteKind.PARKING_ZONE):
        mine = spots.get(z.id, [])
        free = sum(1 for s in mine if s["state"] == "free")
        occupied = sum(1 for s in mine if s["state"] == "occupied")
        out.append(ngsild.ZoneState(
            z.id, z.name, z.insee, lat, lon,
            (z.metadata or {}).get("category", "onStreet") != "offStreet",
            z.capacity if z.capacity is not None else len(mine), free, occupied,
            z.parking.address if z.parking else None,
            (not z.parking.free) if z.parking else None,
            [ngsild.SpotState(s["id"], s["name"], s["latitude"] or lat,
                              s["longitude"] or lon, s["state"]) for s in mine]))
    return out


async def wifi_state(conn: Conn, sites: Sequence[Site], t: datetime
                     ) -> list[ngsild.SquareState]:
    """Every square's access points and connected clients at ``t``."""
    aps = await collect.aps_at(conn, t)
    out = []
    for sq, lat, lon in _located(sites, SiteKind.SQUARE):
        mine = aps.get(sq.id, [])
        up = [a for a in mine if a["time"] is not None]
        ssid = [(a["metadata"] or {}).get("ssid") for a in mine]
        out.append(ngsild.SquareState(
            sq.id, sq.name, sq.insee, lat, lon,
            sum(int(a["clients"]) for a in up) if up else None,
            [ngsild.ApState(a["id"], a["name"], a["latitude"], a["longitude"],
                            a["time"] is not None, (s,) if isinstance(s, str) else (),
                            a["time"]) for a, s in zip(mine, ssid, strict=True)]))
    return out


def entities_json(entities: Sequence[dict[str, Any]]) -> bytes:
    """Entities as the package writes them (normalized, each with its @context)."""
    doc = [{**e, "@context": ngsild.CONTEXT} for e in entities]
    return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


# -- the package ----------------------------------------------------------------------------

def _table(t: Table, rows: list[Row]) -> FileEntry:
    return FileEntry(t.name, t.path, t.title, t.description, t.csv(rows), "csv", t.schema())


async def build(conn: Conn, settings: Settings, period: Period,
                progress: Progress | None = None) -> dict[str, bytes]:
    """Every file of the package for ``period``, by file name (``datapackage.json`` too)."""
    say = progress or (lambda msg: log.info("opendata: %s", msg))
    th = thresholds(settings)
    sites = await collect.sites(conn)
    zones = _of(sites, SiteKind.PARKING_ZONE)
    say(f"{len(sites)} sites; period {period.start.isoformat()} .. {period.end.isoformat()}")
    places = stationnement.rows((z, z.parking) for z in zones if z.parking is not None)
    ptable = stationnement.table()
    official = stationnement.official_schema()
    files = [
        FileEntry(ptable.name, ptable.path, ptable.title, ptable.description,
                  ptable.csv(places), "csv",
                  {k: official[k] for k in ("fields", "missingValues", "primaryKey")},
                  stationnement.SCHEMA_URL),
        FileEntry(f"{ptable.name}-geojson", f"{ptable.name}.geojson",
                  f"{ptable.title} (GeoJSON)", "Les mêmes lieux en points GeoJSON (WGS 84).",
                  stationnement.geojson(places), "geojson", None, stationnement.SCHEMA_URL),
    ]
    hourly, daily = await _parking(conn, zones, period, say)
    files += [_table(PARKING_HOURLY, hourly), _table(PARKING_DAILY, daily)]
    w_daily, w_monthly = await _wifi(conn, _of(sites, SiteKind.SQUARE), period, settings, th,
                                     say)
    files += [_table(WIFI_DAILY, w_daily), _table(WIFI_MONTHLY, w_monthly)]
    e_daily, e_monthly, e_entities = await _energy(conn, _of(sites, SiteKind.DISTRICT),
                                                   period, settings, th, say)
    files += [_table(ENERGY_DAILY, e_daily), _table(ENERGY_MONTHLY, e_monthly)]
    t = observation_time(period)
    say(f"NGSI-LD entities observed at {t.isoformat()}")
    org = origin(settings)
    ngsi = {
        "parking": ngsild.parking(await parking_state(conn, sites, t), t, org),
        "wifi": ngsild.wifi(await wifi_state(conn, sites, t), t, org, th.wifi),
        "energy": ngsild.energy(e_entities, period.start, period.end, org, th.energy_points),
    }
    titles = {"parking": "Stationnement en temps réel (NGSI-LD OnStreetParking, ParkingSpot)",
              "wifi": "Bornes wifi publiques (NGSI-LD WifiPointOfInterest, AccessPoint)",
              "energy": "Consommation électrique par quartier (NGSI-LD "
                        "ThreePhaseAcMeasurement)"}
    for key, path in NGSI_FILES.items():
        files.append(FileEntry(path.removesuffix(".json"), path, titles[key],
                               "Entités FIWARE Smart Data Models, forme NGSI-LD normalisée, "
                               f"observées à {ngsild.iso(t)} (l'API les sert en temps réel "
                               "sous /ngsi-ld/v1/entities).",
                               entities_json(ngsi[key]), "json"))
    coords = [(s.longitude, s.latitude) for s in sites
              if s.longitude is not None and s.latitude is not None]
    bbox = ((min(c[0] for c in coords), min(c[1] for c in coords),
             max(c[0] for c in coords), max(c[1] for c in coords)) if coords else None)
    coverage = Coverage(period.start.astimezone(period.tz), period.end.astimezone(period.tz),
                        period.tz.key, sorted({s.insee for s in sites}), bbox)
    doc = descriptor(files, coverage, producer=settings.opendata_producer,
                     producer_url=settings.opendata_producer_url, thresholds=th)
    out = {f.path: f.data for f in files}
    out[PACKAGE_FILE] = dumps(doc)
    return out


@dataclass(frozen=True)
class Written:
    """What writing a package changed."""

    written: list[str]
    unchanged: list[str]


#: Suffix of a data file's gzip copy, which the API sends to clients that accept gzip.
GZIP_SUFFIX = ".gz"


def gzipped(data: bytes) -> bytes:
    """A data file's gzip copy: the same bytes give the same copy (no time in its header)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def write(directory: Path, files: dict[str, bytes]) -> Written:
    """Write the files into ``directory`` with a gzip copy of each data file (a year of
    hours: 4 MB of CSV, about a tenth compressed once here rather than on every download);
    a file whose bytes are the same is left alone, the others are replaced atomically (the
    package file last)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {**files, **{name + GZIP_SUFFIX: gzipped(data) for name, data in files.items()
                         if name != PACKAGE_FILE}}
    written: list[str] = []
    unchanged: list[str] = []
    for name in sorted(files, key=lambda n: n == PACKAGE_FILE):
        path = directory / name
        data = files[name]
        if path.exists() and path.read_bytes() == data:
            unchanged.append(name)
            continue
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        written.append(name)
    return Written(written, unchanged)
