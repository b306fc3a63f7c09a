"""NGSI-LD entities of the FIWARE Smart Data Models, built from aggregates only.

Entities are built in the *normalized* NGSI-LD form (``{"type": "Property", "value": ...,
"observedAt": ...}``); :func:`key_values` gives the simplified form (``options=keyValues``),
which is what the Smart Data Models JSON Schemas describe and what :func:`schema_errors`
checks against the copies shipped in ``schemas/smart-data-models/``.

Privacy: an access point carries no MAC address (its id is the registry's); clients of a
square below the wifi threshold are not published; electricity entities exist per district
only, never per meter, and a district under the delivery-point threshold carries no energy
(``statisticalSecrecy`` true).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Literal

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from devices.opendata.secrecy import too_small
from devices.opendata.stationnement import read_schema_file

CORE_CONTEXT = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
SDM_CONTEXT = "https://smartdatamodels.org/context.jsonld"
CONTEXT = [SDM_CONTEXT, CORE_CONTEXT]
LINK_HEADER = (f'<{SDM_CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; '
               'type="application/ld+json"')

SCHEMA_FILES: Mapping[str, str] = {
    "OnStreetParking": "smart-data-models/dataModel.Parking/OnStreetParking/schema.json",
    "OffStreetParking": "smart-data-models/dataModel.Parking/OffStreetParking/schema.json",
    "ParkingSpot": "smart-data-models/dataModel.Parking/ParkingSpot/schema.json",
    "AccessPoint": "smart-data-models/dataModel.WifiNetwork/AccessPoint/schema.json",
    "WifiPointOfInterest":
        "smart-data-models/dataModel.WifiNetwork/WifiPointOfInterest/schema.json",
    "ThreePhaseAcMeasurement":
        "smart-data-models/dataModel.Energy/ThreePhaseAcMeasurement/schema.json",
}
_SHARED_FILES = ("smart-data-models/common-schema.json",
                 "smart-data-models/dataModel.Device/device-schema.json")
ENTITY_TYPES = tuple(SCHEMA_FILES)


def urn(entity_type: str, insee: str, local_id: str) -> str:
    """``urn:ngsi-ld:<Type>:<INSEE>:<registry id>``."""
    return f"urn:ngsi-ld:{entity_type}:{insee}:{local_id}"


def iso(t: datetime) -> str:
    """UTC ISO 8601 with ``Z``, as NGSI-LD brokers write it."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def prop(value: Any, observed_at: datetime | None = None,
         unit: str | None = None) -> dict[str, Any]:
    """An NGSI-LD Property."""
    out: dict[str, Any] = {"type": "Property", "value": value}
    if observed_at is not None:
        out["observedAt"] = iso(observed_at)
    if unit is not None:
        out["unitCode"] = unit
    return out


def rel(target: str) -> dict[str, Any]:
    """An NGSI-LD Relationship."""
    return {"type": "Relationship", "object": target}


def point(lat: float, lon: float) -> dict[str, Any]:
    """A GeoProperty point (GeoJSON order: longitude, latitude)."""
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


@dataclass(frozen=True)
class Origin:
    """Who publishes, stamped on every entity."""

    producer: str
    url: str

    def attrs(self) -> dict[str, Any]:
        """``dataProvider`` and ``source``."""
        return {"dataProvider": prop(self.producer), "source": prop(self.url)}


@dataclass(frozen=True)
class SpotState:
    """A parking spot's state at the observation time."""

    id: str
    name: str
    lat: float
    lon: float
    status: Literal["free", "occupied", "unknown"]


@dataclass(frozen=True)
class ZoneState:
    """A parking zone's counts at the observation time."""

    id: str
    name: str
    insee: str
    lat: float
    lon: float
    on_street: bool
    capacity: int
    free: int
    occupied: int
    address: str | None
    paid: bool | None  # None: not described as a parking place
    spots: Sequence[SpotState]


def parking(zones: Iterable[ZoneState], at: datetime, origin: Origin) -> list[dict[str, Any]]:
    """OnStreetParking (or OffStreetParking) per zone and ParkingSpot per sensor (free /
    occupied / unknown)."""
    out: list[dict[str, Any]] = []
    for z in zones:
        kind = "OnStreetParking" if z.on_street else "OffStreetParking"
        zone_urn = urn(kind, z.insee, z.id)
        e: dict[str, Any] = {
            "id": zone_urn, "type": kind, "name": prop(z.name),
            "location": point(z.lat, z.lon),
            "totalSpotNumber": prop(z.capacity, at),
            "availableSpotNumber": prop(z.free, at),
            "occupiedSpotNumber": prop(z.occupied, at),
            "occupancyDetectionType": prop(["singleSpaceDetection"]),
            **origin.attrs()}
        if z.on_street:  # OffStreetParking's schema takes one spot there, not a list
            e["refParkingSpot"] = rel_list([urn("ParkingSpot", z.insee, s.id)
                                            for s in z.spots])
        if z.paid is not None:
            e["category"] = prop(["feeCharged" if z.paid else "free"])
        if z.address:
            e["address"] = prop({"streetAddress": z.address})
        out.append(e)
        for s in z.spots:
            out.append({
                "id": urn("ParkingSpot", z.insee, s.id), "type": "ParkingSpot",
                "name": prop(s.name), "location": point(s.lat, s.lon),
                "status": prop(s.status, at),
                "category": prop(["onStreet" if z.on_street else "offStreet"]),
                "refParkingSite": rel(zone_urn), **origin.attrs()})
    return out


def rel_list(targets: list[str]) -> dict[str, Any]:
    """A Relationship to several entities."""
    return {"type": "Relationship", "object": targets}


@dataclass(frozen=True)
class ApState:
    """An access point at the observation time (no MAC address: the registry id)."""

    id: str
    name: str
    lat: float | None
    lon: float | None
    up: bool
    ssids: tuple[str, ...]
    last_report: datetime | None


@dataclass(frozen=True)
class SquareState:
    """A square's access points and connected clients at the observation time."""

    id: str
    name: str
    insee: str
    lat: float
    lon: float
    clients: int | None  # None: no access point reporting
    aps: Sequence[ApState]


def wifi(squares: Iterable[SquareState], at: datetime, origin: Origin,
         min_count: int) -> list[dict[str, Any]]:
    """WifiPointOfInterest per square and AccessPoint per access point."""
    out: list[dict[str, Any]] = []
    for sq in squares:
        poi = urn("WifiPointOfInterest", sq.insee, sq.id)
        up = sum(1 for a in sq.aps if a.up)
        status = ("noService" if not sq.aps else "working" if up == len(sq.aps)
                  else "totalFailure" if up == 0 else "workingPartially")
        e: dict[str, Any] = {"id": poi, "type": "WifiPointOfInterest", "name": prop(sq.name),
                             "location": point(sq.lat, sq.lon),
                             "wifiStatus": prop(status, at), **origin.attrs()}
        secret = too_small(sq.clients, min_count)
        if sq.clients is not None and not secret:
            e["clientsConnected"] = prop(sq.clients, at)
        e["statisticalSecrecy"] = prop(secret)
        out.append(e)
        for a in sq.aps:
            ap: dict[str, Any] = {
                "id": urn("AccessPoint", sq.insee, a.id), "type": "AccessPoint",
                "name": prop(a.name), "apState": prop("up" if a.up else "down", at),
                "refPointOfInterest": rel(poi), **origin.attrs()}
            if a.lat is not None and a.lon is not None:
                ap["location"] = point(a.lat, a.lon)
            if a.ssids:
                ap["ssid"] = prop(list(a.ssids))
            if a.last_report is not None:
                ap["dateLastValueReported"] = prop(iso(a.last_report))
            out.append(ap)
    return out


@dataclass(frozen=True)
class DistrictEnergy:
    """A district's energy over a period, summed over its delivery points."""

    id: str
    name: str
    insee: str
    lat: float | None
    lon: float | None
    points: int
    import_kwh: float | None
    export_kwh: float | None


def energy(districts: Iterable[DistrictEnergy], start: datetime, end: datetime,
           origin: Origin, min_points: int) -> list[dict[str, Any]]:
    """ThreePhaseAcMeasurement per district (never per meter) for ``[start, end)``."""
    out: list[dict[str, Any]] = []
    for d in districts:
        secret = too_small(d.points, min_points)
        e: dict[str, Any] = {
            "id": urn("ThreePhaseAcMeasurement", d.insee, d.id),
            "type": "ThreePhaseAcMeasurement",
            "name": prop(f"{d.name} : consommation agrégée"),
            "dateEnergyMeteringStarted": prop(iso(start)),
            "deliveryPointCount": prop(d.points, end),
            "statisticalSecrecy": prop(secret), **origin.attrs()}
        if d.lat is not None and d.lon is not None:
            e["location"] = point(d.lat, d.lon)
        if not secret:
            if d.import_kwh is not None:
                e["totalActiveEnergyImport"] = prop(d.import_kwh, end, "KWH")
            if d.export_kwh is not None:
                e["totalActiveEnergyExport"] = prop(d.export_kwh, end, "KWH")
        out.append(e)
    return out


def key_values(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The simplified form: each attribute's value (or relationship target)."""
    out: dict[str, Any] = {}
    for k, v in entity.items():
        if k == "@context":
            continue
        if isinstance(v, dict) and v.get("type") in ("Property", "GeoProperty"):
            out[k] = v["value"]
        elif isinstance(v, dict) and v.get("type") == "Relationship":
            out[k] = v["object"]
        else:
            out[k] = v
    return out


@cache
def _registry() -> Registry[Any]:
    docs = [read_schema_file(p) for p in (*_SHARED_FILES, *SCHEMA_FILES.values())]
    return Registry().with_resources(
        (d["$id"], Resource.from_contents(d, default_specification=DRAFT202012)) for d in docs)


@cache
def _validator(entity_type: str) -> Draft202012Validator:
    schema = read_schema_file(SCHEMA_FILES[entity_type])
    return Draft202012Validator(schema, registry=_registry(),
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(entity: Mapping[str, Any]) -> list[str]:
    """Why an entity (either form) breaks its Smart Data Models schema; empty when valid."""
    kv = key_values(entity)
    etype = kv.get("type")
    if etype not in SCHEMA_FILES:
        return [f"no shipped schema for type {etype!r}"]
    return [f"{kv.get('id')}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in _validator(str(etype)).iter_errors(kv)]


__all__ = ["CONTEXT", "ENTITY_TYPES", "LINK_HEADER", "ApState", "DistrictEnergy", "Origin",
           "SpotState", "SquareState", "ZoneState", "energy", "key_values", "parking",
           "schema_errors", "urn", "wifi"]
